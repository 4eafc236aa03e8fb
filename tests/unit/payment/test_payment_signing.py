"""HMAC-SHA512 over the sorted query string, and the adapter's reading of notifications."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motcua_payment.adapters.gateways import signing
from motcua_payment.adapters.gateways import vnpay_protocol as vp
from motcua_payment.adapters.gateways.vnpay import VnpayStyleGateway
from motcua_payment.domain.callbacks import CallbackRejected, Outcome, RejectionReason
from motcua_payment.domain.payment import Actor, Payer, Payment, PaymentRequest
from motcua_payment.testing import signed_notification

SECRET = b"S3CR3T-hash-secret-0123456789"
NOW = datetime(2026, 3, 16, 2, 30, tzinfo=UTC)


def test_canonical_string_is_sorted_form_encoded_and_excludes_the_signature() -> None:
    params = {
        "vnp_TxnRef": "abc",
        "vnp_Amount": "15000000",
        "vnp_OrderInfo": "Le phi ho so SXD/1 & 2",
        "vnp_SecureHash": "ignored",
        "vnp_SecureHashType": "HmacSHA512",
    }
    assert signing.canonical(params) == (
        "vnp_Amount=15000000&vnp_OrderInfo=Le+phi+ho+so+SXD%2F1+%26+2&vnp_TxnRef=abc"
    )
    expected = hmac.new(SECRET, signing.canonical(params).encode(), hashlib.sha512).hexdigest()
    assert signing.sign(params, SECRET) == expected
    assert len(expected) == 128


def test_verify_accepts_its_own_signature_in_any_case_and_nothing_else() -> None:
    params = signing.signed({"vnp_A": "1", "vnp_B": "hai"}, SECRET)
    assert signing.verify(params, SECRET)
    assert signing.verify({**params, "vnp_SecureHash": params["vnp_SecureHash"].upper()}, SECRET)
    assert not signing.verify(params, b"another-secret-0123456789")
    assert not signing.verify({**params, "vnp_B": "ba"}, SECRET)
    assert not signing.verify({**params, "vnp_C": "added"}, SECRET)  # every field is signed
    assert not signing.verify({k: v for k, v in params.items() if k != "vnp_SecureHash"}, SECRET)
    assert not signing.verify({**params, "vnp_SecureHash": "ễ"}, SECRET)


_NAMES = st.text(min_size=1).filter(lambda n: n not in (signing.HASH_FIELD, "vnp_SecureHashType"))


@given(st.dictionaries(_NAMES, st.text(), max_size=8), st.binary(min_size=16))
def test_signed_query_round_trips_through_url_parsing(params, secret) -> None:
    query = signing.signed_query(params, secret)
    parsed = dict(parse_qsl(query, keep_blank_values=True))
    assert parsed == {**params, signing.HASH_FIELD: signing.sign(params, secret)}
    assert signing.verify(parsed, secret)


def test_names_cannot_be_used_to_regroup_signed_fields() -> None:
    params = signing.signed({"vnp_A": "1", "vnp_B": "2"}, SECRET)
    regrouped = {"vnp_A=1&vnp_B": "2", signing.HASH_FIELD: params[signing.HASH_FIELD]}
    assert not signing.verify(regrouped, SECRET)


# -- the adapter ---------------------------------------------------------------------------------
def gateway() -> VnpayStyleGateway:
    return VnpayStyleGateway(
        "sandbox", "http://127.0.0.1:9", "MOTCUA01", lambda: SECRET, clock=lambda: NOW
    )


def a_payment() -> Payment:
    request = PaymentRequest.validated(
        dossier_code="SXD-260316-0001",
        agency_code="SXD",
        amount_vnd=150_000,
        description="Lệ phí cấp giấy phép xây dựng",
        payer=Payer.validated("Nguyễn Thị Thu Hà", "079203004567"),
    )
    return Payment.new(
        request,
        payment_id="0123456789abcdef0123456789abcdef",
        gateway="sandbox",
        created_by=Actor("svc", "service"),
        now=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )


def test_redirect_url_is_signed_and_carries_amount_times_100_and_expiry() -> None:
    url = gateway().redirect_url(a_payment(), "http://cb/payment/sandbox/return")
    parts = urlsplit(url)
    assert parts.path == vp.PAY_PATH
    params = dict(parse_qsl(parts.query))
    assert signing.verify(params, SECRET)
    assert params["vnp_Amount"] == "15000000"
    assert params["vnp_CurrCode"] == "VND"
    assert params["vnp_TxnRef"] == "0123456789abcdef0123456789abcdef"
    assert params["vnp_OrderInfo"] == "Le phi cap giay phep xay dung"  # no diacritics
    assert params["vnp_CreateDate"] == "20260316093000"  # Vietnam time
    assert params["vnp_ExpireDate"] == "20260316094500"
    assert params["vnp_ReturnUrl"] == "http://cb/payment/sandbox/return"


def notification(secret: bytes = SECRET, **changes: object) -> list[tuple[str, str]]:
    fields: dict[str, object] = {
        "secret": secret,
        "merchant": "MOTCUA01",
        "payment_id": "0123456789abcdef0123456789abcdef",
        "amount_vnd": 150_000,
        "transaction_no": "14000001",
        "pay_date": NOW,
    }
    fields.update(changes)
    return parse_qsl(signed_notification(**fields), keep_blank_values=True)


def test_a_valid_notification_is_read() -> None:
    notice = gateway().parse_notification(notification())
    assert notice.outcome is Outcome.PAID
    assert notice.amount_vnd == 150_000 and notice.currency == "VND"
    assert notice.transaction_id == "14000001" and notice.occurred_at == NOW
    failed = gateway().parse_notification(notification(paid=False))
    assert failed.outcome is Outcome.FAILED and failed.code == "24"


def reason_of(pairs: list[tuple[str, str]]) -> RejectionReason:
    with pytest.raises(CallbackRejected) as err:
        gateway().parse_notification(pairs)
    return err.value.reason


def test_wrong_secret_missing_or_altered_signature_is_bad_signature() -> None:
    assert (
        reason_of(notification(secret=b"not-the-merchant-secret!")) is RejectionReason.BAD_SIGNATURE
    )
    pairs = notification()
    assert (
        reason_of([p for p in pairs if p[0] != "vnp_SecureHash"]) is RejectionReason.BAD_SIGNATURE
    )
    altered = [(k, "99900000" if k == "vnp_Amount" else v) for k, v in pairs]
    assert reason_of(altered) is RejectionReason.BAD_SIGNATURE


def test_repeated_parameter_is_malformed() -> None:
    pairs = notification()
    assert reason_of([*pairs, ("vnp_Amount", "100")]) is RejectionReason.MALFORMED


@pytest.mark.parametrize(
    "extra",
    [
        {"vnp_TmnCode": "OTHER"},
        {"vnp_TransactionNo": ""},
        {"vnp_Amount": "15000050"},
        {"vnp_Amount": "-100"},
        {"vnp_Amount": "١٥٠٠٠٠٠٠"},
        {"vnp_PayDate": "2026-03-16"},
        {"vnp_CurrCode": ""},
    ],
)
def test_signed_but_unreadable_fields_are_malformed(extra) -> None:
    assert reason_of(notification(extra=extra)) is RejectionReason.MALFORMED


def test_ipn_answers_follow_vnpay() -> None:
    gw = gateway()
    assert gw.acknowledge(None).body == b'{"RspCode": "00", "Message": "Confirm Success"}'
    assert b'"97"' in gw.acknowledge(RejectionReason.BAD_SIGNATURE).body
    assert b'"02"' in gw.acknowledge(RejectionReason.REPLAY).body
    assert b'"04"' in gw.acknowledge(RejectionReason.AMOUNT_MISMATCH).body
    assert b'"01"' in gw.acknowledge(RejectionReason.UNKNOWN_REFERENCE).body
    assert b'"99"' in gw.acknowledge(RejectionReason.STALE_TIMESTAMP).body
    assert {gw.acknowledge(r).status for r in RejectionReason} == {200}


def test_times_are_vietnam_time() -> None:
    assert vp.format_time(NOW) == "20260316093000"
    assert vp.parse_time("20260316093000") == NOW
    with pytest.raises(ValueError):
        vp.parse_time("2026031609300")

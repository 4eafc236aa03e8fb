"""Payments, refunds, receipts and the callback rules, without any I/O."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motcua_kit.errors import FailedPrecondition, InvalidArgument
from motcua_kit.transitions import IllegalTransition
from motcua_payment.domain.callbacks import (
    CallbackRejected,
    Notice,
    Outcome,
    RejectionReason,
    check_fresh,
    check_matches,
    settling_trigger,
)
from motcua_payment.domain.payment import (
    MAX_AMOUNT_VND,
    Actor,
    Payer,
    Payment,
    PaymentRequest,
    Receipt,
    format_vnd,
    receipt_number,
    validate_amount,
)
from motcua_payment.domain.states import PaymentState, RefundState, Trigger

NOW = datetime(2026, 3, 16, 9, 30, tzinfo=UTC)
OFFICER = Actor("officer-1", "officer", "SXD")
PAYER = Payer.validated("Nguyễn Thị Thu Hà", "079203004567", "+84 905 123 456", "ThuHa@Example.vn")


def request(**changes: object) -> PaymentRequest:
    fields: dict[str, object] = {
        "dossier_code": "SXD-260316-0001",
        "agency_code": "SXD",
        "amount_vnd": 150_000,
        "description": "",
        "payer": PAYER,
    }
    fields.update(changes)
    return PaymentRequest.validated(**fields)


def payment(state: PaymentState = PaymentState.PENDING, amount: int = 150_000) -> Payment:
    p = Payment.new(
        request(amount_vnd=amount),
        payment_id="a" * 32,
        gateway="sandbox",
        created_by=OFFICER,
        now=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )
    if state is PaymentState.CREATED:
        return p
    p = p.started("https://gw/pay")
    if state is PaymentState.SUCCEEDED:
        p = p.succeeded("14000001", Receipt("SXD-2026-000001", NOW), NOW)
    elif state is PaymentState.FAILED:
        p = p.failed("14000001", "24", NOW)
    elif state is PaymentState.EXPIRED:
        p = p.expired(NOW)
    elif state is PaymentState.CANCELLED:
        p = p.cancelled(NOW)
    return p


# -- money -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [150_000.0, 1.5, "150000", True, None, 0, -1, MAX_AMOUNT_VND + 1])
def test_amount_must_be_a_positive_whole_number_of_dong(bad) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_amount("amount_vnd", bad)
    assert err.value.field == "amount_vnd"


@given(st.integers(min_value=1, max_value=MAX_AMOUNT_VND))
def test_any_whole_amount_is_kept_exactly(amount) -> None:
    assert validate_amount("amount_vnd", amount) == amount
    assert type(request(amount_vnd=amount).amount_vnd) is int


def test_vnd_is_shown_with_dots() -> None:
    assert format_vnd(1_500_000) == "1.500.000 ₫"


# -- requests ----------------------------------------------------------------------------------
def test_request_is_normalised_and_gets_a_default_description() -> None:
    r = request(description="  ")
    assert r.description == "Lệ phí hồ sơ SXD-260316-0001"
    assert PAYER.phone == "0905123456" and PAYER.email == "thuha@example.vn"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dossier_code": ""}, "dossier_code"),
        ({"dossier_code": "sxd 1"}, "dossier_code"),
        ({"agency_code": ""}, "agency_code"),
        ({"agency_code": "sở xd"}, "agency_code"),
        ({"amount_vnd": 0}, "amount_vnd"),
        ({"description": "x" * 256}, "description"),
        ({"description": "a\x00b"}, "description"),
    ],
)
def test_bad_request_fields_are_named(changes, field) -> None:
    with pytest.raises(InvalidArgument) as err:
        request(**changes)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "079203004567"), "payer.full_name"),
        (("Hà", ""), "payer.citizen_id"),
        (("Hà", "07920300456"), "payer.citizen_id"),
        (("Hà", "079203004567", "12345"), "payer.phone"),
        (("Hà", "079203004567", "", "thuha@"), "payer.email"),
    ],
)
def test_bad_payer_fields_are_named(args, field) -> None:
    with pytest.raises(InvalidArgument) as err:
        Payer.validated(*args)
    assert err.value.field == field


def test_same_body_same_fingerprint_whatever_the_unicode_form() -> None:
    decomposed = unicodedata.normalize("NFD", "Lệ phí cấp phép")
    assert (
        request(description=decomposed).fingerprint()
        == request(description="Lệ phí cấp phép").fingerprint()
    )
    assert request(amount_vnd=150_001).fingerprint() != request().fingerprint()


# -- moves -------------------------------------------------------------------------------------
def test_success_carries_receipt_and_transaction() -> None:
    p = payment(PaymentState.SUCCEEDED)
    assert p.state is PaymentState.SUCCEEDED
    assert p.receipt == Receipt("SXD-2026-000001", NOW)
    assert p.gateway_transaction_id == "14000001" and p.settled_at == NOW


@pytest.mark.parametrize(
    "state",
    [PaymentState.SUCCEEDED, PaymentState.FAILED, PaymentState.EXPIRED, PaymentState.CANCELLED],
)
def test_a_settled_payment_cannot_be_settled_again(state) -> None:
    p = payment(state)
    with pytest.raises(IllegalTransition):
        p.succeeded("x", Receipt("SXD-2026-000002", NOW), NOW)
    with pytest.raises(IllegalTransition):
        p.cancelled(NOW)
    with pytest.raises(IllegalTransition):
        p.expired(NOW)


def test_receipt_numbers() -> None:
    assert receipt_number("SXD", 2026, 1) == "SXD-2026-000001"
    assert receipt_number("UBND-HA", 2027, 1_234_567) == "UBND-HA-2027-1234567"
    with pytest.raises(ValueError):
        receipt_number("SXD", 2026, 0)


# -- refunds -----------------------------------------------------------------------------------
def refund(p: Payment, amount: object, rid: str = "r" * 32):
    return p.request_refund(
        refund_id=rid, amount_vnd=amount, reason="Hồ sơ rút", actor=OFFICER, now=NOW
    )


def test_partial_then_rest_then_one_more_is_an_over_refund() -> None:
    p = payment(PaymentState.SUCCEEDED)
    first = refund(p, 50_000, "1" * 32)
    p = p.with_refund(first.succeeded("R1", NOW))
    assert p.refundable_vnd == 100_000 and p.refunded_vnd == 50_000
    rest = refund(p, 100_000, "2" * 32)
    p = p.with_refund(rest)  # in flight: already counts against what remains
    assert p.refundable_vnd == 0 and p.refunded_vnd == 50_000
    with pytest.raises(FailedPrecondition, match="only 0 VND"):
        refund(p, 1, "3" * 32)
    p = p.with_refund(rest.succeeded("R2", NOW))
    assert p.refunded_vnd == 150_000 and p.state is PaymentState.SUCCEEDED


def test_a_failed_refund_gives_the_amount_back() -> None:
    p = payment(PaymentState.SUCCEEDED)
    r = refund(p, 150_000)
    p = p.with_refund(r.failed("09", NOW))
    assert p.refundable_vnd == 150_000
    assert p.refund(r.id).state is RefundState.FAILED


@pytest.mark.parametrize("state", [PaymentState.PENDING, PaymentState.FAILED])
def test_only_a_succeeded_payment_is_refunded(state) -> None:
    with pytest.raises(IllegalTransition):
        refund(payment(state), 1)


def test_refund_amount_and_reason_are_validated() -> None:
    p = payment(PaymentState.SUCCEEDED)
    with pytest.raises(InvalidArgument) as err:
        refund(p, 10.5)
    assert err.value.field == "amount_vnd"
    with pytest.raises(InvalidArgument) as err:
        p.request_refund(refund_id="x" * 32, amount_vnd=1, reason=" ", actor=OFFICER, now=NOW)
    assert err.value.field == "reason"


def test_a_settled_refund_cannot_settle_again() -> None:
    r = refund(payment(PaymentState.SUCCEEDED), 1).succeeded("R", NOW)
    with pytest.raises(IllegalTransition):
        r.failed("09", NOW)


# -- callback rules ----------------------------------------------------------------------------
def notice(**changes: object) -> Notice:
    fields: dict[str, object] = {
        "reference": "a" * 32,
        "outcome": Outcome.PAID,
        "transaction_id": "14000001",
        "amount_vnd": 150_000,
        "currency": "VND",
        "occurred_at": NOW,
        "code": "00",
    }
    fields.update(changes)
    return Notice(**fields)


def test_fresh_within_tolerance_either_way() -> None:
    tolerance = timedelta(minutes=5)
    check_fresh(notice(occurred_at=NOW - tolerance), NOW, tolerance)
    check_fresh(notice(occurred_at=NOW + tolerance), NOW, tolerance)
    for skew in (tolerance + timedelta(seconds=1), -(tolerance + timedelta(seconds=1))):
        with pytest.raises(CallbackRejected) as err:
            check_fresh(notice(occurred_at=NOW - skew), NOW, tolerance)
        assert err.value.reason is RejectionReason.STALE_TIMESTAMP


def test_amount_and_currency_must_match() -> None:
    p = payment()
    check_matches(notice(), p)
    cases: list[tuple[dict[str, Any], RejectionReason]] = [
        ({"amount_vnd": 149_999}, RejectionReason.AMOUNT_MISMATCH),
        ({"amount_vnd": None}, RejectionReason.AMOUNT_MISMATCH),
        ({"currency": "USD"}, RejectionReason.CURRENCY_MISMATCH),
    ]
    for changes, reason in cases:
        with pytest.raises(CallbackRejected) as err:
            check_matches(notice(**changes), p)
        assert err.value.reason is reason


def test_settling_triggers() -> None:
    assert settling_trigger(notice()) is Trigger.SUCCEED
    assert settling_trigger(notice(outcome=Outcome.FAILED)) is Trigger.FAIL
    with pytest.raises(ValueError):
        settling_trigger(notice(outcome=Outcome.PENDING))

"""The VNPay-style protocol both sides speak: paths, field names, codes, time format.

Modelled on VNPay's payment URL, IPN and ``merchant_webapi`` (querydr / refund), with two
documented departures (docs/adr/0020): the API bodies are signed like the URLs (sorted
query string) instead of VNPay's pipe-joined fields, and there is a ``cancel`` command so a
cancelled or expired payment can no longer be paid at the gateway.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone

VERSION = "2.1.0"
PAY_PATH = "/paymentv2/vpcpay.html"
API_PATH = "/merchant_webapi/api/transaction"

#: Amounts travel as đồng × 100 (VNPay's convention from when it had cents).
AMOUNT_FACTOR = 100

# Commands of the API.
PAY = "pay"
QUERY = "querydr"
REFUND = "refund"
CANCEL = "cancel"

# vnp_ResponseCode of the payment itself (in IPN and return URL).
RESPONSE_OK = "00"
RESPONSE_CUSTOMER_CANCELLED = "24"
RESPONSE_INSUFFICIENT_FUNDS = "51"

# vnp_TransactionStatus (IPN, return, querydr).
STATUS_PAID = "00"
STATUS_PENDING = "01"
STATUS_FAILED = "02"
STATUS_CANCELLED = "12"  # sandbox extension: cancelled by the merchant, or expired

# vnp_ResponseCode of API calls.
API_OK = "00"
API_INVALID_AMOUNT = "03"  # e.g. more than remains refundable
API_MERCHANT_INVALID = "02"
API_REFUND_DECLINED = "09"  # the bank declined the refund
API_NOT_FOUND = "91"
API_NOT_REFUNDABLE = "95"  # the transaction is not a succeeded payment
API_BAD_SIGNATURE = "97"
API_ERROR = "99"

# RspCode the merchant answers an IPN with.
IPN_CONFIRMED = ("00", "Confirm Success")
IPN_ALREADY_CONFIRMED = ("02", "Order already confirmed")
IPN_NOT_FOUND = ("01", "Order not found")
IPN_INVALID_AMOUNT = ("04", "Invalid amount")
IPN_BAD_SIGNATURE = ("97", "Invalid Checksum")
IPN_OTHER = ("99", "Unknown error")

#: Vietnam keeps UTC+7 all year; VNPay's dates are in it.
VN_TIME = timezone(timedelta(hours=7), "ICT")
_DATE_FORMAT = "%Y%m%d%H%M%S"
_TIME = re.compile(r"[0-9]{14}")


def format_time(value: datetime) -> str:
    """``yyyyMMddHHmmss`` in Vietnam time."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(VN_TIME).strftime(_DATE_FORMAT)


def parse_time(value: str) -> datetime:
    """Inverse of :func:`format_time`; raises ValueError for anything else."""
    if not _TIME.fullmatch(value):
        raise ValueError(f"not a yyyyMMddHHmmss time: {value!r}")
    return datetime.strptime(value, _DATE_FORMAT).replace(tzinfo=VN_TIME).astimezone(UTC)


def ascii_text(value: str, limit: int = 255) -> str:
    """Order info without Vietnamese diacritics, as the gateways require (đ → d)."""
    decomposed = unicodedata.normalize("NFD", value.replace("đ", "d").replace("Đ", "D"))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return "".join(ch if 32 <= ord(ch) < 127 else " " for ch in plain)[:limit]

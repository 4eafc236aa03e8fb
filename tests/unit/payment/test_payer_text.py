"""Issue 14, points 3 and 5, in the payment service: the payer's citizen ID and phone take
ASCII digits only, and the payer's name no invisible characters or emoji, each refusal naming
its field. The same kit rules as the dossier service, so a payer is refused alike in both."""

from __future__ import annotations

import pytest

from motcua.payment.v1 import payment_pb2
from motcua_kit.errors import InvalidArgument
from motcua_payment.adapters.messages import payer_from_proto
from motcua_payment.domain.payment import Payer, PaymentRequest, cancel_reason

NAME, CID, PHONE = "Nguyễn Thị Thu Hà", "001203004567", "0905123456"


def refused_payer(full_name: str = NAME, citizen_id: str = CID, phone: str = PHONE) -> str:
    with pytest.raises(InvalidArgument) as info:
        Payer.validated(full_name, citizen_id, phone)
    # The gRPC edge builds the payer the same way, and refuses the same field.
    with pytest.raises(InvalidArgument) as edge:
        payer_from_proto(payment_pb2.Payer(full_name=full_name, citizen_id=citizen_id, phone=phone))
    assert edge.value.field == info.value.field
    return info.value.field


@pytest.mark.parametrize(
    "citizen_id",
    [
        "００１２０３００４５６７",  # fullwidth, as observed in issue 14
        "٠٠١٢٠٣٠٠٤٥٦٧",  # Arabic-Indic
        "۰۰۱۲۰۳۰۰۴۵۶۷",  # Extended Arabic-Indic
        "00120300456٧",
    ],
)
def test_a_payer_citizen_id_in_other_digits_is_refused_naming_the_field(citizen_id: str) -> None:
    assert refused_payer(citizen_id=citizen_id) == "payer.citizen_id"


@pytest.mark.parametrize(
    "phone", ["０９０５１２３４５６", "٠٩٠٥١٢٣٤٥٦", "+84９05123456", "0905\u200b123456"]
)
def test_a_payer_phone_in_other_digits_is_refused_naming_the_field(phone: str) -> None:
    assert refused_payer(phone=phone) == "payer.phone"


@pytest.mark.parametrize(
    "full_name",
    ["Nguyễn \u202eThị Hà", "Nguyễn\u200bThị Hà", "Nguyễn Thị Hà 💸", "Nguyễn\u3164Thị Hà"],
)
def test_invisible_characters_and_emoji_in_the_payer_name_are_refused(full_name: str) -> None:
    assert refused_payer(full_name=full_name) == "payer.full_name"


def test_a_clean_payer_is_kept_in_national_form_and_nfc() -> None:
    payer = Payer.validated("Nguye\u0302\u0303n Thị Hà", CID, "+84 905 123 456")
    assert (payer.full_name, payer.citizen_id, payer.phone) == ("Nguyễn Thị Hà", CID, PHONE)
    assert Payer.validated(NAME, CID).phone == ""  # the phone stays optional


def fee_request(description: str) -> PaymentRequest:
    return PaymentRequest.validated(
        dossier_code="SXD-260316-0001",
        agency_code="SXD",
        amount_vnd=150_000,
        description=description,
        payer=Payer.validated(NAME, CID),
    )


def test_descriptions_and_reasons_keep_emoji_but_refuse_bidi_controls() -> None:
    assert fee_request("Lệ phí 🧾").description == "Lệ phí 🧾"
    with pytest.raises(InvalidArgument) as info:
        fee_request("Lệ phí\u202e")
    assert info.value.field == "description"
    with pytest.raises(InvalidArgument) as info:
        cancel_reason("nhầm\u200d")
    assert info.value.field == "reason"

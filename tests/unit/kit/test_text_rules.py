"""The kit's text rules: ASCII digits only, and no invisible or pictographic characters in
identifying text (ADR 0009). Every refusal names the caller's field and the code point."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motcua_kit import text
from motcua_kit.errors import InvalidArgument

FULLWIDTH_ID = "００１２０３００４５６７"
ARABIC_INDIC_ID = "٠٠١٢٠٣٠٠٤٥٦٧"
EXTENDED_ARABIC_INDIC_ID = "۰۰۱۲۰۳۰۰۴۵۶۷"
DEVANAGARI_ID = "००१२०३००४५६७"


def refused(call: Callable[..., object], *args: object, **kw: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        call(*args, **kw)
    return info.value


# -- digits ---------------------------------------------------------------------------------------
def test_a_citizen_id_is_twelve_ascii_digits() -> None:
    assert text.citizen_id("cid", " 001203004567 ") == "001203004567"


@pytest.mark.parametrize(
    "raw",
    [FULLWIDTH_ID, ARABIC_INDIC_ID, EXTENDED_ARABIC_INDIC_ID, DEVANAGARI_ID, "00120300456７"],
)
def test_other_scripts_digits_are_no_citizen_id(raw: str) -> None:
    assert all(ch.isdigit() for ch in raw)  # what \d and isdigit() let through
    error = refused(text.citizen_id, "applicant.citizen_id", raw)
    assert error.field == "applicant.citizen_id"
    assert "is not an ASCII digit" in error.reason and "U+" in error.reason


@pytest.mark.parametrize("raw", ["", "   "])
def test_a_missing_citizen_id_is_refused_only_when_required(raw: str) -> None:
    assert refused(text.citizen_id, "cid", raw).reason == "is required"
    assert text.citizen_id("cid", raw, required=False) == ""


@pytest.mark.parametrize("raw", ["0905123456", "+84905123456", "84905123456", "090 512.34-56"])
def test_phone_numbers_come_out_in_national_form(raw: str) -> None:
    assert text.phone_number("phone", raw, mobile_only=True) == "0905123456"


@pytest.mark.parametrize(
    "raw",
    ["０９０５１２３４５６", "٠٩٠٥١٢٣٤٥٦", "+８４905123456", "090512345６", "0905\u200b123456"],
)
def test_phone_numbers_with_other_digits_or_invisible_characters_are_refused(raw: str) -> None:
    error = refused(text.phone_number, "applicant.phone", raw, mobile_only=False)
    assert error.field == "applicant.phone"


def test_mobile_only_keeps_to_mobile_prefixes_and_a_blank_phone_may_be_optional() -> None:
    assert text.phone_number("p", "021 234 5678", mobile_only=False) == "0212345678"
    assert refused(text.phone_number, "p", "0212345678", mobile_only=True).field == "p"
    assert text.phone_number("p", "  ", mobile_only=True, required=False) == ""
    assert refused(text.phone_number, "p", "", mobile_only=True).reason == "is required"


@pytest.mark.parametrize("raw", ["٤٢", "４２", "²", "+7", "-1", "1_000", "", "1" * 19, "7 8"])
def test_a_whole_number_is_ascii_digits_and_nothing_else(raw: str) -> None:
    assert not text.is_ascii_number(raw)
    assert refused(text.whole_number, "page_token", raw).field == "page_token"


def test_a_whole_number_in_ascii_digits_is_read() -> None:
    assert text.whole_number("n", " 0042 ") == 42
    assert text.is_ascii_number("123456789012345678")
    assert not text.is_ascii_number("7\n")  # no $-style trailing newline either


# -- identifying text -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ch",
    [
        "\u202e",  # RIGHT-TO-LEFT OVERRIDE
        "\u202d",  # LEFT-TO-RIGHT OVERRIDE
        "\u2066",  # LEFT-TO-RIGHT ISOLATE
        "\u200f",  # RIGHT-TO-LEFT MARK
        "\u200b",  # ZERO WIDTH SPACE
        "\u200c",  # ZERO WIDTH NON-JOINER
        "\u200d",  # ZERO WIDTH JOINER
        "\u2060",  # WORD JOINER
        "\ufeff",  # ZERO WIDTH NO-BREAK SPACE (BOM)
        "\u00ad",  # SOFT HYPHEN
        "\U000e0041",  # TAG LATIN CAPITAL LETTER A
        "\x1b",  # ESCAPE
        "\x7f",  # DELETE
        "\x9b",  # CONTROL SEQUENCE INTRODUCER
    ],
)
def test_format_and_control_characters_are_refused_naming_field_and_code_point(ch: str) -> None:
    assert unicodedata.category(ch) in ("Cf", "Cc")
    error = refused(text.identifying_text, "applicant.full_name", f"Nguyễn{ch}An", max_len=200)
    assert error.field == "applicant.full_name"
    assert f"U+{ord(ch):04X}" in error.reason
    assert "Nguyễn" not in error.reason  # personal data is not echoed back
    # The same characters are refused in free text too.
    assert refused(text.free_text, "comment", f"a{ch}b", max_len=None).field == "comment"


@pytest.mark.parametrize(
    "ch",
    [
        "\u3164",  # HANGUL FILLER: a blank "letter"
        "\u115f",  # HANGUL CHOSEONG FILLER
        "\u034f",  # COMBINING GRAPHEME JOINER
        "\ufe0f",  # VARIATION SELECTOR-16 (emoji presentation)
    ],
)
def test_invisible_code_points_that_are_not_format_characters_are_refused(ch: str) -> None:
    error = refused(text.identifying_text, "applicant.address", f"Hội{ch} An", max_len=500)
    assert error.field == "applicant.address" and f"U+{ord(ch):04X}" in error.reason


@pytest.mark.parametrize(
    "value",
    [
        "Nguyễn Văn An 😀",
        "Số 12 ❤ Hội An",
        "Số 1\ufe0f\u20e3 Lê Lợi",  # keycap 1️⃣
        "Trần 👍🏽",  # emoji with a skin-tone modifier
        "Lê Thị © Hoa",
        "№ 12 Lê Lợi",
        "Nhà ☎ 0905",
        "Hà\U000f0000Nội",  # private use
        "Số １２ Lê Lợi",  # fullwidth digits in a house number
        "Số ١٢ Lê Lợi",
        "Tầng ² Tòa A",
    ],
)
def test_emoji_symbols_and_other_digits_are_refused_in_names_and_addresses(value: str) -> None:
    error = refused(text.identifying_text, "applicant.address", value, max_len=500)
    assert error.field == "applicant.address"
    assert error.reason.startswith("must not contain U+")


@pytest.mark.parametrize(
    "value",
    [
        "Nguyễn Thị Ánh Tuyết",
        "Ksor H'Bớt",
        "H’Hen Niê",
        "Y-Moan Ê Ban",
        "Số 12/3 ngõ 45, Km 10+500, Quốc lộ 1A, P. Đông Hòa (tổ 7)",
        "Lô A-12, KCN Điện Nam – Điện Ngọc, Quảng Nam",
        "-",
    ],
)
def test_vietnamese_names_and_postal_addresses_pass_unchanged(value: str) -> None:
    assert text.identifying_text("applicant.address", value, max_len=500) == value


def test_identifying_text_is_nfc_with_whitespace_collapsed() -> None:
    decomposed = unicodedata.normalize("NFD", "  Nguyễn\u00a0 Thị\tHà ")
    assert text.identifying_text("n", decomposed, max_len=200) == "Nguyễn Thị Hà"


@given(st.text(max_size=40))
def test_whatever_is_accepted_is_nfc_and_free_of_format_and_control_characters(raw: str) -> None:
    for check in (
        lambda v: text.identifying_text("f", v, max_len=500, required=False),
        lambda v: text.free_text("f", v, max_len=None),
    ):
        try:
            out = check(raw)
        except InvalidArgument:
            continue
        assert unicodedata.is_normalized("NFC", out)
        assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in out)


def test_free_text_allows_emoji_but_still_counts_length() -> None:
    assert text.free_text("comment", "Đã nhận đủ giấy tờ 👍 ❤️", max_len=None).endswith("❤️")
    assert refused(text.free_text, "comment", "x" * 11, max_len=10).field == "comment"
    assert refused(text.free_text, "comment", "  ", max_len=10, required=True).field == "comment"

"""GSM-7 transliteration and SMS segment counting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from motcua_notify.domain.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    gsm7_segments,
    plain_gsm7,
    to_gsm7,
    ucs2_segments,
)


def test_vietnamese_loses_its_diacritics() -> None:
    assert to_gsm7("Hồ sơ của Nguyễn Thị Thu Hà đã được tiếp nhận") == (
        "Ho so cua Nguyen Thi Thu Ha da duoc tiep nhan"
    )
    assert to_gsm7("ĐƯỜNG Ủy ban") == "DUONG Uy ban"


def test_decomposed_input_is_normalised_first() -> None:
    assert to_gsm7("Nguye\u0302\u0303n") == "Nguyen"


@given(st.text(max_size=300))
def test_any_text_becomes_gsm7(text: str) -> None:
    out = to_gsm7(text)
    assert all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in out)
    gsm7_segments(out)  # never raises


@given(st.text(max_size=200))
def test_plain_values_cost_one_septet_per_character(text: str) -> None:
    out = plain_gsm7(text)
    assert all(ch in GSM7_BASIC for ch in out)


def test_gsm7_segment_boundaries() -> None:
    assert gsm7_segments("") == 0
    assert gsm7_segments("a" * 160) == 1
    assert gsm7_segments("a" * 161) == 2
    assert gsm7_segments("a" * 306) == 2
    assert gsm7_segments("a" * 307) == 3


def test_extension_characters_cost_two_and_are_not_split() -> None:
    assert gsm7_segments("{" * 80) == 1  # 160 septets
    assert gsm7_segments("{" * 81) == 2
    # 152 plain septets then an escape pair: it cannot straddle the 153-septet boundary.
    assert gsm7_segments("a" * 152 + "[" + "a" * 152) == 3
    assert gsm7_segments("a" * 151 + "[" + "a" * 153) == 2


def test_ucs2_segment_boundaries() -> None:
    assert ucs2_segments("ệ" * 70) == 1
    assert ucs2_segments("ệ" * 71) == 2
    assert ucs2_segments("ệ" * 134) == 2
    assert ucs2_segments("ệ" * 135) == 3


def test_same_notice_costs_fewer_segments_without_diacritics() -> None:
    text = "Hồ sơ PHOIAN-261129-0001 đã được tiếp nhận. Hẹn trả kết quả ngày 07/12/2026."
    assert ucs2_segments(text) == 2
    assert gsm7_segments(to_gsm7(text)) == 1

"""Amounts print as Vietnamese readers write them (issue 14, point 8)."""

from __future__ import annotations

import pytest

from motcua_ops.money import format_vnd


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "0 đ"),
        (1, "1 đ"),
        (999, "999 đ"),
        (8_000, "8.000 đ"),
        (80_000, "80.000 đ"),
        (1_500_000, "1.500.000 đ"),
        (-2_000, "-2.000 đ"),
    ],
)
def test_thousands_are_grouped_with_dots_and_the_dong_sign_follows(amount: int, text: str) -> None:
    assert format_vnd(amount) == text


@pytest.mark.parametrize("amount", [8000.5, "8000", True])
def test_only_whole_dong_are_amounts(amount: object) -> None:
    with pytest.raises(TypeError):
        format_vnd(amount)  # type: ignore[arg-type]

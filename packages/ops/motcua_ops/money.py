"""Amounts of money as a Vietnamese reader writes them: ``8.000 đ``.

Amounts are whole đồng (VND has no minor unit in use). Vietnamese groups thousands with a dot
and puts the đồng sign after the number, so ``80000`` cut short as ``80...`` cannot be read as
eighty thousand: the demo and the operator CLI print amounts through :func:`format_vnd`.
"""

from __future__ import annotations

DONG = "đ"


def format_vnd(amount: int) -> str:
    """``8000`` → ``"8.000 đ"``; ``-1500000`` → ``"-1.500.000 đ"`` (a non-breaking space
    would be typographically right, but terminals and logs copy a plain one better)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"an amount in VND is a whole number of đồng, not {amount!r}")
    sign = "-" if amount < 0 else ""
    return f"{sign}{abs(amount):,} {DONG}".replace(",", ".")

"""SMS text: GSM-7 transliteration (no diacritics) and segment counting.

A Vietnamese SMS with diacritics must travel as UCS-2: 70 characters in one segment, 67 per
segment when concatenated. Without diacritics it fits the GSM 03.38 7-bit alphabet: 160 in one
segment, 153 per segment, with the extension characters (``^{}\\[~]|€`` and form feed) costing
two septets each and never split across segments. Operators bill per segment, so every SMS
template reports both counts.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from unidecode import unidecode

# GSM 03.38 default alphabet (without ESC) and its extension table.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67


class Encoding(StrEnum):
    """How SMS text is sent: GSM-7 without diacritics (cheap) or UCS-2 with them."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True)
class SmsText:
    """One SMS in both forms, with what each costs."""

    unicode_text: str
    gsm7_text: str
    unicode_segments: int
    gsm7_segments: int

    def text(self, encoding: Encoding) -> str:
        return self.gsm7_text if encoding is Encoding.GSM7 else self.unicode_text

    def segments(self, encoding: Encoding) -> int:
        return self.gsm7_segments if encoding is Encoding.GSM7 else self.unicode_segments


def to_gsm7(text: str) -> str:
    """Vietnamese (or any) text without diacritics, every character in the GSM-7 alphabet.

    Unidecode does the transliteration (``Nguyễn`` → ``Nguyen``, ``đ`` → ``d``); what is
    still outside the alphabet (a backtick, control characters) becomes ``'`` or ``?``.
    """
    ascii_text = unidecode(unicodedata.normalize("NFC", text))
    out = []
    for ch in ascii_text:
        if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
            out.append(ch)
        elif ch == "`":
            out.append("'")
        elif ch == "\t":
            out.append(" ")
        else:
            out.append("?")
    return "".join(out)


_PLAIN = {
    "^": "'", "{": "(", "}": ")", "\\": "/", "[": "(", "]": ")", "~": "-", "|": "/",
    "€": "E", "\f": " ",
}  # fmt: skip


def plain_gsm7(text: str) -> str:
    """Like :func:`to_gsm7`, and the two-septet extension characters replaced by plain ones.

    Used on variable values (names, reasons) so that a value of at most N characters costs at
    most N septets — which is what lets templates be checked once, at load.
    """
    table = str.maketrans(_PLAIN)
    return to_gsm7(text).translate(table)


def gsm7_segments(text: str) -> int:
    """Segments a GSM-7 text takes (0 for empty); raises ValueError outside the alphabet."""
    septets = []
    for ch in text:
        if ch in GSM7_BASIC:
            septets.append(1)
        elif ch in GSM7_EXTENSION:
            septets.append(2)
        else:
            raise ValueError(f"{ch!r} is not in the GSM-7 alphabet")
    return _pack(septets, GSM7_SINGLE, GSM7_MULTI)


def ucs2_segments(text: str) -> int:
    """Segments a UCS-2 (UTF-16) text takes; a surrogate pair is never split."""
    units = [2 if ord(ch) > 0xFFFF else 1 for ch in unicodedata.normalize("NFC", text)]
    return _pack(units, UCS2_SINGLE, UCS2_MULTI)


def _pack(sizes: list[int], single: int, multi: int) -> int:
    total = sum(sizes)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments += 1
            used = 0
        used += size
    return segments


def sms_text(unicode_text: str, gsm7_text: str) -> SmsText:
    return SmsText(
        unicode_text=unicode_text,
        gsm7_text=gsm7_text,
        unicode_segments=ucs2_segments(unicode_text),
        gsm7_segments=gsm7_segments(gsm7_text),
    )

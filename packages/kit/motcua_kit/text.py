"""Rules for the text a caller sends, the same in every service (ADR 0009).

Two defects made these one module rather than a regex in each domain:

- ``\\d`` and ``str.isdigit`` accept every script's digits, so the fullwidth
  ``００１２０３００４５６７`` passed as a citizen ID and was stored, and its real owner
  ``001203004567`` could not find it.
  Here a number is written with ASCII ``0-9`` only, whatever the field.
- An applicant's name was stored holding a right-to-left override (U+202E) and a zero-width
  space. Text that identifies someone (a name, an address) must read the same on screen as it
  compares in the database, so invisible, format and control characters are refused, and so
  are emoji and pictographic symbols, which are no part of a Vietnamese name or postal address.

Every check raises :class:`~motcua_kit.errors.InvalidArgument` naming the caller's field, and
names the offending character by code point (never echoing the personal data around it).
Text is NFC-normalised first, so a decomposed "Nguyễn" and a precomposed one are one name.
"""

from __future__ import annotations

import re
import unicodedata

from motcua_kit.errors import InvalidArgument

ASCII_DIGITS = "0123456789"
CITIZEN_ID_DIGITS = 12  # căn cước công dân (CCCD): 12 digits

_ASCII_NUMBER = re.compile(r"[0-9]+")
_PHONE_SEPARATORS = re.compile(r"[\s.()-]")
_MOBILE = re.compile(r"0[35789][0-9]{8}")
_NATIONAL = re.compile(r"0[0-9]{9}")

# Categories no caller text needs: controls (Cc), format characters such as bidi controls and
# zero-width spaces (Cf), and lone surrogates (Cs), which no UTF-8 text can carry.
_NEVER = frozenset({"Cc", "Cf", "Cs"})
# Also refused in identifying text: private-use and unassigned code points (no agreed glyph),
# other symbols (So: emoji, ©, №, ☎) and enclosing marks (Me: the keycap of 1️⃣).
_NOT_IDENTIFYING = frozenset({"Co", "Cn", "So", "Me"})
# Invisible or emoji-forming code points whose category is a letter, mark or modifier: Unicode's
# default-ignorables outside Cf (Hangul fillers, the combining grapheme joiner, Khmer inherent
# vowels, Mongolian and emoji variation selectors) and the emoji skin-tone modifiers.
_INVISIBLE_OR_EMOJI = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0x1F3FB, 0x1F3FF),
    (0xE0100, 0xE01EF),
)


def normalise_text(value: str) -> str:
    """Vietnamese text in one form (NFC), outer and repeated inner whitespace removed."""
    return " ".join(unicodedata.normalize("NFC", value).split())


def describe(ch: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: how a refusal names a character without showing it."""
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')}"


def is_ascii_number(value: str, max_digits: int = 18) -> bool:
    """True for 1..``max_digits`` ASCII digits; ``str.isdigit`` also takes ``١`` and ``²``."""
    return len(value) <= max_digits and _ASCII_NUMBER.fullmatch(value) is not None


def whole_number(field: str, value: str, *, max_digits: int = 18) -> int:
    """A non-negative whole number written in ASCII digits; ``int()`` alone takes ``٤٢``."""
    text = value.strip()
    if not is_ascii_number(text, max_digits):
        raise InvalidArgument(field, _digits_reason(text, f"1-{max_digits} digits 0-9"))
    return int(text)


def citizen_id(field: str, value: str, *, required: bool = True) -> str:
    """A 12-digit citizen ID (CCCD) in ASCII digits; ``""`` only when not ``required``."""
    cid = value.strip()
    if not cid:
        if required:
            raise InvalidArgument(field, "is required")
        return ""
    if len(cid) != CITIZEN_ID_DIGITS or not is_ascii_number(cid, CITIZEN_ID_DIGITS):
        raise InvalidArgument(
            field, _digits_reason(cid, f"exactly {CITIZEN_ID_DIGITS} digits 0-9 (CCCD)")
        )
    return cid


def phone_number(field: str, value: str, *, mobile_only: bool, required: bool = True) -> str:
    """A Vietnamese number in national form ``0XXXXXXXXX`` (accepts +84 / 84 and separators).

    ``mobile_only`` keeps to the mobile prefixes (03, 05, 07, 08, 09), which SMS can reach.
    """
    if not value.strip():
        if required:
            raise InvalidArgument(field, "is required")
        return ""
    digits = _PHONE_SEPARATORS.sub("", value)
    if digits.startswith("+84"):
        digits = "0" + digits[3:]
    elif digits.startswith("84") and len(digits) == 11:
        digits = "0" + digits[2:]
    pattern = _MOBILE if mobile_only else _NATIONAL
    if not pattern.fullmatch(digits):
        kind = "mobile number" if mobile_only else "number"
        raise InvalidArgument(
            field, _digits_reason(digits, f"a Vietnamese {kind} like 0912345678, digits 0-9")
        )
    return digits


def identifying_text(field: str, value: str, *, max_len: int, required: bool = True) -> str:
    """A name, address or other text that says who or where: normalised, then checked.

    Refused: control and format characters (bidi overrides, zero-width spaces, soft hyphens),
    other invisible code points, emoji and other pictographic symbols, private-use and
    unassigned code points, and digits of scripts other than ASCII.
    """
    text = _checked_length(field, normalise_text(value), max_len, required)
    for ch in text:
        reason = _refused_in_identifying(ch)
        if reason:
            raise InvalidArgument(field, f"must not contain {describe(ch)}: {reason}")
    return text


def free_text(field: str, value: str, *, max_len: int | None, required: bool = False) -> str:
    """A comment, reason, description or file name: normalised; emoji allowed, controls not.

    Bidi and zero-width characters are refused here too: they can make a file name or a
    comment quoted in an email read otherwise than it is stored.
    """
    text = _checked_length(field, normalise_text(value), max_len, required)
    for ch in text:
        if unicodedata.category(ch) in _NEVER:
            raise InvalidArgument(field, f"must not contain {describe(ch)}: {_category_reason(ch)}")
    return text


def _checked_length(field: str, text: str, max_len: int | None, required: bool) -> str:
    if required and not text:
        raise InvalidArgument(field, "is required")
    if max_len is not None and len(text) > max_len:
        raise InvalidArgument(field, f"must be at most {max_len} characters")
    return text


def _refused_in_identifying(ch: str) -> str:
    """Why ``ch`` may not stand in identifying text; ``""`` when it may."""
    if ch.isascii():
        return "control characters are not allowed" if not ch.isprintable() else ""
    category = unicodedata.category(ch)
    if category in _NEVER:
        return _category_reason(ch)
    if category.startswith("N"):
        return "write numbers with the digits 0-9"
    if category in _NOT_IDENTIFYING or any(lo <= ord(ch) <= hi for lo, hi in _INVISIBLE_OR_EMOJI):
        return "emoji, symbols and invisible characters are not part of a name or address"
    return ""


def _category_reason(ch: str) -> str:
    if unicodedata.category(ch) == "Cf":
        return "invisible format characters (bidi controls, zero-width spaces) are not allowed"
    return "control characters are not allowed"


def _digits_reason(text: str, wanted: str) -> str:
    """``must be …``, naming a non-ASCII digit when that is what went wrong."""
    for ch in text:
        if ch.isdigit() and ch not in ASCII_DIGITS:
            return f"must be {wanted}; {describe(ch)} is not an ASCII digit"
    return f"must be {wanted}"

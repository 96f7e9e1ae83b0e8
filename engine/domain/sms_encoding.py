"""SMS encoding and segment counting (GSM 03.38 7-bit default alphabet, else UCS-2).

A single GSM-7 message holds 160 septets, a concatenated part 153; UCS-2 holds 70 and 67
UTF-16 code units. Extension characters take two septets (escape + character) and, like a
UTF-16 surrogate pair, are never split across parts, as handsets and SMSCs do.

One character outside GSM-7 (a curly apostrophe pasted from a word processor) sends the whole
message as UCS-2. ``ucs2_characters(text)`` lists such characters, ``GSM7_EQUIVALENTS`` maps
those with a faithful GSM-7 stand-in to it, ``replace_gsm7(text)`` applies the map and
``segments_if_replaced(text)`` says what the text would take after it: the difference is
what the Unicode costs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

# Matching in C instead of a set of each message's characters: summarise runs this on
# every message of a 100,000-contact campaign while the operator types.
_NOT_GSM7 = re.compile("[^" + "".join(re.escape(ch) for ch in sorted(GSM7_ALL)) + "]")
_EXTENSION = re.compile("[" + "".join(re.escape(ch) for ch in sorted(GSM7_EXTENSION)) + "]")
# Most messages hold basic characters only: one search tells, and their count is their units.
_NOT_BASIC = re.compile("[^" + "".join(re.escape(ch) for ch in sorted(GSM7_BASIC)) + "]")

LIMITS = {  # encoding: (single message, each part of a concatenated message)
    "GSM-7": (160, 153),
    "UCS-2": (70, 67),
}


class Encoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)  # slots: one is made per message of a campaign
class SegmentInfo:
    encoding: Encoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    characters: int


def is_gsm7(text: str) -> bool:
    return _NOT_GSM7.search(text) is None


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    if encoding is Encoding.GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def segment_info(text: str) -> SegmentInfo:
    return SegmentInfo(*measure(text), len(text))


def measure(text: str) -> tuple[Encoding, int, int]:
    """``(encoding, units, segments)``: segment_info's figures without the object, for
    loops over every message of a campaign."""
    if _NOT_BASIC.search(text) is None:  # most messages: one search, a septet a character
        encoding = Encoding.GSM7
        units = len(text)
    elif is_gsm7(text):
        encoding = Encoding.GSM7
        units = len(text) + len(_EXTENSION.findall(text))
    else:
        encoding = Encoding.UCS2
        units = len(text.encode("utf-16-le")) // 2
    single, part = LIMITS[encoding]
    if units <= single:  # the common case: one message, no need to walk the text
        return encoding, units, 1 if text else 0
    if units == len(text):  # no pair to keep together: the parts simply fill up
        return encoding, units, -(-units // part)
    costs = _unit_costs(text, encoding)
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:  # an escape pair or surrogate pair never straddles two parts
            segments += 1
            used = 0
        used += cost
    return encoding, units, segments


def _same(replacement: str, characters: str) -> dict[str, str]:
    return dict.fromkeys(characters, replacement)


# Characters that look like (or are invisible beside) a GSM-7 one, so swapping them changes
# how the message looks, never what it says. Letters are never swapped (a name stays as
# written), nor symbols with no GSM-7 look-alike (✓, emoji, other currencies).
GSM7_EQUIVALENTS: dict[str, str] = {
    # apostrophes and single quotation marks, primes, accents used as apostrophes
    **_same("'", "\u2018\u2019\u201a\u201b\u2032\u2035\u2039\u203a\u02bc\u02b9\u02bb"
                 "\u00b4\u0060\uff07"),
    # double quotation marks, guillemets (quotation marks too), double primes
    **_same('"', "\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb\uff02"),
    # hyphens, dashes and the minus sign; a bullet is a list's dash in plain text
    **_same("-", "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d\u2022\u2043"),
    "\u2026": "...",  # horizontal ellipsis
    # spaces of other widths (no-break, thin, ideographic...) and the tab
    **_same(" ", "\t\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                 "\u200a\u202f\u205f\u3000"),
    **_same("\n", "\u2028\u2029"),  # line and paragraph separators
    # invisible: zero-width space, word joiner, byte order mark, soft hyphen
    **_same("", "\u200b\u2060\ufeff\u00ad"),
}


_REPLACEABLE = re.compile("[" + "".join(re.escape(ch) for ch in GSM7_EQUIVALENTS) + "]")


def ucs2_characters(text: str) -> list[str]:
    """The characters of ``text`` that force UCS-2, each once, in order of appearance."""
    return list(dict.fromkeys(_NOT_GSM7.findall(text)))


def replace_gsm7(text: str) -> str:
    """``text`` with every character that has a GSM-7 equivalent replaced by it; characters
    with none stay."""
    for ch in set(_REPLACEABLE.findall(text)):  # str.replace each: no walk in Python
        text = text.replace(ch, GSM7_EQUIVALENTS[ch])
    return text


def segments_if_replaced(text: str) -> int:
    """The segments ``text`` takes once replace_gsm7 has done what it can (still UCS-2 when
    a character with no equivalent is left)."""
    return segment_info(replace_gsm7(text)).segments


def character_name(ch: str) -> str:
    """``U+2019 RIGHT SINGLE QUOTATION MARK``: invisible characters need a name to be found."""
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}".rstrip()

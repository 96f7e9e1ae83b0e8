"""SMS encoding and segment counting (GSM 03.38 7-bit default alphabet, else UCS-2).

A single GSM-7 message holds 160 septets, a concatenated part 153; UCS-2 holds 70 and 67
UTF-16 code units. Extension characters take two septets (escape + character) and, like a
UTF-16 surrogate pair, are never split across parts, as handsets and SMSCs do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

LIMITS = {  # encoding: (single message, each part of a concatenated message)
    "GSM-7": (160, 153),
    "UCS-2": (70, 67),
}


class Encoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True)
class SegmentInfo:
    encoding: Encoding
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    characters: int


def is_gsm7(text: str) -> bool:
    return set(text) <= GSM7_ALL


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    if encoding is Encoding.GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def segment_info(text: str) -> SegmentInfo:
    chars = set(text)
    if chars <= GSM7_ALL:
        encoding = Encoding.GSM7
        units = len(text) + sum(text.count(c) for c in chars & GSM7_EXTENSION)
    else:
        encoding = Encoding.UCS2
        units = len(text) + sum(1 for c in text if ord(c) > 0xFFFF)
    single, part = LIMITS[encoding]
    if units <= single:  # the common case: one message, no need to walk the text
        return SegmentInfo(encoding, units, 1 if text else 0, len(text))
    costs = _unit_costs(text, encoding)
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:  # an escape pair or surrogate pair never straddles two parts
            segments += 1
            used = 0
        used += cost
    return SegmentInfo(encoding, units, segments, len(text))

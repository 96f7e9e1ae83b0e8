from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.sms_encoding import GSM7_BASIC, GSM7_EXTENSION, LIMITS, Encoding, segment_info


@pytest.mark.parametrize(("text", "encoding", "segments"), [
    ("a" * 160, Encoding.GSM7, 1),
    ("a" * 161, Encoding.GSM7, 2),
    ("a" * 306, Encoding.GSM7, 2),
    ("a" * 307, Encoding.GSM7, 3),
    ("€" * 80, Encoding.GSM7, 1),  # extension characters count double
    ("€" * 81, Encoding.GSM7, 2),
    ("a" * 152 + "€" + "a" * 151, Encoding.GSM7, 2),
    ("a" * 152 + "€" + "a" * 152, Encoding.GSM7, 3),  # 306 septets, but € is not split
    ("ش" * 70, Encoding.UCS2, 1),
    ("ش" * 71, Encoding.UCS2, 2),
    ("a" * 69 + "ش", Encoding.UCS2, 1),
    ("😀" * 35, Encoding.UCS2, 1),  # surrogate pairs: 2 units each
    ("😀" * 36, Encoding.UCS2, 2),
    ("", Encoding.GSM7, 0),
])
def test_segments(text: str, encoding: Encoding, segments: int) -> None:
    info = segment_info(text)
    assert info.encoding == encoding
    assert info.segments == segments


def test_one_non_gsm_character_switches_to_ucs2() -> None:
    assert segment_info("Asante sana").encoding is Encoding.GSM7
    assert segment_info("Asante sana ✓").encoding is Encoding.UCS2


alphabet = st.sampled_from([*sorted(GSM7_BASIC | GSM7_EXTENSION), "ش", "😀", "ç", "ü"])


@given(st.text(alphabet=alphabet, max_size=700))
def test_segment_counts_follow_the_encoding_rules(text: str) -> None:
    info = segment_info(text)
    single, part = LIMITS[info.encoding]
    if info.encoding is Encoding.GSM7:
        assert info.units == sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    else:
        assert info.units == len(text.encode("utf-16-le")) // 2
    if not text:
        assert info.segments == 0
    elif info.units <= single:
        assert info.segments == 1
    else:
        # every part but the last may lose one unit to an unsplittable pair
        assert math.ceil(info.units / part) <= info.segments <= math.ceil(info.units / (part - 1))

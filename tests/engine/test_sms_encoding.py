from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.sms_encoding import (
    GSM7_ALL,
    GSM7_BASIC,
    GSM7_EQUIVALENTS,
    GSM7_EXTENSION,
    LIMITS,
    Encoding,
    character_name,
    is_gsm7,
    replace_gsm7,
    segment_info,
    segments_if_replaced,
    ucs2_characters,
)


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


# --- Unicode hints: which characters force UCS-2, and their GSM-7 equivalents -------------

def test_ucs2_characters_are_listed_once_in_order() -> None:
    assert ucs2_characters("Asante sana") == []
    assert ucs2_characters("It’s “ready” ✓ it’s") == ["’", "“", "”", "✓"]
    # extension characters are GSM-7: they cost two septets, they do not force UCS-2
    assert ucs2_characters("€5 [a] {b} \\ ~ ^ |") == []
    assert ucs2_characters("a\tb😀") == ["\t", "😀"]


def test_every_equivalent_is_gsm7_for_a_character_that_is_not() -> None:
    for ch, replacement in GSM7_EQUIVALENTS.items():
        assert ch not in GSM7_ALL, f"{ch!r} is GSM-7 already"
        assert is_gsm7(replacement), f"{ch!r} -> {replacement!r} is not GSM-7"


@pytest.mark.parametrize(("text", "replaced"), [
    ("It’s ‘fine’", "It's 'fine'"),
    ("“Asante” «sana» „ja“", '"Asante" "sana" "ja"'),
    ("9–5 — today − 2 ‐ x", "9-5 - today - 2 - x"),
    ("Wait…", "Wait..."),
    ("KES\u00a0500,\u202fnow\u2009ok\u3000.", "KES 500, now ok ."),
    ("a\u200bb\ufeffc", "abc"),  # invisible: removed
    ("• one", "- one"),
    ("5′ 6″", "5' 6\""),
    ("Zoë ✓ 😀 ش", "Zoë ✓ 😀 ش"),  # no faithful equivalent: left as written
    ("€ [x]", "€ [x]"),
])
def test_replace_gsm7(text: str, replaced: str) -> None:
    assert replace_gsm7(text) == replaced


def test_segments_if_replaced_says_what_the_unicode_costs() -> None:
    text = "a" * 150 + "’"  # 151 characters: 3 UCS-2 segments, 1 in GSM-7
    assert segment_info(text).segments == 3
    assert segments_if_replaced(text) == 1
    # a character with no equivalent keeps the message UCS-2: replacing saves nothing
    assert segments_if_replaced("a" * 150 + "’✓") == segment_info("a" * 150 + "'✓").segments == 3
    # after replacement the extension characters still count two septets each
    assert segments_if_replaced("€" * 80 + "’") == 2
    assert segments_if_replaced("€" * 79 + "’") == 1


def test_character_name_names_invisible_characters() -> None:
    assert character_name("\u00a0") == "U+00A0 NO-BREAK SPACE"
    assert character_name("’") == "U+2019 RIGHT SINGLE QUOTATION MARK"
    assert character_name("😀") == "U+1F600 GRINNING FACE"

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.domain.personalize import KNOWN_TAGS, Recipient, TagProblem, Template, TemplateError
from engine.domain.sms_encoding import segment_info

TODAY = date(2026, 11, 27)
ALICE = Recipient("Alice", 1_250_000, 250_000, TODAY + timedelta(days=30))
ORIGINAL = ("Dear #name, of your pledge of #pledge you have paid #paid_amount; "
            "#balance remains, #days_remain days to go")


def render(template: str, recipient: Recipient = ALICE, fmt: str = "{amount}") -> str:
    return Template.parse(template).render(recipient, today=TODAY, currency_format=fmt)


def test_the_original_reminder() -> None:
    assert render(ORIGINAL) == ("Dear Alice, of your pledge of 12,500 you have paid 2,500; "
                                "10,000 remains, 30 days to go")


def test_balance_never_negative_and_days_never_negative() -> None:
    overpaid = Recipient("Bob", 10_000, 15_050, TODAY - timedelta(days=3))
    assert render("#balance/#days_remain/#paid_amount", overpaid) == "0/0/150.50"


def test_currency_format() -> None:
    assert render("#pledge", fmt="KES {amount}") == "KES 12,500"


def test_unknown_tag_names_it_and_suggests() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("Your #balanse is due")
    [problem] = info.value.problems
    assert (problem.tag, problem.suggestion, problem.position) == ("balanse", "balance", 5)
    assert '"#balanse"' in str(info.value)
    assert 'did you mean "#balance"' in str(info.value)


def test_glued_tag_is_not_half_replaced() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("Hello #names")
    assert info.value.problems[0].tag == "names"
    assert info.value.problems[0].suggestion == "name"


def test_unrelated_hashtag_is_an_error_without_a_wrong_suggestion() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("Thanks! #GivingTuesday")
    assert info.value.problems[0].suggestion is None
    assert "##GivingTuesday" in str(info.value)


def test_literal_hashes() -> None:
    assert render("You are our #1 supporter, #name") == "You are our #1 supporter, Alice"
    assert render("##GivingDay #name # ok") == "#GivingDay Alice # ok"
    assert render("#name's pledge") == "Alice's pledge"
    assert render("#NAME") == "Alice"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(TemplateError) as info:
        Template.parse("#nmae #pledge #balanse")
    assert [p.tag for p in info.value.problems] == ["nmae", "balanse"]


def test_values_are_not_re_expanded() -> None:
    sneaky = Recipient("#pledge", 100, 0, TODAY)
    assert render("Hi #name", sneaky) == "Hi #pledge"


# --- properties -------------------------------------------------------------------------

plain_text = st.text(
    alphabet=st.characters(blacklist_characters="#", blacklist_categories=("Cs",)), max_size=40
)
# A tag followed by a character that cannot continue a word, as in real templates.
tag_token = st.builds("{}{}".format, st.sampled_from([f"#{t}" for t in KNOWN_TAGS]),
                      st.sampled_from(list(" ,.;:!?'\n")))
templates = st.lists(st.one_of(plain_text, tag_token), max_size=12).map("".join)
recipients = st.builds(
    Recipient,
    name=st.text(alphabet=st.characters(blacklist_characters="#", blacklist_categories=("Cs",)),
                 max_size=60),
    pledge_cents=st.integers(min_value=0, max_value=10**12),
    paid_cents=st.integers(min_value=0, max_value=10**12),
    due_date=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)),
)
KNOWN_TAG_RE = re.compile(r"#(" + "|".join(KNOWN_TAGS) + r")(?![A-Za-z0-9_])", re.IGNORECASE)


@given(templates, recipients)
def test_rendering_replaces_every_known_tag(template: str, recipient: Recipient) -> None:
    text = Template.parse(template).render(recipient, today=TODAY)
    assert not KNOWN_TAG_RE.search(text)
    info = segment_info(text)
    assert info.characters == len(text)


@given(st.text(max_size=200), recipients)
def test_rendering_any_text_never_crashes(template: str, recipient: Recipient) -> None:
    problems: list[TagProblem] = []
    try:
        parsed = Template.parse(template)
    except TemplateError as exc:
        problems = exc.problems or [TagProblem("<none reported>", 0, None)]
    for problem in problems:
        assert template[problem.position] == "#"
        assert problem.tag.lower() not in KNOWN_TAGS
    if problems:
        return
    text = parsed.render(recipient, today=TODAY)
    assert isinstance(text, str)
    segment_info(text)


@given(templates, recipients)
def test_literal_text_survives_rendering(template: str, recipient: Recipient) -> None:
    parsed = Template.parse(template)
    text = parsed.render(recipient, today=TODAY)
    for literal in parsed.parts[0::2]:
        assert literal in text

"""Rendering a whole campaign (Template.renderer, render_messages) gives, message for
message, what rendering each message on its own by the rules gives: braces in the text
stay text, amounts and days shared between recipients come out the same."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from engine.domain.money import format_amount
from engine.domain.personalize import KNOWN_TAGS, Recipient, Template
from engine.domain.rendering import render_messages
from engine.domain.sms_encoding import segment_info

TODAY = date(2026, 11, 27)

# Braces and format fields in the text around the tags, the tags in any letter case.
literal = st.text(alphabet=st.characters(blacklist_characters="#", blacklist_categories=("Cs",)),
                  max_size=20) | st.sampled_from(["{", "}", "{}", "{0}", "{amount}", "{{x}}"])
tag = st.builds("{}{}".format,
                st.sampled_from([f"#{t}" for t in KNOWN_TAGS] + ["#NAME", "#Balance", "##"]),
                st.sampled_from(list(" ,.;:!?{}\n")))
templates = st.lists(literal | tag, max_size=12).map("".join)
currency = st.sampled_from(["{amount}", "KES {amount}", "{amount} €", "{{amount}}", "${amount}%"])
# Few distinct amounts and dates, so recipients share them as real ones do.
recipients = st.builds(
    Recipient,
    name=st.text(max_size=30) | st.sampled_from(["{}", "{0}", "#pledge", "Zoë ✓"]),
    pledge_cents=st.sampled_from([0, 100, 1_000_000, 1_250_050, 10**14]),
    paid_cents=st.sampled_from([0, 250, 1_000_000, 2_000_000]),
    due_date=st.sampled_from([TODAY - timedelta(days=3), TODAY, TODAY + timedelta(days=40)]),
)


def by_the_rules(template: Template, recipient: Recipient, currency_format: str) -> str:
    """The template's tags replaced one by one, as the module's docstring defines them."""
    values = {
        "name": recipient.name,
        "pledge": format_amount(recipient.pledge_cents, currency_format),
        "paid_amount": format_amount(recipient.paid_cents, currency_format),
        "balance": format_amount(max(recipient.pledge_cents - recipient.paid_cents, 0),
                                 currency_format),
        "days_remain": str(max((recipient.due_date - TODAY).days, 0)),
    }
    return "".join(values[part] if i % 2 else part for i, part in enumerate(template.parts))


@given(templates, st.lists(recipients, max_size=30), currency)
def test_a_campaign_renders_each_message_by_the_rules(text: str, people: list[Recipient],
                                                      currency_format: str) -> None:
    template = Template.parse(text)
    messages = list(render_messages(template, [(i, f"+2547{i:08d}", r)
                                               for i, r in enumerate(people)],
                                    today=TODAY, currency_format=currency_format))
    for message, person in zip(messages, people, strict=True):
        expected = by_the_rules(template, person, currency_format)
        assert message.text == expected
        assert message.text == template.render(person, today=TODAY,
                                               currency_format=currency_format)
        info = segment_info(expected)
        assert (message.encoding, message.characters, message.segments) == \
            (info.encoding, info.characters, info.segments)

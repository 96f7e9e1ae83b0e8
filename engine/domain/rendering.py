"""Messages as their recipients will receive them: the template personalised for each one,
with the encoding and segment count that decide what it costs. Sending, the Compose page
and ``campaign preview`` all render through render_messages, so what the operator sees is
what goes out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from engine.domain.personalize import Recipient, Template
from engine.domain.sms_encoding import Encoding, measure


@dataclass(frozen=True, slots=True)  # slots: made 100,000 at a time, twice as fast
class RenderedMessage:
    index: int  # the recipient's place in the list, from 0
    contact_id: int | None  # None: a number that is no contact (a test send)
    phone: str
    name: str
    text: str
    encoding: Encoding
    characters: int
    segments: int


def render_messages(template: Template,
                    recipients: Iterable[tuple[int | None, str, Recipient]], *,
                    today: date, currency_format: str,
                    first_index: int = 0) -> Iterator[RenderedMessage]:
    """Each ``(contact id, phone, values)`` recipient's message, in order; ``first_index``
    is the place of the first one when the list starts further on."""
    render = template.renderer(today=today, currency_format=currency_format)
    for index, (contact_id, phone, values) in enumerate(recipients, start=first_index):
        text = render(values)
        encoding, _, segments = measure(text)
        yield RenderedMessage(index, contact_id, phone, values.name, text, encoding,
                              len(text), segments)

"""Adding numbers to the opt-out list by hand: paste one or many, give a reason, see which
were added, which were already there and which are not phone numbers (kept in the box to
fix, so nothing typed is lost)."""

from __future__ import annotations

import contextlib
import html
import re
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextDocumentFragment
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)
from sqlalchemy.orm import Session

from desktop.context import ConsoleContext
from desktop.theme import BAD
from engine.domain.phones import PhoneError, normalize_phone
from engine.store.optouts import OptOutChange, add_optouts, opted_out_phones

SHOWN = 5  # numbers named in a summary; the rest are counted
ERROR_COLOR = BAD.name()


def split_numbers(text: str) -> list[str]:
    """The numbers in pasted text: one per line, or separated by commas or semicolons."""
    return [part.strip() for part in re.split(r"[\n,;]+", text) if part.strip()]


def _some(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN:,} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


@dataclass(frozen=True)
class Added:
    """An add's outcome, with the numbers that were on the list before (to name them)."""

    change: OptOutChange
    listed_before: list[str]


def add_numbers(session: Session, phones: list[str], *, region: str, reason: str) -> Added:
    listed = []
    for text in phones:
        with contextlib.suppress(PhoneError):  # add_optouts says why
            listed.append(normalize_phone(text, region))
    before = sorted(opted_out_phones(session, listed))
    return Added(add_optouts(session, phones, region=region, reason=reason), before)


def _invalid_text(text: str, why: str) -> str:
    return why if text.strip() in why else f"'{text}': {why}"  # the reason names it mostly


def change_lines(added: Added) -> tuple[list[str], list[str]]:
    """What an add did: the lines that went well, and those about texts not added."""
    change = added.change
    done = [f"Added {change.added:,} number(s) to the opt-out list." if change.added
            else "No number added to the opt-out list."]
    if change.already:
        named = f": {_some(added.listed_before)}" if added.listed_before else ""
        done.append(f"{change.already:,} already on the list{named}.")
    bad = []
    if change.invalid:
        bad.append(f"{len(change.invalid):,} not added, not a phone number: "
                   + _some([_invalid_text(text, why) for text, why in change.invalid]) + ".")
    return done, bad


def change_summary(added: Added) -> str:
    done, bad = change_lines(added)
    return "\n".join(done + bad)


class OptOutDialog(QDialog):
    changed = Signal(object)  # the Added of an add that reached the database

    def __init__(self, ctx: ConsoleContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.outcome: Added | None = None
        self.setWindowTitle("Add to the opt-out list")
        self.setMinimumWidth(460)
        layout = QVBoxLayout(self)
        intro = QLabel("Phone numbers, one per line or separated by commas. Numbers "
                       f"without a country code are read as {ctx.settings.default_region} "
                       "numbers.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.numbers = QPlainTextEdit()
        self.numbers.setObjectName("optout-numbers")
        self.numbers.setPlaceholderText("+254700000105\n0700000115")
        self.numbers.setTabChangesFocus(True)
        layout.addWidget(self.numbers, 1)
        layout.addWidget(QLabel("Reason (optional)"))
        self.reason = QLineEdit()
        self.reason.setObjectName("optout-reason")
        self.reason.setPlaceholderText("e.g. asked by phone not to be texted")
        layout.addWidget(self.reason)
        self.report = QLabel()
        self.report.setObjectName("optout-report")
        self.report.setWordWrap(True)
        self.report.setTextFormat(Qt.TextFormat.RichText)
        self.report.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.report.hide()
        layout.addWidget(self.report)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_button = self.buttons.addButton("Add", QDialogButtonBox.ButtonRole.AcceptRole)
        self.add_button.setObjectName("optout-add")
        self.buttons.accepted.connect(self.add)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def add(self) -> None:
        phones = split_numbers(self.numbers.toPlainText())
        if not phones:
            self._say(f"<span style='color:{ERROR_COLOR}'>Type or paste at least one phone "
                      "number.</span>")
            return
        reason = self.reason.text().strip()
        region = self.ctx.settings.default_region
        self.add_button.setEnabled(False)

        def write() -> Added:
            with self.ctx.services.db().session() as session:
                return add_numbers(session, phones, region=region, reason=reason)

        self.ctx.background.run(write, on_done=self._added, on_error=self._failed)

    def _added(self, outcome: Added) -> None:
        self.add_button.setEnabled(True)
        self.outcome = outcome
        self.changed.emit(outcome)
        if not outcome.change.invalid:
            self.accept()
            return
        # Keep only what needs fixing in the box; what was added is done.
        self.numbers.setPlainText("\n".join(text for text, _ in outcome.change.invalid))
        done, bad = change_lines(outcome)
        bad.append("Fix them above and press Add again, or Cancel.")
        self._say("<br>".join(html.escape(line) for line in done) + "<br>"
                  + f"<span style='color:{ERROR_COLOR}'>"
                  + "<br>".join(html.escape(line) for line in bad) + "</span>")

    def _failed(self, error: BaseException) -> None:
        self.add_button.setEnabled(True)
        self.ctx.background.error.emit(error)

    def report_text(self) -> str:
        """What the dialog says about the last add, as plain text."""
        return QTextDocumentFragment.fromHtml(self.report.text()).toPlainText()

    def _say(self, rich_text: str) -> None:
        self.report.setText(rich_text)
        self.report.show()

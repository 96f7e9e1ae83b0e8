"""Compose: pick recipients, write the template, preview it per recipient, see the plan and
the cost, then send (or test-send to one number first) and watch the progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QSplitter,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop import heavy_work
from desktop.background import Latest, LatestInProcess
from desktop.campaign_progress import CampaignProgress
from desktop.context import ConsoleContext
from desktop.pages.base import Page, page_header
from desktop.send_later_dialog import SendLaterDialog, describe_when
from desktop.tag_choice import TagReader
from desktop.tag_picker import TagPicker
from desktop.template_editor import TemplateEditor
from desktop.widgets import bold
from engine.domain.audience import MAX_DUE_WITHIN_DAYS, Audience
from engine.domain.formatting import format_duration
from engine.domain.money import MAX_AMOUNT
from engine.domain.personalize import KNOWN_TAGS, TemplateError
from engine.domain.phones import mask_phone
from engine.domain.planning import Route, SendPlan
from engine.domain.rendering import RenderedMessage
from engine.domain.sms_encoding import character_name
from engine.operations.campaigns import CreatedCampaign
from engine.operations.preview import (
    ComposeSummary,
    preview_one,
    send_day,
    unicode_hint,
)
from engine.store.audience_query import AudienceCount, count_audience

PREVIEW_DELAY_MS = 300


def describe_plan(plan: SendPlan) -> str:
    if plan.route is Route.BULK:
        return (f"Bulk: 1 job on {plan.queue}, split into {plan.chunks:,} chunk(s) of up to "
                f"{plan.chunk_size}")
    return f"Individual: {plan.jobs:,} job(s) on {plan.queue}"


def unicode_share(summary: ComposeSummary) -> str:
    """``; 104.00 of it for Unicode``: what the replaceable UCS-2 characters cost."""
    if not summary.unicode_extra_cost:
        return ""
    return f"; {summary.unicode_extra_cost:,.2f} of it for Unicode"


def describe_count(count: AudienceCount) -> str:
    """``1,204 recipients (37 opted out, left out)``."""
    text = f"{count.recipients:,} recipient{'' if count.recipients == 1 else 's'}"
    return f"{text} ({count.suppressed:,} opted out, left out)" if count.suppressed else text


@dataclass(frozen=True)
class SendRequest:
    template: str
    recipients: Audience
    urgent: bool
    name: str | None
    at: datetime | None = None  # scheduled for then (aware UTC); None: now


class ComposePage(Page):
    page_id = "compose"
    title = "Compose"
    icon_name = "compose"

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx)
        self.index = 0
        self.summary: ComposeSummary | None = None
        self.preview: RenderedMessage | None = None
        self.selected_ids: tuple[int, ...] = ()
        # Stepping and typing each make older answers stale. Two series: a step must not
        # make a pending total stale.
        self._previews = Latest(ctx.background)
        # The totals render every recipient's message: CPU for seconds at 100,000 contacts,
        # which on a thread would stall the window (the interpreter lock). They run in a
        # helper process of their own; each change stops the one under way at once.
        self._totals = LatestInProcess(ctx.background, warm_up=(heavy_work.warm_up_totals,
                                                                (ctx.settings,)))
        # The recipient count answers the filters alone: it shows before a message is written.
        self._counts = Latest(ctx.background)
        self._tags = TagReader(ctx, self._show_tags)
        self._sending = False
        # Remembered between runs, beside the window's state: the number test sends go to.
        self._memory = QSettings(str(ctx.settings.data_dir / "console.ini"),
                                 QSettings.Format.IniFormat)
        self.last_campaign: CreatedCampaign | None = None
        layout = QVBoxLayout(self)
        layout.addWidget(page_header(
            "Compose", "Write the message once; each recipient gets their own figures."))
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_left())
        splitter.addWidget(self._build_right())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setChildrenCollapsible(False)
        layout.addWidget(splitter, 1)

        self._preview_timer = QTimer(self, singleShot=True, interval=PREVIEW_DELAY_MS)
        self._preview_timer.timeout.connect(self.refresh_preview)
        self.editor.textChanged.connect(self._schedule_refresh)
        self.editor.problems_changed.connect(self._show_problems)
        self.urgent.toggled.connect(lambda _: self._schedule_refresh())
        ctx.bus.recipients_chosen.connect(self.choose_contacts)
        ctx.bus.contacts_changed.connect(self._contacts_changed)
        ctx.bus.settings_saved.connect(self._schedule_refresh)
        QShortcut(QKeySequence("Ctrl+Return"), self, activated=self.confirm_send,
                  context=Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._tags_loaded = False
        self._show_test_number()
        self._update_send_state()

    # -- layout ---------------------------------------------------------------------------
    def _build_left(self) -> QWidget:
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 8, 0)

        column.addWidget(self._build_recipients())

        message = QGroupBox("Message")
        inner = QVBoxLayout(message)
        form = QFormLayout()
        self.name = QLineEdit()
        self.name.setObjectName("compose-name")
        self.name.setPlaceholderText("e.g. March pledge reminder (optional)")
        form.addRow("Campaign name", self.name)
        inner.addLayout(form)
        tags = QHBoxLayout()
        tags.addWidget(QLabel("Insert:"))
        for tag in KNOWN_TAGS:
            button = QToolButton()
            button.setText(f"#{tag}")
            button.setObjectName(f"insert-{tag}")
            button.clicked.connect(lambda _=False, t=tag: self.editor.insert_tag(t))
            tags.addWidget(button)
        tags.addStretch()
        inner.addLayout(tags)
        self.editor = TemplateEditor()
        inner.addWidget(self.editor, 1)
        self.problems = QLabel()
        self.problems.setObjectName("compose-problems")
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet("color: #d64545")
        self.problems.hide()
        inner.addWidget(self.problems)
        inner.addLayout(self._build_unicode_row())
        column.addWidget(message, 1)

        column.addLayout(self._build_actions())
        return box

    def _build_unicode_row(self) -> QHBoxLayout:
        """Shown while the template has characters that force UCS-2: which ones, and a
        button that swaps those with a GSM-7 look-alike (curly quotes, dashes, …)."""
        row = QHBoxLayout()
        self.unicode_note = QLabel()
        self.unicode_note.setObjectName("compose-unicode")
        self.unicode_note.setWordWrap(True)
        self.unicode_note.hide()
        self.replace_button = QPushButton("Replace with GSM-7 equivalents")
        self.replace_button.setObjectName("compose-replace-gsm7")
        self.replace_button.setToolTip("Curly quotes, dashes, ellipsis, odd spaces and the "
                                       "like become their plain GSM-7 look-alikes (Ctrl+Z "
                                       "undoes it)")
        self.replace_button.clicked.connect(self.editor.replace_with_gsm7)
        self.replace_button.hide()
        row.addWidget(self.unicode_note, 1)
        row.addWidget(self.replace_button, 0, Qt.AlignmentFlag.AlignTop)
        self.editor.ucs2_changed.connect(self._show_ucs2)
        return row

    def _show_ucs2(self, characters: list[str]) -> None:
        replaceable = self.editor.replaceable()
        self.replace_button.setVisible(replaceable > 0)
        self.replace_button.setEnabled(replaceable > 0)
        self.unicode_note.setVisible(bool(characters))
        shown = ", ".join(c if c.isprintable() and not c.isspace() else character_name(c)
                         for c in characters)
        self.unicode_note.setText(f"Not in GSM-7: {shown}. Every message goes as UCS-2: "
                                  "70 characters a segment instead of 160.")

    def _build_actions(self) -> QHBoxLayout:
        actions = QHBoxLayout()
        self.urgent = QCheckBox("Urgent (high-priority queue)")
        self.urgent.setObjectName("compose-urgent")
        actions.addWidget(self.urgent)
        actions.addStretch()
        self.test_button = QPushButton("Test send…")
        self.test_button.setObjectName("compose-test-send")
        self.test_button.setToolTip("Send this message, as the shown recipient would get it, "
                                    "to one number of yours first")
        self.test_button.clicked.connect(self.test_send_clicked)
        self.change_test_number = QToolButton(text="…")
        self.change_test_number.setObjectName("compose-test-number")
        self.change_test_number.setToolTip("Choose the number test sends go to")
        self.change_test_number.clicked.connect(self.ask_test_send)
        self.send_button = QPushButton("Send campaign…")
        self.send_button.setObjectName("compose-send")
        self.send_button.setDefault(True)
        self.send_button.setToolTip("Review and send (Ctrl+Enter)")
        self.send_button.clicked.connect(lambda: self.confirm_send(None))  # not `checked`
        self.later_button = QPushButton("Send later…")
        self.later_button.setObjectName("compose-send-later")
        self.later_button.setToolTip("Choose a date and time for it to go out")
        self.later_button.clicked.connect(self.ask_send_later)
        actions.addWidget(self.test_button)
        actions.addWidget(self.change_test_number)
        actions.addWidget(self.later_button)
        actions.addWidget(self.send_button)
        return actions

    def _build_recipients(self) -> QGroupBox:
        who = QGroupBox("Recipients")
        column = QVBoxLayout(who)
        choice = QHBoxLayout()
        self.to_filtered = QRadioButton("Contacts matching:")
        self.to_filtered.setObjectName("compose-to-filtered")
        self.to_selected = QRadioButton("Selected contacts")
        self.to_selected.setObjectName("compose-to-selected")
        self.to_filtered.setChecked(True)
        self.recipient_group = QButtonGroup(self)
        for button in (self.to_filtered, self.to_selected):
            self.recipient_group.addButton(button)
        self.recipient_group.buttonToggled.connect(lambda *_: self._recipients_changed())
        self.selected_label = QLabel("select rows on Contacts first")
        self.selected_label.setEnabled(False)
        self.to_selected.setEnabled(False)
        choice.addWidget(self.to_filtered)
        choice.addStretch()
        choice.addWidget(self.to_selected)
        choice.addWidget(self.selected_label)
        column.addLayout(choice)
        column.addWidget(self._build_filters())
        self.count_label = bold(QLabel("–"))
        self.count_label.setObjectName("compose-count")
        self.count_label.setToolTip("Who the campaign goes to now; opted-out contacts the "
                                    "filters match are left out")
        column.addWidget(self.count_label)
        return who

    def _build_filters(self) -> QWidget:
        self.filters = QWidget()
        rows = QVBoxLayout(self.filters)
        rows.setContentsMargins(22, 0, 0, 0)  # under the radio button's text
        self.include_tags = TagPicker("any tag")
        self.include_tags.setObjectName("compose-tags")
        self.include_tags.setToolTip("Contacts with any of the checked tags")
        self.exclude_tags = TagPicker("none")
        self.exclude_tags.setObjectName("compose-exclude-tags")
        self.owing = QCheckBox("Still owing")
        self.owing.setObjectName("compose-owing")
        self.owing.setToolTip("Only contacts whose balance (pledge − paid) is above 0")
        self.min_balance_on = QCheckBox("Balance at least")
        self.min_balance_on.setObjectName("compose-min-balance-on")
        self.min_balance = QDoubleSpinBox()
        self.min_balance.setObjectName("compose-min-balance")
        self.min_balance.setRange(0, MAX_AMOUNT)
        self.min_balance.setDecimals(2)
        self.min_balance.setGroupSeparatorShown(True)
        self.min_balance.setValue(1000)
        # Sized for everyday amounts, not for the 16 digits the range allows.
        self.min_balance.setMaximumWidth(self.min_balance.fontMetrics().horizontalAdvance(
            "0,000,000,000.00") + 40)
        self.min_balance.setEnabled(False)
        tags = QHBoxLayout()
        tags.addWidget(QLabel("Tagged (any of)"))
        tags.addWidget(self.include_tags, 1)
        tags.addSpacing(12)
        tags.addWidget(QLabel("Not tagged"))
        tags.addWidget(self.exclude_tags, 1)
        rows.addLayout(tags)
        money = QHBoxLayout()
        money.addWidget(self.owing)
        money.addSpacing(12)
        money.addWidget(self.min_balance_on)
        money.addWidget(self.min_balance)
        money.addStretch()
        rows.addLayout(money)
        rows.addLayout(self._build_due_row())
        self._connect_filters()
        return self.filters

    def _build_due_row(self) -> QHBoxLayout:
        # One choice, not two boxes: "due within" and "overdue" together select no one.
        self.due = QComboBox()
        self.due.setObjectName("compose-due")
        self.due.addItem("Any", None)
        self.due.addItem("Due within", "within")
        self.due.addItem("Overdue", "overdue")
        self.due_days = QSpinBox()
        self.due_days.setObjectName("compose-due-days")
        self.due_days.setRange(0, MAX_DUE_WITHIN_DAYS)
        self.due_days.setValue(7)
        self.due_days.setSuffix(" day(s)")
        self.due_days.setEnabled(False)
        due = QHBoxLayout()
        due.addWidget(QLabel("Due date"))
        due.addWidget(self.due)
        due.addWidget(self.due_days)
        due.addStretch()
        return due

    def _connect_filters(self) -> None:
        for picker in (self.include_tags, self.exclude_tags):
            picker.changed.connect(self._recipients_changed)
        self.owing.toggled.connect(lambda _: self._recipients_changed())
        self.min_balance_on.toggled.connect(self.min_balance.setEnabled)
        self.min_balance_on.toggled.connect(lambda _: self._recipients_changed())
        self.min_balance.valueChanged.connect(lambda _: self.min_balance_on.isChecked()
                                              and self._recipients_changed())
        self.due.currentIndexChanged.connect(self._due_changed)
        self.due_days.valueChanged.connect(lambda _: self.due.currentData() == "within"
                                           and self._recipients_changed())

    def _due_changed(self) -> None:
        self.due_days.setEnabled(self.due.currentData() == "within")
        self._recipients_changed()

    def _build_right(self) -> QWidget:
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(8, 0, 0, 0)

        preview = QGroupBox("Preview")
        inner = QVBoxLayout(preview)
        stepper = QHBoxLayout()
        self.previous_button = QToolButton(text="◀")
        self.previous_button.setToolTip("Previous recipient")
        self.previous_button.clicked.connect(lambda: self.step(-1))
        self.next_button = QToolButton(text="▶")
        self.next_button.setToolTip("Next recipient")
        self.next_button.clicked.connect(lambda: self.step(+1))
        self.recipient_label = QLabel("–")
        self.recipient_label.setObjectName("preview-recipient")
        stepper.addWidget(self.previous_button)
        stepper.addWidget(self.recipient_label, 1)
        stepper.addWidget(self.next_button)
        inner.addLayout(stepper)
        self.rendered = QTextBrowser()
        self.rendered.setObjectName("preview-text")
        self.rendered.setMinimumHeight(110)
        self.rendered.setPlaceholderText("The message for the recipient above appears here.")
        inner.addWidget(self.rendered, 1)
        self.message_stats = QLabel("–")
        self.message_stats.setObjectName("preview-stats")
        inner.addWidget(self.message_stats)
        column.addWidget(preview, 1)

        totals = QGroupBox("Send plan")
        form = QFormLayout(totals)
        self.totals_labels: dict[str, QLabel] = {}
        for key, caption in (("recipients", "Recipients"), ("segments", "Segments"),
                             ("characters", "Characters"), ("unicode", "Unicode"),
                             ("cost", "Estimated cost"), ("route", "Route"),
                             ("duration", "Estimated duration")):
            label = bold(QLabel("–"))
            label.setObjectName(f"plan-{key}")
            label.setWordWrap(True)
            form.addRow(caption, label)
            self.totals_labels[key] = label
        column.addWidget(totals)

        self.progress_box = QGroupBox("Sending")
        progress_layout = QVBoxLayout(self.progress_box)
        self.progress = CampaignProgress(self.ctx)
        progress_layout.addWidget(self.progress)
        self.scheduled_note = QLabel()
        self.scheduled_note.setObjectName("compose-scheduled")
        self.scheduled_note.setWordWrap(True)
        self.scheduled_note.hide()
        progress_layout.addWidget(self.scheduled_note)
        open_campaign = QPushButton("Open in Campaigns")
        open_campaign.clicked.connect(lambda: self.ctx.bus.show_page.emit("campaigns"))
        progress_layout.addWidget(open_campaign, 0, Qt.AlignmentFlag.AlignRight)
        self.progress_box.hide()
        column.addWidget(self.progress_box)
        return box

    # -- recipients ----------------------------------------------------------------------
    def activated(self) -> None:
        if not self._tags_loaded:
            self._tags_loaded = True
            self._totals.warm()  # the totals' process, ready by the first pause in typing
            self._tags.load()

    def _contacts_changed(self) -> None:
        self._tags.load()
        self._schedule_refresh()

    def _show_tags(self, tags: list[tuple[str, int]]) -> None:
        self.include_tags.set_tags(tags)
        self.exclude_tags.set_tags(tags)
        self._schedule_refresh()

    def choose_contacts(self, ids: list[int]) -> None:
        self.selected_ids = tuple(sorted(set(ids)))
        self.to_selected.setEnabled(bool(self.selected_ids))
        self.selected_label.setText(f"{len(self.selected_ids):,} chosen on the Contacts page")
        self.to_selected.setChecked(bool(self.selected_ids))
        self.to_filtered.setChecked(not self.selected_ids)
        self._recipients_changed()

    def recipients(self) -> Audience | None:
        """Who the campaign goes to: the contacts the filters match (all of them when none
        is set), or the rows selected on Contacts; None while that selection is empty:
        never quietly everyone instead."""
        if self.to_selected.isChecked():
            return Audience(ids=tuple(self.selected_ids)) if self.selected_ids else None
        due = self.due.currentData()
        return Audience(
            tags=self.include_tags.chosen(), exclude_tags=self.exclude_tags.chosen(),
            owing=self.owing.isChecked(),
            min_balance_cents=round(self.min_balance.value() * 100)
            if self.min_balance_on.isChecked() else None,
            due_within_days=self.due_days.value() if due == "within" else None,
            overdue=due == "overdue")

    def _recipients_changed(self) -> None:
        self.filters.setEnabled(self.to_filtered.isChecked())
        # The shown recipient belongs to the old choice: never pair it with the new totals.
        self.index = 0
        self.preview = None
        self.recipient_label.setText("–")
        self._counts.start()  # the count on screen is stale from now on
        self.count_label.setText("Counting…")
        self._schedule_refresh()

    # -- preview -------------------------------------------------------------------------
    def _schedule_refresh(self) -> None:
        # The totals under way answer a question just changed: stop them now, not after the
        # pause, so their process is free (or fresh) by the time the operator stops typing.
        self._totals.start()
        self._preview_timer.start()
        self._update_send_state()  # the totals on screen are about to change

    def shutdown(self) -> None:
        super().shutdown()
        self._preview_timer.stop()
        self.progress.stop()

    def _show_problems(self, problems: list[tuple[int, int, str, str | None]]) -> None:
        if not problems:
            self.problems.hide()
        else:
            texts = [f"#{word}: did you mean #{hint}?" if hint else f"#{word} is not a tag"
                     for _, _, word, hint in problems]
            self.problems.setText("Unknown tag " + "; ".join(texts) +
                                  " (write ## for a literal #)")
            self.problems.show()
        self._update_send_state()

    def step(self, delta: int) -> None:
        total = self.summary.recipients if self.summary else 0
        self.index = min(max(self.index + delta, 0), max(total - 1, 0))
        self.refresh_preview(totals=False)

    def refresh_preview(self, totals: bool = True) -> None:
        """Render the shown recipient's message, and (unless only stepping) the totals."""
        text, recipients = self.editor.toPlainText(), self.recipients()
        self._previews.start()
        if totals:
            self._start_totals(text, recipients)
            self._start_count(recipients)
        if not text.strip() or recipients is None:
            self._show_preview(None)
            return
        settings, index = self.ctx.settings, self.index

        def work() -> RenderedMessage | None:
            with self.ctx.services.db().session() as session:
                return preview_one(session, settings, text, recipients, index)

        self._previews.submit(work, on_done=self._show_preview, on_error=self._preview_failed)

    def _start_totals(self, text: str, recipients: Audience | None) -> None:
        self._totals.start()
        if not text.strip() or recipients is None:
            self._show_summary(None)
            return
        self._totals.submit(heavy_work.compose_totals, self.ctx.settings, text, recipients,
                            self.urgent.isChecked(), on_done=self._show_summary,
                            on_error=self._totals_failed)

    def _start_count(self, recipients: Audience | None) -> None:
        self._counts.start()
        if recipients is None:
            self._show_count(None)
            return
        self.count_label.setText("Counting…")
        settings, urgent = self.ctx.settings, self.urgent.isChecked()

        def work() -> AudienceCount:
            with self.ctx.services.db().session() as session:
                return count_audience(session, recipients, send_day(settings, urgent=urgent))

        self._counts.submit(work, on_done=self._show_count, on_error=self._count_failed)

    def _show_count(self, count: AudienceCount | None) -> None:
        self.count_label.setText("–" if count is None else describe_count(count))
        self._update_send_state()

    def _count_failed(self, error: BaseException) -> None:
        self.count_label.setText("Could not count the recipients")
        self._update_send_state()
        self.ctx.background.error.emit(error)

    def _totals_failed(self, error: BaseException) -> None:
        self._update_send_state()
        self._preview_failed(error, totals=True)

    def _preview_failed(self, error: BaseException, totals: bool = False) -> None:
        if isinstance(error, TemplateError):
            self.rendered.setPlainText("")
            self.message_stats.setText("Fix the unknown tag(s) to see the preview.")
            return
        if not totals:  # one report of a failure is enough
            self.ctx.background.error.emit(error)

    def _show_summary(self, summary: ComposeSummary | None) -> None:
        self.summary = summary
        self._show_totals()
        self._show_stepper()
        self._update_send_state()

    def _show_preview(self, one: RenderedMessage | None) -> None:
        self.preview = one
        count = self.summary.recipients if self.summary else 0
        if one is None:
            self.recipient_label.setText("No recipients" if self.summary is not None
                                         and count == 0 else "–")
            self.rendered.setPlainText("")
            self.message_stats.setText("Write a message to see it as each recipient will."
                                       if not self.editor.toPlainText().strip() else "–")
        else:
            self.rendered.setPlainText(one.text)
            self.message_stats.setText(f"{one.characters} characters · {one.encoding} · "
                                       f"{one.segments} segment(s)")
        self._show_stepper()

    def _show_stepper(self) -> None:
        one = self.preview
        count = self.summary.recipients if self.summary else 0
        if one is not None:
            of = f" of {count:,}" if self.summary else ""
            self.recipient_label.setText(f"Recipient {one.index + 1:,}{of}: {one.name} "
                                         f"({mask_phone(one.phone)})")
        self.previous_button.setEnabled(self.index > 0)
        self.next_button.setEnabled(self.index + 1 < count)

    def _show_totals(self) -> None:
        labels = self.totals_labels
        summary = self.summary
        if summary is None:
            for label in labels.values():
                label.setText("–")
            return
        chosen = self.recipients()
        left_out = f"; {summary.suppressed:,} opted out, left out" if summary.suppressed \
            else ""
        labels["recipients"].setText(f"{summary.recipients:,} ({chosen.describe()}{left_out})"
                                     if chosen else "–")
        labels["segments"].setText(f"{summary.segments:,}")
        labels["characters"].setText(
            f"{summary.characters:,}, all GSM-7" if not summary.ucs2 else
            f"{summary.characters:,}; {summary.ucs2:,} message(s) need UCS-2 (70 a segment)")
        price = self.ctx.settings.price_per_segment
        labels["unicode"].setText(
            unicode_hint(summary.ucs2_characters, summary.unicode_extra_segments,
                         summary.unicode_extra_cost).removeprefix("Unicode: ") or "none")
        labels["cost"].setText(f"{summary.cost:,.2f} ({summary.segments:,} × {price})"
                               f"{unicode_share(summary)}"
                               if price else "set a price per segment in Settings")
        if summary.plan is None:
            labels["route"].setText("nobody to send to: import contacts or change the filters")
            labels["duration"].setText("–")
            return
        labels["route"].setText(describe_plan(summary.plan))
        rate = self.ctx.settings.rate_limit
        limit = f", rate limit {rate.per_second:g}/s" if rate else ""
        labels["duration"].setText(
            f"{format_duration(summary.plan.estimated_duration_s)} (pacing{limit})")

    def _update_send_state(self) -> None:
        """Send only what the totals on screen describe: not while they are being counted,
        not while a send is under way."""
        ready = (bool(self.editor.toPlainText().strip()) and self.problems.isHidden()
                 and self.recipients() is not None and not self._sending
                 and not self._totals.pending and not self._counts.pending
                 and not self._preview_timer.isActive()
                 and self.summary is not None and self.summary.recipients > 0)
        self.send_button.setEnabled(ready)
        self.later_button.setEnabled(ready)
        self.test_button.setEnabled(ready)
        self.change_test_number.setEnabled(ready)

    # -- sending -------------------------------------------------------------------------
    def request(self, at: datetime | None = None) -> SendRequest:
        recipients = self.recipients()
        assert recipients is not None, "sending is disabled until recipients are chosen"
        return SendRequest(self.editor.toPlainText(), recipients,
                           self.urgent.isChecked(), self.name.text().strip() or None, at)

    def ask_send_later(self) -> None:
        """Choose the time in a dialog; the confirmation then says when it will go out."""
        if not self.send_button.isEnabled():
            return
        window = self.ctx.settings.send_window(urgent=self.urgent.isChecked())
        dialog = SendLaterDialog(self, window)
        dialog.accepted.connect(lambda: dialog.when is not None and
                                self.confirm_send(at=dialog.when))
        self.later_dialog = dialog
        dialog.open()

    def confirm_send(self, at: datetime | None = None) -> None:
        if not self.send_button.isEnabled() or self.summary is None or \
                self.summary.plan is None:
            return
        summary, plan, request = self.summary, self.summary.plan, self.request(at)
        cost = f"\nEstimated cost: {summary.cost:,.2f}" if \
            self.ctx.settings.price_per_segment else ""
        who = f"{summary.recipients:,} recipient(s) ({request.recipients.describe()})"
        box = QMessageBox(QMessageBox.Icon.Question, "Send campaign",
                          f"Send to {who}?" if at is None else
                          f"Schedule for {who}, to go out {self._when(at)}?", parent=self)
        box.setObjectName("confirm-send")
        later = "" if at is None else (
            "\nThe messages are written, and the audience counted again, at that time: "
            "figures and opt-outs as of then. Until then it waits on the Campaigns page "
            "(reschedule, send now or cancel).")
        unicode = (f"\nOf these, {summary.unicode_extra_segments:,} are for characters that "
                   "have a GSM-7 equivalent" + (f" ({summary.unicode_extra_cost:,.2f})"
                                                if summary.unicode_extra_cost else "")) \
            if summary.unicode_extra_segments else ""
        box.setInformativeText(
            f"{summary.segments:,} SMS segment(s){cost}{unicode}\n{describe_plan(plan)}\n"
            f"Estimated duration: {format_duration(plan.estimated_duration_s)}{later}")
        send = box.addButton("Send" if at is None else "Schedule",
                             QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.buttonClicked.connect(lambda b: b is send and self.send(request))
        self.confirm_box = box
        box.open()

    def _when(self, at: datetime) -> str:
        return f"on {describe_when(at, self.ctx.settings.timezone)}"

    def send(self, request: SendRequest) -> None:
        self._sending = True
        self.send_button.setText("Queueing…" if request.at is None else "Scheduling…")
        self._update_send_state()

        def queued(_: object) -> None:
            self.ctx.background.run_in_process(
                heavy_work.send, self.ctx.settings, request.template, request.recipients,
                request.urgent, request.name, request.at, on_done=self._sent,
                on_error=self._send_failed)

        if request.at is not None:  # nothing reaches Redis or the provider until it is due
            queued(None)
            return
        # The provider check first, so a gateway that is down creates nothing.
        self.ctx.background.run(start_services_and_check_provider, self.ctx,
                                on_done=queued, on_error=self._send_failed)

    def _send_done(self) -> None:
        self._sending = False
        self.send_button.setText("Send campaign…")
        self._update_send_state()

    def _sent(self, created: CreatedCampaign) -> None:
        self._send_done()
        self.last_campaign = created
        self.progress_box.show()
        self.progress_box.setTitle("Sending" if created.scheduled_at is None else "Scheduled")
        self.scheduled_note.setVisible(created.scheduled_at is not None)
        if created.scheduled_at is not None:
            self.scheduled_note.setText(
                f"Scheduled: goes out {self._when(created.scheduled_at)}. Reschedule, send "
                "now or cancel it on the Campaigns page.")
        self.progress.follow(created.id)
        self.ctx.bus.campaign_started.emit(created.id)
        self.ctx.bus.campaigns_changed.emit()

    def _send_failed(self, error: BaseException) -> None:
        self._send_done()
        self.ctx.background.error.emit(error)

    def test_send_clicked(self) -> None:
        """One click once a number is known; the first time, ask for it."""
        number = str(self._memory.value("compose/test_number", "") or "")
        if number:
            self.test_send(number)
        else:
            self.ask_test_send()

    def ask_test_send(self) -> None:
        dialog = TestSendDialog(self, str(self._memory.value("compose/test_number", "") or ""))
        dialog.accepted.connect(lambda: self._remember_and_send(dialog.phone.text().strip()))
        self.test_dialog = dialog
        dialog.open()

    def _remember_and_send(self, number: str) -> None:
        if not number:
            return
        self._memory.setValue("compose/test_number", number)
        self._show_test_number()
        self.test_send(number)

    def _show_test_number(self) -> None:
        number = str(self._memory.value("compose/test_number", "") or "")
        self.test_button.setText(f"Test send to …{number[-4:]}" if number else "Test send…")

    def test_send(self, phone: str) -> None:
        contact_id = self.preview.contact_id if self.preview else None
        template = self.editor.toPlainText()
        self._sending = True
        self._update_send_state()

        def work() -> CreatedCampaign:
            from engine.operations.campaign_control import send_test_message

            start_services_and_check_provider(self.ctx)
            return send_test_message(self.ctx.services.db(), self.ctx.services.redis(),
                                     self.ctx.settings, template, phone, contact_id=contact_id)

        self.ctx.background.run(work, on_done=self._sent, on_error=self._send_failed)


class TestSendDialog(QDialog):
    def __init__(self, parent: QWidget, number: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Test send")
        form = QFormLayout(self)
        form.addRow(QLabel("Send the message, as the shown recipient would get it, to:"))
        self.phone = QLineEdit(number)
        self.phone.setObjectName("test-send-phone")
        self.phone.setPlaceholderText("your phone number")
        form.addRow("Phone", self.phone)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Send test")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


def start_services_and_check_provider(ctx: ConsoleContext) -> None:
    """Start the embedded Redis and the sandbox gateway where the settings use them and they
    went away (the console owns the local pipeline), then fail fast, with nothing created,
    when the provider cannot be reached."""
    from engine.providers.reachability import require_provider

    ctx.services.start_local_services()
    require_provider(ctx.settings, start_gateway=False)

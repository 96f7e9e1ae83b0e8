"""The database's size and growth, for the Settings page's "Data kept" section: beside how
long messages are kept, what keeping them costs, and how the space of deleted ones comes
back (SQLite: ``relaydesk db vacuum`` once; PostgreSQL: its autovacuum).

Measuring reads the database, so the page does it on a background thread
(:func:`measure`) and hands the figures to :meth:`StorageBox.show_figures`; the projection
for the "keep for" value being typed is worked out here, from those figures.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout

from desktop.settings_form import muted
from engine.config.settings import Settings, parse_duration
from engine.domain.formatting import format_bytes
from engine.store.db import open_database
from engine.store.storage_figures import StorageFigures, storage_figures

DAY_S = 86400


def measure(settings: Settings) -> StorageFigures:
    """Off the UI thread: the database of ``settings``, measured."""
    return storage_figures(open_database(settings))


def describe_size(figures: StorageFigures) -> str:
    """``1.2 GB, 3,000,000 messages (SQLite file with its write-ahead log)``."""
    what = ("the SQLite file with its write-ahead log" if figures.database == "sqlite"
            else f"the {figures.database} database")
    return (f"{format_bytes(figures.size_bytes)} ({what}), holding "
            f"{figures.messages:,} message{'' if figures.messages == 1 else 's'}.")


def describe_growth(figures: StorageFigures) -> str:
    recent = figures.messages_last_30_days
    if not recent:
        return "No messages created in the last 30 days: it is not growing now."
    return (f"{recent:,} message{'' if recent == 1 else 's'} created in the last 30 days: "
            f"about {format_bytes(figures.growth_bytes_per_month)} a month at that rate "
            f"({format_bytes(round(figures.bytes_per_message))} a message, with its "
            "delivery reports and indexes).")


def describe_keep(figures: StorageFigures, keep_text: str) -> str:
    """What the "keep for" value being typed means at the last 30 days' rate ("" when it
    cannot be read: the form says what is wrong with it)."""
    if not keep_text.strip():
        return (f"Kept for ever: nothing is pruned, and the database grows by about "
                f"{format_bytes(figures.growth_bytes_per_month)} a month."
                if figures.growth_bytes_per_month else "Kept for ever: nothing is pruned.")
    try:
        keep_s = parse_duration(keep_text)
    except ValueError:
        return ""
    days = keep_s / DAY_S
    kept = f"{days:,.0f} days" if days >= 1 else "less than a day"
    return (f"Keeping {kept}: settled messages take about "
            f"{format_bytes(figures.kept_bytes(keep_s))} once the oldest are pruned, at "
            "the last 30 days' rate.")


def space_note(figures: StorageFigures) -> str:
    """How the space of pruned messages comes back, on this database."""
    if figures.database != "sqlite":
        return ("PostgreSQL's autovacuum makes the space of pruned messages reusable for new "
                "ones on its own; the database's files do not shrink (VACUUM FULL, which "
                "locks each table while it runs, is for its administrator to schedule).")
    free = f" ({format_bytes(figures.free_bytes)} free inside it now)" \
        if figures.free_bytes else ""
    if figures.auto_vacuum == "incremental":
        return ("The file gives the space of pruned messages back to the disk after each "
                f"prune (incremental auto-vacuum){free}.")
    return (f"This SQLite file keeps the space of pruned messages inside it{free}: run "
            "'relaydesk db vacuum' once, when nothing is sending (it locks the database "
            "while it rewrites the file); from then on each prune gives its space back.")


class StorageBox(QGroupBox):
    """Size, growth, what the "keep for" value would hold, and the note on space."""

    def __init__(self) -> None:
        super().__init__("Database size")
        self.setObjectName("storage-figures")
        column = QVBoxLayout(self)
        self.size = QLabel("Measuring the database…")
        self.size.setObjectName("storage-size")
        self.growth = QLabel()
        self.growth.setObjectName("storage-growth")
        self.keep = QLabel()
        self.keep.setObjectName("storage-keep")
        self.space = muted(QLabel())
        self.space.setObjectName("storage-space")
        for label in (self.size, self.growth, self.keep, self.space):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            column.addWidget(label)
        for label in (self.growth, self.keep, self.space):
            label.hide()
        self.figures: StorageFigures | None = None
        self._keep_text = ""

    def show_figures(self, figures: StorageFigures) -> None:
        self.figures = figures
        self.size.setText(describe_size(figures))
        self.growth.setText(describe_growth(figures))
        self.space.setText(space_note(figures))
        self.growth.show()
        self.space.show()
        self.set_keep(self._keep_text)

    def show_error(self, message: str) -> None:
        self.figures = None
        self.size.setText(f"The database's size could not be read: {message}")
        for label in (self.growth, self.keep, self.space):
            label.hide()

    def set_keep(self, keep_text: str) -> None:
        """The "keep for" value on the form (saved or being typed)."""
        self._keep_text = keep_text
        text = describe_keep(self.figures, keep_text) if self.figures else ""
        self.keep.setText(text)
        self.keep.setVisible(bool(text))

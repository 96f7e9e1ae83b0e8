"""Editing one contact, with the import's validation rules."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit, QWidget

from desktop.context import ConsoleContext
from engine.store.contact_browser import ContactEditError, ContactView, update_contact
from engine.store.contacts import cents_text


class ContactDialog(QDialog):
    def __init__(self, ctx: ConsoleContext, contact: ContactView,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.contact = contact
        self.saved: ContactView | None = None
        self.setWindowTitle(f"Edit contact — {contact.name}")
        self.setMinimumWidth(420)
        form = QFormLayout(self)
        self.fields = {
            "name": QLineEdit(contact.name),
            "phone": QLineEdit(contact.phone),
            "pledge": QLineEdit(cents_text(contact.pledge_cents)),
            "paid_amount": QLineEdit(cents_text(contact.paid_cents)),
            "due_date": QLineEdit(contact.due_date.isoformat()),
            "tags": QLineEdit("; ".join(contact.tags)),
        }
        self.fields["due_date"].setPlaceholderText("YYYY-MM-DD")
        self.fields["tags"].setPlaceholderText("tags separated by ;")
        labels = {"name": "Name", "phone": "Phone", "pledge": "Pledge",
                  "paid_amount": "Paid", "due_date": "Due date", "tags": "Tags"}
        for key, edit in self.fields.items():
            edit.setObjectName(f"contact-{key}")
            form.addRow(labels[key], edit)
        self.error = QLabel()
        self.error.setObjectName("contact-error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d64545")
        self.error.hide()
        form.addRow(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save |
                                        QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def values(self) -> dict[str, str]:
        return {key: edit.text() for key, edit in self.fields.items()}

    def save(self) -> None:
        self.buttons.setEnabled(False)
        values = self.values()
        region = self.ctx.settings.default_region

        def write() -> ContactView:
            with self.ctx.services.db().session() as session:
                return update_contact(session, self.contact.id, values, region)

        self.ctx.background.run(write, on_done=self._saved, on_error=self._failed)

    def _saved(self, contact: ContactView) -> None:
        self.saved = contact
        self.accept()

    def _failed(self, error: BaseException) -> None:
        self.buttons.setEnabled(True)
        if isinstance(error, ContactEditError):
            self.error.setText(f"Not saved: {error}")
            self.error.show()
        else:
            self.ctx.background.error.emit(error)

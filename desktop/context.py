"""What every page gets: the engine services, the background runner, and a signal bus the
pages use to tell each other about changes instead of importing each other."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from desktop.background import Background
from desktop.services import Services
from engine.config.settings import Settings


class Bus(QObject):
    contacts_changed = Signal()
    campaign_started = Signal(int)  # campaign id
    campaigns_changed = Signal()
    settings_saved = Signal()
    recipients_chosen = Signal(list)  # contact ids picked on the Contacts page for Compose
    show_page = Signal(str)  # page id


@dataclass
class ConsoleContext:
    services: Services
    background: Background
    bus: Bus

    @property
    def settings(self) -> Settings:
        return self.services.settings

"""Settings page (being built)."""

from __future__ import annotations

from desktop.context import ConsoleContext
from desktop.pages.base import PlaceholderPage


class SettingsPage(PlaceholderPage):
    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(ctx, "settings", "Settings", "settings", "")

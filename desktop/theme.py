"""Light and dark themes: the Fusion style with a palette, following the system's scheme
unless the operator picked one."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("system", "light", "dark")

_DARK = {
    QPalette.ColorRole.Window: "#202328",
    QPalette.ColorRole.WindowText: "#e6e8eb",
    QPalette.ColorRole.Base: "#181a1e",
    QPalette.ColorRole.AlternateBase: "#23262b",
    QPalette.ColorRole.ToolTipBase: "#2b2f35",
    QPalette.ColorRole.ToolTipText: "#e6e8eb",
    QPalette.ColorRole.PlaceholderText: "#8a9099",
    QPalette.ColorRole.Text: "#e6e8eb",
    QPalette.ColorRole.Button: "#2b2f35",
    QPalette.ColorRole.ButtonText: "#e6e8eb",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Highlight: "#3d7be0",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#6fa8ff",
    QPalette.ColorRole.Light: "#3a3f46",
    QPalette.ColorRole.Midlight: "#30343a",
    QPalette.ColorRole.Mid: "#2a2d33",
    QPalette.ColorRole.Dark: "#15171a",
    QPalette.ColorRole.Shadow: "#000000",
}

_LIGHT = {
    QPalette.ColorRole.Window: "#f3f4f6",
    QPalette.ColorRole.WindowText: "#1d2025",
    QPalette.ColorRole.Base: "#ffffff",
    QPalette.ColorRole.AlternateBase: "#f6f7f9",
    QPalette.ColorRole.ToolTipBase: "#ffffff",
    QPalette.ColorRole.ToolTipText: "#1d2025",
    QPalette.ColorRole.PlaceholderText: "#7b818a",
    QPalette.ColorRole.Text: "#1d2025",
    QPalette.ColorRole.Button: "#eceef1",
    QPalette.ColorRole.ButtonText: "#1d2025",
    QPalette.ColorRole.Highlight: "#2f6fde",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#2457b3",
}


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def palette_for(dark: bool) -> QPalette:
    palette = QPalette()
    for role, color in (_DARK if dark else _LIGHT).items():
        palette.setColor(role, QColor(color))
    muted = QColor("#6b717a" if dark else "#8d939b")
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, muted)
    return palette


def apply_theme(app: QApplication, theme: str) -> bool:
    """Apply ``theme`` (system/light/dark); returns True when the result is dark."""
    app.setStyle("Fusion")
    dark = system_is_dark() if theme == "system" else theme == "dark"
    app.setPalette(palette_for(dark))
    app.setProperty("relaydesk_dark", dark)
    return dark


def is_dark(app: QApplication) -> bool:
    return bool(app.property("relaydesk_dark"))


# Colours with a meaning, readable on both palettes.
GOOD = QColor("#2e9d5b")
WARN = QColor("#d08a1e")
BAD = QColor("#d64545")

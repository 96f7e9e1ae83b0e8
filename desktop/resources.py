"""Files shipped beside the code (icons, sample data), found the same way from a source
checkout and from the packaged app."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer


def resources_dir() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)  # set by the packaged app
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource(*parts: str) -> Path:
    return resources_dir().joinpath(*parts)


@cache
def _svg_source(name: str) -> str:
    return resource("icons", f"{name}.svg").read_text(encoding="utf-8")


def icon(name: str, color: QColor | None = None, size: int = 64) -> QIcon:
    """An icon from resources/icons; line icons take ``color`` (the theme's text colour)."""
    source = _svg_source(name)
    if color is not None:
        source = source.replace("currentColor", color.name())
    renderer = QSvgRenderer(QByteArray(source.encode("utf-8")))
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    renderer.render(painter)
    painter.end()
    return QIcon(pixmap)

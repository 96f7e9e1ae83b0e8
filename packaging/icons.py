"""Render the app icon (resources/icons/relaydesk.svg) for the installers: the hicolor
PNG sizes a Linux desktop looks for, and a Windows .ico.

    python packaging/icons.py --png-dir DIR   # DIR/<size>x<size>/apps/relaydesk.png
    python packaging/icons.py --ico FILE      # 16 to 256 px in one .ico

Uses Qt's own SVG renderer and image writers (offscreen), so it needs nothing beyond
RelayDesk's dependencies.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "relaydesk.svg"
HICOLOR_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def _render(size: int):  # -> QImage (Qt is imported late: QT_QPA_PLATFORM comes first)
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {SVG}")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def write_pngs(directory: Path) -> list[Path]:
    written = []
    for size in HICOLOR_SIZES:
        target = directory / f"{size}x{size}" / "apps" / "relaydesk.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not _render(size).save(str(target), "PNG"):
            raise SystemExit(f"could not write {target}")
        written.append(target)
    return written


def write_ico(target: Path) -> Path:
    """An .ico with every size in it: Qt's writer stores one image per call, so the file
    is assembled here (ICONDIR header, one entry per size, then the PNG-compressed
    images, which Windows Vista and later read)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    images = []
    for size in ICO_SIZES:
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        _render(size).save(buffer, "PNG")
        buffer.close()
        images.append((size, bytes(data.data())))
    header = (0).to_bytes(2, "little") + (1).to_bytes(2, "little") + \
        len(images).to_bytes(2, "little")
    offset = 6 + 16 * len(images)
    entries, blobs = b"", b""
    for size, png in images:
        side = 0 if size >= 256 else size  # 0 means 256 in an ICONDIRENTRY
        entries += bytes([side, side, 0, 0]) + (1).to_bytes(2, "little") + \
            (32).to_bytes(2, "little") + len(png).to_bytes(4, "little") + \
            offset.to_bytes(4, "little")
        blobs += png
        offset += len(png)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(header + entries + blobs)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png-dir", type=Path, help="write hicolor PNGs under this folder")
    parser.add_argument("--ico", type=Path, help="write a Windows .ico to this file")
    args = parser.parse_args(argv)
    if not args.png_dir and not args.ico:
        parser.error("give --png-dir DIR and/or --ico FILE")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    if args.png_dir:
        for path in write_pngs(args.png_dir):
            print(path)
    if args.ico:
        print(write_ico(args.ico))
    del app


if __name__ == "__main__":
    main()

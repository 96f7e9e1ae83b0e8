"""The template editor marks the characters that force UCS-2 where Qt draws them (emoji
count two positions), explains them on hover, and replaces those with a GSM-7 equivalent
in one undoable edit."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, Qt
from PySide6.QtGui import QHelpEvent, QTextCursor
from PySide6.QtWidgets import QApplication, QToolTip
from pytestqt.qtbot import QtBot

from desktop.template_editor import TemplateEditor, ucs2_spans
from desktop.theme import BAD, WARN


def editor_with(qtbot: QtBot, text: str) -> TemplateEditor:
    editor = TemplateEditor()
    qtbot.addWidget(editor)
    editor.resize(600, 200)
    editor.show()
    qtbot.waitExposed(editor)
    editor.setPlainText(text)
    return editor


def marks(editor: TemplateEditor, block: int = 0) -> dict[tuple[int, int], str]:
    """What the highlighter set on a block: (start, length) -> 'tag', 'warn' or 'bad'."""
    layout = editor.document().findBlockByNumber(block).layout()
    found = {}
    for r in layout.formats():
        background = r.format.background().color()
        kind = "tag" if r.format.fontWeight() == 600 else \
            "warn" if background.rgb() == WARN.rgb() else \
            "bad" if background.rgb() == BAD.rgb() else "other"
        found[r.start, r.length] = kind
    return found


def test_ucs2_spans_are_in_qt_positions() -> None:
    # the emoji takes two UTF-16 units; the no-break space reaches no message (toPlainText
    # hands it over as a space), so it is not marked
    assert ucs2_spans("😀 it’s\u00a0✓") == [(0, 2, "😀"), (5, 1, "’"), (8, 1, "✓")]
    assert ucs2_spans("€ [x] {y} ~^|\\ Asante") == []  # extension characters are GSM-7


def test_highlighting_marks_ucs2_characters_where_they_are(qtbot: QtBot) -> None:
    editor = editor_with(qtbot, "😀 #name it’s ✓\nline “two”")
    assert marks(editor, 0) == {(0, 2): "bad", (3, 5): "tag", (11, 1): "warn",
                                (14, 1): "bad"}
    assert marks(editor, 1) == {(5, 1): "warn", (9, 1): "warn"}
    # the text keeps the palette's colour (readable on light and dark): only a tint
    ranges = editor.document().firstBlock().layout().formats()
    fmt = ranges[0].format
    assert fmt.foreground().style() == Qt.BrushStyle.NoBrush
    assert 0 < fmt.background().color().alpha() < 255


def test_replace_with_gsm7_is_one_undoable_edit(qtbot: QtBot) -> None:
    original = "Dear #name, it’s “late” — sorry…\n😀 thanks\u2009✓"
    editor = editor_with(qtbot, original)
    seen: list[list[str]] = []
    editor.ucs2_changed.connect(seen.append)
    # the caret just after "sorry…"
    caret = editor.textCursor()
    caret.setPosition(original.index("…") + 1)
    editor.setTextCursor(caret)
    assert editor.replaceable() == 6
    assert not editor.document().isUndoAvailable()  # setPlainText starts a new history

    assert editor.replace_with_gsm7() == 6
    replaced = "Dear #name, it's \"late\" - sorry...\n😀 thanks ✓"
    assert editor.toPlainText() == replaced
    assert editor.textCursor().position() == replaced.index("...") + 3  # still after it
    assert seen[-1] == ["😀", "✓"]  # no equivalent: they stay, still marked
    assert editor.replaceable() == 0
    assert editor.replace_with_gsm7() == 0  # nothing left to replace

    editor.undo()  # one undo brings every character back
    assert editor.toPlainText() == original
    assert not editor.document().isUndoAvailable()
    editor.redo()
    assert editor.toPlainText() == replaced


def hover(editor: TemplateEditor, position: int) -> str:
    """The tooltip for the pointer just inside the character at Qt ``position``."""
    cursor = QTextCursor(editor.document())
    cursor.setPosition(position)
    rect = editor.cursorRect(cursor)
    point = QPoint(rect.left() + 3, rect.center().y())
    event = QHelpEvent(QEvent.Type.ToolTip, point, editor.viewport().mapToGlobal(point))
    QApplication.sendEvent(editor.viewport(), event)
    return QToolTip.text()


def test_hovering_a_ucs2_character_names_it_and_its_replacement(qtbot: QtBot) -> None:
    editor = editor_with(qtbot, "Karibu, it’s ✓")
    assert hover(editor, 10).startswith("U+2019 RIGHT SINGLE QUOTATION MARK is not in GSM-7")
    assert hover(editor, 10).endswith("Replace with GSM-7 equivalents writes ' instead.")
    assert hover(editor, 13).startswith("U+2713 CHECK MARK")
    assert "No GSM-7 equivalent" in hover(editor, 13)


def test_unknown_tag_tooltip_after_an_emoji(qtbot: QtBot) -> None:
    editor = editor_with(qtbot, "😀😀😀 Hi #nmae")  # the tag starts at Qt position 10
    assert hover(editor, 14) == "Unknown tag #nmae: did you mean #name?"  # on its "e"

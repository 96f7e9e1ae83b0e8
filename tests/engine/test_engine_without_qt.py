"""The engine never imports Qt or the desktop package: workers and the command line run
where there is no display, and the console is one front end among others."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import engine

ENGINE = Path(engine.__file__).parent
MIGRATION_SCRIPTS = ENGINE / "store" / "migrations"  # run by Alembic, not imported


def _engine_modules() -> list[str]:
    names = []
    for path in sorted(ENGINE.rglob("*.py")):
        if MIGRATION_SCRIPTS in path.parents or path.name == "__main__.py":
            continue
        parts = path.relative_to(ENGINE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_no_engine_module_names_qt_or_the_desktop() -> None:
    offenders = []
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ENGINE.parent)}: {n}" for n in names
                          if n.split(".")[0] in ("desktop", "PySide6", "shiboken6")]
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    node.value.startswith(("desktop.", "PySide6")):
                offenders.append(f"{path.relative_to(ENGINE.parent)}: {node.value!r}")
    assert offenders == []


def test_importing_every_engine_module_loads_no_qt() -> None:
    modules = _engine_modules()
    assert "engine.cli.main" in modules
    assert "engine.providers.twilio" in modules
    probe = ("import importlib, sys\n"
             f"for name in {modules!r}:\n"
             "    importlib.import_module(name)\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'desktop', 'PySide6', 'shiboken6'}))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_python_m_engine_has_every_command_but_the_console() -> None:
    result = subprocess.run([sys.executable, "-m", "engine", "--help"], capture_output=True,
                            text=True, timeout=60, check=True)
    assert "worker" in result.stdout
    assert "gui" not in result.stdout.split("Commands:")[1]

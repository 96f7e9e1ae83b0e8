"""The engine's import contract, as the suite enforces it (issue 12).

Each subpackage of ``engine`` is a layer; a module may import only engine modules of its own
layer or of a lower one, so a maintainer can tell from a module's folder what it may call,
and a lower layer never has to be understood through a higher one. Every import counts:
module level, inside a function, under ``TYPE_CHECKING``.

And the engine never imports Qt or the desktop package: workers and the command line run
where there is no display, and the console is one front end among others.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import engine

ENGINE = Path(engine.__file__).parent
ROOT = ENGINE.parent
LAYERS = ("domain", "config", "store", "infra", "monitoring", "providers", "pipeline",
          "operations", "cli")
RANK = {name: rank for rank, name in enumerate(LAYERS)}
MIGRATION_SCRIPTS = ENGINE / "store" / "migrations"  # run by Alembic, not imported


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, wherever it sits."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            # `from engine import store` names a layer; `from engine import __version__` not.
            names = [f"{module}.{a.name}" for a in node.names if module == "engine"]
            yield from ((node.lineno, name) for name in names or [module])


def _layer(module: str) -> str | None:
    """The layer an engine module belongs to; None for `engine` itself and anything not ours."""
    parts = module.split(".")
    return parts[1] if parts[0] == "engine" and len(parts) > 1 and parts[1] in RANK else None


def _engine_imports() -> Iterator[tuple[str, str, str, str]]:
    """(importing layer, imported layer, 'file:line', imported module) for each engine import."""
    for path in sorted(ENGINE.rglob("*.py")):
        source = path.relative_to(ROOT).parts[1]
        for line, module in _imports(path):
            target = _layer(module)
            if target is not None:
                yield source, target, f"{path.relative_to(ROOT)}:{line}", module


def test_the_top_of_engine_is_the_package_face_and_one_folder_per_layer() -> None:
    entries = {p.name for p in ENGINE.iterdir() if p.name not in ("__pycache__", "py.typed")}
    packages = {name for name in entries if (ENGINE / name / "__init__.py").is_file()}
    assert packages == set(LAYERS)
    assert entries - packages <= {"__init__.py", "__main__.py"}


def test_no_module_imports_a_higher_layer() -> None:
    upward = [f"{where} -> {module}" for source, target, where, module in _engine_imports()
              if source in RANK and RANK[target] > RANK[source]]
    assert upward == [], "\n".join(["imports of a higher layer:", *upward])


def test_only_python_m_engine_starts_the_cli_from_the_top() -> None:
    # The package face imports no layer (importing `engine` must stay cheap); __main__ only
    # the command line it runs.
    top = [f"{where} -> {module}" for source, _, where, module in _engine_imports()
           if source == "__init__.py" or (source == "__main__.py" and module != "engine.cli.main")]
    assert top == []


def test_domain_imports_nothing_of_ours_outside_itself() -> None:
    outside = [f"{path.relative_to(ROOT)}:{line} -> {module}"
               for path in sorted((ENGINE / "domain").rglob("*.py"))
               for line, module in _imports(path)
               if module.split(".")[0] in ("engine", "desktop")
               and not module.startswith("engine.domain.")]
    assert outside == [], "\n".join(["the domain layer imports outside itself:", *outside])


def test_no_cycle_between_layers() -> None:
    edges: dict[str, dict[str, str]] = {}  # layer -> imported layer -> first such import
    for source, target, where, module in _engine_imports():
        if source in RANK and target != source:
            edges.setdefault(source, {}).setdefault(target, f"{where} -> {module}")

    def path_back(start: str, goal: str) -> list[str] | None:
        """The shortest chain of layers from start to goal (breadth first), if any."""
        paths = [[start]]
        seen = {start}
        while paths:
            path = paths.pop(0)
            for nxt in edges.get(path[-1], {}):
                if nxt == goal:
                    return [*path, nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    paths.append([*path, nxt])
        return None

    cycles: dict[tuple[str, ...], str] = {}
    for source, targets in edges.items():
        for target in targets:
            back = path_back(target, source)
            if back is None:
                continue
            ring = [source, *back[:-1]]
            first = ring.index(min(ring))  # one entry per cycle, whichever layer it is seen from
            ring = ring[first:] + ring[:first]
            hops = zip(ring, [*ring[1:], ring[0]], strict=True)
            cycles[tuple(ring)] = (" -> ".join([*ring, ring[0]]) + ": "
                                   + "; ".join(edges[a][b] for a, b in hops))
    assert cycles == {}, "\n".join(["cycles between layers:", *sorted(cycles.values())])


def test_the_desktop_never_imports_the_cli() -> None:
    # desktop/cli.py adds the `gui` command to the engine's command group; nothing else may
    # reach for the command line (it would load click and every command into the console).
    desktop = ROOT / "desktop"
    offenders = [f"{path.relative_to(ROOT)}:{line} -> {module}"
                 for path in sorted(desktop.rglob("*.py")) if path != desktop / "cli.py"
                 for line, module in _imports(path)
                 if module == "engine.cli" or module.startswith("engine.cli.")]
    assert offenders == [], "\n".join(["the desktop imports the command line:", *offenders])


# --- no Qt, no desktop ----------------------------------------------------------------------

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

"""The packaged app (``make dist``): the PyInstaller bundle in dist/relaydesk/, run with no
Python on the PATH, and the .deb and .tar.gz built from it.

``make dist`` runs these last (``pytest -m frozen tests/frozen``). Without a bundle they
are skipped, so ``make test`` stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QImage

from engine import __version__

DIST = Path(__file__).resolve().parents[2] / "dist"
BUNDLE = DIST / "relaydesk"
EXECUTABLE = BUNDLE / "relaydesk"

pytestmark = [
    pytest.mark.frozen,
    pytest.mark.skipif(not EXECUTABLE.exists(),
                       reason="no packaged app in dist/relaydesk: build it with 'make dist'"),
]


def no_python_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment with a PATH that has nothing on it: no python, no redis-server,
    no celery script. The packaged app must find everything in itself."""
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PATH": str(empty), **extra}


def run(executable: Path, *args: str, env: dict[str, str],
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(executable), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def selftest(executable: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    result = run(executable, "selftest", "--json", *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def check_report(report: dict[str, Any], executable: Path) -> None:
    assert report["ok"] is True, report
    assert report["frozen"] is True
    # The workers and the gateway were started from this very executable.
    assert Path(report["executable"]).resolve() == executable.resolve()
    assert (report["expected"], report["delivered_once"]) == (130, 130)
    assert (report["missing"], report["duplicates"], report["unexpected"]) == (0, 0, 0)
    assert sorted((c["route"], c["sent"]) for c in report["campaigns"]) == \
        [("bulk", 120), ("individual", 10)]


def test_version_comes_from_the_package(tmp_path: Path) -> None:
    result = run(EXECUTABLE, "--version", env=no_python_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"relaydesk, version {__version__}"


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_selftest_from_the_bundle(tmp_path: Path, pool: str) -> None:
    report = selftest(EXECUTABLE, no_python_env(tmp_path), "--pool", pool)
    check_report(report, EXECUTABLE)
    assert report["worker_pool"] == pool


def test_the_bundle_reaches_postgresql_through_the_system_libpq(tmp_path: Path,
                                                              postgres_url: str) -> None:
    # build.spec leaves psycopg's binary build out: psycopg's pure-Python implementation
    # loads the machine's libpq with ctypes, which the .deb depends on.
    env = no_python_env(tmp_path, RELAYDESK_DATABASE_URL=postgres_url,
                        RELAYDESK_DATA_DIR=str(tmp_path / "data"),
                        RELAYDESK_CONFIG_FILE=str(tmp_path / "config.toml"))
    sample = BUNDLE / "_internal" / "resources" / "sample_contacts.csv"
    imported = run(EXECUTABLE, "contacts", "import", "--json", str(sample), env=env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    listed = run(EXECUTABLE, "contacts", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = sum(1 for line in sample.read_text().splitlines()[1:] if line.strip())
    assert len(json.loads(listed.stdout)) == rows


def test_console_starts_offscreen_and_saves_screenshots(tmp_path: Path) -> None:
    # --demo: the console imports the bundled sample contacts, starts the embedded Redis,
    # the gateway and a worker from the bundle, and sends a campaign from Compose.
    shots = tmp_path / "shots"
    result = run(EXECUTABLE, "gui", "--screenshot-dir", str(shots), "--demo",
                 env=no_python_env(tmp_path, QT_QPA_PLATFORM="offscreen"))
    assert result.returncode == 0, result.stdout + result.stderr
    saved = sorted(p.name for p in shots.glob("*.png"))
    assert {"compose.png", "contacts.png", "campaigns.png", "settings.png",
            "dashboard.png"} <= set(saved)
    image = QImage(str(shots / "compose.png"))
    assert not image.isNull()
    assert image.width() >= 760  # the window's minimum size
    assert image.height() >= 520
    # The Dashboard's pyqtgraph charts drew, with QtOpenGL left out of the bundle
    # (packaging/rthook_qtopengl_stand_in.py).
    assert not QImage(str(shots / "dashboard.png")).isNull()


@pytest.mark.skipif(shutil.which("xvfb-run") is None,
                    reason="xvfb-run is not installed (apt install xvfb): no X server to try")
def test_console_starts_on_x11_with_the_bundled_xcb_plugin(tmp_path: Path) -> None:
    # Qt aborts at start when the xcb platform plugin or a library it needs cannot load.
    shots = tmp_path / "shots"
    env = no_python_env(tmp_path, QT_QPA_PLATFORM="xcb")
    env["PATH"] = f"{env['PATH']}:/usr/bin:/bin"  # for xvfb-run itself, not for the app
    result = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1440x900x24", str(EXECUTABLE), "gui",
         "--screenshot-dir", str(shots)],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert QImage(str(shots / "contacts.png")).width() >= 760


def the_one(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if not found:
        pytest.skip(f"no {pattern} in dist/: 'make dist' builds it")
    assert len(found) == 1, f"more than one {pattern} in dist/: {found}"
    return found[0]


def test_deb_installs_the_bundle_launcher_menu_entry_and_icons(tmp_path: Path) -> None:
    deb = the_one(f"relaydesk_{__version__}_*.deb")
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Depends"],
                            capture_output=True, text=True, check=True).stdout
    assert f"Package: relaydesk\nVersion: {__version__}\n" in fields
    assert "libc6 (>= " in fields
    assert "libpq5" in fields  # psycopg opens it by name: no ELF header of the bundle says so

    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    installed = root / "opt" / "relaydesk" / "relaydesk"
    assert os.access(installed, os.X_OK)
    launcher = root / "usr" / "bin" / "relaydesk"
    assert os.access(launcher, os.X_OK)
    assert 'exec /opt/relaydesk/relaydesk "$@"' in launcher.read_text()
    desktop_file = root / "usr" / "share" / "applications" / "relaydesk.desktop"
    entry = desktop_file.read_text()
    assert "Exec=relaydesk gui" in entry
    assert "Icon=relaydesk" in entry
    if shutil.which("desktop-file-validate"):
        validated = subprocess.run(["desktop-file-validate", str(desktop_file)],
                                   capture_output=True, text=True, check=False)
        assert validated.returncode == 0, validated.stdout
        assert validated.stdout == ""  # no hints either
    hicolor = root / "usr" / "share" / "icons" / "hicolor"
    assert (hicolor / "scalable" / "apps" / "relaydesk.svg").is_file()
    for size in (16, 32, 48, 128, 256):
        icon = QImage(str(hicolor / f"{size}x{size}" / "apps" / "relaydesk.png"))
        assert (icon.width(), icon.height()) == (size, size)

    # The installed copy works on its own, as it would from /opt/relaydesk.
    check_report(selftest(installed, no_python_env(tmp_path)), installed)


def test_tarball_holds_a_working_bundle(tmp_path: Path) -> None:
    tarball = the_one(f"relaydesk-{__version__}-linux-*.tar.gz")
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path, filter="tar")
    executable = tmp_path / f"relaydesk-{__version__}" / "relaydesk"
    result = run(executable, "--version", env=no_python_env(tmp_path))
    assert result.stdout.strip() == f"relaydesk, version {__version__}", result.stderr

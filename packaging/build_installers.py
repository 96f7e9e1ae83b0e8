"""Build the Linux installers from the PyInstaller bundle (``make dist`` runs this after
PyInstaller): ``dist/relaydesk-VERSION-linux-ARCH.tar.gz`` (the bundle folder as it is)
and ``dist/relaydesk_VERSION_ARCH.deb`` (the bundle in /opt/relaydesk, a ``relaydesk``
launcher in /usr/bin, a menu entry and hicolor icons). Offline: nothing is downloaded.

The .deb's Depends are worked out from the bundle itself: every shared library that its
binaries load from outside the bundle (glibc, the GL and X11 client libraries that must
match the machine) is looked up with ``dpkg -S``, and libpq5, which psycopg opens by
name, is added. Prints one JSON summary at the end.

Run from the repository root with the venv's Python: ``python packaging/build_installers.py``.
With ``--check-nsis`` it also checks that the Windows installer script compiles (on a
placeholder folder; no installer is produced: that needs a bundle built on Windows, see
docs/packaging.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINUX = ROOT / "packaging" / "linux"
DEFAULT_MAINTAINER = "RelayDesk maintainers <maintainers@relaydesk.invalid>"
# Libraries Qt's X11 and Wayland plugins load. PyInstaller bundles those it finds on the
# build machine; one that is missing there is not in the bundle, so the .deb depends on
# its package instead (and the .tar.gz needs it on the target: a warning says so).
KNOWN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libwayland-cursor.so.0": "libwayland-cursor0",
    "libwayland-egl.so.1": "libwayland-egl1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
}
# Loaded by name at run time, so no ELF header of the bundle names it: psycopg's
# pure-Python implementation opens libpq with ctypes (build.spec leaves psycopg's binary
# build out) when RELAYDESK_DATABASE_URL points at PostgreSQL.
LOADED_BY_NAME = {"libpq5"}


def fail(message: str) -> None:
    raise SystemExit(f"build_installers: {message}")


def version() -> str:
    sys.path.insert(0, str(ROOT))
    import engine

    return str(engine.__version__)


def deb_arch() -> str:
    if shutil.which("dpkg"):
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                              text=True, check=True).stdout.strip()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def check_bundle(bundle: Path, expected_version: str) -> Path:
    executable = bundle / "relaydesk"
    if not os.access(executable, os.X_OK):
        fail(f"{executable} is missing: build the bundle first (make dist, or "
             "'.venv/bin/pyinstaller --noconfirm build.spec')")
    shown = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                           timeout=120, check=False)
    if shown.returncode != 0 or expected_version not in shown.stdout:
        fail(f"{executable} --version answered {shown.stdout.strip() or shown.stderr.strip()!r}"
             f", expected version {expected_version}: rebuild the bundle")
    return executable


def tree_size(path: Path) -> int:
    """Bytes in the files under ``path`` (symlinks counted once, as links)."""
    total = 0
    for entry in path.rglob("*"):
        if entry.is_symlink():
            continue
        if entry.is_file():
            total += entry.stat().st_size
    return total


# --- .tar.gz ------------------------------------------------------------------------------

def build_tarball(bundle: Path, target: Path, top: str) -> Path:
    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(target, "w:gz", compresslevel=6) as archive:
        archive.add(bundle, arcname=top, filter=owned_by_root)
    return target


# --- .deb ---------------------------------------------------------------------------------

def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def outside_libraries(bundle: Path) -> tuple[set[str], set[str]]:
    """(paths of libraries loaded from outside the bundle, sonames not found at all), as
    the bundle's bootloader sets the library path (its _internal folder first)."""
    internal = bundle / "_internal"
    env = {**os.environ, "LD_LIBRARY_PATH": f"{internal}:{internal / 'PySide6' / 'Qt' / 'lib'}"}
    outside: set[str] = set()
    missing: set[str] = set()
    elves = [p for p in bundle.rglob("*") if p.is_file() and not p.is_symlink() and _is_elf(p)]
    for elf in elves:
        result = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, env=env,
                                check=False)
        for line in result.stdout.splitlines():
            match = re.match(r"\s*(\S+) => (not found|(/\S+))", line)
            if not match:
                continue
            soname, where = match.group(1), match.group(2)
            if where == "not found":
                missing.add(soname)
            elif not Path(where).resolve().is_relative_to(bundle.resolve()):
                outside.add(where)
    return outside, missing


def owning_packages(paths: set[str]) -> tuple[set[str], set[str]]:
    """(Debian packages owning these files, files no package owns)."""
    packages: set[str] = set()
    unowned: set[str] = set()
    for path in sorted(paths):
        candidates = {path, str(Path(path).resolve())}
        # merged /usr: a file may be registered under /lib or /usr/lib
        candidates |= {c.replace("/usr/lib/", "/lib/", 1) for c in list(candidates)}
        candidates |= {c.replace("/lib/", "/usr/lib/", 1) for c in list(candidates)
                       if c.startswith("/lib/")}
        owner = None
        for candidate in sorted(candidates):
            result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True,
                                    check=False)
            if result.returncode == 0:
                owner = result.stdout.split(":", 1)[0].strip()
                break
        if owner:
            packages.add(owner)
        else:
            unowned.add(path)
    return packages, unowned


def depends(bundle: Path) -> tuple[str, dict[str, list[str]]]:
    outside, missing = outside_libraries(bundle)
    packages, unowned = owning_packages(outside) if shutil.which("dpkg") else (set(), outside)
    packages |= {KNOWN_PACKAGES[name] for name in missing if name in KNOWN_PACKAGES}
    if missing:
        print("build_installers: not in the bundle, as not installed on this machine: "
              f"{', '.join(sorted(missing))}. The .deb depends on them; the .tar.gz needs "
              "them on the target. To bundle them, install "
              f"{' '.join(sorted(KNOWN_PACKAGES.get(m, m) for m in missing))} and rebuild.",
              file=sys.stderr)
    glibc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libc6"], capture_output=True,
                           text=True, check=False).stdout
    upstream = re.match(r"(\d+\.\d+)", glibc)
    parts = []
    for package in sorted(packages | LOADED_BY_NAME | {"libc6"}):
        if package == "libc6" and upstream:
            parts.append(f"libc6 (>= {upstream.group(1)})")
        else:
            parts.append(package)
    notes = {"not found on this machine": sorted(missing - set(KNOWN_PACKAGES)),
             "owned by no package": sorted(unowned)}
    return ", ".join(parts), notes


def build_deb(bundle: Path, target: Path, relaydesk_version: str, arch: str,
              work: Path) -> tuple[Path, str, dict[str, list[str]]]:
    root = work / "root"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(bundle, root / "opt" / "relaydesk", symlinks=True)
    launcher = root / "usr" / "bin" / "relaydesk"
    launcher.parent.mkdir(parents=True)
    shutil.copy2(LINUX / "relaydesk.sh", launcher)
    launcher.chmod(0o755)
    applications = root / "usr" / "share" / "applications"
    applications.mkdir(parents=True)
    shutil.copy2(LINUX / "relaydesk.desktop", applications / "relaydesk.desktop")
    hicolor = root / "usr" / "share" / "icons" / "hicolor"
    subprocess.run([sys.executable, str(ROOT / "packaging" / "icons.py"), "--png-dir",
                    str(hicolor)], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    scalable = hicolor / "scalable" / "apps"
    scalable.mkdir(parents=True)
    shutil.copy2(ROOT / "resources" / "icons" / "relaydesk.svg", scalable / "relaydesk.svg")
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
        folder.chmod(0o755)

    dep_line, notes = depends(bundle)
    control_dir = root / "DEBIAN"
    control_dir.mkdir()
    installed_kib = (tree_size(root) + 1023) // 1024
    control = (LINUX / "control.in").read_text(encoding="utf-8")
    for key, value in {"VERSION": relaydesk_version, "ARCH": arch,
                       "INSTALLED_SIZE": str(installed_kib), "DEPENDS": dep_line,
                       "MAINTAINER": os.environ.get("RELAYDESK_DEB_MAINTAINER",
                                                    DEFAULT_MAINTAINER)}.items():
        control = control.replace(f"@{key}@", value)
    (control_dir / "control").write_text(control, encoding="utf-8")
    for script in ("postinst", "postrm"):
        shutil.copy2(LINUX / script, control_dir / script)
        (control_dir / script).chmod(0o755)
    target.unlink(missing_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(target)],
                   check=True, stdout=subprocess.DEVNULL)
    return target, dep_line, notes


def validate_desktop_file() -> str:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        print("build_installers: desktop-file-validate not found, the menu entry was not "
              "validated (Debian/Ubuntu: apt install desktop-file-utils)", file=sys.stderr)
        return "skipped: desktop-file-validate not installed"
    result = subprocess.run([tool, str(LINUX / "relaydesk.desktop")], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0 or result.stdout.strip():
        fail(f"relaydesk.desktop is not valid:\n{result.stdout}{result.stderr}")
    return "valid"


def check_nsis(relaydesk_version: str) -> str:
    """Compile the NSIS script against a placeholder bundle, to catch script errors here;
    the output is thrown away (a real installer needs the Windows-built bundle)."""
    tool = shutil.which("makensis")
    if tool is None:
        return "skipped: makensis not installed (Debian/Ubuntu: apt install nsis)"
    with tempfile.TemporaryDirectory() as tmp:
        placeholder = Path(tmp) / "relaydesk"
        (placeholder / "_internal").mkdir(parents=True)
        (placeholder / "relaydesk.exe").write_bytes(b"placeholder, not a program")
        icon = Path(tmp) / "relaydesk.ico"
        subprocess.run([sys.executable, str(ROOT / "packaging" / "icons.py"), "--ico",
                        str(icon)], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        result = subprocess.run(
            [tool, "-V2", f"-DVERSION={relaydesk_version}", f"-DBUNDLE={placeholder}",
             f"-DICON={icon}", f"-DOUTFILE={Path(tmp) / 'check.exe'}",
             str(ROOT / "packaging" / "windows" / "relaydesk.nsi")],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            fail(f"packaging/windows/relaydesk.nsi does not compile:\n{result.stdout}"
                 f"{result.stderr}")
    return "script compiles (no installer built: it needs a Windows-built bundle)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the Linux installers from dist/relaydesk.")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "installers")
    parser.add_argument("--check-nsis", action="store_true")
    args = parser.parse_args(argv)
    dist: Path = args.dist.resolve()
    bundle = dist / "relaydesk"
    relaydesk_version = version()
    check_bundle(bundle, relaydesk_version)
    if shutil.which("dpkg-deb") is None:
        fail("dpkg-deb is needed for the .deb (Debian/Ubuntu: apt install dpkg)")
    arch = deb_arch()
    machine = platform.machine()
    args.work.mkdir(parents=True, exist_ok=True)

    desktop = validate_desktop_file()
    tarball = build_tarball(bundle, dist / f"relaydesk-{relaydesk_version}-linux-{machine}.tar.gz",
                            f"relaydesk-{relaydesk_version}")
    deb, dep_line, notes = build_deb(bundle, dist / f"relaydesk_{relaydesk_version}_{arch}.deb",
                                     relaydesk_version, arch, args.work / "deb")
    nsis = check_nsis(relaydesk_version) if args.check_nsis else "not checked"
    summary = {
        "version": relaydesk_version,
        "bundle": str(bundle.relative_to(ROOT) if bundle.is_relative_to(ROOT) else bundle),
        "bundle_bytes": tree_size(bundle),
        "tarball": tarball.name, "tarball_bytes": tarball.stat().st_size,
        "deb": deb.name, "deb_bytes": deb.stat().st_size, "deb_depends": dep_line,
        "deb_notes": {k: v for k, v in notes.items() if v},
        "desktop_file": desktop, "nsis": nsis,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

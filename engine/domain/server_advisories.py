"""Which Redis and Valkey releases carry published remote-code-execution holes.

Pure: a server's name and version in, a warning out (or None); server_identity reads
the name and version from the server's own INFO answer. RelayDesk runs Lua scripts
on its Redis, and the holes below are in Redis's Lua engine, so an operator should know
when the server in use predates their fixes. It only warns: a distribution's patched build
can carry an old version number, and refusing to start would stop an operator whose server
is in fact fixed.

Each advisory lists, per release branch (major, minor), the first release that fixes it.
A version on a listed branch is affected below that release; a version on an unlisted
branch older than the newest listed one is affected too (that branch got no fix, e.g.
Redis 7.0, which was out of support by then); a newer branch is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Version = tuple[int, int, int]


@dataclass(frozen=True)
class Advisory:
    cves: tuple[str, ...]
    summary: str
    fixed: dict[str, dict[tuple[int, int], Version]]  # server name -> branch -> first fix


ADVISORIES: tuple[Advisory, ...] = (
    # Redis GHSA-4789-qfc9-5f9q and its three siblings (published 2025-10-03); Valkey fixed
    # the same code in 7.2.11, 8.0.6, 8.1.4 and 9.0.0 (Valkey advisory GHSA-9rfg-jx7v-52p6).
    Advisory(
        ("CVE-2025-49844", "CVE-2025-46817", "CVE-2025-46818", "CVE-2025-46819"),
        "Lua use-after-free and overflows, possible remote code execution",
        {"redis": {(6, 2): (6, 2, 20), (7, 2): (7, 2, 11), (7, 4): (7, 4, 6),
                   (8, 0): (8, 0, 4), (8, 2): (8, 2, 2)},
         "valkey": {(7, 2): (7, 2, 11), (8, 0): (8, 0, 6), (8, 1): (8, 1, 4),
                    (9, 0): (9, 0, 0)}}),
    # Lua bit library stack overflow (2024-10-02).
    Advisory(
        ("CVE-2024-31449",),
        "Lua stack overflow, possible remote code execution",
        {"redis": {(6, 2): (6, 2, 16), (7, 2): (7, 2, 6), (7, 4): (7, 4, 1)},
         "valkey": {(7, 2): (7, 2, 7), (8, 0): (8, 0, 1)}}),
)

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> Version | None:
    """'7.2.4' -> (7, 2, 4); None for anything that does not start like a version."""
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def _affected(version: Version, fixed: dict[tuple[int, int], Version]) -> bool:
    branch = version[:2]
    if branch in fixed:
        return version < fixed[branch]
    return branch < max(fixed)


def known_vulnerable(server_name: str, version: str) -> str | None:
    """A warning naming the CVEs when this server release is known to be affected, else None.

    ``server_name`` is what INFO reports ('redis' when it reports none, 'valkey'); an
    unknown server or version gives None: RelayDesk only warns about what it knows.
    """
    parsed = parse_version(version)
    name = server_name.strip().lower()
    if parsed is None:
        return None
    found = [a for a in ADVISORIES if name in a.fixed and _affected(parsed, a.fixed[name])]
    if not found:
        return None
    cves = ", ".join(cve for advisory in found for cve in advisory.cves)
    what = "; ".join(advisory.summary for advisory in found)
    return (f"{server_name} {version} is a release known to be vulnerable ({cves}: {what}). "
            "Upgrade it, unless your distribution has patched this build (a patched build "
            "keeps its old version number).")


def server_identity(server_info: dict[str, Any]) -> dict[str, Any]:
    """Which server answers, from its INFO server section: server_name ('valkey', or 'redis'
    for Redis, which reports no name), server_version (Valkey's own version: its
    redis_version is a fixed 7.2.4 kept for clients), and server_warning, the text of
    known_vulnerable() or None."""
    name = str(server_info.get("server_name") or "redis")
    version = str(server_info.get(f"{name}_version") or server_info.get("redis_version") or "")
    return {"server_name": name, "server_version": version or None,
            "server_warning": known_vulnerable(name, version) if version else None}

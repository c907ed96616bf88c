"""Which hook scripts are installed: getCapabilities' `hooks` key.

Shape (upstream's): `{point_dir: {script_name: {"checksum": sha256 hex}}}` with only
the scripts that would run — regular files (symlinks to them count) with the execute
bit for this process — and only the point directories that hold at least one.
A script that cannot be read gets an empty checksum rather than hiding the others.

Blocking (reads every script): call it from a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger("vdsm.hooks.inventory")


def runnable_scripts(point_dir: Path) -> list[Path]:
    """The scripts of one hook point in the order they run (lexicographic)."""
    try:
        entries = list(point_dir.iterdir())
    except OSError:
        return []
    return sorted(
        (p for p in entries if p.is_file() and os.access(p, os.X_OK)),
        key=lambda p: p.name,
    )


def checksum(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 16), b""):
                digest.update(chunk)
    except OSError as e:
        log.warning("cannot read hook %s: %s", path, e)
        return ""
    return digest.hexdigest()


def installed_hooks(hooks_dir: Path) -> dict[str, dict[str, dict[str, str]]]:
    hooks: dict[str, dict[str, dict[str, str]]] = {}
    try:
        points = sorted(p for p in hooks_dir.iterdir() if p.is_dir())
    except OSError:
        return hooks
    for point in points:
        scripts = {s.name: {"checksum": checksum(s)} for s in runnable_scripts(point)}
        if scripts:
            hooks[point.name] = scripts
    return hooks

"""Bench scenarios that need the kernel lab: one guest boot runs `python -m <module>
--lab-inner $LAB_OUT ...` and the figures come back as a JSON file in $LAB_OUT."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(
    module: str,
    result: str,
    *,
    args: str = "",
    timeout: int = 600,
    keep: Callable[[Path], None] | None = None,
) -> dict[str, Any] | str:
    """The figures in `result`, or why they could not be measured.  `keep` may copy
    more of the guest's output before it is deleted."""
    if os.geteuid() != 0:
        return "skipped: needs root"
    if shutil.which("qemu-system-x86_64") is None:
        return "skipped: no qemu-system-x86_64 for the kernel lab"
    with tempfile.TemporaryDirectory(prefix="vdsm-bench-lab-out-") as out:
        command = f"{sys.executable} -m {module} {args} --lab-inner $LAB_OUT"
        proc = subprocess.run(
            [str(ROOT / "tests" / "lab" / "run-in-lab"), "-t", str(timeout), "-o", out, command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout + 300,
        )
        if keep is not None:
            keep(Path(out))
        path = Path(out) / result
        if proc.returncode != 0 or not path.exists():
            return f"failed (exit {proc.returncode}): {proc.stdout[-1500:]}{proc.stderr[-500:]}"
        figures: dict[str, Any] = json.loads(path.read_text())
        return figures

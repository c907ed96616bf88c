"""Run an inner pytest session over a test file, with the lab plugin, for tests of the lab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_pytest(
    tmp_path: Path,
    source: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    name: str = "test_inner.py",
) -> subprocess.CompletedProcess[str]:
    """Write `source` as a test file under `tmp_path` and run pytest on it in a child."""
    directory = tmp_path / "inner"
    directory.mkdir(exist_ok=True)
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / name).write_text(source)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.lab.fixtures",
            "-c",
            str(directory / "pytest.ini"),
            "--rootdir",
            str(directory),
            "-p",
            "no:cacheprovider",
            "-rA",
            str(directory / name),
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )

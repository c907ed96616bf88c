"""The host side of the kernel lab: one guest boot runs every `lab` test (tests/lab/guest
and any other test marked `lab`), and its outcome is this test's outcome.

The guest's pytest output is in the failure message; its junit report is copied to
$VDSM_TEST_ARTIFACTS/lab-guest.xml when tools/run-tests sets that variable.  Extra
arguments for the guest's pytest: VDSM_LAB_PYTEST_ARGS (e.g. "-k watchdog").
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from tests.lab.fixtures import require_command

pytestmark = [pytest.mark.kernel_lab, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RUN_IN_LAB = Path(__file__).with_name("run-in-lab")
LAB_TIMEOUT = int(os.environ.get("VDSM_LAB_TIMEOUT", "1500"))
ALLOWED_SKIPS = re.compile(r"\b(not root|no /dev/kvm)\b", re.IGNORECASE)


def lab_test_files() -> list[str]:
    """Test files that mark tests `lab` (found on the host: collecting the whole suite in
    the guest would cost minutes, Python being 20-30x slower there)."""
    marked = re.compile(r"mark\.lab\b")
    return sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("test_*.py")
        if marked.search(p.read_text(errors="replace"))
    )


def guest_command(junit: str) -> str:
    extra = shlex.split(os.environ.get("VDSM_LAB_PYTEST_ARGS", ""))
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "lab",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        "-rA",
        "-v",
        "--durations=10",
        *extra,
    ]
    if not any(a.startswith("tests") for a in extra):
        argv += lab_test_files()
    # $LAB_OUT (the guest's export back to the host) must stay unquoted for the guest shell
    return " ".join(shlex.quote(a) for a in argv) + f" --junitxml={junit}"


def parse_junit(path: Path) -> dict[str, object]:
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failures = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skips = []
    for case in root.iter("testcase"):
        for skipped in case.findall("skipped"):
            if skipped.get("type") != "pytest.xfail":
                skips.append(
                    (f"{case.get('classname')}.{case.get('name')}", skipped.get("message", ""))
                )
    return {"tests": total, "failures": failures, "skips": skips}


@pytest.mark.timeout(LAB_TIMEOUT + 300)  # the guest run has its own, longer limit
def test_lab_tests_pass_in_the_kernel_lab(tmp_path: Path) -> None:
    require_command("qemu-system-x86_64", "qemu-system-x86")
    require_command("cpio", "cpio")
    out = tmp_path / "out"
    argv = [
        str(RUN_IN_LAB),
        "-t",
        str(LAB_TIMEOUT),
        "-o",
        str(out),
        guest_command("$LAB_OUT/junit.xml"),
    ]
    t0 = time.monotonic()
    # The guest's /tmp (and the loop LUNs' backing files in it) is a tmpfs: the block
    # storage flow writes a few hundred MiB of volume data there.
    env = {**os.environ, "LAB_MEM": os.environ.get("LAB_MEM", "2048M")}
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=LAB_TIMEOUT + 120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # run-in-lab and its qemu
        output, _ = proc.communicate()
        pytest.fail(
            f"the kernel lab did not finish in {LAB_TIMEOUT + 120} s:\n{output}", pytrace=False
        )
    elapsed = time.monotonic() - t0
    junit = out / "junit.xml"
    artifacts = os.environ.get("VDSM_TEST_ARTIFACTS")
    if artifacts and junit.exists():
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(junit, Path(artifacts) / "lab-guest.xml")
    print(f"kernel lab: exit status {proc.returncode} after {elapsed:.1f} s")

    meaning = {124: " (timed out)", 125: " (the guest died)", 2: " (the lab cannot start)"}
    assert proc.returncode == 0, (
        f"the kernel lab run failed with exit status {proc.returncode}"
        f"{meaning.get(proc.returncode, '')}; guest output:\n{output}"
    )
    assert junit.exists(), f"the guest wrote no junit report; guest output:\n{output}"
    result = parse_junit(junit)
    assert result["tests"], f"no lab test ran in the guest; guest output:\n{output}"
    bad = [
        (name, why)
        for name, why in result["skips"]  # type: ignore[attr-defined]
        if not ALLOWED_SKIPS.search(why)
    ]
    assert not bad, f"lab tests skipped in the guest: {bad}; guest output:\n{output}"

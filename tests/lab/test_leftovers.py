"""Leftovers: fixtures clean up after failing tests, and sessions sweep after crashed ones."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.lab import leftovers
from tests.lab.fixtures import require_kvm
from tests.lab.inner import run_pytest
from tests.lab.services import alive

pytestmark = pytest.mark.integration

INNER = """
import json, os, signal, subprocess, pathlib

def test_makes_things(loop_device, lvm_vg, netns, libvirt_domain):
    dev = loop_device("64m")
    vg = lvm_vg(tags=["x"])
    dom = libvirt_domain(memory_mib=32)
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True,
                               env={**os.environ, "VDSM_LAB_OWNER": str(os.getpid())})
    pathlib.Path(os.environ["LAB_RECORD"]).write_text(json.dumps({
        "owner": os.getpid(),
        "loops": [dev.path, vg.pv.path],
        "files": [str(dev.backing), str(vg.pv.backing)],
        "netns": netns.name,
        "sleeper": sleeper.pid,
        "domain": dom.name(),
        "qemu": int(pathlib.Path(f"/run/libvirt/qemu/{dom.name()}.pid").read_text()),
    }))
    if os.environ["LAB_MODE"] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    sleeper.kill(); sleeper.wait()
    raise AssertionError("failing on purpose")
"""


def wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still runs"
        time.sleep(0.05)


def attached_loops() -> set[str]:
    return {dev for dev, _ in leftovers.loop_devices()}


def domains() -> list[str]:
    return leftovers.libvirt_domains()


def test_fixtures_clean_up_after_a_failing_test(tmp_path: Path, libvirt_uri: str) -> None:
    require_kvm()
    record = tmp_path / "record.json"
    proc = run_pytest(tmp_path, INNER, env={"LAB_RECORD": str(record), "LAB_MODE": "fail"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failing on purpose" in proc.stdout
    made = json.loads(record.read_text())
    assert not set(made["loops"]) & attached_loops()
    assert not any(Path(f).exists() for f in made["files"])
    assert made["netns"] not in leftovers.namespaces()
    assert made["domain"] not in domains()
    wait_gone(made["qemu"])


def test_next_session_sweeps_what_a_killed_session_left(tmp_path: Path, libvirt_uri: str) -> None:
    require_kvm()
    record = tmp_path / "record.json"
    proc = run_pytest(tmp_path, INNER, env={"LAB_RECORD": str(record), "LAB_MODE": "crash"})
    assert proc.returncode == -9, proc.stdout + proc.stderr
    made = json.loads(record.read_text())
    try:
        # the killed session left everything behind, and it is recognized as orphaned
        assert set(made["loops"]) <= attached_loops()
        assert made["netns"] in leftovers.namespaces()
        assert alive(made["sleeper"])
        assert made["domain"] in domains()
        found = {(item.kind, item.owner) for item in leftovers.find()}
        assert {
            ("loop", made["owner"]),
            ("netns", made["owner"]),
            ("process", made["owner"]),
            ("domain", made["owner"]),
        } <= found

        nothing = run_pytest(tmp_path, "def test_nothing():\n    pass\n", name="test_next.py")
        assert nothing.returncode == 0, nothing.stdout + nothing.stderr
        assert "removed a leftover of a dead test session" in nothing.stdout
        assert not set(made["loops"]) & attached_loops()
        assert made["netns"] not in leftovers.namespaces()
        assert made["domain"] not in domains()
        wait_gone(made["sleeper"])
        wait_gone(made["qemu"])
    finally:
        for item in leftovers.find():
            if item.owner == made["owner"]:
                leftovers.remove(item)

"""Kernel lab: the project's udev rules (udev/), installed by run-in-lab as a package
installs them, keep udev's inotify watch off a storage domain's LVs and only there."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.resources import VolumeGroup, run

pytestmark = pytest.mark.lab

RULES = Path(__file__).resolve().parents[3] / "udev"
CHANGE = re.compile(r"^UDEV\s+\[[\d.]+\]\s+change\s+\S+/(dm-\d+) \(block\)")


def write_and_close(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\1" * 4096, 0)
    finally:
        os.close(fd)  # the close of a watched device is what udev turns into "change"


def test_rules_are_installed_as_shipped() -> None:
    shipped = sorted(RULES.glob("*.rules"))
    assert shipped, f"no rules in {RULES}"
    for rule in shipped:
        assert (Path("/etc/udev/rules.d") / rule.name).read_bytes() == rule.read_bytes()


def test_a_domain_lv_written_raises_no_change_event_a_plain_lv_does(
    lvm_vg: Callable[..., VolumeGroup],
) -> None:
    run(["modprobe", "dm_mod"])
    domain = lvm_vg(tags=["RHAT_storage_domain"], size="64m", name=str(uuid.uuid4()))
    plain = lvm_vg(size="64m")
    domain_lv = domain.create_lv("metadata", "8m", activate=True)
    plain_lv = plain.create_lv("metadata", "8m", activate=True)
    run(["udevadm", "settle", "-t", "30"])
    plain_dm = os.path.basename(os.path.realpath(plain_lv))
    domain_dm = os.path.basename(os.path.realpath(domain_lv))

    monitor = subprocess.Popen(
        ["udevadm", "monitor", "--udev", "--subsystem-match=block"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in monitor.stdout or ():
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    changed: list[str] = []

    def note(line: str) -> None:
        if match := CHANGE.match(line):
            changed.append(match.group(1))

    try:
        while not lines.get(timeout=30).startswith("UDEV "):
            pass  # the header: the monitor listens
        write_and_close(domain_lv)
        write_and_close(plain_lv)
        while plain_dm not in changed:
            note(lines.get(timeout=60))  # queue.Empty: no event for the plain LV
        # events of two devices may finish in either order: let udev finish them all
        run(["udevadm", "settle", "-t", "30"])
        time.sleep(1)
        while not lines.empty():
            note(lines.get())
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)
    assert plain_dm in changed, f"no change event for the plain LV; saw {changed}"
    assert domain_dm not in changed

"""Kernel lab: softdog + wdmd + `sanlock daemon -w 1`, as on a real host."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab import services
from tests.lab.fixtures import Lockspace, SanlockDaemon
from tests.lab.resources import run

pytestmark = pytest.mark.lab


def test_sanlock_uses_the_watchdog(
    sanlock: SanlockDaemon, sanlock_lockspace: Callable[..., Lockspace]
) -> None:
    import sanlock as sl

    assert sanlock.watchdog
    assert Path("/dev/watchdog").exists()
    wdmd_pid = services.read_pidfile(Path("/run/wdmd/wdmd.pid"))
    assert wdmd_pid is not None and services.alive(wdmd_pid)
    fds = [os.readlink(f"/proc/{wdmd_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{wdmd_pid}/fd")]
    assert any(f.startswith("/dev/watchdog") for f in fds), fds
    assert "-w 1" in services.cmdline(sanlock.pid or 0)

    ls = sanlock_lockspace(host_id=1)
    # sanlock arms a wdmd connection per lockspace: the host dies if renewals stop
    dump = run(["wdmd", "--dump"]).stdout
    assert f"sanlock_{ls.name}:1" in dump, dump

    disks = ls.add_resource("SDM")
    fd = ls.register()
    sl.acquire(ls.bname, b"SDM", disks, slkfd=fd)
    assert [o["host_id"] for o in sl.read_resource_owners(ls.bname, b"SDM", disks)] == [1]
    sl.release(ls.bname, b"SDM", disks, slkfd=fd)

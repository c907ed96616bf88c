"""Kernel lab: the SDM lease under sanlock's watchdog (softdog + wdmd + sanlock -w 1).

On a real host sanlock arms wdmd for every lockspace it joins: if it cannot renew the
host id (storage lost) and cannot kill the lease holders in time, the watchdog resets
the host.  Here the DomainLock joins and takes the SDM lease with that armed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.fixtures import SanlockDaemon
from tests.lab.resources import LoopDevice, run, unique_name
from vdsm.storage.clusterlock import DomainLock, SdmInquiry
from vdsm.storage.spmwatchdog import LeaseWatchdog
from vdsm.system.sanlock import Sanlock

pytestmark = pytest.mark.lab

MiB = 1024 * 1024


def wdmd_clients() -> str:
    return run(["wdmd", "--dump"]).stdout


def test_spm_lease_with_the_watchdog_armed(
    sanlock: SanlockDaemon, loop_device: Callable[[int | str], LoopDevice]
) -> None:
    assert sanlock.watchdog and Path("/dev/watchdog").exists()
    # the overlay /tmp of the guest has no O_DIRECT: sanlock areas on loop devices
    ids, leases = loop_device("1m").path, loop_device("4m").path
    name = unique_name()
    client = f"sanlock_{name}:1"
    timings: dict[str, float] = {}

    async def scenario() -> None:
        adapter = Sanlock(io_timeout=1)
        lock = DomainLock(
            adapter, name, Path(ids), Path(leases), alignment=MiB, block_size=512, io_timeout=1
        )
        await lock.format()
        t0 = time.monotonic()
        await lock.join(1)
        try:
            await lock.wait_joined(1, timeout=60)
            timings["join"] = time.monotonic() - t0
            # sanlock connected to wdmd for this lockspace: the host is now fenced by
            # the watchdog should the renewals stop
            dump = wdmd_clients()
            assert client in dump
            print("wdmd:", *(line for line in dump.splitlines() if client in line))

            t0 = time.monotonic()
            lver = await lock.acquire_sdm()
            timings["acquire"] = time.monotonic() - t0
            assert await lock.inquire_sdm() == SdmInquiry(True, lver, (lock.sdm_disk,))
            assert await lock.sdm_owner() == (lver, 1)
            watchdog = LeaseWatchdog(lock, lver, 1, lambda reason: None)
            assert await watchdog.check() is None

            t0 = time.monotonic()
            await lock.release_sdm()
            timings["release"] = time.monotonic() - t0
            assert await lock.sdm_owner() == (-1, -1)
        finally:
            adapter.close()
            t0 = time.monotonic()
            await lock.leave(1, unused=True)
            timings["leave"] = time.monotonic() - t0
        assert await lock.joined(1) is False

    asyncio.run(scenario())
    print("kernel lab timings:", {k: f"{v:.3f} s" for k, v in timings.items()})
    deadline = time.monotonic() + 10  # sanlock closes its wdmd connection on leaving
    while client in wdmd_clients():
        assert time.monotonic() < deadline, wdmd_clients()
        time.sleep(0.2)

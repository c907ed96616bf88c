"""LeaseWatchdog against the real sanlock daemon: the SDM lease taken away for real.

How a lease really goes away while its holder lives (all shown here or in
test_sanlock_domainlock.py):
- `sanlock client release -r LS:SDM:path:offset -p <pid>` (or the binding's release
  with pid=) from another process releases it; the holder is not told;
- that followed by `sanlock client acquire ... -p <pid>` gives it back with the next
  lver ("moved");
- the daemon dying closes the registration (test_failover_after_the_spm_host_crashed);
- `rem_lockspace` by another process does not leave the holder alive to notice: sanlock
  SIGKILLs it.
Temporary errors are real too: while another process runs a command for our pid (here
an acquire waiting for a frozen owner), the daemon answers our inquire with EBUSY.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.lab.fixtures import SanlockDaemon
from tests.support.sanlock_faults import (
    LabDomain,
    acquire_for,
    client_result,
    lab_domain,
    revoke,
    start_acquire_for,
)
from vdsm import errors
from vdsm.storage.spmwatchdog import LeaseWatchdog
from vdsm.system.sanlock import SanlockError

pytestmark = pytest.mark.integration

INTERVAL = 0.5
SANLK_ACQUIRE_IDLIVE = -243


@pytest.fixture(scope="module")
def domain(sanlock: SanlockDaemon, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabDomain]:
    with lab_domain(tmp_path_factory.mktemp("watchdog")) as d:
        yield d


class Watched:
    """A watchdog running in the domain's loop, recording its on_lost calls."""

    def __init__(self, domain: LabDomain, lver: int, interval: float, **kwargs: int) -> None:
        self.calls: list[tuple[float, str]] = []
        self.watchdog = LeaseWatchdog(domain.lock, lver, interval, self.on_lost, **kwargs)
        self.task = domain.loop.create_task(self.watchdog.run())

    async def on_lost(self, reason: str) -> None:  # async: the lead's kind
        self.calls.append((time.monotonic(), reason))

    async def wait_lost(self, timeout: float) -> tuple[float, str]:
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


def test_lease_released_behind_our_back(domain: LabDomain) -> None:
    lock = domain.lock
    lver = domain.run(lock.acquire_sdm())
    watched = Watched(domain, lver, INTERVAL)
    domain.run(asyncio.sleep(2.2 * INTERVAL))
    assert watched.watchdog.checks >= 2 and not watched.calls  # held: all well

    t0 = time.monotonic()
    revoke(os.getpid(), domain.name, "SDM", *lock.sdm_disk)
    when, reason = domain.run(watched.wait_lost(2 * INTERVAL))
    print(f"\nrevocation noticed after {when - t0:.2f} s (interval {INTERVAL} s)")
    assert when - t0 < 2 * INTERVAL
    assert reason == "SDM lease is not held any more"
    assert domain.run(lock.sdm_owner()) == (-1, -1)
    with pytest.raises(errors.StorageError):
        domain.run(lock.release_sdm())  # not ours any more
    assert not domain.sanlock.leases_held


def test_lease_moved(domain: LabDomain) -> None:
    lock = domain.lock
    lver = domain.run(lock.acquire_sdm())
    watched = Watched(domain, lver, INTERVAL)
    t0 = time.monotonic()
    revoke(os.getpid(), domain.name, "SDM", *lock.sdm_disk)
    assert acquire_for(os.getpid(), domain.name, "SDM", *lock.sdm_disk) == 0
    when, reason = domain.run(watched.wait_lost(2 * INTERVAL))
    assert when - t0 < 2 * INTERVAL
    assert reason == f"SDM lease moved: lver {lver + 1}, expected {lver}"
    domain.run(lock.release_sdm())  # held on our registration: ours to release


def test_cancelled_watchdog_never_reports(domain: LabDomain) -> None:
    lost: list[str] = []
    lver = domain.run(domain.lock.acquire_sdm())
    try:
        watchdog = LeaseWatchdog(domain.lock, lver, 0.1, lost.append)  # sync on_lost
        task = domain.loop.create_task(watchdog.run())
        domain.run(asyncio.sleep(0.35))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            domain.run(task)
        assert watchdog.checks >= 2 and lost == []
        with pytest.raises(RuntimeError):
            domain.run(watchdog.run())
    finally:
        domain.run(domain.lock.release_sdm())
    # A watchdog whose lver is stale (the SPM was restarted) reports at once.
    watchdog = LeaseWatchdog(domain.lock, lver, 0.05, lost.append)
    domain.run(watchdog.run(), timeout=2)
    assert lost == ["SDM lease is not held any more"]


def test_busy_daemon_is_a_temporary_error(domain: LabDomain) -> None:
    """Temporary errors for real: the peer holds STUCK and freezes (a host that stopped
    renewing); another process asks the daemon to acquire STUCK for our pid, and sanlock
    waits for the frozen owner (up to 8 * io_timeout + 60 s) with that command active on
    our registration, answering our inquires with EBUSY meanwhile."""
    lock = domain.lock
    pid = os.getpid()
    stuck = domain.write_resource("STUCK", 2)
    lver = domain.run(lock.acquire_sdm())
    tolerant = Watched(domain, lver, 0.2, max_errors=1000)
    holder = domain.peer.hold(domain.name, "STUCK", *stuck)
    try:
        domain.peer.freeze()
        try:
            acquiring = acquire_while_owner_is_stale(pid, domain, stuck)
            with pytest.raises(SanlockError) as raised:
                domain.run(domain.sanlock.inquire())
            assert raised.value.errno == errno.EBUSY and raised.value.temporary

            strict = Watched(domain, lver, 0.2)  # upstream's 3 tolerated
            t0 = time.monotonic()
            when, reason = domain.run(strict.wait_lost(5))
            print(f"\n4th consecutive EBUSY after {when - t0:.2f} s: {reason}")
            assert reason.startswith("4 consecutive errors checking the SDM lease")
            assert "EBUSY" in reason
            assert strict.watchdog.errors == 3 and strict.watchdog.checks == 4
            assert tolerant.watchdog.errors >= 3 and not tolerant.calls
        finally:
            domain.peer.thaw()
        # The owner renews again: the acquire gives up (or, if the peer's host id
        # expired meanwhile, succeeds); either way our registration is free again.
        t_thaw = time.monotonic()
        output, _ = acquiring.communicate(timeout=30)
        ended = time.monotonic() - t_thaw
        print(f"acquire for our pid ended {ended:.1f} s after the thaw: {output.split()[-1]}")
        result = client_result(subprocess.CompletedProcess([], 0, output, ""))
        assert result in (SANLK_ACQUIRE_IDLIVE, 0), output
        if result == 0:
            revoke(pid, domain.name, "STUCK", *stuck)
        deadline = time.monotonic() + 3
        while tolerant.watchdog.errors:  # the next good check resets the count
            assert time.monotonic() < deadline, "errors not reset after a good check"
            domain.run(asyncio.sleep(0.1))
        assert not tolerant.calls and not tolerant.task.done()
    finally:
        tolerant.task.cancel()
        holder.kill()
        holder.wait()
        domain.run(lock.release_sdm())


def acquire_while_owner_is_stale(
    pid: int, domain: LabDomain, disk: tuple[str, int]
) -> subprocess.Popen[str]:
    """Start acquiring `disk` for pid until sanlock waits instead of refusing at once:
    it judges the owner alive until its own renewal thread has read the owner's delta
    lease unchanged (measured: 1-7 s after the freeze, with io_timeout 1)."""
    t_freeze = time.monotonic()
    deadline = t_freeze + 15
    while True:
        proc = start_acquire_for(pid, domain.name, "STUCK", *disk)
        try:
            output, _ = proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            waited = time.monotonic() - t_freeze
            print(f"\nsanlock waits for the frozen owner {waited:.1f} s after the freeze")
            return proc  # waiting for the owner: stuck
        result = client_result(subprocess.CompletedProcess([], 0, output, ""))
        assert result == SANLK_ACQUIRE_IDLIVE, output
        assert time.monotonic() < deadline, "sanlock kept judging the frozen owner alive"
        time.sleep(0.2)

"""The host id (the sanlock lockspace a domain monitor joins), against the real sanlock
daemon: it comes back after sanlock drops it, it survives a daemon restart (VMs holding
leases keep running, as with upstream), it is given back when monitoring stops, and
never taken from a process that holds a lease in the lockspace."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.sanlock_faults import sanlock_client
from tests.support.storage import Site

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SDM_OFFSET = 1024 * 1024  # V5 domain: the SDM lease is slot 1 of `leases`


def joined_lockspaces(sd: str) -> list[str]:
    status = sanlock_client("status").stdout
    return [line.split()[1] for line in status.splitlines() if line.startswith(f"s {sd}:")]


def acquired(site: Site, sd: str) -> bool:
    stats = site.vdsm.call("Host.getStorageRepoStats", domains=[sd])
    return bool(stats.get(sd, {}).get("acquired"))


def daemon_log(site: Site) -> str:
    return site.daemon.log_path.read_text(errors="replace")


def wait_for(predicate, timeout: float, what: str) -> float:
    """Seconds it took for predicate() to hold."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - start


def test_host_id_lifecycle(vdsmd, sanlock, shared_tmp_path: Path):
    site = Site(vdsmd, shared_tmp_path)
    sd, _ = site.new_domain("data")
    site.vdsm.call("Host.startMonitoringDomain", sdUUID=sd, hostID=1)
    wait_for(lambda: acquired(site, sd), 30, "the host id")
    [lockspace] = joined_lockspaces(sd)
    assert lockspace.startswith(f"{sd}:1:")

    # sanlock drops the lockspace (here an administrator removes it): the monitor
    # joins again and the domain reports the host id acquired again.
    log_mark = len(daemon_log(site))
    assert sanlock_client("rem_lockspace", "-s", lockspace).returncode == 0
    back = wait_for(
        lambda: (
            "joining the lockspace" in daemon_log(site)[log_mark:]
            and acquired(site, sd)
            and joined_lockspaces(sd)
        ),
        30,
        "a new join",
    )
    print(f"\nhost id back {back:.1f} s after sanlock dropped the lockspace")

    # A clean daemon stop keeps the lockspace: the restarted daemon finds its host id.
    site.daemon.stop()
    assert joined_lockspaces(sd) == [lockspace]
    site.restart()
    log_mark = len(daemon_log(site))
    site.vdsm.call("Host.startMonitoringDomain", sdUUID=sd, hostID=1)
    wait_for(lambda: acquired(site, sd), 30, "the host id after a restart")
    assert "joining the lockspace" not in daemon_log(site)[log_mark:]

    # Stopping the monitoring gives the host id back.
    site.vdsm.call("Host.stopMonitoringDomain", sdUUID=sd)
    assert not joined_lockspaces(sd)
    site.vdsm.close()


def test_a_lease_holder_keeps_the_lockspace(vdsmd, sanlock, shared_tmp_path: Path):
    """A process holding a lease in the lockspace (a VM with a lease) is never killed by
    the monitor giving the host id back: the lockspace is kept until it is released."""
    site = Site(vdsmd, shared_tmp_path)
    sd, path = site.new_domain("data")
    site.vdsm.call("Host.startMonitoringDomain", sdUUID=sd, hostID=1)
    wait_for(lambda: acquired(site, sd), 30, "the host id")
    [lockspace] = joined_lockspaces(sd)
    leases = path / sd / "dom_md" / "leases"
    holder = subprocess.Popen(
        [
            "sanlock",
            "client",
            "command",
            "-r",
            f"{sd}:SDM:{leases}:{SDM_OFFSET}",
            "-c",
            "/bin/sleep",
            "600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: f"r {sd}:SDM:" in sanlock_client("status").stdout, 30, "the holder's lease"
        )
        site.vdsm.call("Host.stopMonitoringDomain", sdUUID=sd)
        assert holder.poll() is None, "the lease holder was killed"
        assert joined_lockspaces(sd) == [lockspace]
        assert "kept" in site.daemon.log_text()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # With the lease gone, monitoring again and stopping gives the host id back.
    site.vdsm.call("Host.startMonitoringDomain", sdUUID=sd, hostID=1)
    wait_for(lambda: acquired(site, sd), 30, "the host id")
    site.vdsm.call("Host.stopMonitoringDomain", sdUUID=sd)
    assert not joined_lockspaces(sd)
    site.vdsm.close()

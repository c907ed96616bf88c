"""Losing the SPM lease for real (released through sanlock by another process): the
daemon stops acting as SPM at once, writes no more metadata, and panics out as
upstream does; restarted, it can become SPM again."""

from __future__ import annotations

import datetime
import re
import threading
import time
from pathlib import Path

import pytest

from tests.support.sanlock_faults import revoke
from tests.support.storage import CallFailed, Site, Vdsm, check_metadata_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024
INTERVAL = 0.5


def mangle(path: str) -> str:
    return path.replace("_", "__").replace("/", "_")


class Writer(threading.Thread):
    """Changes the pool description (an SPM metadata write) as fast as it can."""

    def __init__(self, daemon, sp: str) -> None:
        super().__init__(daemon=True)
        self.vdsm = Vdsm(daemon, timeout=10)
        self.sp = sp
        self.acknowledged: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                text = f"write {n}"
                try:
                    self.vdsm.call(
                        "StoragePool.setDescription", storagepoolID=self.sp, description=text
                    )
                except CallFailed as e:
                    assert e.code == 654, e  # fenced: not SPM any more
                    continue
                self.acknowledged.append(text)
        except Exception:
            pass  # the daemon died under us: expected


def log_time(line: str) -> float:
    stamp = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})", line)
    assert stamp, line
    when = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return when.timestamp()


def test_lease_loss_fences_and_panics(vdsmd, sanlock, shared_tmp_path: Path):
    site = Site(vdsmd, shared_tmp_path, watchdog_interval=str(INTERVAL))
    daemon, repo, sp = site.daemon, site.repo, site.sp
    sd, local = site.new_domain("master")
    site.new_pool(sd)
    first = site.start_spm()

    writer = Writer(daemon, sp)
    writer.start()
    time.sleep(1.0)  # writes are flowing
    assert writer.acknowledged
    leases = repo / "mnt" / mangle(str(local)) / sd / "dom_md" / "leases"
    revoked_at = time.time()
    revoke(daemon.pid, sd, "SDM", str(leases), MiB)

    # The watchdog notices within two intervals and the daemon kills itself.
    daemon.stopped_by_test = True
    returncode = daemon.proc.wait(timeout=2 * INTERVAL + 10)
    died_at = time.time()
    writer.stop.set()
    writer.join(10)
    assert returncode < 0, "the daemon must die by its own SIGKILL"
    log = daemon.log_text()
    lost = [line for line in log.splitlines() if "SPM lease of pool" in line and "lost" in line]
    assert lost, log[-3000:]
    detected_at = log_time(lost[0])
    assert detected_at - revoked_at <= 2 * INTERVAL + 0.5
    assert died_at - revoked_at <= 2 * INTERVAL + 10
    assert "panic: SPM lease lost" in log

    # Nothing was written to the master's metadata once the loss was detected, and
    # what is there is whole (checksum), the last acknowledged description or later.
    metadata = local / sd / "dom_md" / "metadata"
    assert metadata.stat().st_mtime <= detected_at + 0.001
    values = check_metadata_file(metadata)
    assert values["POOL_DESCRIPTION"].startswith("write ")
    assert int(values["POOL_DESCRIPTION"].split()[1]) >= int(writer.acknowledged[-1].split()[1])

    # Restarted, the host contends again and becomes SPM with a newer lease version.
    site.restart()
    site.connect_pool(sd)
    again = site.start_spm()
    assert again["spmLver"] > first["spmLver"]
    site.teardown()

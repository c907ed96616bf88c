"""Domain monitoring with storage that really hangs (a frozen FUSE mount): the hung
domain is reported invalid within two check intervals, while the healthy domain's
checks, RPC answers and events are not delayed by more than a second."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support.rawstomp import RawStomp
from tests.support.storage import BLANK, Vdsm, new_uuid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INTERVAL = 1.0


class Pinger(threading.Thread):
    """Pings the daemon every 50 ms on its own connection; records the worst answer."""

    def __init__(self, daemon) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.worst = 0.0
        self.count = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with RawStomp(self.daemon_.host, self.daemon_.port) as c:
            c.connect()
            while not self.stop.is_set():
                start = time.monotonic()
                assert c.call("Host.ping2")["result"] is True
                self.worst = max(self.worst, time.monotonic() - start)
                self.count += 1
                time.sleep(0.05)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_hung_domain_stalls_nobody_else(
    vdsmd, sanlock, shared_tmp_path: Path, freezable_mount, veth_pair
):
    repo = shared_tmp_path / "data-center"
    daemon = vdsmd(
        {
            "irs": {"repository": str(repo), "sd_health_check_delay": str(INTERVAL)},
            "sanlock": {"io_timeout": "1"},
        }
    )
    vdsm = Vdsm(daemon)
    healthy = shared_tmp_path / "healthy"
    healthy.mkdir(mode=0o755)
    hung_point = shared_tmp_path / "hung"
    hung_point.mkdir(mode=0o755)
    fm = freezable_mount(mountpoint=hung_point)
    sd_ok, sd_hung = new_uuid(), new_uuid()
    for sd, path in ((sd_ok, healthy), (sd_hung, fm.path)):
        status = vdsm.call(
            "StoragePool.connectStorageServer",
            storagepoolID=BLANK,
            domainType=4,
            connectionParams=[{"id": sd, "connection": str(path)}],
        )
        assert status == [{"id": sd, "status": 0}]
        vdsm.call(
            "StorageDomain.create",
            storagedomainID=sd,
            domainType=4,
            typeArgs=str(path),
            name=sd[:8],
            domainClass=1,
            version=5,
        )
        vdsm.call("Host.startMonitoringDomain", sdUUID=sd, hostID=1)

    def stats():
        return vdsm.call("Host.getStorageRepoStats")

    wait_for(lambda: all(stats()[sd]["acquired"] for sd in (sd_ok, sd_hung)), 30, "host ids")
    assert all(stats()[sd]["valid"] for sd in (sd_ok, sd_hung))

    events = RawStomp(daemon.host, daemon.port)
    events.connect()
    events.subscribe("jms.queue.events")
    pinger = Pinger(daemon)
    pinger.start()
    try:
        fm.freeze()
        frozen_at = time.monotonic()
        invalid = wait_for(
            lambda: (s := stats()) and not s[sd_hung]["valid"] and s, 2 * INTERVAL + 1, "invalid"
        )
        detected = time.monotonic() - frozen_at
        assert invalid[sd_hung]["code"] != 0
        # While it stays hung: the healthy domain keeps being checked on time.
        for _ in range(int(3 / 0.5)):
            s = stats()
            assert s[sd_ok]["valid"] is True
            assert float(s[sd_ok]["lastCheck"]) <= INTERVAL + 1.0, s[sd_ok]
            assert s[sd_hung]["valid"] is False
            time.sleep(0.5)
        # Events still flow: a host network change is announced within its debounce
        # (1 s) plus a second.
        veth_pair()
        created = time.monotonic()
        message = events.expect("MESSAGE", timeout=5)
        assert json.loads(message.body)["method"] == "|net|host_conn|no_id"
        assert time.monotonic() - created <= 2.5
    finally:
        fm.thaw()
        pinger.stop.set()
        pinger.join(10)
        events.close()
    assert pinger.count > 20
    assert pinger.worst < 1.0, f"an RPC answer took {pinger.worst:.2f} s while storage hung"
    print(
        f"\nhung domain detected after {detected:.2f} s; worst RPC answer "
        f"{pinger.worst * 1000:.0f} ms over {pinger.count} pings"
    )
    assert detected <= 2 * INTERVAL + 1
    # After the thaw the domain recovers by itself.
    wait_for(lambda: stats()[sd_hung]["valid"], 10 * INTERVAL, "recovery")
    for sd in (sd_ok, sd_hung):
        vdsm.call("Host.stopMonitoringDomain", sdUUID=sd)
    assert stats() == {}
    vdsm.close()


def test_monitoring_an_unknown_domain_reports_358(vdsmd, sanlock):
    daemon = vdsmd({"irs": {"sd_health_check_delay": str(INTERVAL)}})
    vdsm = Vdsm(daemon)
    sd = str(uuid.uuid4())
    vdsm.call("Host.startMonitoringDomain", sdUUID=sd, hostID=1)
    result = wait_for(
        lambda: (
            vdsm.call("Host.getStorageRepoStats")[sd]["actual"]
            and vdsm.call("Host.getStorageRepoStats")
        ),
        10,
        "a first check",
    )
    assert result[sd]["valid"] is False and result[sd]["code"] == 358
    assert vdsm.call("Host.getStorageRepoStats", domains=[new_uuid()]) == {}
    vdsm.call("Host.stopMonitoringDomain", sdUUID=sd)
    vdsm.close()

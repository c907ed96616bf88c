"""Storage figures for make bench (needs root and a sanlock daemon; the lab starts one).

- spmStart until getSpmStatus says SPM (io_timeout 1), against the bare sanlock calls
  it needs, made in the same run on a fresh lockspace: join (add_lockspace) + acquire.
  The difference is the daemon's overhead.
- Host.getStorageRepoStats with 20 monitored domains: sequential round trips, p50/p99.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from vdsm.client.stomp import StompClient

MiB = 1024 * 1024
BLANK = "00000000-0000-0000-0000-000000000000"


def bare_sanlock(directory: Path) -> float:
    """Seconds for add_lockspace (wait) + register + acquire on a fresh lockspace."""
    import sanlock

    ls = uuid.uuid4().hex[:24].encode()
    ids, leases = directory / "ids", directory / "leases"
    for f in (ids, leases):
        f.touch()
    sanlock.write_lockspace(ls, str(ids), iotimeout=1, align=MiB, sector=512)
    sanlock.write_resource(ls, b"SDM", [(str(leases), MiB)], align=MiB, sector=512)
    started = time.monotonic()
    sanlock.add_lockspace(ls, 1, str(ids), iotimeout=1)
    fd = sanlock.register()
    sanlock.acquire(ls, b"SDM", [(str(leases), MiB)], slkfd=fd)
    elapsed = time.monotonic() - started
    sanlock.release(ls, b"SDM", [(str(leases), MiB)], slkfd=fd)
    os.close(fd)
    sanlock.rem_lockspace(ls, 1, str(ids))
    return elapsed


async def spm_start(port: int, root: Path) -> float:
    """Seconds from spmStart to SPM, on a pool connected just before (not yet joined)."""
    client = await StompClient.connect("127.0.0.1", port)

    async def call(method: str, **params: Any) -> Any:
        return await client.call(method, params, timeout=120)

    sp, sd = str(uuid.uuid4()), str(uuid.uuid4())
    local = root / "master"
    local.mkdir(mode=0o755)
    await call(
        "StoragePool.connectStorageServer",
        storagepoolID=BLANK,
        domainType=4,
        connectionParams=[{"id": "m", "connection": str(local)}],
    )
    await call(
        "StorageDomain.create",
        storagedomainID=sd,
        domainType=4,
        typeArgs=str(local),
        name="bench",
        domainClass=1,
        version=5,
    )
    await call(
        "StoragePool.create",
        storagepoolID=sp,
        name="bench",
        masterSdUUID=sd,
        masterVersion=1,
        domainList=[sd],
        lockRenewalIntervalSec=5,
        leaseTimeSec=60,
        ioOpTimeoutSec=10,
        leaseRetries=3,
    )
    await call(
        "StoragePool.connect",
        storagepoolID=sp,
        hostID=1,
        scsiKey="",
        masterSdUUID=sd,
        masterVersion=1,
    )
    started = time.monotonic()
    task = await call(
        "StoragePool.spmStart",
        storagepoolID=sp,
        prevID=-1,
        prevLver="-1",
        enableScsiFencing="false",
    )
    while (await call("StoragePool.getSpmStatus", storagepoolID=sp))["spmStatus"] != "SPM":
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - started
    await call("Task.clear", taskID=task)
    await call("StoragePool.spmStop", storagepoolID=sp)
    await call("StoragePool.disconnect", storagepoolID=sp, hostID=1, scsiKey="")
    await client.close()
    return elapsed


async def repo_stats(port: int, root: Path, domains: int, count: int) -> list[float]:
    client = await StompClient.connect("127.0.0.1", port)

    async def call(method: str, **params: Any) -> Any:
        return await client.call(method, params, timeout=120)

    ids = [str(uuid.uuid4()) for _ in range(domains)]
    for n, sd in enumerate(ids):
        d = root / f"sd{n}"
        d.mkdir(mode=0o755)
        await call(
            "StoragePool.connectStorageServer",
            storagepoolID=BLANK,
            domainType=4,
            connectionParams=[{"id": sd, "connection": str(d)}],
        )
        await call(
            "StorageDomain.create",
            storagedomainID=sd,
            domainType=4,
            typeArgs=str(d),
            name=f"bench {n}",
            domainClass=1,
            version=5,
        )
        await call("Host.startMonitoringDomain", sdUUID=sd, hostID=1)
    deadline = time.monotonic() + 120
    while True:
        stats = await call("Host.getStorageRepoStats")
        if len(stats) == domains and all(s["actual"] for s in stats.values()):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"domains not monitored: {stats}")
        await asyncio.sleep(0.2)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call("Host.getStorageRepoStats")
        samples.append(time.perf_counter() - started)
    for sd in ids:
        await call("Host.stopMonitoringDomain", sdUUID=sd)
    await client.close()
    return samples


def run(start_daemon: Any, quick: bool) -> dict[str, Any] | str:
    """The figures, or why they could not be measured."""
    if os.geteuid() != 0:
        return "skipped: needs root (sanlock)"
    from tests.lab import services

    session = services.Session()
    root = Path(tempfile.mkdtemp(prefix="vdsm-bench-storage-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        session.up(["sanlock"])
        bare = statistics.median(bare_sanlock(Path(tempfile.mkdtemp(dir=root))) for _ in range(3))
        extra = {
            "irs": {"repository": str(root / "data-center"), "sd_health_check_delay": "2"},
            "sanlock": {"io_timeout": "1"},
        }
        with start_daemon(root / "daemon", extra) as (_, port, _):
            spm = asyncio.run(spm_start(port, root))
            samples = asyncio.run(repo_stats(port, root, 20, 200 if quick else 1000))
        ordered = sorted(samples)
        return {
            "bare_s": bare,
            "spm_s": spm,
            "repo_p50_ms": ordered[len(ordered) // 2] * 1000,
            "repo_p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        }
    finally:
        session.close()
        shutil.rmtree(root, ignore_errors=True)

"""Image figures for make bench (root and sanlock, as the storage figures).

- SDM.copy_data of a 2 GiB raw volume holding 1 GiB of data, against `qemu-img convert`
  of the same file with the same flags, in the same run: the daemon's copy speed as a
  fraction of qemu-img's own.
- Volume.getInfo: sequential round trips, p50/p99.
- 200 Volume.create (thin COW), each followed to the end of its task and cleared,
  against bare `qemu-img create` + a metadata file write per volume: one at a time,
  and 8 at a time on both sides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from vdsm.client.stomp import StompClient

MiB = 1024 * 1024
GiB = 1024 * MiB
# The baselines run on the CPU the daemon (and the qemu-img it starts) is pinned to,
# so both sides get the same processor.
SERVER_CPU = sorted(os.sched_getaffinity(0))[-1]


def on_server_cpu() -> None:
    os.sched_setaffinity(0, {SERVER_CPU})


BLANK = "00000000-0000-0000-0000-000000000000"
PARALLEL = 8


class Site:
    def __init__(self, client: StompClient, root: Path) -> None:
        self.client = client
        self.root = root
        self.sp = str(uuid.uuid4())

    async def call(self, method: str, **params: Any) -> Any:
        return await self.client.call(method, params, timeout=300)

    async def task(self, task_id: str, poll: float = 0.005) -> None:
        while True:
            status = await self.call("Task.getStatus", taskID=task_id)
            if status["taskState"] == "finished":
                break
            await asyncio.sleep(poll)
        await self.call("Task.clear", taskID=task_id)
        if status["code"] != 0:
            raise RuntimeError(f"task failed: {status}")

    async def domain(self, name: str) -> tuple[str, Path]:
        path = self.root / name
        path.mkdir(mode=0o755)
        sd = str(uuid.uuid4())
        await self.call(
            "StoragePool.connectStorageServer",
            storagepoolID=BLANK,
            domainType=4,
            connectionParams=[{"id": sd, "connection": str(path)}],
        )
        await self.call(
            "StorageDomain.create",
            storagedomainID=sd,
            domainType=4,
            typeArgs=str(path),
            name=name,
            domainClass=1,
            version=5,
        )
        return sd, path / sd

    async def spm(self, master: str) -> None:
        await self.call(
            "StoragePool.create",
            storagepoolID=self.sp,
            name="bench",
            masterSdUUID=master,
            masterVersion=1,
            domainList=[master],
            lockRenewalIntervalSec=5,
            leaseTimeSec=60,
            ioOpTimeoutSec=10,
            leaseRetries=3,
        )
        await self.call(
            "StoragePool.connect",
            storagepoolID=self.sp,
            hostID=1,
            scsiKey="",
            masterSdUUID=master,
            masterVersion=1,
        )
        await self.task(
            await self.call(
                "StoragePool.spmStart",
                storagepoolID=self.sp,
                prevID=-1,
                prevLver="-1",
                enableScsiFencing="false",
            ),
            poll=0.1,
        )

    async def create(self, sd: str, img: str, vol: str, size: int, fmt: int = 4) -> None:
        await self.task(
            await self.call(
                "Volume.create",
                volumeID=vol,
                storagepoolID=self.sp,
                storagedomainID=sd,
                imageID=img,
                size=str(size),
                volFormat=fmt,
                preallocate=2,
                diskType="DATA",
                desc="",
                srcImgUUID=BLANK,
                srcVolUUID=BLANK,
            )
        )

    async def stop(self) -> None:
        await self.call("StoragePool.spmStop", storagepoolID=self.sp)
        await self.call("StoragePool.disconnect", storagepoolID=self.sp, hostID=1, scsiKey="")


def bare_copy(src: Path, dst: Path) -> float:
    """qemu-img convert with the flags the daemon uses, into an existing volume."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(dst), str(2 * GiB)], check=True)
    started = time.monotonic()
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-t",
            "none",
            "-T",
            "none",
            "-f",
            "raw",
            "-O",
            "raw",
            "-n",
            "-W",
            str(src),
            str(dst),
        ],
        check=True,
        preexec_fn=on_server_cpu,
    )
    return time.monotonic() - started


def bare_create(directory: Path, n: int) -> None:
    """One volume the bare way: qemu-img create + a 512-byte metadata file, written
    with fsync and renamed into place as the daemon does."""
    path = directory / f"v{n}"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", str(path), "1G"],
        check=True,
        preexec_fn=on_server_cpu,
    )
    tmp = directory / f"v{n}.meta.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
    os.write(fd, b"CAP=1073741824\n" + b"X" * 300 + b"\nEOF\n")
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, directory / f"v{n}.meta")


def bare_creates(directory: Path, count: int, parallel: int) -> float:
    """Seconds per volume, `parallel` at a time."""
    directory.mkdir()
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda n: bare_create(directory, n), range(count)))
    return (time.monotonic() - started) / count


async def daemon_creates(site: Site, sd: str, count: int, parallel: int) -> float:
    """Seconds per volume through Volume.create, `parallel` tasks in flight, each
    followed to its end and cleared."""
    slots = asyncio.Semaphore(parallel)

    async def one() -> None:
        async with slots:
            await site.create(sd, str(uuid.uuid4()), str(uuid.uuid4()), GiB)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    return (time.monotonic() - started) / count


async def measure(port: int, root: Path, quick: bool) -> dict[str, float]:
    client = await StompClient.connect("127.0.0.1", port)
    site = Site(client, root)
    master, master_dir = await site.domain("master")
    await site.spm(master)

    # 200 creates: one after the other, then 8 at a time (as an engine creating the
    # disks of several VMs), each side the same way.
    count = 50 if quick else 200
    per_volume = await daemon_creates(site, master, count, 1)
    per_volume_8 = await daemon_creates(site, master, count, PARALLEL)
    bare_create_1 = bare_creates(root / "bare-creates-1", count, 1)
    bare_create_8 = bare_creates(root / "bare-creates-8", count, PARALLEL)
    os.sync()  # the copies below must not pay for these writes, nor these for them

    # Copy: 2 GiB raw, 1 GiB of data.
    src_img, src_vol = str(uuid.uuid4()), str(uuid.uuid4())
    await site.create(master, src_img, src_vol, 2 * GiB, fmt=5)
    src = master_dir / "images" / src_img / src_vol
    await asyncio.to_thread(
        subprocess.run,
        ["qemu-io", "-f", "raw", "-c", f"write -P 0x5a 0 {GiB}", str(src)],
        check=True,
        capture_output=True,
    )
    # Interleaved, each into a fresh (unallocated) destination.
    bares, copies = [], []
    for n in range(1 if quick else 3):
        bares.append(bare_copy(src, root / f"bare{n}.raw"))
        dst_img, dst_vol = str(uuid.uuid4()), str(uuid.uuid4())
        await site.create(master, dst_img, dst_vol, 2 * GiB, fmt=5)
        job = str(uuid.uuid4())
        started = time.monotonic()
        await site.call(
            "SDM.copy_data",
            job_id=job,
            source={"endpoint_type": "div", "sd_id": master, "img_id": src_img, "vol_id": src_vol},
            destination={
                "endpoint_type": "div",
                "sd_id": master,
                "img_id": dst_img,
                "vol_id": dst_vol,
            },
        )
        while True:
            info = (await site.call("Host.getJobs", job_ids=[job]))[job]
            if info["status"] not in ("pending", "running"):
                break
            await asyncio.sleep(0.005)
        copies.append(time.monotonic() - started)
        if info["status"] != "done":
            raise RuntimeError(f"copy failed: {info}")
    bare, copy = min(bares), min(copies)

    # Volume.getInfo round trips.
    samples = []
    for _ in range(200 if quick else 1000):
        started = time.perf_counter()
        await site.call(
            "Volume.getInfo",
            volumeID=src_vol,
            storagepoolID=site.sp,
            storagedomainID=master,
            imageID=src_img,
        )
        samples.append(time.perf_counter() - started)
    samples.sort()

    await site.stop()
    await client.close()
    return {
        "copy_s": copy,
        "bare_copy_s": bare,
        "info_p50_ms": samples[len(samples) // 2] * 1000,
        "info_p99_ms": samples[int(len(samples) * 0.99)] * 1000,
        "create_ms": per_volume * 1000,
        "bare_create_ms": bare_create_1 * 1000,
        "create_8_ms": per_volume_8 * 1000,
        "bare_create_8_ms": bare_create_8 * 1000,
        "creates": count,
    }


def run(start_daemon: Any, quick: bool) -> dict[str, Any] | str:
    if os.geteuid() != 0:
        return "skipped: needs root (sanlock)"
    from tests.lab import services

    session = services.Session()
    root = Path(tempfile.mkdtemp(prefix="vdsm-bench-images-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        session.up(["sanlock"])
        extra = {
            "irs": {"repository": str(root / "data-center"), "sd_health_check_delay": "2"},
            "sanlock": {"io_timeout": "1"},
        }
        with start_daemon(root / "daemon", extra) as (_, port, _):
            return asyncio.run(measure(port, root, quick))
    finally:
        session.close()
        shutil.rmtree(root, ignore_errors=True)

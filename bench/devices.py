"""Device discovery figures for make bench (needs root: loop devices stand in for LUNs).

- Host.getDeviceList with 8 LUNs (engine defaults: checkStatus, no GUIDs), sequential
  round trips over STOMP, p50/p99: answered from the daemon's cache.
- Baseline, same run, same devices: what one uncached listing costs without the
  daemon: a bare `lvm pvs` (the daemon's own filter) + the udev/sysfs enumeration of
  the 8 devices + blkid on each.
- The engine's pre-create check (one GUID with checkStatus, read again): p50, for
  information.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vdsm.client.stomp import StompClient
from vdsm.system import lvm, udev

GiB = 1024**3
LUNS = 8
TARGET_P99_MS = 200.0


@contextmanager
def loop_devices(root: Path, count: int) -> Iterator[list[str]]:
    made: list[str] = []
    try:
        for i in range(count):
            backing = root / f"lun{i}.img"
            with open(backing, "wb") as f:
                f.truncate((i + 1) * GiB)  # sparse
            out = subprocess.run(
                ["losetup", "--find", "--show", str(backing)],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            )
            made.append(out.stdout.strip())
        yield made
    finally:
        for dev in made:
            subprocess.run(["losetup", "-d", dev], check=False, timeout=30)


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.99) - 1)]


def bare_listing(devices: list[str]) -> float:
    """Seconds for one uncached listing done by hand."""
    config = lvm.build_config(devices)
    started = time.perf_counter()
    subprocess.run(
        [lvm.LVM, "pvs", "--config", config, "--driverloaded", "n", "--reportformat", "json"],
        check=True,
        capture_output=True,
        env={**os.environ, **lvm.ENV},
        timeout=60,
    )
    udev.describe_all(devices)
    for dev in devices:
        subprocess.run(["blkid", "--probe", "--output", "export", dev], capture_output=True)
    return time.perf_counter() - started


async def measure(port: int, devices: list[str], calls: int) -> dict[str, float]:
    client = await StompClient.connect("127.0.0.1", port)
    try:
        first = await client.call("Host.getDeviceList", {}, timeout=60)
        if len(first) != len(devices):
            raise RuntimeError(f"expected {len(devices)} devices, got {len(first)}")
        cached = []
        for _ in range(calls):
            started = time.perf_counter()
            await client.call("Host.getDeviceList", {}, timeout=60)
            cached.append(time.perf_counter() - started)
        guid = first[0]["GUID"]
        fresh = []
        for _ in range(max(5, calls // 20)):
            started = time.perf_counter()
            await client.call(
                "Host.getDeviceList", {"guids": [guid], "checkStatus": True}, timeout=60
            )
            fresh.append(time.perf_counter() - started)
    finally:
        await client.close()
    p50, p99 = percentiles(cached)
    return {
        "p50_ms": p50 * 1000,
        "p99_ms": p99 * 1000,
        "fresh_p50_ms": percentiles(fresh)[0] * 1000,
    }


def run(start_daemon: Any, quick: bool) -> dict[str, Any] | str:
    if os.geteuid() != 0:
        return "skipped: needs root (loop devices)"
    if shutil.which(lvm.LVM) is None:
        return "skipped: no lvm"
    calls = 50 if quick else 200
    root = Path(tempfile.mkdtemp(prefix="vdsm-bench-devices-", dir="/var/tmp"))
    try:
        with loop_devices(root, LUNS) as devices:
            bare = [bare_listing(devices) for _ in range(max(5, calls // 10))]
            extra = {"lvm": {"devices": " ".join(devices)}}
            with start_daemon(root / "daemon", extra) as (_, port, _):
                result: dict[str, Any] = asyncio.run(measure(port, devices, calls))
        bare_p50, bare_p99 = percentiles(bare)
        result.update(bare_p50_ms=bare_p50 * 1000, bare_p99_ms=bare_p99 * 1000, calls=calls)
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def report(result: dict[str, Any] | str) -> list[tuple[str, bool, str]]:
    """Prints the figures; returns the target checks."""
    print()
    print(f"Block devices ({LUNS} loop LUNs, LVM in the daemon's mode)")
    if isinstance(result, str):
        print(f"  {result}")
        return []
    p99, bare99 = result["p99_ms"], result["bare_p99_ms"]
    print(
        f"  Host.getDeviceList x{result['calls']} (cached): p50 {result['p50_ms']:.2f} ms, "
        f"p99 {p99:.2f} ms; bare lvm pvs + udev enumeration + blkid: "
        f"p50 {result['bare_p50_ms']:.1f} ms, p99 {bare99:.1f} ms; ratio {p99 / bare99:.2f}"
    )
    print(f"  Host.getDeviceList, one GUID read again: p50 {result['fresh_p50_ms']:.1f} ms")
    return [
        (
            f"getDeviceList ({LUNS} LUNs, cached) p99 <= {TARGET_P99_MS:.0f} ms",
            p99 <= TARGET_P99_MS,
            f"{p99:.2f} ms",
        )
    ]

"""make bench: Host.ping2 over STOMP against a minimal asyncio baseline, same run.

Prints sequential round-trip p50/p99, calls/s with 1 and 16 connections, the ratio of
each to the baseline, the daemon's start-to-READY time and its idle RSS, and whether
each figure meets its target.  Informational: the exit status is 0 unless a run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench import blockvolumes as bench_blockvolumes
from bench import devices as bench_devices
from bench import images as bench_images
from bench import load
from bench import network as bench_network
from bench import storage as bench_storage
from bench import virt as bench_virt
from vdsm.client.stomp import StompClient

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {
    "throughput_16_ratio": 0.5,  # >= 50% of the baseline's calls/s with 16 connections
    "sequential_p99_ms": 2.0,  # <= 2 ms
    "ready_s": 1.0,  # daemon start to READY=1 <= 1 s
    "idle_rss_mb": 60.0,  # <= 60 MB
}


# Read before anything is pinned: the CPUs this run may use.
CPUS = sorted(os.sched_getaffinity(0))


def pin(pid: int, server: bool) -> None:
    """Server on one CPU, load generator on another: both contend for nothing else, so the
    figures are steady and the baseline and vdsm get the same machine."""
    if len(CPUS) >= 2:
        os.sched_setaffinity(pid, {CPUS[-1]} if server else {CPUS[0]})


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daemon_config(root: Path, port_file: Path) -> Path:
    conf = root / "vdsm.conf"
    conf.write_text(
        "[vars]\nssl = false\n"
        f"[addresses]\nmanagement_ip = 127.0.0.1\nmanagement_port = 0\nport_file = {port_file}\n"
        f"[irs]\nrepository = {root}/data-center\n"
        f"[paths]\nstate_dir = {root}/state\nrun_dir = {root}/run\nhooks_dir = {root}/hooks\n"
        f"host_id_file = {root}/state/vdsm.id\n"
        f"[logging]\nfile = {root}/vdsm.log\nlevel = INFO\n"
        "[libvirt]\nuri = test:///default\n"
    )
    return conf


def dropin(conf: Path, extra: dict[str, dict[str, str]]) -> None:
    """Extra settings in a drop-in, read after the main file."""
    directory = Path(str(conf) + ".d")
    directory.mkdir(exist_ok=True)
    lines = []
    for section, values in extra.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
    (directory / "50-bench.conf").write_text("\n".join(lines) + "\n")


@contextlib.contextmanager
def vdsmd(
    root: Path, extra: dict[str, dict[str, str]] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int, float]]:
    """A daemon process; yields (process, port, seconds from spawn to READY=1)."""
    root.mkdir(parents=True, exist_ok=True)
    port_file = root / "port"
    notify = root / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    stderr = (root / "stderr").open("wb")
    started = time.perf_counter()
    conf = daemon_config(root, port_file)
    if extra:
        dropin(conf, extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vdsm.daemon", "--config", str(conf)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    pin(proc.pid, server=True)
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.perf_counter() - started
        port = int(port_file.read_text().strip().rpartition(":")[2])
        # Serving first, then recovering: wait for the verbs to be answered too.
        log = root / "vdsm.log"
        deadline = time.monotonic() + 30
        while "recovery finished" not in (log.read_text() if log.exists() else ""):
            if time.monotonic() > deadline:
                raise RuntimeError("vdsmd did not finish recovery")
            time.sleep(0.02)
        yield proc, port, ready
    finally:
        sock.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        stderr.close()


@contextlib.contextmanager
def baseline() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.baseline_server"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    pin(proc.pid, server=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)


async def engine_first_calls(port: int) -> None:
    """What an engine does on connecting: capabilities, then statistics."""
    client = await StompClient.connect("127.0.0.1", port)
    try:
        await client.call("Host.getCapabilities")
        await client.call("Host.getStats")
    finally:
        await client.close()


def measure(port: int, count: int, seconds: float) -> dict[str, float]:
    async def run() -> dict[str, float]:
        await load.sequential("127.0.0.1", port, 200)  # warm-up
        result = load.summarize(await load.sequential("127.0.0.1", port, count))
        result["calls_s_1"] = await load.throughput("127.0.0.1", port, 1, seconds)
        result["calls_s_16"] = await load.throughput("127.0.0.1", port, 16, seconds)
        return result

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    args = parser.parse_args()
    count, seconds = (500, 1.0) if args.quick else (3000, 3.0)
    pin(os.getpid(), server=False)

    with tempfile.TemporaryDirectory(prefix="vdsm-bench-") as tmp:
        ready_times = []
        for i in range(3):
            with vdsmd(Path(tmp) / f"start{i}") as (_, _, ready):
                ready_times.append(ready)
        with vdsmd(Path(tmp) / "load") as (proc, port, _):
            asyncio.run(engine_first_calls(port))
            time.sleep(2.0)
            idle_rss = rss_mb(proc.pid)
            ours = measure(port, count, seconds)
            loaded_rss = rss_mb(proc.pid)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10):
                pass
            http_rss = rss_mb(proc.pid)
        with baseline() as base_port:
            base = measure(base_port, count, seconds)
    storage = bench_storage.run(vdsmd, args.quick)
    images = bench_images.run(vdsmd, args.quick)
    network = bench_network.run(args.quick)
    network_lab = None if args.quick else bench_network.run_lab()
    block_volumes = None if args.quick else bench_blockvolumes.run_lab()
    virt = bench_virt.run(vdsmd, args.quick)
    devices = bench_devices.run(vdsmd, args.quick)

    ready = statistics.median(ready_times)
    rows = [
        ("sequential p50 (ms)", ours["p50_ms"], base["p50_ms"]),
        ("sequential p99 (ms)", ours["p99_ms"], base["p99_ms"]),
        ("calls/s, 1 connection", ours["calls_s_1"], base["calls_s_1"]),
        ("calls/s, 16 connections", ours["calls_s_16"], base["calls_s_16"]),
    ]
    print("Host.ping2 over STOMP on loopback (baseline: minimal asyncio STOMP server, no JSON-RPC)")
    print(f"{'':28} {'vdsm':>12} {'baseline':>12} {'vdsm/base':>10}")
    for name, mine, theirs in rows:
        print(f"{name:28} {mine:12.3f} {theirs:12.3f} {mine / theirs:10.2f}")
    print()
    print(f"daemon start to READY=1 (median of 3): {ready:.3f} s")
    print(
        f"idle RSS after getCapabilities + getStats: {idle_rss:.1f} MB "
        f"(after the load run: {loaded_rss:.1f} MB; with the HTTP side built: {http_rss:.1f} MB)"
    )
    ratio_16 = ours["calls_s_16"] / base["calls_s_16"]
    checks = [
        (
            "16-connection calls/s >= 50% of baseline",
            ratio_16 >= TARGETS["throughput_16_ratio"],
            f"{ratio_16:.0%}",
        ),
        (
            "sequential p99 <= 2 ms",
            ours["p99_ms"] <= TARGETS["sequential_p99_ms"],
            f"{ours['p99_ms']:.2f} ms",
        ),
        ("start to READY <= 1.0 s", ready <= TARGETS["ready_s"], f"{ready:.2f} s"),
        ("idle RSS <= 60 MB", idle_rss <= TARGETS["idle_rss_mb"], f"{idle_rss:.1f} MB"),
    ]
    print()
    print("Storage (io_timeout 1, real sanlock)")
    if isinstance(storage, str):
        print(f"  {storage}")
    else:
        overhead = storage["spm_s"] - storage["bare_s"]
        print(
            f"  spmStart to SPM: {storage['spm_s']:.3f} s; bare sanlock join + acquire: "
            f"{storage['bare_s']:.3f} s; overhead {overhead:.3f} s"
        )
        print(
            f"  Host.getStorageRepoStats, 20 monitored domains: "
            f"p50 {storage['repo_p50_ms']:.2f} ms, p99 {storage['repo_p99_ms']:.2f} ms"
        )
        checks += [
            ("spmStart overhead over bare sanlock <= 1 s", overhead <= 1.0, f"{overhead:.2f} s"),
            (
                "getStorageRepoStats (20 domains) p99 <= 5 ms",
                storage["repo_p99_ms"] <= 5.0,
                f"{storage['repo_p99_ms']:.2f} ms",
            ),
        ]
    checks += bench_virt.report(virt)
    checks += bench_devices.report(devices)
    print()
    print("Images (file domain on the local disk, real sanlock and qemu-img)")
    if isinstance(images, str):
        print(f"  {images}")
    else:
        speed = images["bare_copy_s"] / images["copy_s"]
        create_ratio = images["create_ms"] / images["bare_create_ms"]
        create_ratio_8 = images["create_8_ms"] / images["bare_create_8_ms"]
        print(
            f"  SDM.copy_data, 2 GiB raw with 1 GiB of data: {images['copy_s']:.2f} s; "
            f"qemu-img convert: {images['bare_copy_s']:.2f} s; speed {speed:.2f}x"
        )
        print(
            f"  Volume.getInfo: p50 {images['info_p50_ms']:.2f} ms, "
            f"p99 {images['info_p99_ms']:.2f} ms"
        )
        print(
            f"  Volume.create x{images['creates']} (thin COW, each task followed to its end), "
            f"per volume against bare qemu-img create + metadata write:"
        )
        print(
            f"    one at a time: {images['create_ms']:.1f} ms vs {images['bare_create_ms']:.1f}"
            f" ms, ratio {create_ratio:.2f}"
        )
        print(
            f"    8 at a time:   {images['create_8_ms']:.1f} ms vs "
            f"{images['bare_create_8_ms']:.1f} ms, ratio {create_ratio_8:.2f}"
        )
        checks += [
            ("SDM.copy_data speed >= 0.95x qemu-img convert", speed >= 0.95, f"{speed:.2f}x"),
            (
                "Volume.getInfo p99 <= 5 ms",
                images["info_p99_ms"] <= 5.0,
                f"{images['info_p99_ms']:.2f} ms",
            ),
            (
                "Volume.create per volume <= 1.2x bare create + metadata (8 at a time)",
                create_ratio_8 <= 1.2,
                f"{create_ratio_8:.2f}x (one at a time: {create_ratio:.2f}x)",
            ),
        ]
    print()
    checks += bench_network.report(network, network_lab)
    print()
    if block_volumes is not None:
        checks += bench_blockvolumes.report(block_volumes)
        print()
    for name, ok, value in checks:
        print(f"[{'met ' if ok else 'MISS'}] {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

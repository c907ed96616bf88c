"""VM figures for make bench (needs root and libvirtd with qemu; the lab starts them).

- VM.create until the Up event, against `virsh create` of the same XML, same run
  (target: <= 1.2x + 50 ms).
- Host.getAllVmStats p50/p99 with 100 VMs on libvirt's test driver, and with 10 real
  qemu VMs, against the bare bulk stats call (getAllDomainStats) on the same driver
  (target: p99 <= 20 ms and <= 1.5x the bare call).

Domains are named vdsmlab-<pid>-<n> so an aborted run is swept like test leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vdsm.client.stomp import StompClient

OVIRT_VM_NS = "http://ovirt.org/vm/1.0"
_names = itertools.count(1)


def _name() -> str:
    return f"vdsmlab-{os.getpid()}-b{next(_names)}"


def domain_xml(vm_id: str, name: str, domain_type: str = "kvm") -> str:
    graphics = "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>"
    return f"""<domain type='{domain_type}' xmlns:ovirt-vm="{OVIRT_VM_NS}">
  <name>{name}</name><uuid>{vm_id}</uuid>
  <memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <metadata><ovirt-vm:vm><ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
  </ovirt-vm:vm></metadata>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>
  <devices>{graphics if domain_type == "kvm" else ""}<memballoon model='none'/></devices>
</domain>"""


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


async def _wait_up(events: asyncio.Queue[Any], vm_id: str) -> None:
    while True:
        frame = await asyncio.wait_for(events.get(), 60)
        message = json.loads(frame.body)
        if message.get("method") == f"|virt|VM_status|{vm_id}":
            status = message["params"][vm_id]["status"]
            if status == "Up":
                return
            if status == "Down":
                raise RuntimeError(f"VM {vm_id} went Down: {message['params'][vm_id]}")


def _virsh(*args: str, check: bool = False) -> None:
    subprocess.run(
        ["virsh", "-q", "-c", "qemu:///system", *args],
        check=check,
        capture_output=True,
        timeout=120,
    )


async def create_to_up(port: int, rounds: int, tmp: Path) -> tuple[list[float], list[float]]:
    """(vdsm seconds, virsh seconds) per round, alternating so both see the same host."""
    ours, virsh = [], []
    client = await StompClient.connect("127.0.0.1", port)
    try:
        events = await client.subscribe()
        for _ in range(rounds):
            vm_id, name = str(uuid.uuid4()), _name()
            xml = domain_xml(vm_id, name)
            started = time.perf_counter()
            await client.call("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
            await _wait_up(events, vm_id)
            ours.append(time.perf_counter() - started)
            await client.call("VM.destroy", {"vmID": vm_id}, timeout=120)

            name = _name()
            path = tmp / f"{name}.xml"
            path.write_text(domain_xml(str(uuid.uuid4()), name))
            started = time.perf_counter()
            await asyncio.to_thread(_virsh, "create", str(path), check=True)
            virsh.append(time.perf_counter() - started)
            await asyncio.to_thread(_virsh, "destroy", name)
    finally:
        await client.close()
    return ours, virsh


async def all_vm_stats(
    port: int,
    count: int,
    domain_type: str,
    calls: int,
    while_running: Callable[[], list[float]] | None = None,
) -> tuple[list[float], list[float]]:
    """Starts `count` VMs through the daemon, then times Host.getAllVmStats; runs
    `while_running` (the bare call's timing) before the VMs are destroyed."""
    client = await StompClient.connect("127.0.0.1", port)
    ids = []
    try:
        events = await client.subscribe()
        for _ in range(count):
            vm_id = str(uuid.uuid4())
            ids.append(vm_id)
            xml = domain_xml(vm_id, _name(), domain_type)
            await client.call("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
            await _wait_up(events, vm_id)
        await asyncio.sleep(2.0)  # at least one bulk sample taken ([vars] vm_sample_interval)
        for _ in range(20):
            await client.call("Host.getAllVmStats")
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            stats = await client.call("Host.getAllVmStats")
            samples.append(time.perf_counter() - started)
        if len(stats) < count:
            raise RuntimeError(f"getAllVmStats listed {len(stats)} VMs, expected {count}")
        bare = await asyncio.to_thread(while_running) if while_running else []
        return samples, bare
    finally:
        for vm_id in ids:
            with contextlib.suppress(Exception):
                await client.call("VM.destroy", {"vmID": vm_id}, timeout=120)
        await client.close()


def bare_bulk_stats(uri: str, count: int, calls: int) -> list[float]:
    """getAllDomainStats in this process; on the test driver, with `count` domains of
    our own (each process has its own test:///default)."""
    import libvirt

    conn = libvirt.open(uri)
    created = []
    try:
        if uri.startswith("test:"):
            for _ in range(count):
                created.append(conn.createXML(domain_xml(str(uuid.uuid4()), _name(), "test"), 0))
        for _ in range(20):
            conn.getAllDomainStats(0, 1)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            conn.getAllDomainStats(0, 1)
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        for dom in created:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        conn.close()


def run(vdsmd: Callable[..., Any], quick: bool) -> dict[str, float] | str:
    if os.geteuid() != 0:
        return "skipped: needs root (libvirtd with qemu)"
    try:
        import libvirt

        libvirt.open("qemu:///system").close()
    except Exception as e:
        return f"skipped: qemu:///system unreachable ({e}); run `make services` first"
    rounds, calls = (2, 200) if quick else (5, 1000)
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="vdsm-bench-virt-") as tmp:
        root = Path(tmp)
        qemu = {"libvirt": {"uri": "qemu:///system"}, "vars": {"vm_sample_interval": "1"}}
        with vdsmd(root / "qemu", qemu) as (_, port, _):
            ours, virsh = asyncio.run(create_to_up(port, rounds, root))
            result["create_ms"] = statistics.median(ours) * 1000
            result["virsh_ms"] = statistics.median(virsh) * 1000
            samples, bare = asyncio.run(
                all_vm_stats(
                    port, 10, "kvm", calls, lambda: bare_bulk_stats("qemu:///system", 0, calls)
                )
            )
            result["qemu_p50_ms"], result["qemu_p99_ms"] = (x * 1000 for x in percentiles(samples))
        result["qemu_bare_p50_ms"], result["qemu_bare_p99_ms"] = (
            x * 1000 for x in percentiles(bare)
        )
        test = {"libvirt": {"uri": "test:///default"}, "vars": {"vm_sample_interval": "1"}}
        with vdsmd(root / "test", test) as (_, port, _):
            samples, _ = asyncio.run(all_vm_stats(port, 100, "test", calls))
            result["test_p50_ms"], result["test_p99_ms"] = (x * 1000 for x in percentiles(samples))
        bare = bare_bulk_stats("test:///default", 100, calls)
        result["test_bare_p50_ms"], result["test_bare_p99_ms"] = (
            x * 1000 for x in percentiles(bare)
        )
    return result


def report(result: dict[str, float] | str) -> list[tuple[str, bool, str]]:
    """Prints the VM figures; returns the target checks."""
    print()
    print("VMs (real libvirtd + qemu; test driver for scale)")
    if isinstance(result, str):
        print(f"  {result}")
        return []
    create, virsh = result["create_ms"], result["virsh_ms"]
    limit = 1.2 * virsh + 50
    print(f"  VM.create -> Up event: {create:.0f} ms; virsh create: {virsh:.0f} ms (medians)")
    checks = [("VM.create -> Up <= 1.2x virsh + 50 ms", create <= limit, f"{create:.0f} ms")]
    for label, key, count in (("10 qemu VMs", "qemu", 10), ("100 test-driver VMs", "test", 100)):
        p50, p99 = result[f"{key}_p50_ms"], result[f"{key}_p99_ms"]
        bare50, bare99 = result[f"{key}_bare_p50_ms"], result[f"{key}_bare_p99_ms"]
        print(
            f"  Host.getAllVmStats, {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
            f"bare getAllDomainStats p50 {bare50:.2f} ms, p99 {bare99:.2f} ms"
        )
        checks.append((f"getAllVmStats ({count} VMs) p99 <= 20 ms", p99 <= 20.0, f"{p99:.2f} ms"))
        checks.append(
            (
                f"getAllVmStats ({count} VMs) p99 <= 1.5x bare bulk call",
                p99 <= 1.5 * bare99,
                f"{p99 / bare99:.2f}x",
            )
        )
    return checks

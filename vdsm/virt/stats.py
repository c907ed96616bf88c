"""VM statistics: ONE bulk libvirt call per sampling period for all VMs.

Every period the sampler asks libvirt for every active domain's counters at once
(virConnectGetAllDomainStats) and keeps the last two samples; rates come from their
difference.  getStats / getAllVmStats only format what was sampled: answering costs
no libvirt call however many VMs run (contract §7.4: numbers as strings).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vdsm.virt import domainxml
from vdsm.virt.vm import Vm

log = logging.getLogger("vdsm.virt.stats")

Counters = dict[str, Any]


@dataclass(frozen=True)
class Sample:
    monotonic: float
    domains: dict[str, Counters]


class StatsSampler:
    def __init__(
        self,
        collect: Callable[[], Awaitable[dict[str, Counters]]],
        interval: float,
    ) -> None:
        self._collect = collect
        self.interval = interval
        self.previous: Sample | None = None
        self.last: Sample | None = None
        self.samples = 0

    async def sample(self) -> None:
        domains = await self._collect()
        self.previous, self.last = self.last, Sample(time.monotonic(), domains)
        self.samples += 1

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception as e:
                log.warning("VM stats sampling failed: %s", e)
            await asyncio.sleep(self.interval)

    def counters(self, vm_id: str) -> tuple[Counters | None, Counters | None, float]:
        last = self.last.domains.get(vm_id) if self.last else None
        prev = self.previous.domains.get(vm_id) if self.previous else None
        elapsed = (
            self.last.monotonic - self.previous.monotonic if self.last and self.previous else 0.0
        )
        return last, prev, elapsed


def vm_stats(vm: Vm, sampler: StatsSampler) -> dict[str, Any]:
    """One VmStats entry (contract §7.4).

    Formatted once per sample and VM state; each call only refreshes the fields that
    move with the clock, so answering for many VMs stays cheap."""
    if vm.is_down:
        return vm.down_stats()
    key = (sampler.samples, vm.status_time, vm.devices_hash, vm.pause_code)
    cached = vm.stats_cache
    if cached is None or cached[0] != key:
        cached = vm.stats_cache = (key, _format(vm, sampler))
    stats = dict(cached[1])
    stats["status"] = vm.reported_status()
    stats["elapsedTime"] = vm.elapsed_time
    return stats


def _format(vm: Vm, sampler: StatsSampler) -> dict[str, Any]:
    last, prev, elapsed = sampler.counters(vm.vm_id)
    root = vm.live_root if vm.live_root is not None else vm.spec.root
    stats: dict[str, Any] = {
        "vmId": vm.vm_id,
        "vmName": vm.name,
        "vmType": "kvm",
        "status": vm.reported_status(),
        "statusTime": str(vm.status_time),
        "kvmEnable": "true",
        "acpiEnable": "true",
        "elapsedTime": vm.elapsed_time,
        "monitorResponse": "0",
        "clientIp": "",
        "timeOffset": vm.time_offset,
        "hash": vm.devices_hash,
        "displayInfo": domainxml.graphics(root),
        "vcpuCount": str(domainxml.vcpu_count(root)),
        "memUsage": "0",
        "memoryStats": {},
        "cpuUser": "0.00",
        "cpuSys": "0.00",
        "cpuUsage": "0",
        "balloonInfo": {},
        "disks": {},
        "network": {},
    }
    if vm.pause_code is not None:
        stats["pauseCode"] = vm.pause_code
    if last is None:
        return stats
    stats["vcpuCount"] = str(last.get("vcpu.current", stats["vcpuCount"]))
    stats["cpuUsage"] = str(last.get("cpu.time", 0))
    vcpus = max(1, int(last.get("vcpu.current", 1)))
    if prev is not None and elapsed > 0:
        stats["cpuUser"] = _percent(last, prev, "cpu.user", elapsed, vcpus)
        stats["cpuSys"] = _percent(last, prev, "cpu.system", elapsed, vcpus)
    if "balloon.current" in last:
        stats["balloonInfo"] = {
            "balloon_max": str(last.get("balloon.maximum", 0)),
            "balloon_cur": str(last.get("balloon.current", 0)),
            "balloon_target": str(vm.spec.values.get("balloonTarget", last["balloon.current"])),
            "balloon_min": str(vm.spec.values.get("minGuaranteedMemoryMb", 0)),
        }
    stats["disks"] = _disks(vm, last, prev, elapsed)
    stats["network"] = _networks(root, last, prev, elapsed)
    return stats


def _delta(last: Counters, prev: Counters | None, key: str) -> float:
    if prev is None:
        return 0.0
    return max(0.0, float(last.get(key, 0)) - float(prev.get(key, 0)))


def _percent(last: Counters, prev: Counters, key: str, elapsed: float, vcpus: int) -> str:
    used_ns = _delta(last, prev, key)
    return f"{min(100.0, used_ns / (elapsed * 1e9 * vcpus) * 100):.2f}"


def _rate(last: Counters, prev: Counters | None, key: str, elapsed: float) -> str:
    if prev is None or elapsed <= 0:
        return "0.0"
    return f"{_delta(last, prev, key) / elapsed:.1f}"


def _latency(last: Counters, prev: Counters | None, times: str, reqs: str) -> str:
    ops = _delta(last, prev, reqs)
    if ops <= 0:
        return "0.000000000"
    return f"{_delta(last, prev, times) / ops / 1e9:.9f}"


def _disks(vm: Vm, last: Counters, prev: Counters | None, elapsed: float) -> dict[str, Any]:
    image_ids = {
        meta.attrs.get("name", ""): str(meta.values.get("imageID", ""))
        for meta in vm.spec.devices
        if meta.values.get("imageID")
    }
    disks: dict[str, Any] = {}
    for i in range(int(last.get("block.count", 0))):
        p = f"block.{i}."
        name = last.get(p + "name")
        if not name:
            continue
        disks[name] = {
            "readRate": _rate(last, prev, p + "rd.bytes", elapsed),
            "writeRate": _rate(last, prev, p + "wr.bytes", elapsed),
            "readLatency": _latency(last, prev, p + "rd.times", p + "rd.reqs"),
            "writeLatency": _latency(last, prev, p + "wr.times", p + "wr.reqs"),
            "flushLatency": _latency(last, prev, p + "fl.times", p + "fl.reqs"),
            "readBytes": str(last.get(p + "rd.bytes", 0)),
            "writtenBytes": str(last.get(p + "wr.bytes", 0)),
            "readOps": str(last.get(p + "rd.reqs", 0)),
            "writeOps": str(last.get(p + "wr.reqs", 0)),
            "apparentsize": str(last.get(p + "capacity", 0)),
            "truesize": str(last.get(p + "allocation", last.get(p + "physical", 0))),
            "imageID": image_ids.get(name, ""),
        }
    return disks


def _networks(root: Any, last: Counters, prev: Counters | None, elapsed: float) -> dict[str, Any]:
    macs = {}
    for iface in root.iterfind("devices/interface"):
        target = iface.find("target")
        if target is not None and target.get("dev"):
            macs[target.get("dev")] = domainxml.interface_mac(iface) or ""
    sample_time = str(time.monotonic())
    nets: dict[str, Any] = {}
    for i in range(int(last.get("net.count", 0))):
        p = f"net.{i}."
        name = last.get(p + "name")
        if not name:
            continue
        nets[name] = {
            "name": name,
            "macAddr": macs.get(name, ""),
            "speed": "1000",
            "state": "unknown",
            "rx": str(last.get(p + "rx.bytes", 0)),
            "tx": str(last.get(p + "tx.bytes", 0)),
            "rxErrors": str(last.get(p + "rx.errs", 0)),
            "rxDropped": str(last.get(p + "rx.drop", 0)),
            "txErrors": str(last.get(p + "tx.errs", 0)),
            "txDropped": str(last.get(p + "tx.drop", 0)),
            "sampleTime": sample_time,
        }
    return nets

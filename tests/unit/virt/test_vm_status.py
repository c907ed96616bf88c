"""The VM status machine driven by libvirt lifecycle events, and its notifications."""

from __future__ import annotations

from typing import Any

import pytest

from vdsm.system import libvirt as lv
from vdsm.virt import domainxml, vmstatus
from vdsm.virt.stats import Sample, StatsSampler, vm_stats
from vdsm.virt.vm import Vm, apply_lifecycle_event
from vdsm.virt.vmstatus import ExitCode, ExitReason

VM_ID = "5b0b1e6c-0f1f-4a0e-9d3c-3b7c1c0b8a11"
XML = f"""<domain type='kvm'><name>vm1</name><uuid>{VM_ID}</uuid><vcpu>2</vcpu>
<devices><disk type='file'><target dev='vda'/></disk>
<interface type='user'><mac address='52:54:00:00:00:01'/><target dev='vnet0'/></interface>
</devices></domain>"""


def make_vm(status: str = vmstatus.UP) -> tuple[Vm, list[tuple[str, dict[str, Any]]]]:
    sent: list[tuple[str, dict[str, Any]]] = []
    vm = Vm(VM_ID, domainxml.parse(XML), lambda m, p: sent.append((m, p)), status=status)
    vm.update_live_xml(XML)
    return vm, sent


def test_status_change_is_published_with_the_contract_shape() -> None:
    vm, sent = make_vm()
    apply_lifecycle_event(vm, lv.EVENT_SUSPENDED, lv.SUSPENDED_PAUSED)
    method, params = sent[-1]
    assert method == f"|virt|VM_status|{VM_ID}"
    body = params[VM_ID]
    assert body["status"] == "Paused"
    assert body["pauseCode"] == "NOERR"
    assert isinstance(body["statusTime"], str)
    apply_lifecycle_event(vm, lv.EVENT_RESUMED, 0)
    assert vm.status == "Up"
    assert sent[-1][1][VM_ID]["status"] == "Up"


def test_io_error_pause_code() -> None:
    vm, _ = make_vm()
    apply_lifecycle_event(vm, lv.EVENT_SUSPENDED, lv.SUSPENDED_IOERROR)
    assert (vm.status, vm.pause_code) == ("Paused", "EIO")


@pytest.mark.parametrize(
    ("detail", "shutdown_requested", "code", "reason"),
    [
        (lv.STOPPED_SHUTDOWN, False, 0, 7),
        (lv.STOPPED_SHUTDOWN, True, 0, 6),
        (lv.STOPPED_DESTROYED, True, 0, 6),
        (lv.STOPPED_DESTROYED, False, 1, 2),
        (lv.STOPPED_CRASHED, False, 1, 2),
        (lv.STOPPED_FAILED, False, 1, 2),
        (lv.STOPPED_MIGRATED, False, 0, 4),
        (lv.STOPPED_SAVED, False, 0, 5),
    ],
)
def test_stopped_reasons(detail: int, shutdown_requested: bool, code: int, reason: int) -> None:
    vm, sent = make_vm()
    vm.shutdown_requested = shutdown_requested
    apply_lifecycle_event(vm, lv.EVENT_STOPPED, detail)
    body = sent[-1][1][VM_ID]
    assert body["status"] == "Down"
    assert (body["exitCode"], body["exitReason"]) == (code, reason)
    assert body["exitMessage"] == vmstatus.EXIT_MESSAGES[ExitReason(reason)]
    assert body["timeOffset"] == "0"


def test_a_vm_being_destroyed_ignores_the_stop_event() -> None:
    vm, sent = make_vm()
    vm.destroying = True
    apply_lifecycle_event(vm, lv.EVENT_STOPPED, lv.STOPPED_DESTROYED)
    assert vm.status == "Up" and sent == []


def test_down_is_final_and_keeps_the_first_exit() -> None:
    vm, sent = make_vm()
    vm.set_down(ExitCode.ERROR, ExitReason.GENERIC_ERROR, "Hook Error: (b'x',)")
    vm.set_down(ExitCode.NORMAL, ExitReason.ADMIN_SHUTDOWN)
    apply_lifecycle_event(vm, lv.EVENT_RESUMED, 0)
    assert len(sent) == 1
    assert vm.down_stats()["exitMessage"] == "Hook Error: (b'x',)"
    assert vm.status_entry()["status"] == "Down"


def test_powering_up_is_reported_for_a_while_after_the_start() -> None:
    vm, _ = make_vm()
    vm.started_monotonic = 1000.0
    assert vm.reported_status(now=1010.0) == "Powering up"
    assert vm.reported_status(now=1000.0 + vmstatus.POWERING_UP_PERIOD + 1) == "Up"


def test_stats_rates_from_two_samples_as_strings() -> None:
    vm, _ = make_vm()
    sampler = StatsSampler(lambda: None, 1.0)  # type: ignore[arg-type,return-value]
    base = {
        "vcpu.current": 2,
        "cpu.time": 10_000_000_000,
        "cpu.user": 1_000_000_000,
        "cpu.system": 0,
        "block.count": 1,
        "block.0.name": "vda",
        "block.0.rd.bytes": 1000,
        "block.0.rd.reqs": 10,
        "block.0.rd.times": 1_000_000,
        "net.count": 1,
        "net.0.name": "vnet0",
        "net.0.rx.bytes": 5,
    }
    later = dict(base)
    later.update({"cpu.user": 2_000_000_000, "block.0.rd.bytes": 3000, "block.0.rd.reqs": 20})
    later["block.0.rd.times"] = 3_000_000
    sampler.previous = Sample(100.0, {VM_ID: base})
    sampler.last = Sample(102.0, {VM_ID: later})
    sampler.samples = 2
    stats = vm_stats(vm, sampler)
    # 1 s of user CPU over 2 s on 2 vCPUs = 25 %.
    assert stats["cpuUser"] == "25.00"
    assert stats["cpuSys"] == "0.00"
    assert stats["vcpuCount"] == "2"
    disk = stats["disks"]["vda"]
    assert disk["readRate"] == "1000.0"
    assert disk["readLatency"] == "0.000200000"
    assert disk["readBytes"] == "3000"
    net = stats["network"]["vnet0"]
    assert net["macAddr"] == "52:54:00:00:00:01"
    assert net["rx"] == "5"
    assert all(
        isinstance(v, str)
        for k, v in stats.items()
        if k not in ("disks", "network", "displayInfo", "memoryStats", "balloonInfo")
    )

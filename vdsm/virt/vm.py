"""One VM: its status machine, exit data and the notifications it sends.

The status changes come from three places: the VM's own operations (create, pause,
destroy...), libvirt lifecycle events (a guest that stops by itself, qemu killed
behind our back), and recovery.  Every change is published as
`|virt|VM_status|<vmId>` (contract §1.4).  A Down VM keeps its exit data and stays
listed until VM.destroy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vdsm.events import notify_time
from vdsm.system import libvirt as lv
from vdsm.virt import domainxml, vmstatus
from vdsm.virt.domainxml import DeviceMeta, DomainSpec
from vdsm.virt.vmstatus import ExitCode, ExitReason

log = logging.getLogger("vdsm.virt.vm")

Publisher = Callable[[str, dict[str, Any]], None]


@dataclass
class ExitInfo:
    code: ExitCode
    reason: ExitReason
    message: str

    def fields(self) -> dict[str, Any]:
        return {
            "exitCode": int(self.code),
            "exitReason": int(self.reason),
            "exitMessage": self.message,
        }


@dataclass
class Vm:
    vm_id: str
    spec: DomainSpec
    publish: Publisher
    status: str = vmstatus.WAIT_FOR_LAUNCH
    status_time: int = field(default_factory=notify_time)
    exit: ExitInfo | None = None
    pause_code: str | None = None
    # Wall clock (for elapsedTime) of the start, kept in the metadata across restarts.
    start_time: float = field(default_factory=time.time)
    # Monotonic clock of the start in this process, for "Powering up".
    started_monotonic: float | None = None
    live_xml: str | None = None
    live_root: Any = None  # live_xml parsed once, for the stats
    prepared_drives: list[DeviceMeta] = field(default_factory=list)
    # Set once VM.destroy began: libvirt's STOPPED event is then expected, not news.
    destroying: bool = False
    # Set by VM.shutdown: a guest stop afterwards is an admin shutdown.
    shutdown_requested: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    launch_task: asyncio.Task[None] | None = None
    # The libvirt create call while it runs: destroy waits for it (never cancels it).
    creating: asyncio.Future[str] | None = None
    devices_hash: str = "0"
    # A running domain without ovirt-vm metadata: listed, never acted upon.
    external: bool = False
    # (sample/state key, formatted stats) of the last getStats: see stats.vm_stats.
    stats_cache: tuple[Any, dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def custom(self) -> dict[str, str]:
        return self.spec.custom

    @property
    def is_down(self) -> bool:
        return self.status == vmstatus.DOWN

    @property
    def is_running(self) -> bool:
        return self.status in (
            vmstatus.UP,
            vmstatus.PAUSED,
            vmstatus.POWERING_UP,
            vmstatus.POWERING_DOWN,
            vmstatus.REBOOT_IN_PROGRESS,
        )

    # -- status ---------------------------------------------------------------------------

    def set_status(self, status: str, *, pause_code: str | None = None) -> None:
        if status == self.status and pause_code == self.pause_code:
            return
        log.info("VM %s: %s -> %s", self.vm_id, self.status, status)
        self.status = status
        self.pause_code = pause_code if status == vmstatus.PAUSED else None
        self.status_time = notify_time()
        self.notify()

    def set_down(self, code: ExitCode, reason: ExitReason, message: str | None = None) -> None:
        if self.is_down:
            return
        self.exit = ExitInfo(code, reason, message or vmstatus.EXIT_MESSAGES[reason])
        log.info(
            "VM %s is Down: exitCode %d exitReason %d: %s",
            self.vm_id,
            code,
            reason,
            self.exit.message,
        )
        self.set_status(vmstatus.DOWN)

    def notify(self) -> None:
        self.publish(f"|virt|VM_status|{self.vm_id}", {self.vm_id: self.event_body()})

    def event_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "statusTime": str(self.status_time)}
        if self.exit is not None and self.is_down:
            body.update(self.exit.fields())
            body["timeOffset"] = self.time_offset
        else:
            body["elapsedTime"] = self.elapsed_time
            if self.pause_code is not None:
                body["pauseCode"] = self.pause_code
        return body

    def reported_status(self, now: float | None = None) -> str:
        """What getStats says: "Powering up" for a while after the start, since there is
        no guest agent to tell us the guest is up."""
        if self.status == vmstatus.UP and self.started_monotonic is not None:
            now = time.monotonic() if now is None else now
            if now - self.started_monotonic < vmstatus.POWERING_UP_PERIOD:
                return vmstatus.POWERING_UP
        return self.status

    @property
    def time_offset(self) -> str:
        return str(self.spec.values.get("timeOffset", "0"))

    @property
    def elapsed_time(self) -> str:
        return str(max(0, int(time.time() - self.start_time)))

    # -- views ------------------------------------------------------------------------------

    def status_entry(self) -> dict[str, Any]:
        return {"vmId": self.vm_id, "status": self.status, "statusTime": str(self.status_time)}

    def definition(self) -> dict[str, Any]:
        """VmDefinition: what VM.create and the device verbs answer."""
        entry = self.status_entry()
        entry["xml"] = self.live_xml or self.spec.to_xml()
        return entry

    def down_stats(self) -> dict[str, Any]:
        stats = self.status_entry()
        if self.exit is not None:
            stats.update(self.exit.fields())
        stats["timeOffset"] = self.time_offset
        return stats

    # -- live XML ---------------------------------------------------------------------------

    def update_live_xml(self, xml: str) -> None:
        self.live_xml = xml
        self.live_root = root = domainxml.parse_element(xml)
        devices = root.find("devices")
        text = domainxml.to_string(devices) if devices is not None else ""
        self.devices_hash = str(int(hashlib.sha1(text.encode()).hexdigest()[:12], 16))


# -- libvirt lifecycle events ------------------------------------------------------------


def apply_lifecycle_event(vm: Vm, event: int, detail: int) -> None:
    """Moves `vm` along after a libvirt lifecycle event (on the loop thread)."""
    if vm.destroying or vm.is_down:
        return
    if event == lv.EVENT_STOPPED:
        if detail == lv.STOPPED_SHUTDOWN:
            reason = (
                ExitReason.ADMIN_SHUTDOWN if vm.shutdown_requested else ExitReason.USER_SHUTDOWN
            )
            vm.set_down(ExitCode.NORMAL, reason)
        elif detail == lv.STOPPED_DESTROYED and vm.shutdown_requested:
            # VM.shutdown with force: we destroyed it after the guest ignored ACPI.
            vm.set_down(ExitCode.NORMAL, ExitReason.ADMIN_SHUTDOWN)
        elif detail == lv.STOPPED_MIGRATED:
            vm.set_down(ExitCode.NORMAL, ExitReason.MIGRATION_SUCCEEDED)
        elif detail == lv.STOPPED_SAVED:
            vm.set_down(ExitCode.NORMAL, ExitReason.SAVE_STATE_SUCCEEDED)
        elif vm.status == vmstatus.WAIT_FOR_LAUNCH:
            # The launch code reports a start that failed.
            return
        else:
            vm.set_down(ExitCode.ERROR, ExitReason.LOST_QEMU_CONNECTION)
    elif event == lv.EVENT_SHUTDOWN:
        if vm.status in (vmstatus.UP, vmstatus.POWERING_UP):
            vm.set_status(vmstatus.POWERING_DOWN)
    elif event == lv.EVENT_CRASHED:
        vm.set_down(ExitCode.ERROR, ExitReason.LOST_QEMU_CONNECTION)
    elif event == lv.EVENT_SUSPENDED:
        if vm.status == vmstatus.WAIT_FOR_LAUNCH:
            return
        code = vmstatus.PAUSE_EIO if detail == lv.SUSPENDED_IOERROR else vmstatus.PAUSE_NOERR
        vm.set_status(vmstatus.PAUSED, pause_code=code)
    elif event == lv.EVENT_RESUMED and vm.status == vmstatus.PAUSED:
        vm.set_status(vmstatus.UP)

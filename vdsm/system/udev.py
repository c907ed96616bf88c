"""Block devices as udev and sysfs describe them, and udev's block-device events.

Two things, both through pyudev (libudev):

* `describe(path)`: what a block device is (size, block sizes, discard limit, vendor,
  model, firmware revision, serial, its partitions, and its paths: the slaves of a
  device-mapper multipath map, or the device itself when it is a plain disk).  Sysfs
  attributes are always there; udev properties (ID_SERIAL...) only where udevd runs.
* `BlockEvents`: the kernel's (or udevd's) add/change/remove events of block devices,
  read from a netlink socket registered with the event loop: a reader callback, so an
  idle host costs nothing.

Blocking calls (sysfs reads) are cheap but still blocking: callers run `describe`
in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import pyudev

log = logging.getLogger("vdsm.system.udev")

SECTOR = 512
ISCSI = "iSCSI"
FCP = "FCP"
MIXED = "MIXED"


@dataclass(frozen=True)
class PathFacts:
    """One path to a LUN (a SCSI disk under a multipath map, or a plain device)."""

    name: str  # kernel name: sdb, loop3
    size: int
    lun: int
    transport: str  # ISCSI or FCP: upstream calls every non-iSCSI path FCP
    state: str  # active or failed


@dataclass(frozen=True)
class DeviceFacts:
    path: str  # as configured: /dev/mapper/<wwid>, /dev/loop3
    name: str  # kernel name: dm-3, loop3
    size: int
    logical_block_size: int
    physical_block_size: int
    discard_max_bytes: int
    vendor: str
    model: str
    fwrev: str
    serial: str
    partitions: tuple[str, ...]
    paths: tuple[PathFacts, ...]

    @property
    def devtype(self) -> str:
        kinds = {p.transport for p in self.paths}
        if len(kinds) > 1:
            return MIXED
        return kinds.pop() if kinds else ""


def _context() -> pyudev.Context:
    return pyudev.Context()


def _int_attribute(device: pyudev.Device, name: str) -> int:
    try:
        return int(device.attributes.asstring(name).strip() or 0)
    except (KeyError, ValueError, OSError):
        return 0


def _str_attribute(device: pyudev.Device, name: str) -> str:
    try:
        return device.attributes.asstring(name).strip()
    except (KeyError, UnicodeDecodeError, OSError):
        return ""


def _lun(sys_path: str) -> int:
    """The LUN of a SCSI disk (its H:B:T:L name under device/scsi_disk); 0 if none."""
    try:
        hbtl = os.listdir(os.path.join(sys_path, "device", "scsi_disk"))
        return int(hbtl[0].split(":")[3])
    except (OSError, IndexError, ValueError):
        return 0


def _is_iscsi(sys_path: str) -> bool:
    # an iSCSI disk hangs under a SCSI host that has an iscsi_host entry
    host_dir = os.path.realpath(os.path.join(sys_path, "device", "..", "..", ".."))
    host = os.path.basename(host_dir)
    return os.path.exists(os.path.join(host_dir, "iscsi_host", host))


def _path_state(sys_path: str) -> str:
    state = ""
    try:
        with open(os.path.join(sys_path, "device", "state")) as f:
            state = f.read().strip()
    except OSError:
        return "active"  # not a SCSI device (loop, virtio): no path state to fail
    return "active" if state in ("running", "") else "failed"


def _path(device: pyudev.Device) -> PathFacts:
    sys_path = device.sys_path
    return PathFacts(
        name=device.sys_name,
        size=_int_attribute(device, "size") * SECTOR,
        lun=_lun(sys_path),
        transport=ISCSI if _is_iscsi(sys_path) else FCP,
        state=_path_state(sys_path),
    )


def _first(devices: list[pyudev.Device], read: Callable[[pyudev.Device], str]) -> str:
    for device in devices:
        value = read(device)
        if value:
            return value
    return ""


def describe(path: str, context: pyudev.Context | None = None) -> DeviceFacts:
    """What the block device at `path` (a node or a symlink to one) is.  Raises
    OSError/pyudev.DeviceNotFoundError if it is gone."""
    context = context or _context()
    device = pyudev.Devices.from_device_file(context, path)
    slaves_dir = os.path.join(device.sys_path, "slaves")
    slaves = []
    if os.path.isdir(slaves_dir):
        for name in sorted(os.listdir(slaves_dir)):
            try:
                slaves.append(pyudev.Devices.from_name(context, "block", name))
            except pyudev.DeviceNotFoundError:
                continue
    # a plain disk is its own single path
    paths = slaves or [device]
    partitions = tuple(
        sorted(child.sys_name for child in device.children if child.device_type == "partition")
    )

    def serial(d: pyudev.Device) -> str:
        return d.properties.get("ID_SERIAL", "") or d.properties.get("ID_SCSI_SERIAL", "")

    return DeviceFacts(
        path=path,
        name=device.sys_name,
        size=_int_attribute(device, "size") * SECTOR,
        logical_block_size=_int_attribute(device, "queue/logical_block_size"),
        physical_block_size=_int_attribute(device, "queue/physical_block_size"),
        discard_max_bytes=_int_attribute(device, "queue/discard_max_bytes"),
        vendor=_first(paths, lambda d: _str_attribute(d, "device/vendor")),
        model=_first(paths, lambda d: _str_attribute(d, "device/model")),
        fwrev=_first(paths, lambda d: _str_attribute(d, "device/rev")),
        serial=serial(device) or _first(paths, serial),
        partitions=partitions,
        paths=tuple(_path(p) for p in paths),
    )


def describe_all(paths: list[str]) -> dict[str, DeviceFacts]:
    """The devices that exist, by path; a device that vanished meanwhile is left out."""
    context = _context()
    found: dict[str, DeviceFacts] = {}
    for path in paths:
        try:
            found[path] = describe(path, context)
        except (OSError, pyudev.DeviceNotFoundError) as e:
            log.debug("%s: gone while described (%s)", path, e)
    return found


@dataclass(frozen=True)
class BlockEvent:
    action: str  # add, change, remove
    name: str  # kernel name: loop3, dm-2, sdb
    node: str  # /dev/loop3


class BlockEvents:
    """Calls `on_event` for every block-device event, from the event loop.

    udevd's events (after its rules ran) when udevd runs, else the kernel's own.
    """

    def __init__(self, on_event: Callable[[BlockEvent], None]) -> None:
        self.on_event = on_event
        self.received = 0

    @staticmethod
    def source() -> str:
        return "udev" if os.path.exists("/run/udev/control") else "kernel"

    async def run(self) -> None:
        source = self.source()
        try:
            monitor = pyudev.Monitor.from_netlink(_context(), source=source)
            monitor.filter_by("block")
            monitor.start()
        except (OSError, ValueError) as e:
            # no events (say, a network namespace without uevents): discovery still
            # notices a changed set of devices when a verb asks
            log.warning("no block device events (%s); relying on rescans", e)
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(monitor.fileno(), self._drain, monitor)
        log.info("watching block device events from %s", source)
        try:
            await asyncio.Future()  # until cancelled at shutdown
        finally:
            loop.remove_reader(monitor.fileno())

    def _drain(self, monitor: pyudev.Monitor) -> None:
        while True:
            try:
                device = monitor.poll(timeout=0)
            except OSError as e:
                log.warning("block device event lost: %s", e)
                return
            if device is None:
                return
            self.received += 1
            event = BlockEvent(
                action=device.action or "",
                name=device.sys_name,
                node=device.device_node or f"/dev/{device.sys_name}",
            )
            try:
                self.on_event(event)
            except Exception:
                log.exception("handling %s", event)

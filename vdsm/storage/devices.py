"""The block devices this host may use for block storage domains (its "LUNs").

Which devices count is configuration (`[lvm] devices`, globs): on a real host the
multipath devices under /dev/mapper, in tests loop devices.  The list is what LVM is
allowed to see (vdsm.system.lvm builds its filter from it) and what Host.getDeviceList
reports.

`Discovery` describes them (vdsm.system.udev), adds their LVM membership, and decides
whether each is free: the facts behind Host.getDeviceList and the LVMVolumeGroup verbs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import glob
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from vdsm import errors
from vdsm.system import blkid
from vdsm.system.lvm import PV, Lvm, LvmError
from vdsm.system.udev import BlockEvent, DeviceFacts, describe_all

log = logging.getLogger("vdsm.storage.devices")


def _is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def is_logical_volume(kernel_name: str) -> bool:
    """The device-mapper device is an LV (its dm uuid starts with LVM-).  LVs of the
    domains appear under /dev/mapper too once active; they are never LUNs, and LVM
    must never scan them as PVs."""
    if not kernel_name.startswith("dm-"):
        return False
    try:
        with open(f"/sys/block/{kernel_name}/dm/uuid") as f:
            return f.read().startswith("LVM-")
    except OSError:
        return False


class BlockDevices:
    def __init__(self, patterns: str) -> None:
        self.patterns = patterns.split()

    def paths(self) -> list[str]:
        """The configured devices present now (a glob per call: a few stat()s)."""
        found: set[str] = set()
        for pattern in self.patterns:
            found.update(
                p
                for p in glob.glob(pattern)
                # /dev/mapper/control is a character device
                if _is_block_device(p)
                and not is_logical_volume(os.path.basename(os.path.realpath(p)))
            )
        return sorted(found)

    def matches(self, path: str) -> bool:
        """The path is one the configuration names (whether it exists or not)."""
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.patterns)


def guid_of(path: str) -> str:
    """A LUN's GUID as upstream names it: the last component of its path (the WWID of
    /dev/mapper/<wwid>; loop3 for a test's /dev/loop3)."""
    return os.path.basename(path)


@contextlib.contextmanager
def failing_as(error: type[errors.VdsmError]) -> Iterator[None]:
    """LVM, blkid and sysfs failures surface as upstream's default error of the verb
    (600 for device queries, 500 for VG queries), with the command's own words."""
    try:
        yield
    except (LvmError, blkid.BlkidError, TimeoutError, OSError) as e:
        raise error(str(e) or type(e).__name__) from e


FREE = "free"
USED = "used"
UNKNOWN = "unknown"
# what LVM itself writes: a PV not in a VG is free (pvcreate re-creates it)
LVM_SIGNATURE = "LVM2_member"


@dataclass(frozen=True)
class Device:
    """One LUN as Host.getDeviceList reports it."""

    facts: DeviceFacts
    pv: PV | None
    # None when not checked (checkStatus false); else why it is used ("" if free)
    used_by: str | None

    @property
    def path(self) -> str:
        return self.facts.path

    @property
    def guid(self) -> str:
        return guid_of(self.facts.path)

    @property
    def status(self) -> str:
        if self.used_by is None:
            return UNKNOWN
        return USED if self.used_by else FREE


def used_by(facts: DeviceFacts, pv: PV | None, signature: str) -> str:
    """Why a device may not be taken without force ('' if it may): upstream's rule,
    a PV of a VG, a partition table or partitions, or any other signature."""
    if pv is not None and pv.vg_name:
        return f"PV of VG {pv.vg_name}"
    if facts.partitions:
        return f"partitions {', '.join(facts.partitions)}"
    if signature and signature != LVM_SIGNATURE:
        return f"{signature} signature"
    return ""


class Discovery:
    """The LUNs: udev/sysfs facts and LVM membership, cached.

    The facts are read again only when something changed: a udev event about one of
    our devices, or a different set of configured paths (a glob: a few stat()s per
    call), or a GUID asked for that the cache does not hold.  Signatures (blkid) are
    read again when LVM changed something or when the caller wants fresh status.
    """

    def __init__(self, devices: BlockDevices, lvm: Lvm, *, timeout: float) -> None:
        self.devices = devices
        self.lvm = lvm
        self.timeout = timeout
        self._facts: dict[str, DeviceFacts] | None = None
        self._signatures: dict[str, str] = {}
        self._signatures_generation = -1
        self._lock = asyncio.Lock()
        self.scans = 0

    # -- cache ------------------------------------------------------------------------

    def invalidate(self) -> None:
        self._facts = None
        self._signatures.clear()

    def on_event(self, event: BlockEvent) -> None:
        """A udev event: if it is about one of our devices, forget what we know of
        devices and of their PVs (a resized or replaced LUN)."""
        known = self._facts or {}
        ours = (
            self.devices.matches(event.node)
            or any(event.name == f.name for f in known.values())
            or any(event.name == p.name for f in known.values() for p in f.paths)
            # a new multipath map: its event names dm-N, not /dev/mapper/<wwid>; the
            # LVs the domains activate are dm devices too, and none of ours
            or (event.name.startswith("dm-") and not is_logical_volume(event.name))
        )
        if ours:
            log.debug("block device %s %s: rescanning on next use", event.name, event.action)
            self.invalidate()
            self.lvm.invalidate_pvs()

    async def facts(self, *, rescan: bool = False) -> dict[str, DeviceFacts]:
        """The present devices (a device of size 0, such as a detached loop device,
        has no medium and is left out), by path."""
        paths = self.devices.paths()
        async with self._lock:
            cached = self._facts
            if rescan or cached is None or set(cached) != set(paths):
                self.scans += 1
                described = await asyncio.wait_for(
                    asyncio.to_thread(describe_all, paths), self.timeout
                )
                cached = {p: f for p, f in described.items() if f.size > 0}
                self._facts = cached
            return dict(cached)

    async def _signatures_of(self, paths: list[str], *, fresh: bool) -> dict[str, str]:
        if self._signatures_generation != self.lvm.generation:
            self._signatures.clear()
            self._signatures_generation = self.lvm.generation
        missing = [p for p in paths if fresh or p not in self._signatures]
        if missing:
            self._signatures.update(await blkid.probe(missing, self.timeout))
        return {p: self._signatures.get(p, "") for p in paths}

    # -- queries ----------------------------------------------------------------------

    async def listing(
        self, guids: Iterable[str] = (), *, check_status: bool = True, fresh: bool = False
    ) -> list[Device]:
        """The LUNs (only those of `guids` if given), with their status if
        `check_status`.  `fresh` reads PVs and signatures again (another host may
        have used a LUN); otherwise everything comes from the caches."""
        with failing_as(errors.BlockDeviceActionError):
            return await self._listing(guids, check_status, fresh)

    async def _listing(self, guids: Iterable[str], check_status: bool, fresh: bool) -> list[Device]:
        wanted = set(guids)
        facts = await self.facts()
        if wanted - {guid_of(p) for p in facts}:
            # asked for a LUN we do not know: it may have just appeared
            facts = await self.facts(rescan=True)
        chosen = [f for p, f in sorted(facts.items()) if not wanted or guid_of(p) in wanted]
        if fresh:
            self.lvm.invalidate_pvs()
        pvs = await self.lvm.pvs()
        pv_by_guid = {guid_of(name): pv for name, pv in pvs.items()}
        signatures: dict[str, str] = {}
        if check_status:
            signatures = await self._signatures_of([f.path for f in chosen], fresh=fresh)
        devices = []
        for f in chosen:
            pv = pvs.get(f.path) or pv_by_guid.get(guid_of(f.path))
            reason = used_by(f, pv, signatures.get(f.path, "")) if check_status else None
            devices.append(Device(facts=f, pv=pv, used_by=reason))
        return devices

    async def visible(self, guids: Iterable[str]) -> dict[str, bool]:
        """Whether each GUID is a present, readable LUN (rescanning once on a miss)."""
        wanted = list(guids)
        with failing_as(errors.BlockDeviceActionError):
            facts = await self.facts()
            if not all(self._readable(facts, g) for g in wanted):
                facts = await self.facts(rescan=True)
        return {g: self._readable(facts, g) for g in wanted}

    @staticmethod
    def _readable(facts: dict[str, DeviceFacts], guid: str) -> bool:
        return any(guid_of(p) == guid and os.access(p, os.R_OK) for p in facts)

    async def resolve(self, guids: Iterable[str]) -> dict[str, DeviceFacts]:
        """The devices of these GUIDs, by GUID; InaccessiblePhysDev naming the unknown
        ones.  For the block domain code: GUID -> device path is `resolve([g])[g].path`,
        and path -> GUID is `guid_of(path)`."""
        wanted = list(guids)
        with failing_as(errors.BlockDeviceActionError):
            by_guid = {guid_of(p): f for p, f in (await self.facts()).items()}
            if any(g not in by_guid for g in wanted):
                by_guid = {guid_of(p): f for p, f in (await self.facts(rescan=True)).items()}
        unknown = [g for g in wanted if g not in by_guid]
        if unknown:
            raise errors.InaccessiblePhysDev(unknown)
        return {g: by_guid[g] for g in wanted}

    async def path_of(self, guid: str) -> str:
        """The device path of a GUID (InaccessiblePhysDev if there is none)."""
        return (await self.resolve([guid]))[guid].path

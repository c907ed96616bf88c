"""The volumes of a block domain behind the VolumeStore interface (contract §4.1, §4.3).

    LV <sd>/<vol>    tags IU_<img> PU_<parent> MD_<slot> (+ OVIRT_VOL_INITIALIZING
                     and our claim tag while a task creates it)
    metadata         512 bytes in the `metadata` LV at 1 MiB + slot x 8 KiB (V5),
                     slot x 512 (V4 and older)
    lease            the `leases` LV at (100 + slot) x alignment

An image is the set of LVs tagged IU_<img>; deleting one retags its LVs
IU__remove_me_<img> first.  Data is reachable only while the LV is active, so every
activation is counted: a qemu-img step that ends does not deactivate an LV a VM still
uses (Image.prepare without teardown yet).

Slots are taken under one lock per domain, and only the SPM creates volumes, so two
creations never pick the same slot.  A slot is free when no LV's MD_ tag names it:
removing the LV frees it (the bytes are cleared first, so a stale slot never reads as
a volume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import directio, volmeta
from vdsm.storage.volmeta import VolumeMetadata
from vdsm.storage.volume import together
from vdsm.storage.volumestore import LeaseLocation
from vdsm.system.blocking import BlockingCallTimeout
from vdsm.system.lvm import LV, LvmError, LvmUnavailable

if TYPE_CHECKING:
    from vdsm.storage.blockdomain import BlockDomain

log = logging.getLogger("vdsm.storage.blockvolumestore")

T = TypeVar("T")
MiB = sc.MiB
KiB = 1024
TAG_IMAGE = "IU_"
TAG_PARENT = "PU_"
TAG_SLOT = "MD_"
TAG_INITIALIZING = "OVIRT_VOL_INITIALIZING"
# ours, beside upstream's INITIALIZING tag: which task's creation holds the LV, so a
# rollback never removes a volume another task created under the same id
TAG_CLAIM = "VDSM_CLAIM_"
REMOVED_PREFIX = "_remove_me_"
METADATA_SIZE = volmeta.METADATA_SIZE  # 512
SLOT_SIZE_V5 = 8 * KiB
METADATA_BASE_V5 = MiB
SLOT_SIZE_V4 = 512
LEASE_BASE_SLOT = 100
QCOW_OVERHEAD = 1.1
DEFAULT_CHUNK = 2560 * MiB  # upstream's [irs] volume_utilization_chunk_mb


@dataclass(frozen=True)
class LvTags:
    image: str | None
    parent: str | None
    slot: int | None
    initializing: bool
    claim: str | None


def parse_tags(tags: Sequence[str]) -> LvTags:
    image = parent = claim = None
    slot = None
    initializing = False
    for tag in tags:
        if tag.startswith(TAG_IMAGE):
            image = tag[len(TAG_IMAGE) :]
        elif tag.startswith(TAG_PARENT):
            parent = tag[len(TAG_PARENT) :]
        elif tag.startswith(TAG_SLOT):
            with contextlib.suppress(ValueError):
                slot = int(tag[len(TAG_SLOT) :])
        elif tag == TAG_INITIALIZING:
            initializing = True
        elif tag.startswith(TAG_CLAIM):
            claim = tag[len(TAG_CLAIM) :]
    return LvTags(image, parent, slot, initializing, claim)


def slot_offset(version: int, slot: int) -> int:
    if version >= 5:
        return METADATA_BASE_V5 + slot * SLOT_SIZE_V5
    return slot * SLOT_SIZE_V4


def first_slot(version: int) -> int:
    # V5: slot 0 is reserved; V4: slots 0-3 once held the domain metadata
    return 1 if version >= 5 else 4


def slot_count(version: int, metadata_lv_size: int) -> int:
    if version >= 5:
        return (metadata_lv_size - METADATA_BASE_V5) // SLOT_SIZE_V5
    return METADATA_BASE_V5 // SLOT_SIZE_V4  # V4 keeps to the first MiB


def free_slot(occupied: set[int], version: int, count: int) -> int:
    slot = first_slot(version)
    while slot in occupied:
        slot += 1
    if slot >= count:
        raise errors.NoFreeMetadataSlot(f"{len(occupied)} volume metadata slots in use")
    return slot


def lease_offset(slot: int, alignment: int) -> int:
    return (LEASE_BASE_SLOT + slot) * alignment


def allocation(md: VolumeMetadata, initial_size: int | None, chunk: int) -> int:
    """The LV size a new volume gets (upstream's rule): thin COW at its initial size
    plus qcow2 overhead, or one extension chunk (never more than its capacity);
    everything else at full capacity."""
    if md.format == "COW" and md.type == "SPARSE":
        if initial_size:
            return int(initial_size * QCOW_OVERHEAD)
        return min(chunk, md.capacity)
    return initial_size or md.capacity


# -- blocking slot I/O (direct, so another host's write is seen at once) ----------------


def read_slot(path: str, offset: int) -> bytes:
    return directio.read_at(path, offset, METADATA_SIZE)


def write_slot(path: str, offset: int, data: bytes) -> None:
    """One 512-byte sector: the kernel writes it whole, so a reader sees the old
    metadata or the new one."""
    if len(data) > METADATA_SIZE:
        raise errors.MetadataOverflowError(len(data))
    directio.write_at(path, offset, data.ljust(METADATA_SIZE, b"\0"))


def write_head(path: str, data: bytes) -> None:
    """`data` at the start of the device, durable on return, padded with zeros to
    whole 4 KiB blocks."""
    size = -(-len(data) // 4096) * 4096
    directio.write_at(path, 0, data.ljust(size, b"\0"))


def cleared_metadata() -> bytes:
    # what a deleted volume's slot holds: readers answer 757 MetadataCleared
    return b"NONE=" + b"#" * 500 + b"\nEOF\n"


class BlockVolumeStore:
    def __init__(self, domain: BlockDomain, *, chunk: int = DEFAULT_CHUNK) -> None:
        self.domain = domain
        self.lvm = domain.lvm
        self.sd = domain.sd_uuid
        self.chunk = chunk
        self._slots = asyncio.Lock()
        self._active: dict[str, int] = {}  # LV name -> activations not yet undone
        # LVs start_volume created active whose activation end_claim undoes
        self._creating: set[str] = set()
        # volume -> the first metadata start_volume wrote (create_metadata_and_lease
        # then has nothing left to do)
        self._written: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"<BlockVolumeStore {self.sd}>"

    @property
    def hides_unfinished(self) -> bool:
        return True

    @property
    def drive_type(self) -> str:
        return "block"

    # -- plumbing ----------------------------------------------------------------------

    @property
    def _version(self) -> int:
        return self.domain.metadata.version

    def _metadata_lv(self) -> str:
        return str(self.domain.lv_path("metadata"))

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.lvm.device_mapper:
            raise errors.CannotActivateLogicalVolumes(self.sd, "no device-mapper in this kernel")
        try:
            return await self.domain.bulkhead.run(fn, *args)
        except BlockingCallTimeout:
            raise errors.StorageDomainAccessError(self.sd) from None

    async def _lvm(self, coro: Any) -> Any:
        try:
            return await coro
        except LvmUnavailable as e:
            raise errors.CannotActivateLogicalVolumes(self.sd, e.err) from None
        except LvmError as e:
            raise errors.LVMCommandError(self.sd, str(e)) from None

    async def _volume_lvs(self) -> dict[str, LV]:
        return await self._lvm(self.domain.volume_lvs())

    async def _lv(self, img: str, vol: str) -> LV:
        lv = await self._lvm(self.lvm.lv(self.sd, vol))
        if lv is None or parse_tags(lv.tags).image != img:
            raise errors.VolumeDoesNotExist(vol)
        return lv

    async def _slot(self, img: str, vol: str) -> int:
        slot = parse_tags((await self._lv(img, vol)).tags).slot
        if slot is None:
            raise errors.VolumeDoesNotExist(vol)
        return slot

    async def _image_lvs(self, img: str) -> dict[str, LV]:
        return {
            name: lv
            for name, lv in (await self._volume_lvs()).items()
            if parse_tags(lv.tags).image == img
        }

    # -- metadata ------------------------------------------------------------------------

    async def _read(self, lv: LV) -> VolumeMetadata:
        slot = parse_tags(lv.tags).slot
        if slot is None:
            raise errors.VolumeDoesNotExist(lv.name)
        data = await self._io(read_slot, self._metadata_lv(), slot_offset(self._version, slot))
        return volmeta.parse(data)

    async def read_metadata(self, img: str, vol: str) -> VolumeMetadata:
        return await self._read(await self._lv(img, vol))

    async def read_metadata_and_sizes(
        self, img: str, vol: str
    ) -> tuple[VolumeMetadata, tuple[int, int] | None]:
        lv = await self._lv(img, vol)
        return await self._read(lv), (lv.size, lv.size)

    async def write_metadata(self, img: str, vol: str, md: VolumeMetadata) -> None:
        data = md.to_bytes(self._version)  # 756 before anything is written
        await self._write_slot(await self._slot(img, vol), data)

    async def _write_slot(self, slot: int, data: bytes) -> None:
        await self._io(write_slot, self._metadata_lv(), slot_offset(self._version, slot), data)

    # -- listing -------------------------------------------------------------------------

    async def read_image(self, img: str) -> dict[str, VolumeMetadata | Exception]:
        found: dict[str, VolumeMetadata | Exception] = {}
        for name, lv in (await self._image_lvs(img)).items():
            if parse_tags(lv.tags).initializing:
                continue
            try:
                found[name] = await self._read(lv)
            except errors.VdsmError as e:
                found[name] = e
        return found

    async def volume_ids(self, img: str) -> list[str]:
        return sorted(
            n
            for n, lv in (await self._image_lvs(img)).items()
            if not parse_tags(lv.tags).initializing
        )

    async def image_ids(self) -> list[str]:
        return await self.domain.images()

    async def image_exists(self, img: str) -> bool:
        return bool(await self._image_lvs(img))

    async def volume_exists(self, img: str, vol: str) -> bool:
        """LV names are unique in the VG: an id taken in another image is taken.  The
        cached report answers (no re-read on a miss): only the SPM creates volume LVs,
        and should another host have made one, lvcreate itself refuses the name
        (start_volume answers VolumeAlreadyExists)."""
        return vol in await self._lvm(self.lvm.lvs(self.sd))

    # -- creation ------------------------------------------------------------------------

    async def start_volume(
        self, img: str, vol: str, token: str, md: VolumeMetadata, initial_size: int | None
    ) -> None:
        size = allocation(md, initial_size, self.chunk)
        async with self._slots:
            lvs = await self._lvm(self.lvm.lvs(self.sd))
            if vol in lvs:
                raise errors.VolumeAlreadyExists(vol)
            occupied = {s for lv in lvs.values() if (s := parse_tags(lv.tags).slot) is not None}
            metadata_lv = lvs.get("metadata")
            count = slot_count(self._version, metadata_lv.size if metadata_lv else 128 * MiB)
            slot = free_slot(occupied, self._version, count)
            tags = [
                f"{TAG_IMAGE}{img}",
                f"{TAG_PARENT}{md.parent}",
                f"{TAG_SLOT}{slot}",
                TAG_INITIALIZING,
                f"{TAG_CLAIM}{token}",
            ]
            # created active where the data path exists: qemu-img writes it next, and
            # end_claim deactivates it in the lvchange that removes the claim
            active = self.lvm.device_mapper

            async def create() -> None:
                try:
                    await self.lvm.create_lv(self.sd, vol, size, tags=tags, activate=active)
                except LvmError as e:
                    log.error("cannot create LV %s/%s: %s", self.sd, vol, e)
                    if "already exists" in e.err:
                        raise errors.VolumeAlreadyExists(vol) from None
                    # lvcreate may fail after making the LV: the rollback finds it by claim
                    raise errors.CannotCreateLogicalVolume(vol, e.err) from None
                if active:
                    self._active[vol] = self._active.get(vol, 0) + 1
                    self._creating.add(vol)

            if not active:
                await create()  # no data path: the slot cannot be written here
                return
            # No LV names the slot yet, so nobody reads it or its lease: both are written
            # while lvcreate runs.  A crash in between leaves a slot that no tag points
            # to, which is free space to every reader.  (These writes would delay
            # lvcreate if udev watched the domain's LVs: udev/57-vdsm-lvm.rules.)
            data = md.to_bytes(self._version)
            await together(create(), self._write_slot_and_lease(vol, slot, data))
            self._written[vol] = data

    async def create_metadata_and_lease(self, img: str, vol: str, md: VolumeMetadata) -> None:
        data = md.to_bytes(self._version)
        if self._written.pop(vol, None) == data:
            return  # start_volume wrote them while lvcreate ran
        await self._write_slot_and_lease(vol, await self._slot(img, vol), data)

    async def _write_slot_and_lease(self, vol: str, slot: int, data: bytes) -> None:
        lease = self._lease_at(slot)
        await together(
            self._write_slot(slot, data),
            self.domain.lock.format_volume_lease(vol, lease.path, lease.offset),
        )

    async def end_claim(self, img: str, vol: str, token: str) -> None:
        """The claim and INITIALIZING tags go; the activation start_volume made is
        undone by the same lvchange when nothing else still uses the LV."""
        self._written.pop(vol, None)
        deactivate = False
        if vol in self._creating:
            self._creating.discard(vol)
            left = self._active.get(vol, 0) - 1
            if left > 0:
                self._active[vol] = left
            else:
                self._active.pop(vol, None)
                deactivate = True
        tags = [TAG_INITIALIZING, f"{TAG_CLAIM}{token}"]
        try:
            await self.lvm.change_lv_tags(self.sd, vol, remove=tags, deactivate=deactivate)
        except LvmError as e:
            if not deactivate:
                raise errors.LVMCommandError(self.sd, str(e)) from None
            # LVM changes the tags before the activation: an LV left active (still open)
            # has its claim removed all the same, which is all this step must do
            self.lvm.invalidate_lvs(self.sd)
            lv = await self._lvm(self.lvm.lv(self.sd, vol))
            if lv is None or any(t in lv.tags for t in tags):
                raise errors.LVMCommandError(self.sd, str(e)) from None
            log.warning("cannot deactivate %s in %s: %s", vol, self.sd, e)

    async def remove_claimed(self, img: str, vol: str, token: str) -> bool:
        self._written.pop(vol, None)
        self.lvm.invalidate_lvs(self.sd)
        lv = await self._lvm(self.lvm.lv(self.sd, vol))
        if lv is None or parse_tags(lv.tags).claim != token:
            return False
        await self._remove_lv(lv)
        return True

    async def remove_orphans(self, live_tokens: Collection[str]) -> list[str]:
        """LVs still OVIRT_VOL_INITIALIZING that no live task claims: a creation
        killed before its task was persisted.  Removed, slot and all."""
        self.lvm.invalidate_lvs(self.sd)
        removed = []
        for name, lv in (await self._volume_lvs()).items():
            tags = parse_tags(lv.tags)
            if tags.initializing and tags.claim not in live_tokens:
                await self._remove_lv(lv)
                removed.append(name)
        return removed

    async def write_image_head(self, img: str, vol: str, data: bytes) -> None:
        """Writes a new image's first bytes (a qcow2 header and tables qemu-img made in
        a scratch file) onto the volume's LV, which must be active."""
        await self._io(write_head, str(self.data_path(img, vol)), data)

    async def fix_permissions(self, img: str, vol: str) -> None:
        return None  # udev owns the device node

    # -- data ----------------------------------------------------------------------------

    def data_path(self, img: str, vol: str) -> Path:
        return self.domain.lv_path(vol)

    async def lease(self, img: str, vol: str) -> LeaseLocation:
        return self._lease_at(await self._slot(img, vol))

    def _lease_at(self, slot: int) -> LeaseLocation:
        return LeaseLocation(
            self.domain.leases_path, lease_offset(slot, self.domain.metadata.alignment)
        )

    async def _chain(self, img: str, vols: Sequence[str]) -> list[str]:
        """The LVs of `vols` and of every volume under them."""
        lvs = await self._image_lvs(img)
        chain: list[str] = []
        for vol in vols:
            current: str | None = vol
            while current and current != sc.BLANK_UUID and current not in chain:
                if current not in lvs:
                    # a template in another image of the domain
                    lv = await self._lvm(self.lvm.lv(self.sd, current))
                    if lv is None:
                        raise errors.VolumeDoesNotExist(current)
                    lvs[current] = lv
                chain.append(current)
                current = parse_tags(lvs[current].tags).parent
        return chain

    async def activate(self, img: str, vols: Sequence[str]) -> None:
        chain = await self._chain(img, vols)
        # an LV start_volume created active stays so until end_claim, with the table
        # lvcreate loaded: no other host touches a volume still being created
        needed = [name for name in chain if name not in self._creating]
        if needed:
            await self._lvm(self.lvm.activate(self.sd, needed))
        for name in chain:
            self._active[name] = self._active.get(name, 0) + 1

    async def deactivate(self, img: str, vols: Sequence[str] | None) -> None:
        if vols is None:
            names = list(await self._image_lvs(img))
            for name in names:
                self._active.pop(name, None)
                self._creating.discard(name)
            idle = names
        else:
            try:
                chain = await self._chain(img, vols)
            except errors.VolumeDoesNotExist:
                chain = list(vols)
            idle = []
            for name in chain:
                left = self._active.get(name, 0) - 1
                if left > 0:
                    self._active[name] = left
                else:
                    self._active.pop(name, None)
                    idle.append(name)
        lvs = await self._lvm(self.lvm.lvs(self.sd))
        idle = [n for n in idle if n in lvs]
        if idle:
            try:
                await self.lvm.deactivate(self.sd, idle)
            except LvmError as e:
                log.warning("cannot deactivate %s in %s: %s", idle, self.sd, e)

    async def refresh_volume(self, img: str, vol: str) -> None:
        self.lvm.invalidate_lvs(self.sd)
        lv = await self._lv(img, vol)
        if lv.active:
            await self._lvm(self.lvm.activate(self.sd, [vol]))

    async def sizes(self, img: str, vol: str) -> tuple[int, int]:
        lv = await self._lv(img, vol)
        return lv.size, lv.size

    async def _grow(self, vol: str, size: int) -> None:
        try:
            await self.lvm.extend_lv(self.sd, vol, size)
        except LvmError as e:
            raise errors.LogicalVolumeExtendError(vol, e.err) from None

    async def resize_data(self, img: str, vol: str, size: int) -> None:
        await self._lv(img, vol)
        await self._grow(vol, size)

    async def allocate_data(self, img: str, vol: str, size: int, offset: int = 0) -> None:
        await self._lv(img, vol)
        await self._grow(vol, size)

    async def extend_data(self, img: str, vol: str, size: int) -> None:
        await self._lv(img, vol)
        await self._grow(vol, size)

    @asynccontextmanager
    async def rewrite_data(
        self, img: str, vol: str, size: int | None = None
    ) -> AsyncIterator[Path]:
        raise errors.UnsupportedOperation(reason="an LV is rewritten in place, not replaced")
        yield Path()  # pragma: no cover

    # -- removal -------------------------------------------------------------------------

    async def _remove_lv(self, lv: LV) -> None:
        slot = parse_tags(lv.tags).slot
        self._active.pop(lv.name, None)
        self._creating.discard(lv.name)
        try:
            await self.lvm.deactivate(self.sd, [lv.name])
        except LvmError as e:
            log.warning("cannot deactivate %s: %s", lv.name, e)
        if slot is not None and self.lvm.device_mapper:
            # cleared before the LV goes: the freed slot never reads as a volume
            await self._io(
                write_slot,
                self._metadata_lv(),
                slot_offset(self._version, slot),
                cleared_metadata(),
            )
        await self._lvm(self.lvm.remove_lvs(self.sd, [lv.name]))

    async def remove_volume(self, img: str, vol: str) -> None:
        lv = await self._lvm(self.lvm.lv(self.sd, vol))
        if lv is None:
            return
        await self._remove_lv(lv)

    async def tidy_image(self, img: str) -> None:
        return None  # an image is only tags

    async def mark_image_removed(self, img: str) -> str:
        trash = f"{REMOVED_PREFIX}{img}"
        for name in await self._image_lvs(img):
            await self._lvm(
                self.lvm.change_lv_tags(
                    self.sd, name, add=[f"{TAG_IMAGE}{trash}"], remove=[f"{TAG_IMAGE}{img}"]
                )
            )
        return trash

    async def garbage(self) -> list[str]:
        found = set()
        for lv in (await self._volume_lvs()).values():
            image = parse_tags(lv.tags).image
            if image and image.startswith(REMOVED_PREFIX):
                found.add(image)
        return sorted(found)

    async def purge(self, trash: str) -> None:
        for lv in (await self._image_lvs(trash)).values():
            await self._remove_lv(lv)

    # -- VMs -----------------------------------------------------------------------------

    async def link_image(self, img: str, vols: Sequence[str], link: Path) -> None:
        paths = {v: str(self.data_path(img, v)) for v in vols}

        def make() -> None:
            for path in paths.values():
                os.close(os.open(path, os.O_RDONLY))
            link.mkdir(parents=True, exist_ok=True)
            for vol, path in paths.items():
                target = link / vol
                if os.path.islink(target) and os.readlink(target) == path:
                    continue
                tmp = link / f".{vol}.new"
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(path)
                os.rename(tmp, target)

        await self._io(make)

    async def check_readable(self, img: str, vols: Sequence[str]) -> None:
        paths = [str(self.data_path(img, v)) for v in vols]

        def check() -> None:
            for path in paths:
                os.close(os.open(path, os.O_RDONLY))

        await self._io(check)

"""LVM volume groups made of LUNs: the LVMVolumeGroup verbs and Host.getLVMVolumeGroups.

A block storage domain starts as a VG created here (the engine then passes its UUID
to StorageDomain.create).  Upstream's layout: PVs with 128 MiB metadata areas, two
copies (the second at the PV's end), only the first PV's areas in use; extents of
128 MiB; auto-activation off (the VG is shared by every host); the tag
RHAT_storage_domain_UNREADY until a domain is made of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from vdsm import errors
from vdsm.storage.devices import Discovery, failing_as, guid_of
from vdsm.system.lvm import PV, VG, Lvm, LvmError
from vdsm.system.udev import DeviceFacts

log = logging.getLogger("vdsm.storage.volumegroups")

MiB = 1024 * 1024
GiB = 1024 * MiB
METADATA_SIZE = 128 * MiB
EXTENT_SIZE = 128 * MiB
MINIMAL_VG_SIZE = 10 * GiB
UNREADY_DOMAIN_TAG = "RHAT_storage_domain_UNREADY"


@dataclass(frozen=True)
class VolumeGroup:
    vg: VG
    # the PVs with their device facts (None: the PV's device is not one of ours)
    pvs: tuple[tuple[PV, DeviceFacts | None], ...]

    @property
    def devtype(self) -> str:
        kinds = {facts.devtype for _, facts in self.pvs if facts is not None}
        if len(kinds) == 1:
            return kinds.pop()
        return "MIXED" if kinds else ""


class VolumeGroups:
    def __init__(self, lvm: Lvm, discovery: Discovery) -> None:
        self.lvm = lvm
        self.discovery = discovery
        # one creation or removal at a time: two would race for the same LUNs
        self._lock = asyncio.Lock()

    async def create(self, name: str, guids: Sequence[str], *, force: bool = False) -> str:
        """Creates VG `name` on the LUNs `guids`; answers its LVM UUID.

        Refuses unknown GUIDs (606), less than 10 GiB (504), mixed block sizes (517),
        and, unless `force`, LUNs in use: a PV of another VG, partitions or any
        other signature (601).
        """
        async with self._lock:
            found = await self.discovery.resolve(guids)
            devices = [found[g] for g in guids]
            size = sum(d.size for d in devices)
            if size < MINIMAL_VG_SIZE:
                raise errors.VolumeGroupSizeError(
                    f"VG size must be at least {MINIMAL_VG_SIZE // MiB} MiB, "
                    f"the devices hold {size // MiB} MiB"
                )
            block_sizes = {d.logical_block_size for d in devices}
            if len(block_sizes) > 1:
                raise errors.VolumeGroupBlockSizeError(
                    {guid_of(d.path): d.logical_block_size for d in devices}
                )
            with failing_as(errors.VolumeGroupCreateError):
                existing = await self.lvm.vg(name)
            if existing is not None:
                raise errors.VolumeGroupCreateError(name, "a VG of this name exists")
            if not force:
                listed = await self.discovery.listing(guids, check_status=True, fresh=True)
                in_use = {d.guid: d.used_by for d in listed if d.used_by}
                if in_use:
                    raise errors.PhysDevInitializationError(in_use)
            paths = [d.path for d in devices]
            try:
                await self.lvm.create_pvs(
                    paths,
                    metadata_size=METADATA_SIZE,
                    force=force,
                    metadata_copies=2,
                    metadata_ignore=True,
                )
                await self.lvm.enable_metadata_area(paths[0])
            except LvmError as e:
                raise errors.PhysDevInitializationError(str(e)) from None
            try:
                await self.lvm.create_vg(
                    name,
                    paths,
                    extent_size=EXTENT_SIZE,
                    tags=[UNREADY_DOMAIN_TAG],
                    auto_activation=False,
                )
            except LvmError as e:
                raise errors.VolumeGroupCreateError(name, str(e)) from None
            vg = await self.lvm.vg(name)
            if vg is None:
                raise errors.VolumeGroupCreateError(name, "created but not found")
            log.info("created VG %s (%s) on %s", name, vg.uuid, ", ".join(paths))
            return vg.uuid

    async def extend(self, name: str, guids: Sequence[str], *, force: bool = False) -> None:
        """Adds the LUNs `guids` to VG `name` (StorageDomain.extend): their PVs keep no
        VG metadata (it stays on the first PV), as upstream's.  Refuses unknown GUIDs
        (606) and, unless `force`, LUNs in use (601)."""
        async with self._lock:
            found = await self.discovery.resolve(guids)
            paths = [found[g].path for g in guids]
            if not force:
                listed = await self.discovery.listing(guids, check_status=True, fresh=True)
                in_use = {d.guid: d.used_by for d in listed if d.used_by}
                if in_use:
                    raise errors.PhysDevInitializationError(in_use)
            try:
                await self.lvm.create_pvs(
                    paths,
                    metadata_size=METADATA_SIZE,
                    force=force,
                    metadata_copies=2,
                    metadata_ignore=True,
                )
            except LvmError as e:
                raise errors.PhysDevInitializationError(str(e)) from None
            try:
                await self.lvm.extend_vg(name, paths)
            except LvmError as e:
                raise errors.VolumeGroupExtendError(name, str(e)) from None
            log.info("extended VG %s with %s", name, ", ".join(paths))

    async def resize_pv(self, name: str, guid: str) -> int:
        """Makes the PV of `guid` in VG `name` use its whole LUN (after the LUN grew);
        answers the PV's size in bytes."""
        found = await self.discovery.resolve([guid])
        path = found[guid].path
        try:
            await self.lvm.resize_pv(name, path)
            pv = (await self.lvm.pvs()).get(path)
        except LvmError as e:
            raise errors.CouldNotResizePhysicalVolume(path, str(e)) from None
        if pv is None or pv.vg_name != name:
            raise errors.NoSuchPhysicalVolume(path, name)
        return pv.size

    async def by_uuid(self, uuid: str) -> VG:
        with failing_as(errors.VolumeGroupActionError):
            vgs = await self.lvm.vgs()
        for vg in vgs.values():
            if vg.uuid == uuid:
                return vg
        raise errors.VolumeGroupDoesNotExist(vg_uuid=uuid)

    async def remove(self, uuid: str) -> None:
        """Removes the VG (its PVs stay, free); an unknown UUID is not an error, as
        upstream."""
        async with self._lock:
            try:
                vg = await self.by_uuid(uuid)
            except errors.VolumeGroupDoesNotExist:
                log.info("VG %s does not exist; nothing to remove", uuid)
                return
            try:
                await self.lvm.deactivate(vg.name, list(await self.lvm.lvs(vg.name)))
            except LvmError as e:
                # as upstream: a VG being removed may fail to deactivate; vgremove -f
                # still removes it
                log.warning("deactivating VG %s: %s", vg.name, e)
            try:
                await self.lvm.remove_vg(vg.name)
            except LvmError as e:
                raise errors.VolumeGroupRemoveError(vg.name, str(e)) from None
            log.info("removed VG %s (%s)", vg.name, uuid)

    async def info(self, uuid: str) -> VolumeGroup:
        """One VG with its PVs; PVs are read again (the SPM may have extended it)."""
        self.lvm.invalidate_pvs()
        vg = await self.by_uuid(uuid)
        with failing_as(errors.VolumeGroupActionError):
            return (await self._describe([vg]))[0]

    async def all(self) -> list[VolumeGroup]:
        with failing_as(errors.VolumeGroupActionError):
            vgs = sorted((await self.lvm.vgs()).values(), key=lambda v: v.name)
            return await self._describe(vgs)

    async def _describe(self, vgs: list[VG]) -> list[VolumeGroup]:
        pvs = await self.lvm.pvs()
        facts = await self.discovery.facts()
        result = []
        for vg in vgs:
            members = []
            for name in vg.pv_names:
                pv = pvs.get(name)
                if pv is not None:
                    members.append((pv, facts.get(name)))
            result.append(VolumeGroup(vg=vg, pvs=tuple(members)))
        return result

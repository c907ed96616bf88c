"""Block storage domains (ISCSI, FCP): a VG named after the domain (contract §4.1-§4.4).

    VG <sdUUID>, tag RHAT_storage_domain (RHAT_storage_domain_UNREADY while created)
      domain metadata        VG tags MDT_<KEY=VALUE, &code& escaped>, sealed
      special LVs            metadata ids leases inbox outbox xleases(V4+) master
      volumes                LV <volUUID>, tags IU_<img> PU_<parent> MD_<slot>
    <repository>/mnt/blockSD/<sdUUID>/dom_md/<lv> -> /dev/<sdUUID>/<lv>
    <repository>/mnt/blockSD/<sdUUID>/master       the master LV, mounted on the SPM

The VG's tags are the metadata: a change is one `vgchange` that deletes the lines that
went and adds the lines that came, so LVM commits it atomically.  The domain tag is
added last at creation, so a creation that stops half way never looks like a domain.

Creation is in vdsm/storage/blockcreate.py.  Without device-mapper (`Lvm.mode`
"metadata-only") everything stored in LVM metadata
works (creation, the metadata, getInfo/getStats, format); what needs an LV's data (the
sanlock areas, the xleases index, the master file system, zeroing) is skipped at
creation with a warning and is refused later (LvmUnavailable -> 570).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import metadata as md
from vdsm.storage import sdmetadata
from vdsm.storage.blockvolumestore import DEFAULT_CHUNK, BlockVolumeStore, parse_tags
from vdsm.storage.domain import DomainLock, LockFactory
from vdsm.storage.repository import DOMAIN_MD_DIR, METADATA
from vdsm.system import mount
from vdsm.system.blocking import BlockingCallTimeout, Bulkhead
from vdsm.system.lvm import LV, VG, DuplicateVG, Lvm, LvmError, LvmUnavailable, lv_path

log = logging.getLogger("vdsm.storage.blockdomain")

MiB = sc.MiB
DOMAIN_TAG = "RHAT_storage_domain"
UNREADY_TAG = DOMAIN_TAG + "_UNREADY"

EXTENT_SIZE = 128 * MiB
VG_METADATA_SIZE = 128 * MiB  # of each PV (pvcreate --metadatasize)
IDS = "ids"
LEASES = "leases"
INBOX = "inbox"
OUTBOX = "outbox"
XLEASES = "xleases"
MASTER = "master"
IMAGES = "images"
SPECIAL_LVS_V3 = (METADATA, LEASES, IDS, INBOX, OUTBOX, MASTER)
SPECIAL_LVS_V4 = (*SPECIAL_LVS_V3, XLEASES)
METADATA_LV_SIZE = 128 * MiB
MASTER_LV_SIZE = 1024 * MiB
LEASES_SLOTS = 2048
XLEASES_SLOTS = 1024
# zeroed at creation: the V4 and V5 volume metadata areas, and every host's mailbox
RESERVED_METADATA_SIZE = 17 * MiB
RESERVED_MAILBOX_SIZE = 4096 * 2000
# VG metadata is healthy while at least half its area and a fifth of it free remain
MDA_MIN_SIZE = VG_METADATA_SIZE // 2
MDA_MIN_FREE_RATIO = 0.2
MKFS = "mkfs.ext3"


def special_lv_sizes(version: int, alignment: int) -> dict[str, int]:
    """The special LVs of a domain of that version, in creation order, in bytes."""
    sizes = {
        IDS: 8 * MiB,
        INBOX: 16 * MiB,
        OUTBOX: 16 * MiB,
        LEASES: LEASES_SLOTS * alignment,
    }
    if version >= sdmetadata.XLEASES_MIN_VERSION:
        sizes[XLEASES] = XLEASES_SLOTS * alignment
    sizes[MASTER] = MASTER_LV_SIZE
    return sizes


def special_lvs(version: int) -> tuple[str, ...]:
    return SPECIAL_LVS_V4 if version >= sdmetadata.XLEASES_MIN_VERSION else SPECIAL_LVS_V3


def encode_pv(guid: str, uuid: str, pe_count: int, map_offset: int) -> str:
    # pestart is always 0 in upstream's records, whatever the PV's real pe_start
    return f"pv:{guid},uuid:{uuid},pestart:0,pecount:{pe_count},mapoffset:{map_offset}"


def decode_pv(value: str) -> dict[str, str]:
    fields = dict(item.split(":", 1) for item in value.split(",") if ":" in item)
    fields["guid"] = fields.pop("pv", "")
    return fields


def lvm_error(e: LvmError, sd_uuid: str) -> errors.VdsmError:
    if isinstance(e, LvmUnavailable):
        return errors.CannotActivateLogicalVolumes(sd_uuid, "no device-mapper in this kernel")
    if isinstance(e, DuplicateVG):
        return errors.VolumeGroupScanError(e.name, e.err)
    return errors.LVMCommandError(sd_uuid, str(e))


class BlockDomain:
    """One block domain.  Its LVM state comes from the shared Lvm adapter (cached);
    refresh() re-reads it, as another host (the SPM) may have changed it."""

    kind = "block"

    def __init__(
        self,
        sd_uuid: str,
        path: Path,
        *,
        lvm: Lvm,
        lock_factory: LockFactory,
        op_timeout: float,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.sd_uuid = sd_uuid
        self.path = path
        self.lvm = lvm
        self.bulkhead = Bulkhead(f"domain {sd_uuid}", 2, op_timeout)
        self.op_timeout = op_timeout
        self._lock_factory = lock_factory
        self._lock: DomainLock | None = None
        self._metadata: sdmetadata.DomainMetadata | None = None
        self._vg: VG | None = None
        self._writing = asyncio.Lock()
        self.volumes = BlockVolumeStore(self, chunk=chunk)

    def __repr__(self) -> str:
        return f"<BlockDomain {self.sd_uuid}>"

    # -- layout --------------------------------------------------------------------------

    @property
    def md_dir(self) -> Path:
        return self.path / DOMAIN_MD_DIR

    def lv_path(self, name: str) -> Path:
        return Path(lv_path(self.sd_uuid, name))

    @property
    def metadata_path(self) -> Path:
        """What the monitor reads to measure the storage's delay: the metadata LV, or
        without device-mapper the PV under it."""
        if self.lvm.device_mapper or self._vg is None or not self._vg.pv_names:
            return self.lv_path(METADATA)
        return Path(self._vg.pv_names[0])

    @property
    def ids_path(self) -> Path:
        return self.lv_path(IDS)

    @property
    def leases_path(self) -> Path:
        return self.lv_path(LEASES)

    @property
    def xleases_path(self) -> Path:
        return self.lv_path(XLEASES)

    @property
    def images_dir(self) -> Path:
        return self.path / IMAGES

    @property
    def master_dir(self) -> Path:
        return self.path / MASTER

    @property
    def tasks_dir(self) -> Path:
        return self.master_dir / "tasks"

    @property
    def vms_dir(self) -> Path:
        return self.master_dir / "vms"

    # -- metadata ------------------------------------------------------------------------

    async def _vg_now(self) -> VG:
        try:
            vg = await self.lvm.vg(self.sd_uuid)
        except LvmError as e:
            raise lvm_error(e, self.sd_uuid) from None
        if vg is None or DOMAIN_TAG not in vg.tags:
            raise errors.StorageDomainDoesNotExist(self.sd_uuid)
        self._vg = vg
        return vg

    async def refresh(self) -> int:
        """Re-reads the VG (another host may have changed it); answers the version."""
        self.lvm.invalidate_vg(self.sd_uuid)
        vg = await self._vg_now()
        self._metadata = sdmetadata.DomainMetadata(md.from_vg_tags(vg.tags))
        return self._metadata.version

    @property
    def metadata(self) -> sdmetadata.DomainMetadata:
        if self._metadata is None:
            raise RuntimeError(f"metadata of {self.sd_uuid} not read yet")
        return self._metadata

    async def update(
        self, change: Callable[[Mapping[str, str]], Mapping[str, str]]
    ) -> sdmetadata.DomainMetadata:
        """Read-modify-write of the metadata tags, one writer at a time."""
        async with self._writing:
            self.lvm.invalidate_vg(self.sd_uuid)
            vg = await self._vg_now()
            values = md.from_vg_tags(vg.tags)
            new = dict(change(values))
            if new != values:
                sdmetadata.DomainMetadata(new)  # validate before writing
                await write_metadata_tags(self.lvm, self.sd_uuid, vg.tags, new)
            self._metadata = sdmetadata.DomainMetadata(new)
            return self._metadata

    # -- sanlock -------------------------------------------------------------------------

    @property
    def lock(self) -> DomainLock:
        if self._lock is None:
            meta = self.metadata
            self._lock = self._lock_factory(
                self.sd_uuid, self.ids_path, self.leases_path, meta.alignment, meta.block_size
            )
        return self._lock

    async def activate_special_lvs(self) -> None:
        """The special LVs must be active for sanlock and the monitor (device-mapper)."""
        if not self.lvm.device_mapper:
            return
        try:
            await self.lvm.activate(self.sd_uuid, list(special_lvs(self.metadata.version)))
        except LvmError as e:
            raise errors.CannotActivateLogicalVolumes(self.sd_uuid, str(e)) from None
        await self._run(
            _link_special_lvs, self.md_dir, self.sd_uuid, special_lvs(self.metadata.version)
        )

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self.bulkhead.run(fn, *args)
        except BlockingCallTimeout:
            raise errors.StorageDomainAccessError(self.sd_uuid) from None
        except OSError as e:
            log.warning("domain %s: %s", self.sd_uuid, e)
            raise errors.StorageDomainAccessError(self.sd_uuid) from None

    # -- reports -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        meta = self.metadata
        vg = self._vg
        info: dict[str, Any] = {
            "uuid": self.sd_uuid,
            "type": meta.domain_type,
            "class": meta.domain_class,
            "name": meta.description,
            "role": meta.role,
            "pool": meta.pool_uuids,
            "version": str(meta.version),
            "block_size": meta.block_size,
            "alignment": meta.alignment,
        }
        if vg is not None:
            info["vguuid"] = vg.uuid
            info["state"] = "PARTIAL" if vg.partial else "OK"
            pvs = [decode_pv(v) for k, v in sorted(meta.values.items()) if _is_pv_key(k)]
            if pvs:
                # PV0 holds the metadata LV; the VG metadata is on the same device
                info["metadataDevice"] = pvs[0]["guid"]
                info["vgMetadataDevice"] = pvs[0]["guid"]
        return info

    async def space(self) -> tuple[int, int]:
        vg = await self._vg_now()
        return vg.size, vg.free

    async def stats(self) -> dict[str, Any]:
        self.lvm.invalidate_vg(self.sd_uuid)
        return await self.usage()

    async def usage(self) -> dict[str, Any]:
        # as last read: our own changes drop the cached VG, refresh() re-reads it
        vg = await self._vg_now()
        return {
            "disktotal": str(vg.size),
            "diskfree": str(vg.free),
            "mdavalid": vg.mda_size >= MDA_MIN_SIZE,
            "mdathreshold": vg.mda_free >= vg.mda_size * MDA_MIN_FREE_RATIO,
            "mdasize": vg.mda_size,
            "mdafree": vg.mda_free,
        }

    async def volume_lvs(self) -> dict[str, LV]:
        """The LVs that are volumes (not special), by name."""
        try:
            lvs = await self.lvm.lvs(self.sd_uuid)
        except LvmError as e:
            raise lvm_error(e, self.sd_uuid) from None
        return {n: lv for n, lv in lvs.items() if n not in SPECIAL_LVS_V4}

    async def images(self) -> list[str]:
        found = set()
        for lv in (await self.volume_lvs()).values():
            for tag in lv.tags:
                # IU__remove_me_<img>: an image being deleted, not listed
                if tag.startswith("IU_") and not tag.startswith("IU__"):
                    found.add(tag[3:])
        return sorted(found)

    async def validate(self) -> None:
        await self.refresh()

    # -- the master tree -----------------------------------------------------------------

    async def create_master_tree(self) -> None:
        """Mounts the master LV's file system (SPM start) and makes vms/ and tasks/."""
        if not self.lvm.device_mapper:
            raise errors.CannotActivateLogicalVolumes(
                self.sd_uuid, "no device-mapper: no master fs"
            )
        try:
            await self.lvm.activate(self.sd_uuid, [MASTER])
        except LvmError as e:
            raise lvm_error(e, self.sd_uuid) from None
        await self._run(lambda: self.master_dir.mkdir(parents=True, exist_ok=True))
        if not await self._run(mount.mounted_at, self.master_dir):
            await mount.mount(
                str(self.lv_path(MASTER)), self.master_dir, vfstype="ext3", timeout=self.op_timeout
            )

        def create(master: Path) -> None:
            for sub in ("vms", "tasks"):
                (master / sub).mkdir(parents=True, exist_ok=True)

        await self._run(create, self.master_dir)

    async def release_master_tree(self) -> None:
        """Unmounts the master file system (SPM stop); nothing if not mounted."""
        if await self._run(mount.mounted_at, self.master_dir):
            await mount.umount(self.master_dir, timeout=self.op_timeout)
        try:
            await self.lvm.deactivate(self.sd_uuid, [MASTER])
        except LvmError as e:
            log.warning("could not deactivate the master LV of %s: %s", self.sd_uuid, e)

    async def update_pv_mapping(self) -> None:
        """The PVn keys after a PV was added: known PVs keep their record (and so their
        map offsets), new ones are appended after the last, as upstream's mapping."""
        self.lvm.invalidate_vg(self.sd_uuid)
        vg = await self._vg_now()
        pvs = await self.lvm.pvs()

        def remap(values: Mapping[str, str]) -> dict[str, str]:
            new = dict(values)
            records = sorted(
                ((int(k[2:]), decode_pv(v)) for k, v in values.items() if _is_pv_key(k)),
                key=lambda kv: kv[0],
            )
            known = {r["guid"] for _, r in records}
            offset = sum(int(r["pecount"]) for _, r in records)
            n = len(records)
            for path in vg.pv_names:
                pv = pvs.get(path)
                if pv is None or pv.guid in known:
                    continue
                new[f"PV{n}"] = encode_pv(pv.guid, pv.uuid, pv.pe_count, offset)
                offset += pv.pe_count
                n += 1
            return new

        await self.update(remap)

    async def remove_orphans(self, live_tokens: Collection[str]) -> list[str]:
        return await self.volumes.remove_orphans(live_tokens)

    # -- the SPM mailbox -------------------------------------------------------------------

    supports_mailbox = True

    async def extend_volume(self, vol_uuid: str, size: int) -> None:
        try:
            lv = await self.lvm.lv(self.sd_uuid, vol_uuid)
        except LvmError as e:
            raise lvm_error(e, self.sd_uuid) from None
        if lv is None or parse_tags(lv.tags).image is None:
            raise errors.VolumeDoesNotExist(vol_uuid)  # never a special LV
        try:
            await self.lvm.extend_lv(self.sd_uuid, vol_uuid, size)
        except LvmError as e:
            raise errors.LogicalVolumeExtendError(vol_uuid, e.err) from None

    # -- removal -------------------------------------------------------------------------

    async def remove(self) -> None:
        """StorageDomain.format: the whole VG and its PVs go, then the local links."""
        await self.release_master_tree()
        vg = await self._vg_now()
        try:
            await self.lvm.deactivate(self.sd_uuid, list(await self.lvm.lvs(self.sd_uuid)))
            await self.lvm.remove_vg(self.sd_uuid)
            await self.lvm.remove_pvs(list(vg.pv_names))
        except LvmError as e:
            raise lvm_error(e, self.sd_uuid) from None
        await self._run(shutil.rmtree, self.path, True)


def _is_pv_key(key: str) -> bool:
    return key.startswith("PV") and key[2:].isdigit()


def _link_special_lvs(md_dir: Path, sd_uuid: str, names: Sequence[str]) -> None:
    md_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = md_dir / name
        target = lv_path(sd_uuid, name)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        tmp = md_dir / f".{name}.new"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.rename(tmp, link)


async def write_metadata_tags(
    lvm: Lvm, vg_name: str, current_tags: Sequence[str], values: Mapping[str, str]
) -> None:
    """Replaces the MDT_ tags by those of `values` in one vgchange."""
    old = {t for t in current_tags if t.startswith(md.VG_TAG_PREFIX)}
    new = set(md.to_vg_tags(values))
    try:
        await lvm.change_vg_tags(vg_name, add=sorted(new - old), remove=sorted(old - new))
    except LvmError as e:
        raise errors.StorageDomainMetadataCreationError(vg_name, str(e)) from None


async def find(lvm: Lvm, sd_uuid: str) -> bool:
    """Whether a VG of that name carries the domain tag."""
    try:
        vg = await lvm.vg(sd_uuid)
    except LvmError as e:
        raise lvm_error(e, sd_uuid) from None
    return vg is not None and DOMAIN_TAG in vg.tags


async def deactivate_unused_lvs(lvm: Lvm) -> dict[str, list[str]]:
    """Daemon start: the volume LVs an earlier process left active and nothing holds
    open any more (its prepared images, its VMs that are gone) are deactivated, as
    upstream does at start.  LVs a running VM holds open stay; special LVs stay.
    Answers what was deactivated, by VG."""
    done: dict[str, list[str]] = {}
    if not lvm.device_mapper:
        return done
    for vg in await domain_vgs(lvm):
        try:
            lvs = await lvm.lvs(vg)
            idle = [
                name
                for name, lv in lvs.items()
                if lv.active and not lv.opened and name not in SPECIAL_LVS_V4
            ]
            if idle:
                await lvm.deactivate(vg, idle)
                done[vg] = idle
        except LvmError as e:
            log.warning("cannot deactivate the unused LVs of %s: %s", vg, e)
    return done


async def domain_vgs(lvm: Lvm) -> list[str]:
    """The names of every visible VG that is a block domain."""
    try:
        vgs = await lvm.vgs()
    except LvmError as e:
        log.warning("cannot list block domains: %s", e)
        return []
    return sorted(name for name, vg in vgs.items() if DOMAIN_TAG in vg.tags)

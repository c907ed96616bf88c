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

Without device-mapper (`Lvm.mode` "metadata-only") everything stored in LVM metadata
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
from vdsm.storage import sdmetadata, xlease
from vdsm.storage.blockvolumestore import BlockVolumeStore
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


def pv_mapping(pv_order: Sequence[tuple[str, str, int]]) -> dict[str, str]:
    """`PV0..PVn` metadata keys for (guid, pv uuid, pe count) in VG order, the PV that
    holds the metadata LV first; each maps the extents after the previous one."""
    mapping: dict[str, str] = {}
    offset = 0
    for n, (guid, uuid, pe_count) in enumerate(pv_order):
        mapping[f"PV{n}"] = encode_pv(guid, uuid, pe_count, offset)
        offset += pe_count
    return mapping


def new_block_domain(
    sd_uuid: str,
    domain_type: int | str,
    domain_class: int | str,
    description: str,
    vg_uuid: str,
    version: int,
    alignment: int,
    mapping: Mapping[str, str],
) -> dict[str, str]:
    """The metadata upstream writes when it creates a block domain."""
    values = sdmetadata.new_file_domain(
        sd_uuid,
        sc.NFS_DOMAIN,  # validated as a file domain, then made a block one below
        domain_class,
        description,
        "",
        version,
        alignment=alignment,
    )
    del values[sdmetadata.REMOTE_PATH]
    values[sdmetadata.TYPE] = sc.domain_type_name(domain_type)
    values[sdmetadata.VGUUID] = vg_uuid
    if version < 5:
        values[sdmetadata.LOGBLKSIZE] = str(sc.BLOCK_SIZE_512)
        values[sdmetadata.PHYBLKSIZE] = str(sc.BLOCK_SIZE_512)
    values.update(mapping)
    return values


def _lvm_error(e: LvmError, sd_uuid: str) -> errors.VdsmError:
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
        self.volumes = BlockVolumeStore(self)

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
            raise _lvm_error(e, self.sd_uuid) from None
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
            raise _lvm_error(e, self.sd_uuid) from None
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
            raise _lvm_error(e, self.sd_uuid) from None
        await self._run(lambda: self.master_dir.mkdir(parents=True, exist_ok=True))
        if not mount.mounted_at(self.master_dir):
            await mount.mount(
                str(self.lv_path(MASTER)), self.master_dir, vfstype="ext3", timeout=self.op_timeout
            )

        def create(master: Path) -> None:
            for sub in ("vms", "tasks"):
                (master / sub).mkdir(parents=True, exist_ok=True)

        await self._run(create, self.master_dir)

    async def release_master_tree(self) -> None:
        """Unmounts the master file system (SPM stop); nothing if not mounted."""
        if mount.mounted_at(self.master_dir):
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
            raise _lvm_error(e, self.sd_uuid) from None
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


# -- creation ------------------------------------------------------------------------------


async def _find_vg(lvm: Lvm, vg_uuid: str) -> VG:
    vgs = await lvm.vgs()
    found = [vg for vg in vgs.values() if vg.uuid == vg_uuid]
    if not found:
        raise errors.VolumeGroupDoesNotExist(vg_uuid)
    return found[0]


async def _run_command(argv: list[str], timeout: float) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise errors.MkfsError(argv[-1], err.decode(errors="replace").strip())


def _zero(path: str, size: int) -> None:
    """Writes zeros over the first `size` bytes of a device (blocking)."""
    chunk = b"\0" * MiB
    fd = os.open(path, os.O_WRONLY)
    try:
        limit = min(size, os.lseek(fd, 0, os.SEEK_END))
        os.lseek(fd, 0, os.SEEK_SET)
        done = 0
        while done < limit:
            done += os.write(fd, chunk[: min(len(chunk), limit - done)])
        os.fsync(fd)
    finally:
        os.close(fd)


async def create(
    lvm: Lvm,
    blocksd_dir: Path,
    *,
    sd_uuid: str,
    domain_type: int,
    domain_class: int,
    description: str,
    vg_uuid: str,
    version: int,
    block_size: int,
    max_hosts: int,
    lock_factory: LockFactory,
    op_timeout: float,
) -> BlockDomain:
    """Creates a block domain on a VG made by LVMVolumeGroup.create (named after the
    domain, tagged UNREADY, no LVs); answers it, metadata read."""
    if version not in (3, 4, 5):
        raise errors.UnsupportedDomainVersion(version)
    if block_size != sc.BLOCK_SIZE_512:
        # block domains are 512-byte storage in upstream's support matrix
        raise errors.InvalidParameterException("blockSize", block_size)
    alignment = sc.alignment_for(block_size, max_hosts) if version >= 5 else sc.ALIGNMENT_1M
    lvm.invalidate_all()
    try:
        vg = await _find_vg(lvm, vg_uuid)
        if vg.name != sd_uuid:
            raise errors.StorageDomainCreationError(
                sd_uuid, f"VG {vg_uuid} is named {vg.name}, not after the domain"
            )
        await lvm.vg(vg.name)  # DuplicateVG if the name is ambiguous
        if set(vg.tags) != {UNREADY_TAG}:
            raise errors.VolumeGroupHasDomainTag(vg_uuid)
        if await lvm.lvs(vg.name):
            raise errors.StorageDomainNotEmpty(vg_uuid)
    except LvmError as e:
        raise _lvm_error(e, sd_uuid) from None

    created: list[str] = []
    try:
        # the metadata LV goes first, on the PV holding the VG metadata: PV0
        first_pv = vg.pv_names[0]
        await lvm.create_lv(sd_uuid, METADATA, METADATA_LV_SIZE, device=first_pv)
        created.append(METADATA)
        for name, size in special_lv_sizes(version, alignment).items():
            await lvm.create_lv(sd_uuid, name, size)
            created.append(name)
        lvs = await lvm.lvs(sd_uuid)
        pvs = await lvm.pvs()
        metadata_pv = lvs[METADATA].segments[0][0]
        order = [metadata_pv, *(p for p in vg.pv_names if p != metadata_pv)]
        mapping = pv_mapping([(pvs[p].guid, pvs[p].uuid, pvs[p].pe_count) for p in order])
        values = new_block_domain(
            sd_uuid, domain_type, domain_class, description, vg_uuid, version, alignment, mapping
        )
        if lvm.device_mapper:
            await _initialize_data(lvm, sd_uuid, version, alignment, op_timeout)
        else:
            log.warning(
                "domain %s: no device-mapper: sanlock areas, xleases and the master file "
                "system are not written (metadata-only mode)",
                sd_uuid,
            )
        await write_metadata_tags(lvm, sd_uuid, (), values)
        if lvm.device_mapper:
            lock = lock_factory(
                sd_uuid,
                Path(lv_path(sd_uuid, IDS)),
                Path(lv_path(sd_uuid, LEASES)),
                alignment,
                block_size,
            )
            await lock.format()
        # the last step: from here on the VG is a domain
        await lvm.change_vg_tags(sd_uuid, add=[DOMAIN_TAG], remove=[UNREADY_TAG])
    except BaseException as e:
        await _undo_creation(lvm, sd_uuid, created)
        if isinstance(e, LvmError):
            if created and len(created) < len(special_lvs(version)):
                raise errors.CannotCreateLogicalVolume(sd_uuid, str(e)) from None
            raise _lvm_error(e, sd_uuid) from None
        raise
    log.info(
        "created %s block domain %s (V%d) on VG %s",
        values[sdmetadata.TYPE],
        sd_uuid,
        version,
        vg_uuid,
    )
    domain = BlockDomain(
        sd_uuid, blocksd_dir / sd_uuid, lvm=lvm, lock_factory=lock_factory, op_timeout=op_timeout
    )
    await domain.refresh()
    await domain.activate_special_lvs()
    return domain


async def _initialize_data(
    lvm: Lvm, sd_uuid: str, version: int, alignment: int, timeout: float
) -> None:
    """What creation writes into the special LVs: zeros over the volume metadata areas
    and the mailboxes, the xleases index, the master file system."""
    # all of them: sanlock formats ids and leases next
    await lvm.activate(sd_uuid, list(special_lvs(version)))
    try:
        for name, size in (
            (METADATA, RESERVED_METADATA_SIZE),
            (INBOX, RESERVED_MAILBOX_SIZE),
            (OUTBOX, RESERVED_MAILBOX_SIZE),
        ):
            await asyncio.wait_for(asyncio.to_thread(_zero, lv_path(sd_uuid, name), size), timeout)
        if version >= 4:
            await asyncio.wait_for(
                asyncio.to_thread(
                    xlease.format_index, Path(lv_path(sd_uuid, XLEASES)), sd_uuid, alignment
                ),
                timeout,
            )
        await _run_command([MKFS, "-q", "-j", "-E", "nodiscard", lv_path(sd_uuid, MASTER)], timeout)
    finally:
        await lvm.deactivate(sd_uuid, [MASTER])


async def _undo_creation(lvm: Lvm, sd_uuid: str, created: list[str]) -> None:
    """A failed creation removes the LVs it made, so the VG can be used again."""
    if not created:
        return
    try:
        await lvm.deactivate(sd_uuid, created)
        await lvm.remove_lvs(sd_uuid, created)
        vg = await lvm.vg(sd_uuid)
        if vg is not None:
            stale = [t for t in vg.tags if t.startswith(md.VG_TAG_PREFIX)]
            await lvm.change_vg_tags(sd_uuid, remove=stale)
    except LvmError as e:
        log.error("could not undo the creation of domain %s: %s", sd_uuid, e)


async def find(lvm: Lvm, sd_uuid: str) -> bool:
    """Whether a VG of that name carries the domain tag."""
    try:
        vg = await lvm.vg(sd_uuid)
    except LvmError as e:
        raise _lvm_error(e, sd_uuid) from None
    return vg is not None and DOMAIN_TAG in vg.tags


async def domain_vgs(lvm: Lvm) -> list[str]:
    """The names of every visible VG that is a block domain."""
    try:
        vgs = await lvm.vgs()
    except LvmError as e:
        log.warning("cannot list block domains: %s", e)
        return []
    return sorted(name for name, vg in vgs.items() if DOMAIN_TAG in vg.tags)

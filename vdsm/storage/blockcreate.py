"""Creating a block storage domain on a VG made by LVMVolumeGroup.create (contract
§4.1, §4.2): the special LVs, the metadata tags, and with device-mapper the data the
special LVs start with (zeroed areas, xleases index, master file system, sanlock).

The domain tag goes on last, so a creation that stops half way never looks like a
domain; a failed one removes the LVs it made, so the VG can be used again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import metadata as md
from vdsm.storage import sdmetadata, xlease
from vdsm.storage.blockdomain import (
    DOMAIN_TAG,
    IDS,
    INBOX,
    LEASES,
    MASTER,
    METADATA,
    METADATA_LV_SIZE,
    MKFS,
    OUTBOX,
    RESERVED_MAILBOX_SIZE,
    RESERVED_METADATA_SIZE,
    UNREADY_TAG,
    XLEASES,
    BlockDomain,
    encode_pv,
    lvm_error,
    special_lv_sizes,
    special_lvs,
    write_metadata_tags,
)
from vdsm.storage.blockvolumestore import DEFAULT_CHUNK
from vdsm.storage.domain import LockFactory
from vdsm.system import mount
from vdsm.system.lvm import VG, Lvm, LvmError, lv_path

log = logging.getLogger("vdsm.storage.blockcreate")

MiB = sc.MiB


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


async def _find_vg(lvm: Lvm, vg_uuid: str) -> VG:
    vgs = await lvm.vgs()
    found = [vg for vg in vgs.values() if vg.uuid == vg_uuid]
    if not found:
        raise errors.VolumeGroupDoesNotExist(vg_uuid)
    return found[0]


async def _mkfs(device: str, timeout: float) -> None:
    try:
        rc, _, err = await mount.run([MKFS, "-q", "-j", "-E", "nodiscard", device], timeout)
    except mount.CommandTimeout:
        raise errors.MkfsError(device, f"no answer in {timeout:g} s") from None
    if rc != 0:
        raise errors.MkfsError(device, err.strip())


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
    chunk: int = DEFAULT_CHUNK,
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
        raise lvm_error(e, sd_uuid) from None

    created: list[str] = []
    try:
        # the metadata LV goes first, on the PV holding the VG metadata: PV0
        first_pv = vg.pv_names[0]
        await lvm.create_lv(sd_uuid, METADATA, METADATA_LV_SIZE, device=first_pv)
        created.append(METADATA)
        for name, size in special_lv_sizes(version, alignment).items():
            await lvm.create_lv(sd_uuid, name, size)
            created.append(name)
        # the cache knows the LVs we made but not where LVM put them: a fresh report
        lvm.invalidate_lvs(sd_uuid)
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
            raise lvm_error(e, sd_uuid) from None
        raise
    log.info(
        "created %s block domain %s (V%d) on VG %s",
        values[sdmetadata.TYPE],
        sd_uuid,
        version,
        vg_uuid,
    )
    domain = BlockDomain(
        sd_uuid,
        blocksd_dir / sd_uuid,
        lvm=lvm,
        lock_factory=lock_factory,
        op_timeout=op_timeout,
        chunk=chunk,
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
        await _mkfs(lv_path(sd_uuid, MASTER), timeout)
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

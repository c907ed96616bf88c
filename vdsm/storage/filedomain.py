"""File storage domains (NFS, LOCALFS, POSIXFS): layout, creation, metadata, info.

    <mount>/<sdUUID>/dom_md/{metadata, ids, leases, inbox, outbox, xleases (V4+)}
    <mount>/<sdUUID>/images/<imgUUID>/...
    <mount>/<sdUUID>/master/{vms,tasks}            on the master domain

Every file operation on a domain runs in that domain's own bulkhead with a timeout, so
a domain on storage that hangs stalls only itself.

Creation is crash-safe: the domain is built complete under a hidden name
(`.<sdUUID>.creating`) and renamed into place at the end, so a daemon killed half-way
leaves nothing that looks like a domain; the next attempt removes the remains.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import filevolume as fv
from vdsm.storage import metadata as md
from vdsm.storage import sdmetadata, xlease
from vdsm.storage.domain import DomainLock, LockFactory, StorageDomain
from vdsm.storage.filevolumestore import FileVolumeStore
from vdsm.storage.repository import DOMAIN_MD_DIR, METADATA, is_uuid
from vdsm.system.blocking import BlockingCallTimeout, Bulkhead

# DomainLock and LockFactory moved to vdsm.storage.domain; still importable from here.
__all__ = ["DomainLock", "FileDomain", "LockFactory", "create"]

log = logging.getLogger("vdsm.storage.filedomain")

IDS = "ids"
LEASES = "leases"
INBOX = "inbox"
OUTBOX = "outbox"
XLEASES = "xleases"
IMAGES = "images"
MASTER = "master"
MAILBOX_SIZE = 16 * sc.MiB
SPECIAL_FILE_MODE = 0o660
MD_DIR_MODE = 0o775
CREATING_SUFFIX = ".creating"


class FileDomain:
    def __init__(
        self, sd_uuid: str, path: Path, *, lock_factory: LockFactory, op_timeout: float
    ) -> None:
        self.sd_uuid = sd_uuid
        self.path = path
        self.bulkhead = Bulkhead(f"domain {sd_uuid}", 2, op_timeout)
        self._lock_factory = lock_factory
        self._lock: DomainLock | None = None
        self._metadata: sdmetadata.DomainMetadata | None = None
        self._writing = asyncio.Lock()
        self._volumes = FileVolumeStore(self)

    def __repr__(self) -> str:
        return f"<FileDomain {self.sd_uuid} at {self.path}>"

    # -- layout --------------------------------------------------------------------------

    @property
    def md_dir(self) -> Path:
        return self.path / DOMAIN_MD_DIR

    @property
    def metadata_path(self) -> Path:
        return self.md_dir / METADATA

    @property
    def ids_path(self) -> Path:
        return self.md_dir / IDS

    @property
    def leases_path(self) -> Path:
        return self.md_dir / LEASES

    @property
    def xleases_path(self) -> Path:
        return self.md_dir / XLEASES

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

    @property
    def volumes(self) -> FileVolumeStore:
        return self._volumes

    # -- metadata ------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self.bulkhead.run(fn, *args)
        except BlockingCallTimeout:
            raise errors.StorageDomainAccessError(self.sd_uuid) from None
        except FileNotFoundError:
            raise errors.StorageDomainDoesNotExist(self.sd_uuid) from None
        except OSError as e:
            log.warning("domain %s: %s", self.sd_uuid, e)
            raise errors.StorageDomainAccessError(self.sd_uuid) from None

    async def refresh(self) -> int:
        """Re-reads the metadata (direct I/O); answers the domain version."""
        values = await self._run(md.read_file, self.metadata_path)
        self._metadata = sdmetadata.DomainMetadata(values)
        return self._metadata.version

    @property
    def metadata(self) -> sdmetadata.DomainMetadata:
        if self._metadata is None:
            raise RuntimeError(f"metadata of {self.sd_uuid} not read yet")
        return self._metadata

    async def update(
        self, change: Callable[[Mapping[str, str]], Mapping[str, str]]
    ) -> sdmetadata.DomainMetadata:
        """Read-modify-write of the metadata, one writer at a time."""
        async with self._writing:
            values = await self._run(md.read_file, self.metadata_path)
            new = dict(change(values))
            if new != values:
                sdmetadata.DomainMetadata(new)  # validate before writing
                await self._run(md.write_file, self.metadata_path, new)
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

    # -- reports -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        meta = self.metadata
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
        if meta.remote_path is not None:
            info["remotePath"] = meta.remote_path
        return info

    async def space(self) -> tuple[int, int]:
        """(total, free) bytes of the file system holding the domain."""
        st = await self._run(os.statvfs, self.path)
        return st.f_frsize * st.f_blocks, st.f_frsize * st.f_bavail

    async def usage(self) -> dict[str, Any]:
        return await self.stats()

    async def stats(self) -> dict[str, Any]:
        total, free = await self.space()
        # File domains have no VG metadata area; upstream reports these constants.
        return {
            "disktotal": str(total),
            "diskfree": str(free),
            "mdavalid": True,
            "mdathreshold": True,
            "mdasize": 0,
            "mdafree": 0,
        }

    async def images(self) -> list[str]:
        # Through _run, not the store: a failing listing here is the domain's 379.
        result: list[str] = await self._run(fv.list_images, self.images_dir)
        return result

    async def validate(self) -> None:
        await self.refresh()

    # -- the master tree -----------------------------------------------------------------

    async def create_master_tree(self) -> None:
        def create(master: Path) -> None:
            for sub in ("vms", "tasks"):
                (master / sub).mkdir(parents=True, exist_ok=True)

        await self._run(create, self.master_dir)

    async def release_master_tree(self) -> None:
        """Nothing to release: the tree is a directory of the domain (block domains
        unmount their master LV here)."""

    async def remove_orphans(self, live_tokens: Collection[str]) -> list[str]:
        return []

    # File volumes grow by themselves: no mailbox, nothing to extend.
    supports_mailbox = False

    async def extend_volume(self, vol_uuid: str, size: int) -> None:
        return None

    # -- removal -------------------------------------------------------------------------

    async def remove(self) -> None:
        """Deletes the whole domain (StorageDomain.format): metadata first, so a crash
        half-way leaves a directory that no longer looks like a domain."""

        def remove(path: Path, metadata_path: Path) -> None:
            metadata_path.unlink(missing_ok=True)
            shutil.rmtree(path)

        await self._run(remove, self.path, self.metadata_path)


# -- creation ------------------------------------------------------------------------------


def _build(
    staging: Path,
    values: Mapping[str, str],
    version: int,
    alignment: int,
    block_size: int,
    iso: bool,
) -> None:
    """Lays out a complete domain under `staging` (blocking)."""
    md_dir = staging / DOMAIN_MD_DIR
    md_dir.mkdir(parents=True)
    os.chmod(md_dir, MD_DIR_MODE)  # not subject to the umask, as upstream's createdir
    for name, size in ((IDS, 0), (LEASES, 0), (INBOX, MAILBOX_SIZE), (OUTBOX, MAILBOX_SIZE)):
        path = md_dir / name
        with open(path, "wb") as f:
            f.truncate(size)
        os.chmod(path, SPECIAL_FILE_MODE)
    if version >= 4:
        path = md_dir / XLEASES
        path.touch()
        os.chmod(path, SPECIAL_FILE_MODE)
        xlease.format_index(path, str(values[sdmetadata.SDUUID]), alignment, block_size)
    md.write_file(md_dir / METADATA, values)
    images = staging / IMAGES
    images.mkdir()
    if iso:
        (images / sc.ISO_IMAGE_UUID).mkdir()


def _remove_remains(mount: Path, sd_uuid: str) -> None:
    for leftover in mount.glob(f".{sd_uuid}{CREATING_SUFFIX}*"):
        log.info("removing the remains of an interrupted creation: %s", leftover)
        shutil.rmtree(leftover, ignore_errors=True)


def _check_mount(mount: Path, remote_path: str) -> None:
    if not mount.is_dir():
        raise errors.StorageDomainFSNotMounted(str(mount))
    if not os.access(mount, os.R_OK | os.W_OK | os.X_OK):
        raise errors.StorageServerAccessPermissionError(str(mount))
    # One domain per mount, as upstream: remains of another domain refuse creation.
    for entry in os.listdir(mount):
        if is_uuid(entry) and (mount / entry / DOMAIN_MD_DIR).is_dir():
            raise errors.StorageDomainNotEmpty(remote_path)


async def _discard(bulkhead: Bulkhead, staging: Path) -> None:
    """Best effort: a failed creation leaves nothing (what stays is removed next time)."""
    try:
        await bulkhead.run(shutil.rmtree, staging, True)
    except Exception:
        log.warning("could not remove %s", staging)


async def create(
    mount: Path,
    *,
    sd_uuid: str,
    domain_type: int,
    domain_class: int,
    description: str,
    remote_path: str,
    version: int,
    block_size: int,
    max_hosts: int,
    lock_factory: LockFactory,
    op_timeout: float,
) -> FileDomain:
    """Creates a file domain on a connected mount; answers it, metadata read."""
    if version not in (3, 4, 5):
        raise errors.UnsupportedDomainVersion(version)
    if version < 5 and block_size != sc.BLOCK_SIZE_512:
        raise errors.InvalidParameterException("blockSize", block_size)
    alignment = sc.alignment_for(block_size, max_hosts) if version >= 5 else sc.ALIGNMENT_1M
    values = sdmetadata.new_file_domain(
        sd_uuid,
        domain_type,
        domain_class,
        description,
        remote_path,
        version,
        block_size=block_size,
        alignment=alignment,
    )
    staging = mount / f".{sd_uuid}{CREATING_SUFFIX}"
    final = mount / sd_uuid
    bulkhead = Bulkhead(f"domain {sd_uuid}", 1, op_timeout)

    def prepare() -> None:
        _check_mount(mount, remote_path)
        _remove_remains(mount, sd_uuid)
        _build(
            staging,
            values,
            version,
            alignment,
            block_size,
            sc.domain_class_name(domain_class) == "Iso",
        )

    try:
        await bulkhead.run(prepare)
        # sanlock: the lockspace on ids and the SDM resource on leases, in place.
        lock = lock_factory(
            sd_uuid,
            staging / DOMAIN_MD_DIR / IDS,
            staging / DOMAIN_MD_DIR / LEASES,
            alignment,
            block_size,
        )
        await lock.format()
        await bulkhead.run(os.rename, staging, final)
    except BaseException as e:
        if not isinstance(e, errors.StorageDomainNotEmpty | errors.StorageDomainFSNotMounted):
            await _discard(bulkhead, staging)
        if isinstance(e, BlockingCallTimeout):
            raise errors.StorageDomainCreationError(sd_uuid, "storage does not answer") from None
        if isinstance(e, OSError) and not isinstance(e, TimeoutError):
            if e.errno in (errno.EACCES, errno.EPERM):
                raise errors.StorageServerAccessPermissionError(str(mount)) from None
            raise errors.StorageDomainCreationError(sd_uuid, str(e)) from None
        raise
    log.info("created %s domain %s (V%d) on %s", values[sdmetadata.TYPE], sd_uuid, version, mount)
    domain = FileDomain(sd_uuid, final, lock_factory=lock_factory, op_timeout=op_timeout)
    await domain.refresh()
    return domain


if TYPE_CHECKING:
    # mypy proves here that a FileDomain is a StorageDomain (and its store a VolumeStore).
    def _is_storage_domain(domain: FileDomain) -> StorageDomain:
        return domain

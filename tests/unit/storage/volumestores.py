"""Real volume stores for the store tests: each factory builds a domain of its kind
under a test's tmp directory and answers it; the domain's `.volumes` is the store.

A block store joins by adding a factory here (a VG on a loop device, in the kernel
lab) to STORE_FACTORIES: the contract tests in test_volumestore_contract.py then run
against it too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from vdsm.storage import constants as sc
from vdsm.storage import filedomain, volmeta
from vdsm.storage.domain import DomainLock, StorageDomain
from vdsm.storage.volmeta import VolumeMetadata
from vdsm.storage.volumestore import VolumeStore, activated

SD_UUID = "5d5d5d5d-0000-4000-8000-000000000001"
IMG = "1a1a1a1a-0000-4000-8000-000000000001"
OTHER_IMG = "1a1a1a1a-0000-4000-8000-000000000002"
BASE = "2b2b2b2b-0000-4000-8000-000000000001"
TOP = "2b2b2b2b-0000-4000-8000-000000000002"
MiB = 1024 * 1024


class _UnusedLock:
    """Stands in for sanlock at domain creation: formatting the ids and leases files is
    not what the store tests are about, and sanlock needs a daemon."""

    async def format(self) -> None:
        pass

    async def format_volume_lease(self, vol_uuid: str, path: Path, offset: int = 0) -> None:
        pass


def _unused_lock(*args: object) -> DomainLock:
    return _UnusedLock()  # type: ignore[return-value]


async def file_domain(root: Path) -> StorageDomain:
    """A V5 LOCALFS data domain on a plain directory, as StorageDomain.create lays it out."""
    mount = root / "mnt"
    mount.mkdir()
    return await filedomain.create(
        mount,
        sd_uuid=SD_UUID,
        domain_type=sc.LOCALFS_DOMAIN,
        domain_class=sc.DATA_DOMAIN,
        description="store-test",
        remote_path=str(mount),
        version=5,
        block_size=sc.BLOCK_SIZE_512,
        max_hosts=250,
        lock_factory=_unused_lock,
        op_timeout=10.0,
    )


DomainFactory = Callable[[Path], Awaitable[StorageDomain]]

STORE_FACTORIES: dict[str, DomainFactory] = {"file": file_domain}


def metadata(
    domain: StorageDomain, img: str, *, parent: str = sc.BLANK_UUID, fmt: str = "RAW"
) -> VolumeMetadata:
    return VolumeMetadata(
        domain=domain.sd_uuid,
        image=img,
        parent=parent,
        capacity=MiB,
        format=fmt,
        type="SPARSE" if fmt == "COW" else "PREALLOCATED",
        voltype="LEAF",
        disktype="DATA",
        description="contract",
        legality=volmeta.ILLEGAL,
    )


async def create(
    store: VolumeStore, domain: StorageDomain, img: str, vol: str, token: str, **kw: str
) -> VolumeMetadata:
    """A complete volume the way Volumes._create makes one (without sanlock)."""
    md = metadata(domain, img, **kw)
    await store.start_volume(img, vol, token, md, None)
    await store.create_metadata_and_lease(img, vol, md)
    async with activated(store, img, [vol]):
        await store.resize_data(img, vol, md.capacity)
    await store.end_claim(img, vol, token)
    return md

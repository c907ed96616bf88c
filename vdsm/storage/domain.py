"""What the pool, the SPM, the monitor, the leases and the volume verbs need of a storage
domain, whatever keeps it: a directory on a mount (vdsm/storage/filedomain.py) or a VG
(block domains).  Code above the domain types against `StorageDomain`, never against a
backend's class.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

from vdsm.storage import sdmetadata
from vdsm.storage.volumestore import VolumeStore
from vdsm.system.blocking import Bulkhead


class DomainLock(Protocol):
    """The sanlock side of a domain (vdsm.storage.clusterlock.DomainLock)."""

    async def format(self) -> None: ...

    async def format_volume_lease(self, vol_uuid: str, path: Path, offset: int = 0) -> None: ...

    async def join(self, host_id: int) -> None: ...

    async def joined(self, host_id: int) -> bool | None: ...

    async def wait_joined(self, host_id: int, timeout: float) -> None: ...

    async def leave(self, host_id: int, unused: bool = False) -> None: ...

    async def acquire_sdm(self) -> int: ...

    async def release_sdm(self) -> None: ...

    async def sdm_owner(self) -> tuple[int, int]: ...


# Builds the lock of a domain: (sd_uuid, ids path, leases path, alignment, block size).
LockFactory = Callable[[str, Path, Path, int, int], DomainLock]


class StorageDomain(Protocol):
    sd_uuid: str
    # The domain's own blocking calls (metadata, listing, volumes) run here, so a
    # domain on storage that hangs stalls only itself.
    bulkhead: Bulkhead

    @property
    def path(self) -> Path:
        """The directory the pool links to (<repository>/<sp>/<sd> -> here)."""
        ...

    @property
    def metadata_path(self) -> Path:
        """What the monitor reads to measure the read delay."""
        ...

    @property
    def xleases_path(self) -> Path:
        """The external leases volume (V4+)."""
        ...

    @property
    def master_dir(self) -> Path: ...

    @property
    def tasks_dir(self) -> Path:
        """Where SPM tasks persist on the master domain."""
        ...

    @property
    def vms_dir(self) -> Path: ...

    @property
    def volumes(self) -> VolumeStore:
        """Where the domain keeps its images and volumes."""
        ...

    @property
    def metadata(self) -> sdmetadata.DomainMetadata:
        """As last read (RuntimeError before the first refresh)."""
        ...

    @property
    def lock(self) -> DomainLock: ...

    async def refresh(self) -> int:
        """Re-reads the metadata; answers the domain version."""
        ...

    async def update(
        self, change: Callable[[Mapping[str, str]], Mapping[str, str]]
    ) -> sdmetadata.DomainMetadata:
        """Read-modify-write of the metadata, one writer at a time."""
        ...

    def info(self) -> dict[str, Any]:
        """StorageDomain.getInfo from the metadata as last read."""
        ...

    async def space(self) -> tuple[int, int]:
        """(total, free) bytes."""
        ...

    async def stats(self) -> dict[str, Any]:
        """StorageDomain.getStats."""
        ...

    async def usage(self) -> dict[str, Any]:
        """The figures of stats() as of the last refresh() (the monitor's, which
        refreshes right before: no second read of the storage)."""
        ...

    async def images(self) -> list[str]:
        """The ids of the domain's images."""
        ...

    async def validate(self) -> None:
        """Raises unless the domain is reachable and its metadata valid."""
        ...

    async def create_master_tree(self) -> None:
        """The master's vms/ and tasks/ directories (SPM start)."""
        ...

    async def release_master_tree(self) -> None:
        """Undoes what create_master_tree holds (SPM stop): block domains unmount
        their master LV; file domains hold nothing."""
        ...

    async def remove_orphans(self, live_tokens: Collection[str]) -> list[str]:
        """SPM start, after the persisted tasks were recovered: removes the volumes
        whose creation no task will finish (a daemon killed before its task was
        saved); answers their ids.  File domains: their claims are undone by the
        tasks, nothing else to do."""
        ...

    @property
    def supports_mailbox(self) -> bool:
        """Its thin volumes grow on request through the SPM mailbox, which lives in
        the inbox/outbox of dom_md when the domain is the master (block domains)."""
        ...

    async def extend_volume(self, vol_uuid: str, size: int) -> None:
        """SPM, on a mailbox request: the volume's allocation grows to at least `size`
        bytes.  It is not refreshed here: the host that asked refreshes it when it
        reads the reply (a VM migrating off this host must not see it first)."""
        ...

    async def remove(self) -> None:
        """Deletes the whole domain (StorageDomain.format)."""
        ...

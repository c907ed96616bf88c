"""Where a domain keeps its volumes: the one interface the volume verbs use.

The verbs (vdsm/storage/volumes.py, images.py, sdm.py) decide *what* happens to a
volume; a store decides *where* it happens.  A file domain keeps a volume as three
files in an image directory (vdsm/storage/filevolumestore.py); a block domain keeps it
as an LV whose tags name its image, parent and metadata slot, its metadata in a slot of
the `metadata` LV and its lease in the `leases` LV.  Everything that differs between
the two lives behind `VolumeStore`, so a second backend plugs in without the verbs
changing.

Shared rules of every method:
- it is a coroutine; blocking storage I/O runs in the domain's bulkhead, and storage
  that does not answer raises 379 StorageDomainAccessError (never a stuck verb);
- I/O failures of the storage itself raise OSError (the verbs turn it into their own
  code: VolumeCreationError, VolumeExtendingError, ...);
- `token` is the id of the SPM task creating a volume: it is persisted in the task's
  rollback (volume.remove_halfbaked), so it must mean the same after a daemon restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vdsm.storage.volmeta import VolumeMetadata


@dataclass(frozen=True)
class LeaseLocation:
    """Where a volume's sanlock resource lives: a file at offset 0 on file domains,
    the `leases` LV at (100 + slot) x alignment on block domains."""

    path: Path
    offset: int


class VolumeStore(Protocol):
    @property
    def drive_type(self) -> str:
        """What a VM's drive on these volumes is: "file" or "block" (Image.prepare's
        info.type)."""
        ...

    @property
    def hides_unfinished(self) -> bool:
        """Whether a volume stays out of every listing until end_claim (block: its LV
        is tagged OVIRT_VOL_INITIALIZING), so its first metadata may already be the
        final one; else (file: the .meta file makes it visible) it is written ILLEGAL
        first and made LEGAL once the data is complete."""
        ...

    # -- metadata --------------------------------------------------------------------

    async def read_metadata(self, img: str, vol: str) -> VolumeMetadata:
        """The volume's metadata; 201 VolumeDoesNotExist when it has none in `img`."""
        ...

    async def read_metadata_and_sizes(
        self, img: str, vol: str
    ) -> tuple[VolumeMetadata, tuple[int, int] | None]:
        """Metadata and (apparent, true) sizes in one trip; sizes None when the data
        cannot be read; 201 VolumeDoesNotExist without metadata."""
        ...

    async def write_metadata(self, img: str, vol: str, md: VolumeMetadata) -> None:
        """Replaces the metadata atomically (a reader sees old or new, never a mix);
        MetadataOverflowError before anything is written when it does not fit."""
        ...

    # -- listing ---------------------------------------------------------------------

    async def read_image(self, img: str) -> dict[str, VolumeMetadata | Exception]:
        """Every volume of the image with its metadata or why it cannot be read;
        empty for an image that does not exist."""
        ...

    async def volume_ids(self, img: str) -> list[str]:
        """The sorted ids of the image's volumes (those with metadata); [] if none."""
        ...

    async def image_ids(self) -> list[str]:
        """The sorted ids of the domain's images, without images being deleted."""
        ...

    async def image_exists(self, img: str) -> bool:
        """Whether the domain holds the image (even with no complete volume)."""
        ...

    async def volume_exists(self, img: str, vol: str) -> bool:
        """Whether any part of the volume (data or metadata) exists."""
        ...

    # -- creation (inside an SPM task; undone by remove_claimed) -----------------------

    async def start_volume(
        self, img: str, vol: str, token: str, md: VolumeMetadata, initial_size: int | None
    ) -> None:
        """Creates the volume's empty data storage claimed by `token` (file: a claim
        link; block: an LV tagged OVIRT_VOL_INITIALIZING, sized from `md` or
        `initial_size`, with its metadata slot, which it may already fill with `md`
        and whose lease it may format while lvcreate runs); 212 VolumeAlreadyExists
        if taken."""
        ...

    async def create_metadata_and_lease(self, img: str, vol: str, md: VolumeMetadata) -> None:
        """Writes the volume's first metadata `md`, makes its lease area and formats
        the lease there (file: <vol>.meta and <vol>.lease; block: the slot and its
        lease area in the `leases` LV)."""
        ...

    async def end_claim(self, img: str, vol: str, token: str) -> None:
        """The creation by `token` is complete: from now on remove_claimed(token)
        leaves the volume alone (block: drops OVIRT_VOL_INITIALIZING)."""
        ...

    async def remove_claimed(self, img: str, vol: str, token: str) -> bool:
        """Rollback of a creation: removes the volume only if `token`'s claim still
        holds it (never another volume created under the same id); answers whether
        it removed one."""
        ...

    async def fix_permissions(self, img: str, vol: str) -> None:
        """After a tool wrote the data: the data has the volume mode (file: 0660;
        block: nothing, udev owns the device node)."""
        ...

    # -- data --------------------------------------------------------------------------

    def data_path(self, img: str, vol: str) -> Path:
        """Where qemu-img and VMs read and write the data (file: the image file;
        block: /dev/<sd>/<vol>, usable only while activated).  Pure: no I/O."""
        ...

    async def lease(self, img: str, vol: str) -> LeaseLocation:
        """Where the volume's sanlock resource lives; 201 VolumeDoesNotExist when
        the store must look it up and cannot find the volume."""
        ...

    async def activate(self, img: str, vols: Sequence[str]) -> None:
        """Makes the data of `vols` and of their backing chains readable and writable
        at data_path (block: lvchange -ay; file: nothing)."""
        ...

    async def deactivate(self, img: str, vols: Sequence[str] | None) -> None:
        """Undoes activate for `vols` (None: every volume of the image); never fails
        for a volume already inactive or gone, and leaves active what a VM still uses
        (an Image.prepare not yet torn down) (file: nothing)."""
        ...

    async def refresh_volume(self, img: str, vol: str) -> None:
        """Re-reads what another host may have changed under this one (block: the LV
        size after the SPM extended it; file: nothing); the caller has checked that
        the volume exists."""
        ...

    async def sizes(self, img: str, vol: str) -> tuple[int, int]:
        """(apparent size, bytes allocated) of the data (file: stat; block: the LV
        size twice); OSError when the data is missing."""
        ...

    async def resize_data(self, img: str, vol: str, size: int) -> None:
        """Makes a RAW volume's data `size` bytes long (file: truncate; block: extend
        the LV, never shrink)."""
        ...

    async def allocate_data(self, img: str, vol: str, size: int, offset: int = 0) -> None:
        """Reserves storage for the data up to `size` from `offset` (file:
        posix_fallocate, ENOSPC as OSError; block: the LV at least `size`)."""
        ...

    async def extend_data(self, img: str, vol: str, size: int) -> None:
        """Grows the storage under a thin (COW) volume to at least `size` bytes,
        capacity unchanged (file: nothing, files grow by themselves; block: lvextend)."""
        ...

    def rewrite_data(
        self, img: str, vol: str, size: int | None = None
    ) -> AbstractAsyncContextManager[Path]:
        """A scratch path beside the data: on normal exit it is cut to `size` (if
        given) and atomically replaces the data; always removed afterwards (block:
        UnsupportedOperation 75, an LV is rewritten in place)."""
        ...

    # -- removal -----------------------------------------------------------------------

    async def remove_volume(self, img: str, vol: str) -> None:
        """Removes data and lease, metadata last, so a half-removed volume never looks
        complete; nothing for parts already gone."""
        ...

    async def tidy_image(self, img: str) -> None:
        """Drops the image's container when no volume is left in it (file: the empty
        image directory; block: nothing)."""
        ...

    async def mark_image_removed(self, img: str) -> str:
        """Takes the image out of every listing in one atomic step (file: rename to
        `_remove_me_<img>`; block: IU_ tags to `IU__remove_me_<img>`); answers the
        name to pass to purge."""
        ...

    async def garbage(self) -> list[str]:
        """Names of images marked removed whose removal was interrupted."""
        ...

    async def purge(self, trash: str) -> None:
        """Removes everything of an image marked removed (its volumes and leases)."""
        ...

    # -- VMs ---------------------------------------------------------------------------

    async def link_image(self, img: str, vols: Sequence[str], link: Path) -> None:
        """Makes `link/<vol>` name the data of each of `vols` (the relative backing
        names in qcow2 headers resolve there) after checking each is readable
        (OSError if not); `link` is a symlink or a directory of symlinks that can be
        removed without touching the volumes."""
        ...

    async def check_readable(self, img: str, vols: Sequence[str]) -> None:
        """OSError unless the data of every one of `vols` can be opened."""
        ...


@asynccontextmanager
async def activated(store: VolumeStore, img: str, vols: Sequence[str]) -> AsyncIterator[None]:
    """The data of `vols` (and their chains) usable for the duration of a qemu-img
    step; deactivated after, whatever happens."""
    await store.activate(img, vols)
    try:
        yield
    finally:
        await store.deactivate(img, vols)

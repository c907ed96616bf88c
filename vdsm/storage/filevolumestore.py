"""The volumes of a file domain (NFS, LOCALFS, POSIXFS) behind the VolumeStore
interface: the blocking helpers of vdsm/storage/filevolume.py, each run in the domain's
bulkhead.

    <sd>/images/<img>/<vol>          data
    <sd>/images/<img>/<vol>.meta     metadata
    <sd>/images/<img>/<vol>.lease    lease, offset 0

Files need no activation and grow by themselves, so activate, deactivate and
extend_data do nothing here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from vdsm import errors
from vdsm.storage import filevolume as fv
from vdsm.storage.volmeta import VolumeMetadata
from vdsm.storage.volumestore import LeaseLocation, VolumeStore
from vdsm.system.blocking import BlockingCallTimeout

if TYPE_CHECKING:
    from vdsm.storage.filedomain import FileDomain

T = TypeVar("T")


class FileVolumeStore:
    def __init__(self, domain: FileDomain) -> None:
        self.domain = domain

    def __repr__(self) -> str:
        return f"<FileVolumeStore {self.domain.images_dir}>"

    @property
    def hides_unfinished(self) -> bool:
        return False

    @property
    def drive_type(self) -> str:
        return "file"

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking file operation in the domain's bulkhead; storage that does not
        answer becomes 379 (the domain), not a stuck verb."""
        try:
            return await self.domain.bulkhead.run(fn, *args)
        except BlockingCallTimeout:
            raise errors.StorageDomainAccessError(self.domain.sd_uuid) from None

    def _image_dir(self, img: str) -> Path:
        return self.domain.images_dir / img

    def _paths(self, img: str, vol: str) -> fv.VolumePaths:
        return fv.VolumePaths.of(self._image_dir(img), vol)

    # -- metadata ------------------------------------------------------------------------

    async def read_metadata(self, img: str, vol: str) -> VolumeMetadata:
        return await self._io(fv.read_metadata, self._paths(img, vol).meta, vol)

    async def read_metadata_and_sizes(
        self, img: str, vol: str
    ) -> tuple[VolumeMetadata, tuple[int, int] | None]:
        return await self._io(fv.read_metadata_and_sizes, self._paths(img, vol), vol)

    async def write_metadata(self, img: str, vol: str, md: VolumeMetadata) -> None:
        meta = self._paths(img, vol).meta
        await self._io(fv.write_metadata, meta, md, self.domain.metadata.version)

    # -- listing -------------------------------------------------------------------------

    async def read_image(self, img: str) -> dict[str, VolumeMetadata | Exception]:
        return await self._io(fv.read_image, self._image_dir(img))

    async def volume_ids(self, img: str) -> list[str]:
        return sorted(await self._io(fv.list_volumes, self._image_dir(img)))

    async def image_ids(self) -> list[str]:
        return await self._io(fv.list_images, self.domain.images_dir)

    async def image_exists(self, img: str) -> bool:
        return await self._io(fv.images_holding, self.domain.images_dir, img)

    async def volume_exists(self, img: str, vol: str) -> bool:
        return await self._io(fv.VolumePaths.exists, self._paths(img, vol))

    # -- creation ------------------------------------------------------------------------

    async def start_volume(
        self, img: str, vol: str, token: str, md: VolumeMetadata, initial_size: int | None
    ) -> None:
        # Files are sized by the data step (truncate, qemu-img): md and initial_size
        # matter only to stores that allocate up front.
        await self._io(fv.start_volume, self._image_dir(img), self._paths(img, vol), vol, token)

    async def create_metadata_and_lease(self, img: str, vol: str, md: VolumeMetadata) -> None:
        paths = self._paths(img, vol)
        await self._io(fv.finish_volume, paths, md, self.domain.metadata.version)
        await self.domain.lock.format_volume_lease(vol, paths.lease, 0)

    async def end_claim(self, img: str, vol: str, token: str) -> None:
        await self._io(fv.end_claim, self._paths(img, vol), token)

    async def remove_claimed(self, img: str, vol: str, token: str) -> bool:
        return await self._io(fv.remove_claimed, self._paths(img, vol), token)

    async def fix_permissions(self, img: str, vol: str) -> None:
        await self._io(fv.set_permissions, self._paths(img, vol).data)

    # -- data ----------------------------------------------------------------------------

    def data_path(self, img: str, vol: str) -> Path:
        return self._paths(img, vol).data

    async def lease(self, img: str, vol: str) -> LeaseLocation:
        return LeaseLocation(self._paths(img, vol).lease, 0)

    async def activate(self, img: str, vols: Sequence[str]) -> None:
        pass

    async def deactivate(self, img: str, vols: Sequence[str] | None) -> None:
        pass

    async def refresh_volume(self, img: str, vol: str) -> None:
        pass  # every host reads a file's size from the file system itself

    async def sizes(self, img: str, vol: str) -> tuple[int, int]:
        return await self._io(fv.sizes, self.data_path(img, vol))

    async def resize_data(self, img: str, vol: str, size: int) -> None:
        await self._io(fv.truncate, self.data_path(img, vol), size)

    async def allocate_data(self, img: str, vol: str, size: int, offset: int = 0) -> None:
        await self._io(fv.preallocate, self.data_path(img, vol), size, offset)

    async def extend_data(self, img: str, vol: str, size: int) -> None:
        pass

    @asynccontextmanager
    async def rewrite_data(
        self, img: str, vol: str, size: int | None = None
    ) -> AsyncIterator[Path]:
        data = self.data_path(img, vol)
        scratch = data.with_name(f".{vol}.sparsify")
        try:
            yield scratch
            await self._io(fv.replace_data, scratch, data, size)
        finally:
            await self._io(fv.remove_scratch, scratch)

    # -- removal -------------------------------------------------------------------------

    async def remove_volume(self, img: str, vol: str) -> None:
        await self._io(fv.remove_volume, self._paths(img, vol))

    async def tidy_image(self, img: str) -> None:
        await self._io(fv.remove_image_dir_if_empty, self._image_dir(img))

    async def mark_image_removed(self, img: str) -> str:
        trash = await self._io(fv.mark_image_for_removal, self._image_dir(img))
        return trash.name

    async def garbage(self) -> list[str]:
        return [path.name for path in await self._io(fv.garbage, self.domain.images_dir)]

    async def purge(self, trash: str) -> None:
        if not trash.startswith(fv.REMOVE_PREFIX):
            raise ValueError(f"{trash!r} is not an image marked for removal")
        await self._io(fv.remove_tree, self.domain.images_dir / trash)

    # -- VMs -----------------------------------------------------------------------------

    async def link_image(self, img: str, vols: Sequence[str], link: Path) -> None:
        data = [self.data_path(img, vol) for vol in vols]
        await self._io(fv.link_image, self._image_dir(img), data, link)

    async def check_readable(self, img: str, vols: Sequence[str]) -> None:
        await self._io(fv.check_readable, [self.data_path(img, vol) for vol in vols])


if TYPE_CHECKING:
    # mypy proves here that FileVolumeStore satisfies the protocol.
    def _is_volume_store(store: FileVolumeStore) -> VolumeStore:
        return store

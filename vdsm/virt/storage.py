"""Disks on storage domains: the VM side of Image.prepare / Image.teardown.

The storage service is plugged in through `ImagePreparer`; the VM code only knows that
a drive whose ovirt-vm:device metadata names poolID/domainID/imageID/volumeID needs a
path before the domain can start, and a teardown once the VM is gone.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from vdsm.virt import domainxml
from vdsm.virt.domainxml import DeviceMeta, DomainSpec

log = logging.getLogger("vdsm.virt.storage")


class ImagePreparer(Protocol):
    async def prepare(self, pool_id: str, domain_id: str, image_id: str, volume_id: str) -> str:
        """Activates the volume chain; returns the path of the volume."""
        ...

    async def teardown(
        self, pool_id: str, domain_id: str, image_id: str, volume_id: str
    ) -> None: ...


class DiskPrepareError(Exception):
    """A drive could not be prepared; the text is the VM's exit message.  `prepared`
    lists the drives prepared before it, for the caller to tear down."""

    def __init__(self, message: str, prepared: list[DeviceMeta]) -> None:
        super().__init__(message)
        self.prepared = prepared


async def prepare_drives(spec: DomainSpec, preparer: ImagePreparer | None) -> list[DeviceMeta]:
    """Points every storage-domain drive of `spec` at its prepared path.

    Returns the prepared drives; on failure the error's `prepared` lists those done
    before it, so the caller tears down exactly those.
    """
    prepared: list[DeviceMeta] = []
    for meta, dev in domainxml.storage_drives(spec):
        ref = meta.storage_ref
        assert ref is not None
        disk = domainxml.disk_by_target(spec.root, dev)
        if disk is None:
            log.warning("drive metadata for %r matches no <disk>; ignored", dev)
            continue
        if preparer is None:
            raise DiskPrepareError(
                f"cannot prepare drive {dev}: no image preparer (storage) is configured "
                f"for image {ref[2]} volume {ref[3]}",
                prepared,
            )
        try:
            path = await preparer.prepare(*ref)
        except Exception as e:
            raise DiskPrepareError(f"cannot prepare drive {dev}: {e}", prepared) from e
        prepared.append(meta)
        domainxml.set_disk_source(disk, path)
    return prepared


async def teardown_drives(drives: list[DeviceMeta], preparer: ImagePreparer | None) -> None:
    if preparer is None:
        return
    for meta in drives:
        ref = meta.storage_ref
        if ref is None:
            continue
        try:
            await preparer.teardown(*ref)
        except Exception:
            log.exception("teardown of image %s volume %s failed", ref[2], ref[3])


class ImageService(Protocol):
    """The storage side's image preparation (vdsm.storage.images.Images)."""

    async def prepare(
        self, sp_uuid: str, sd_uuid: str, img: str, vol: str, allow_illegal: bool
    ) -> dict[str, Any]: ...

    async def teardown(self, sd_uuid: str, img: str, vol: str | None) -> None: ...


class StorageImagePreparer:
    """An ImagePreparer over the storage service's Image.prepare / Image.teardown: the
    daemon's wiring is `VmManager(..., preparer=StorageImagePreparer(images))`."""

    def __init__(self, images: ImageService) -> None:
        self.images = images

    async def prepare(self, pool_id: str, domain_id: str, image_id: str, volume_id: str) -> str:
        # A VM never runs on an illegal volume (a failed merge or copy left it so).
        info = await self.images.prepare(pool_id, domain_id, image_id, volume_id, False)
        return str(info["path"])

    async def teardown(self, pool_id: str, domain_id: str, image_id: str, volume_id: str) -> None:
        await self.images.teardown(domain_id, image_id, volume_id)

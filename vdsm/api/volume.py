"""The `Volume` namespace: volumes of file storage domains."""

from __future__ import annotations

from typing import Any

from vdsm.storage.images import VolumeCopier
from vdsm.storage.volumes import Volumes


class VolumeAPI:
    NAMESPACE = "Volume"

    def __init__(self, *, volumes: Volumes, copier: VolumeCopier) -> None:
        self.volumes = volumes
        self.copier = copier

    async def create(
        self,
        volumeID: str,
        storagepoolID: str,
        storagedomainID: str,
        imageID: str,
        size: str,
        volFormat: int,
        preallocate: int,
        diskType: str,
        desc: str,
        srcImgUUID: str,
        srcVolUUID: str,
        initialSize: str | None,
        addBitmaps: bool,
        legal: bool,
        sequence: int,
        bitmap: str | None,
    ) -> str:
        return await self.volumes.create(
            storagepoolID,
            storagedomainID,
            imageID,
            volumeID,
            size=size,
            vol_format=volFormat,
            preallocate=preallocate,
            disk_type=diskType,
            description=desc,
            src_img=srcImgUUID,
            src_vol=srcVolUUID,
            initial_size=initialSize,
            legal=legal,
            sequence=sequence,
        )

    async def delete(
        self,
        volumeID: str,
        storagepoolID: str,
        storagedomainID: str,
        imageID: str,
        postZero: bool,
        force: bool,
        discard: bool,
    ) -> str:
        return self.volumes.delete(storagepoolID, storagedomainID, imageID, volumeID, force)

    async def extendSize(
        self, storagepoolID: str, storagedomainID: str, imageID: str, volumeID: str, newSize: str
    ) -> str:
        return self.volumes.extend_size(storagepoolID, storagedomainID, imageID, volumeID, newSize)

    async def copy(
        self,
        volumeID: str,
        storagepoolID: str,
        storagedomainID: str,
        imageID: str,
        dstSdUUID: str,
        dstImgUUID: str,
        dstVolUUID: str,
        desc: str,
        volType: int,
        volFormat: int,
        preallocate: int,
        postZero: bool,
        force: bool,
        discard: bool,
    ) -> str:
        return self.copier.copy(
            storagepoolID,
            storagedomainID,
            imageID,
            volumeID,
            dst_sd=dstSdUUID,
            dst_img=dstImgUUID,
            dst_vol=dstVolUUID,
            description=desc,
            vol_type=volType,
            vol_format=volFormat,
            preallocate=preallocate,
        )

    async def getInfo(
        self, volumeID: str, storagepoolID: str, storagedomainID: str, imageID: str
    ) -> dict[str, Any]:
        return await self.volumes.info(storagedomainID, imageID, volumeID)

    async def getSize(
        self, volumeID: str, storagepoolID: str, storagedomainID: str, imageID: str
    ) -> dict[str, str]:
        return await self.volumes.size(storagedomainID, imageID, volumeID)

    async def getQemuImageInfo(
        self, volumeID: str, storagepoolID: str, storagedomainID: str, imageID: str
    ) -> dict[str, Any]:
        return await self.volumes.qemu_info(storagedomainID, imageID, volumeID)

    async def measure(
        self,
        volumeID: str,
        storagepoolID: str,
        storagedomainID: str,
        imageID: str,
        dstVolFormat: int,
        backing_chain: bool,
        baseID: str | None,
    ) -> dict[str, int]:
        return await self.volumes.measure(
            storagedomainID, imageID, volumeID, dstVolFormat, backing_chain
        )

    async def refresh(
        self, volumeID: str, storagepoolID: str, storagedomainID: str, imageID: str
    ) -> None:
        await self.volumes.refresh(storagedomainID, imageID, volumeID)

    async def setLegality(
        self,
        volumeID: str,
        storagepoolID: str,
        storagedomainID: str,
        imageID: str,
        legality: str,
    ) -> None:
        await self.volumes.set_legality(storagepoolID, storagedomainID, imageID, volumeID, legality)

    async def setDescription(
        self,
        volumeID: str,
        storagepoolID: str,
        storagedomainID: str,
        imageID: str,
        description: str,
    ) -> None:
        await self.volumes.set_description(
            storagepoolID, storagedomainID, imageID, volumeID, description
        )

    async def verify_untrusted(
        self, storagepoolID: str, storagedomainID: str, imageID: str, volumeID: str
    ) -> None:
        await self.volumes.verify_untrusted(storagedomainID, imageID, volumeID)

    async def teardown(self, storagedomainID: str, imageID: str, volumeID: str) -> None:
        await self.volumes.get(storagedomainID, imageID, volumeID)

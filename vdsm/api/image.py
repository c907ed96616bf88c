"""The `Image` namespace, and the image queries of StorageDomain and StoragePool."""

from __future__ import annotations

from typing import Any

from vdsm.storage.images import Images


class ImageAPI:
    NAMESPACE = "Image"

    def __init__(self, *, images: Images) -> None:
        self.images = images

    async def delete(
        self,
        imageID: str,
        storagepoolID: str,
        storagedomainID: str,
        postZero: bool,
        force: bool,
        discard: bool,
    ) -> str:
        return self.images.delete(storagepoolID, storagedomainID, imageID, force)

    async def deleteVolumes(
        self,
        imageID: str,
        storagepoolID: str,
        storagedomainID: str,
        volumeList: list[str],
        postZero: bool,
        force: bool,
        discard: bool,
    ) -> str:
        return self.images.delete_volumes(
            storagepoolID, storagedomainID, imageID, volumeList, force
        )

    async def move(
        self,
        imageID: str,
        storagepoolID: str,
        storagedomainID: str,
        dstSdUUID: str,
        operation: int,
        postZero: bool,
        force: bool,
        discard: bool,
    ) -> str:
        return self.images.move(
            storagepoolID, storagedomainID, imageID, dstSdUUID, operation, force
        )

    async def cloneStructure(
        self, imageID: str, storagepoolID: str, storagedomainID: str, dstSdUUID: str
    ) -> str:
        return self.images.clone_structure(storagepoolID, storagedomainID, imageID, dstSdUUID)

    async def syncData(
        self,
        imageID: str,
        storagepoolID: str,
        storagedomainID: str,
        dstSdUUID: str,
        syncType: str,
    ) -> str:
        return self.images.sync_data(storagepoolID, storagedomainID, imageID, dstSdUUID, syncType)

    async def getVolumes(self, imageID: str, storagepoolID: str, storagedomainID: str) -> list[str]:
        return await self.images.volume_ids(storagedomainID, imageID)

    async def prepare(
        self,
        storagepoolID: str,
        storagedomainID: str,
        imageID: str,
        volumeID: str,
        allowIllegal: bool,
    ) -> dict[str, Any]:
        return await self.images.prepare(
            storagepoolID, storagedomainID, imageID, volumeID, allowIllegal
        )

    async def teardown(
        self, storagepoolID: str, storagedomainID: str, imageID: str, volumeID: str | None
    ) -> None:
        await self.images.teardown(storagedomainID, imageID, volumeID)


class DomainImagesAPI:
    NAMESPACE = "StorageDomain"

    def __init__(self, *, images: Images) -> None:
        self.images = images

    async def getVolumes(self, storagedomainID: str, storagepoolID: str, imageID: str) -> list[str]:
        return await self.images.volume_ids(storagedomainID, imageID)


class PoolImagesAPI:
    NAMESPACE = "StoragePool"

    def __init__(self, *, images: Images) -> None:
        self.images = images

    async def getDomainsContainingImage(self, storagepoolID: str, imageID: str) -> list[str]:
        return await self.images.domains_containing(storagepoolID, imageID)

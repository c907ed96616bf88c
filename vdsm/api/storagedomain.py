"""The `StorageDomain` namespace."""

from __future__ import annotations

from typing import Any

from vdsm.storage.service import StorageService
from vdsm.storage.volumegroups import VolumeGroups


class StorageDomainAPI:
    NAMESPACE = "StorageDomain"

    def __init__(self, *, storage: StorageService, volume_groups: VolumeGroups) -> None:
        self.storage = storage
        self.volume_groups = volume_groups

    async def create(
        self,
        storagedomainID: str,
        domainType: int,
        typeArgs: str,
        name: str,
        domainClass: int,
        version: int | None,
        blockSize: int,
        maxHosts: int,
    ) -> None:
        await self.storage.create_domain(
            sd_uuid=storagedomainID,
            domain_type=domainType,
            remote_path=typeArgs,
            description=name,
            domain_class=domainClass,
            version=version,
            block_size=blockSize,
            max_hosts=maxHosts,
        )

    async def getInfo(self, storagedomainID: str) -> dict[str, Any]:
        domain = await self.storage.domains.produce(storagedomainID)
        await domain.refresh()
        return domain.info()

    async def getStats(self, storagedomainID: str) -> dict[str, Any]:
        domain = await self.storage.domains.produce(storagedomainID)
        return await domain.stats()

    async def setDescription(self, storagedomainID: str, description: str) -> None:
        await self.storage.set_domain_description(storagedomainID, description)

    async def validate(self, storagedomainID: str) -> None:
        domain = await self.storage.domains.produce(storagedomainID)
        await domain.validate()

    async def getImages(self, storagedomainID: str) -> list[str]:
        domain = await self.storage.domains.produce(storagedomainID)
        return await domain.images()

    async def format(self, storagedomainID: str, autoDetach: bool) -> None:
        await self.storage.format_domain(storagedomainID, autoDetach)

    async def attach(self, storagedomainID: str, storagepoolID: str) -> None:
        pool = self.storage.get_pool(storagepoolID)
        self.storage.get_spm(storagepoolID).ensure_spm()
        await pool.attach(storagedomainID, self.storage.with_domain_lease)

    async def detach(
        self,
        storagedomainID: str,
        storagepoolID: str,
        masterSdUUID: str | None,
        masterVersion: int,
        force: bool,
    ) -> None:
        pool = self.storage.get_pool(storagepoolID)
        self.storage.get_spm(storagepoolID).ensure_spm()
        if force:
            await pool.force_detach(storagedomainID)
        else:
            await pool.detach(storagedomainID)

    async def activate(self, storagedomainID: str, storagepoolID: str) -> None:
        pool = self.storage.get_pool(storagepoolID)
        self.storage.get_spm(storagepoolID).ensure_spm()
        await pool.activate(storagedomainID)

    async def deactivate(
        self, storagedomainID: str, storagepoolID: str, masterSdUUID: str, masterVersion: int
    ) -> None:
        pool = self.storage.get_pool(storagepoolID)
        self.storage.get_spm(storagepoolID).ensure_spm()
        await pool.deactivate(storagedomainID, masterSdUUID, masterVersion)

    async def extend(
        self, storagedomainID: str, storagepoolID: str, devlist: list[str], force: bool
    ) -> None:
        await self.storage.extend_domain(
            storagedomainID, storagepoolID, devlist, force, self.volume_groups
        )

    async def resizePV(self, storagedomainID: str, storagepoolID: str, guid: str) -> int:
        return await self.storage.resize_domain_pv(
            storagedomainID, storagepoolID, guid, self.volume_groups
        )

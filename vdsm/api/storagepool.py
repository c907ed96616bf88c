"""The `StoragePool` namespace: storage connections, the pool, and the SPM role."""

from __future__ import annotations

from typing import Any

from vdsm import errors
from vdsm.storage import sdmetadata
from vdsm.storage.connections import StorageConnections
from vdsm.storage.service import StorageService


def _int(value: str | None, default: int) -> int:
    """prevLver and domVersion are strings in the schema and ints on some engines."""
    if value is None or value == "":
        return default
    return int(value)


class StoragePoolAPI:
    NAMESPACE = "StoragePool"

    def __init__(self, *, storage: StorageService, connections: StorageConnections) -> None:
        self.storage = storage
        self.connections = connections

    async def connectStorageServer(
        self, storagepoolID: str, domainType: int, connectionParams: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return await self.connections.connect(domainType, connectionParams)

    async def disconnectStorageServer(
        self, storagepoolID: str, domainType: int, connectionParams: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return await self.connections.disconnect(domainType, connectionParams)

    async def create(
        self,
        storagepoolID: str,
        name: str,
        masterSdUUID: str,
        masterVersion: int,
        domainList: list[str],
        lockRenewalIntervalSec: int,
        leaseTimeSec: int,
        ioOpTimeoutSec: int,
        leaseRetries: int,
    ) -> None:
        leases = sdmetadata.lease_keys(
            lockRenewalIntervalSec, leaseTimeSec, ioOpTimeoutSec, leaseRetries
        )
        await self.storage.create_pool(
            storagepoolID, name, masterSdUUID, masterVersion, domainList, leases
        )

    async def connect(
        self,
        storagepoolID: str,
        hostID: int,
        scsiKey: str,
        masterSdUUID: str,
        masterVersion: int,
        domainDict: dict[str, str] | None,
    ) -> None:
        await self.storage.connect_pool(
            storagepoolID, hostID, masterSdUUID, masterVersion, domainDict
        )

    async def disconnect(self, storagepoolID: str, hostID: int, scsiKey: str, remove: bool) -> None:
        await self.storage.disconnect_pool(storagepoolID, hostID)

    async def getInfo(self, storagepoolID: str) -> dict[str, Any]:
        pool = self.storage.get_pool(storagepoolID)
        await pool.master.refresh()
        info = pool.info()
        vitals = self.storage.monitor.stats()
        dominfo: dict[str, Any] = {}
        for sd_uuid, status in pool.domains().items():
            entry: dict[str, Any] = {"status": status, "alerts": [], "isoprefix": ""}
            monitor = self.storage.monitor.monitors.get(sd_uuid)
            if status == "Active" and monitor is not None and sd_uuid in vitals:
                entry["version"] = vitals[sd_uuid]["version"]
                if monitor.status.disk_total is not None:
                    entry["disktotal"] = str(monitor.status.disk_total)
                    entry["diskfree"] = str(monitor.status.disk_free)
                if not monitor.status.mda_valid:
                    # as upstream: a VG whose metadata area is too small for many LVs
                    alert = errors.SmallVgMetadata(sd_uuid, monitor.status.mda_size)
                    entry["alerts"].append({"code": alert.code, "message": alert.message})
            dominfo[sd_uuid] = entry
        return {"info": info, "dominfo": dominfo}

    async def refresh(self, storagepoolID: str, masterSdUUID: str, masterVersion: int) -> None:
        await self.storage.get_pool(storagepoolID).refresh(masterSdUUID, masterVersion)

    async def setDescription(self, storagepoolID: str, description: str) -> None:
        await self.storage.get_pool(storagepoolID).set_description(description)

    async def spmStart(
        self,
        storagepoolID: str,
        prevID: int,
        prevLver: str,
        enableScsiFencing: str,
        maxHostID: int,
        domVersion: str | None,
    ) -> str:
        spm = self.storage.get_spm(storagepoolID)
        dom_version = _int(domVersion, -1)
        return spm.start(
            prevID,
            _int(prevLver, -1),
            None if dom_version < 0 else dom_version,
            max_host_id=maxHostID,
        )

    async def spmStop(self, storagepoolID: str) -> None:
        await self.storage.get_spm(storagepoolID).stop()

    async def getSpmStatus(self, storagepoolID: str) -> dict[str, Any]:
        return await self.storage.get_spm(storagepoolID).status()

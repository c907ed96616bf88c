"""The `Host` namespace (upstream's `Global`): one method per verb, wire names."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from vdsm import context, errors, logutils
from vdsm.hooks.runner import HookRunner
from vdsm.jobs import JobRegistry
from vdsm.network.connectivity import ConnectivityMonitor
from vdsm.storage.service import StorageService
from vdsm.storage.tasks import TaskManager

log = logging.getLogger("vdsm.api.host")


class HostFacts(Protocol):
    """What vdsm.host.HostInfo offers the API."""

    async def capabilities(self, client_address: str = "") -> dict[str, Any]: ...

    async def stats(self) -> dict[str, Any]: ...

    async def hardware_info(self) -> dict[str, str]: ...


class HostAPI:
    NAMESPACE = "Host"

    def __init__(
        self,
        *,
        facts: HostFacts,
        connectivity: ConnectivityMonitor,
        tasks: TaskManager,
        jobs: JobRegistry,
        storage: StorageService,
        hooks: HookRunner | None = None,
    ) -> None:
        self.hooks = hooks
        self.facts = facts
        self.connectivity = connectivity
        self.tasks = tasks
        self.jobs = jobs
        self.storage = storage

    async def ping(self) -> None:
        await self.connectivity.confirm()

    async def ping2(self) -> None:
        # Also proof of connectivity for setupNetworks' rollback check (the engine
        # polls with ping2 while a network change waits).
        await self.connectivity.confirm()

    async def confirmConnectivity(self) -> None:
        await self.connectivity.confirm()

    async def echo(self, message: str) -> str:
        log.info("echo: %s", message)
        return message

    async def setLogLevel(self, level: str, name: str) -> None:
        logutils.set_level(level, name)
        log.info("log level of %s set to %s", name or "the root logger", level)

    async def getHardwareInfo(self) -> dict[str, str]:
        return await self.facts.hardware_info()

    async def getCapabilities(self) -> dict[str, Any]:
        ctx = context.current()
        await self._before("before_get_caps")
        caps = await self.facts.capabilities(client_address=ctx.local_address if ctx else "")
        return await self._after("after_get_caps", caps)

    async def getStats(self) -> dict[str, Any]:
        await self._before("before_get_stats")
        return await self._after("after_get_stats", await self.facts.stats())

    async def _before(self, point: str) -> None:
        # A failing before_* script fails the verb with HookError 1500 (contract §3.3).
        if self.hooks is not None:
            await self.hooks.run(point, json_data={})

    async def _after(self, point: str, data: dict[str, Any]) -> dict[str, Any]:
        # after_* scripts may edit what the caller gets; their failures are only logged.
        if self.hooks is None:
            return data
        result = await self.hooks.run(point, json_data=data, raise_on_error=False)
        return result.json_data if isinstance(result.json_data, dict) else data

    async def getAllTasksStatuses(self) -> dict[str, Any]:
        return self.tasks.statuses()

    async def getAllTasksInfo(self) -> dict[str, Any]:
        return self.tasks.infos()

    async def getAllTasks(self) -> dict[str, Any]:
        return self.tasks.details()

    async def getJobs(self, job_type: str | None, job_ids: list[str]) -> dict[str, Any]:
        return self.jobs.info(job_type, job_ids)

    # -- storage -------------------------------------------------------------------------

    async def getStorageDomains(
        self,
        storagepoolID: str | None,
        domainClass: int | None,
        storageType: int | None,
        remotePath: str | None,
    ) -> list[str]:
        return await self.storage.list_domains(storagepoolID, domainClass, storageType, remotePath)

    async def getConnectedStoragePools(self) -> list[str]:
        return self.storage.connected_pools()

    async def getStorageRepoStats(self, domains: list[str]) -> dict[str, Any]:
        return self.storage.monitor.stats(domains)

    async def startMonitoringDomain(self, sdUUID: str, hostID: int) -> None:
        self.storage.monitor.start(sdUUID, hostID, pool_domain=False)

    async def stopMonitoringDomain(self, sdUUID: str) -> None:
        if sdUUID in self.storage.monitor.pool_domains:
            raise errors.StorageDomainIsMemberOfPool(sdUUID)
        await self.storage.monitor.stop([sdUUID])

"""The network verbs of the `Host` namespace (contract §6): wire adapters only."""

from __future__ import annotations

import asyncio
from typing import Any

from vdsm.network.report import NetworkReport
from vdsm.network.setup import NetworkService
from vdsm.network.stats import NetworkStatistics


class HostNetworkAPI:
    NAMESPACE = "Host"

    def __init__(
        self, *, service: NetworkService, report: NetworkReport, statistics: NetworkStatistics
    ) -> None:
        self.service = service
        self.report = report
        self.statistics = statistics

    async def setupNetworks(
        self, networks: dict[str, Any], bondings: dict[str, Any], options: dict[str, Any]
    ) -> Any:
        # The wire result is the status dict itself (contract §10.2), or with
        # options.dryRun the ordered list of kernel changes.
        return await self.service.setup(networks or {}, bondings or {}, options or {})

    async def setSafeNetworkConfig(self) -> None:
        await self.service.set_safe()

    async def getNetworkCapabilities(self) -> dict[str, Any]:
        return await self.report.shared_report()

    async def getNetworkStatistics(self) -> dict[str, Any]:
        stats = await asyncio.to_thread(self.statistics.sample)
        stats["netConfigDirty"] = str(self.service.config_dirty())
        return stats

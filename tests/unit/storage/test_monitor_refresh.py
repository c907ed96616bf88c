"""When a domain monitor re-reads the domain's metadata: at its first check, then once
every refresh_interval (upstream's repo_stats_cache_refresh_timeout); the checks in
between report the version as last read and the usage without a re-read."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vdsm.storage.monitor import DomainMonitor

SD = "5d5d5d5d-0000-4000-8000-000000000001"


class Domain:
    sd_uuid = SD
    metadata_path = Path("/dev/null")
    lock: Any = None

    def __init__(self) -> None:
        self.refreshes = 0
        self.version = 5
        self.metadata = SimpleNamespace(version=self.version)

    async def refresh(self) -> int:
        self.refreshes += 1
        self.metadata = SimpleNamespace(version=self.version)
        return self.version

    async def usage(self) -> dict[str, Any]:
        return {
            "disktotal": "100",
            "diskfree": "50",
            "mdavalid": True,
            "mdathreshold": True,
            "mdasize": 0,
            "mdafree": 0,
        }


def monitor(domain: Domain, refresh_interval: float) -> DomainMonitor:
    async def produce(sd_uuid: str) -> Any:
        return domain

    async def read_delay(path: Path, timeout: float) -> float:
        return 0.001

    return DomainMonitor(
        SD,
        None,
        produce=produce,
        read_delay=read_delay,
        interval=1.0,
        pool_domain=False,
        refresh_interval=refresh_interval,
    )


def test_the_metadata_is_read_again_only_once_the_refresh_interval_passed() -> None:
    async def scenario() -> None:
        domain = Domain()
        watcher = monitor(domain, refresh_interval=0.5)
        for _ in range(3):
            await watcher.check()
        assert domain.refreshes == 1
        assert watcher.status.valid and watcher.status.version == 5
        assert watcher.status.disk_free == 50
        # another host upgraded the domain: seen at the next refresh, not before
        domain.version = 6
        await watcher.check()
        assert watcher.status.version == 5
        await asyncio.sleep(0.6)
        await watcher.check()
        assert domain.refreshes == 2 and watcher.status.version == 6

    asyncio.run(scenario())


def test_a_failed_refresh_is_tried_again_at_the_next_check() -> None:
    async def scenario() -> None:
        domain = Domain()
        failing = True
        refresh = domain.refresh

        async def flaky() -> int:
            if failing:
                domain.refreshes += 1
                raise OSError("no answer")
            return await refresh()

        domain.refresh = flaky  # type: ignore[method-assign]
        watcher = monitor(domain, refresh_interval=300)
        await watcher.check()
        assert not watcher.status.valid
        failing = False
        await watcher.check()
        assert watcher.status.valid and domain.refreshes == 2  # failed once, then read

    asyncio.run(scenario())


def test_zero_refreshes_at_every_check() -> None:
    async def scenario() -> None:
        domain = Domain()
        watcher = monitor(domain, refresh_interval=0)
        for _ in range(3):
            await watcher.check()
        assert domain.refreshes == 3

    asyncio.run(scenario())

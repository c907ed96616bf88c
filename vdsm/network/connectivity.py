"""Proof that a client still reaches the host, for setupNetworks' rollback check.

`Host.confirmConnectivity` and `Host.ping` call `confirm()`.  Upstream's check polls
the mtime of /run/vdsm/client.log; that file is still touched for tools that read it,
but waiters here are woken directly, with no polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

log = logging.getLogger("vdsm.network.connectivity")


class ConnectivityMonitor:
    def __init__(self, run_dir: Path) -> None:
        self.marker = run_dir / "client.log"
        self.last_confirmed = 0.0
        self._changed = asyncio.Condition()

    async def confirm(self) -> None:
        self.last_confirmed = time.monotonic()
        try:
            # A local tmpfs file: cheap enough to touch on the loop.
            self.marker.touch()
        except OSError as e:
            log.warning("cannot touch %s: %s", self.marker, e)
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, since: float, timeout: float) -> bool:
        """True when a confirmation newer than `since` (monotonic) arrives in time."""

        async def confirmed() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.last_confirmed > since)

        try:
            async with asyncio.timeout(timeout):
                await confirmed()
        except TimeoutError:
            return False
        return True

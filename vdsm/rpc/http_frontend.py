"""The HTTP side of the port, built on its first client.

aiohttp and the application cost ~12 MB of memory; the engine speaks only STOMP, so a
host nobody queries over HTTP never loads them.  The listener asks for the protocol
factory when it sniffs the first HTTP request; `build` makes the application then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vdsm.rpc.http import HttpApi

log = logging.getLogger("vdsm.rpc.http")


class HttpFrontend:
    def __init__(self, build: Callable[[], HttpApi]) -> None:
        self._build = build
        self._api: HttpApi | None = None
        self._runner: Any = None

    async def protocol_factory(self) -> Callable[[], asyncio.Protocol]:
        from aiohttp import web

        if self._runner is None:
            self._api = self._build()
            runner = web.AppRunner(
                self._api.app, handle_signals=False, access_log=None, shutdown_timeout=2.0
            )
            await runner.setup()
            self._runner = runner
            log.info("HTTP side ready (first HTTP client)")
        server: Callable[[], asyncio.Protocol] = self._runner.server
        return server

    async def close(self) -> None:
        if self._api is not None and self._runner is not None:
            await self._api.close_websockets()
            await self._runner.cleanup()

"""The HTTP side of the port, built on its first client.

aiohttp and the application cost ~12 MB of memory; the engine speaks only STOMP, so a
host nobody queries over HTTP never loads them.  The listener asks for the protocol
factory when it sniffs the first HTTP request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from vdsm.events import EventBus
from vdsm.lifecycle import Lifecycle
from vdsm.rpc.jsonrpc import Dispatcher
from vdsm.rpc.metrics import Metrics

log = logging.getLogger("vdsm.rpc.http")


class HttpFrontend:
    def __init__(
        self,
        dispatcher: Dispatcher,
        lifecycle: Lifecycle,
        metrics: Metrics,
        bus: EventBus,
        *,
        max_body_size: int,
        event_queue_size: int,
    ) -> None:
        self._dispatcher = dispatcher
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._bus = bus
        self._max_body_size = max_body_size
        self._event_queue_size = event_queue_size
        self._api: Any = None
        self._runner: Any = None

    async def protocol_factory(self) -> Callable[[], asyncio.Protocol]:
        from aiohttp import web

        from vdsm.rpc.http import HttpApi

        if self._runner is None:
            self._api = HttpApi(
                self._dispatcher,
                self._lifecycle,
                self._metrics,
                self._bus,
                max_body_size=self._max_body_size,
                event_queue_size=self._event_queue_size,
            )
            runner = web.AppRunner(
                self._api.app, handle_signals=False, access_log=None, shutdown_timeout=2.0
            )
            await runner.setup()
            self._runner = runner
            log.info("HTTP side ready (first HTTP client)")
        server: Callable[[], asyncio.Protocol] = self._runner.server
        return server

    async def close(self) -> None:
        if self._runner is not None:
            await self._api.close_websockets()
            await self._runner.cleanup()

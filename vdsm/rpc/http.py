"""HTTP on the management port: JSON-RPC, health, metrics and an event stream.

    POST /jsonrpc   a JSON-RPC 2.0 body, answered by the same dispatcher as STOMP
    GET  /health    {"state": starting|recovering|ready|stopping, "version", "uptime"}
    GET  /metrics   Prometheus text: calls and latency per verb, connections, errors
    GET  /events    WebSocket: the notifications STOMP sends to jms.queue.events

The listener hands sniffed HTTP connections to the application's low-level server, so
TLS and the one port are shared with STOMP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import WSMsgType, web

from vdsm import __version__
from vdsm.events import EventBus, Notification
from vdsm.lifecycle import Lifecycle
from vdsm.rpc.jsonrpc import Dispatcher, RequestMeta
from vdsm.rpc.metrics import Metrics

log = logging.getLogger("vdsm.rpc.http")

FLOW_ID_HEADERS = ("ovirtCorrelationId", "X-Flow-Id")


def _address(info: Any) -> str:
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return ""


class HttpApi:
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
        self.dispatcher = dispatcher
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.bus = bus
        self.event_queue_size = event_queue_size
        self.websockets: set[web.WebSocketResponse] = set()
        self.app = web.Application(client_max_size=max_body_size)
        self.app.router.add_post("/jsonrpc", self.jsonrpc)
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/metrics", self.metrics_text)
        self.app.router.add_get("/events", self.events)

    async def jsonrpc(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        meta = RequestMeta(
            peer=_address(transport.get_extra_info("peername") if transport else None),
            local_address=_address(transport.get_extra_info("sockname") if transport else None),
            flow_id=next(
                (request.headers[h] for h in FLOW_ID_HEADERS if h in request.headers), None
            ),
        )
        answer = await self.dispatcher.handle(await request.read(), meta)
        if answer is None:
            return web.Response(status=204)
        return web.Response(body=answer, content_type="application/json")

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "state": self.lifecycle.phase.value,
                "version": __version__,
                "uptime": round(self.lifecycle.uptime, 3),
            }
        )

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self.metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        queue: asyncio.Queue[Notification] = asyncio.Queue(self.event_queue_size)

        def consume(notification: Notification) -> bool:
            try:
                queue.put_nowait(notification)
            except asyncio.QueueFull:
                return False
            return True

        unsubscribe = self.bus.subscribe(consume)
        self.websockets.add(ws)
        self.metrics.connection_opened("websocket")
        sender = asyncio.create_task(self._send_events(ws, queue))
        try:
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    break  # clients only listen; anything they send is ignored
        finally:
            unsubscribe()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self.websockets.discard(ws)
            self.metrics.connection_closed("websocket")
        return ws

    @staticmethod
    async def _send_events(ws: web.WebSocketResponse, queue: asyncio.Queue[Notification]) -> None:
        while True:
            notification = await queue.get()
            try:
                await ws.send_str(notification.payload.decode())
            except (ConnectionError, RuntimeError):
                return

    async def close_websockets(self) -> None:
        for ws in list(self.websockets):
            await ws.close(message=b"server shutting down")

"""The STOMP 1.2 server: a process-wide broker and one protocol object per connection.

Routing follows upstream (contract §1.2):
- subscriptions live in one process-wide map, destination -> subscriptions of every
  connection;
- a SEND is copied as MESSAGE to the subscribers of its destination and of each of its
  dot-prefixes; a SEND to a request queue (or `<queue>.<anything>`) is also a JSON-RPC
  request; a SEND that is neither gets ERROR "Subscription not available";
- a JSON-RPC answer goes to every subscription whose destination equals the request's
  `reply-to`; without `reply-to` it is dropped;
- notifications go to the subscribers of `jms.queue.events`.

Back-pressure: while a client does not read, its transport buffer grows past the
high-water mark; then the connection stops reading requests, events for it are dropped
(and counted), and past `max_pending_bytes`, or after `stall_timeout`, it is closed.
Nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vdsm.events import Notification
from vdsm.rpc.jsonrpc import RequestMeta
from vdsm.rpc.metrics import Metrics
from vdsm.rpc.stomp import Decoder, Frame, Limits, ProtocolError, encode

log = logging.getLogger("vdsm.rpc.stomp")

REQUEST_QUEUES = ("jms.topic.vdsm_requests", "jms.topic.vdsm_irs_requests")
EVENTS_QUEUE = "jms.queue.events"
FLOW_ID_HEADER = "ovirtCorrelationId"
MIN_HEARTBEAT_MS = 1000
# Grace over the negotiated client heart-beat period before the link counts as dead.
HEARTBEAT_GRACE = 1.5
WRITE_HIGH_WATER = 1024 * 1024
MAX_INFLIGHT = 100


# Takes a request body, answers the serialised response (None for notifications only).
RpcHandler = Callable[[bytes, RequestMeta], Awaitable[bytes | None]]


@dataclass(frozen=True)
class ServerSettings:
    limits: Limits
    max_pending_bytes: int
    stall_timeout: float


@dataclass
class Subscription:
    connection: StompConnection
    id: str
    destination: str


def is_request_queue(destination: str) -> bool:
    return any(destination == q or destination.startswith(q + ".") for q in REQUEST_QUEUES)


def _prefixes(destination: str) -> list[str]:
    parts = destination.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


class StompBroker:
    def __init__(self, rpc: RpcHandler, metrics: Metrics, settings: ServerSettings) -> None:
        self.rpc = rpc
        self.metrics = metrics
        self.settings = settings
        self.connections: set[StompConnection] = set()
        self._subscriptions: dict[str, dict[tuple[int, str], Subscription]] = {}
        self._ids = itertools.count(1)

    def new_id(self) -> int:
        return next(self._ids)

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, sub: Subscription) -> None:
        self._subscriptions.setdefault(sub.destination, {})[(sub.connection.id, sub.id)] = sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscriptions.get(sub.destination)
        if subs is not None:
            subs.pop((sub.connection.id, sub.id), None)
            if not subs:
                del self._subscriptions[sub.destination]

    def subscribers(self, destination: str) -> list[Subscription]:
        return list(self._subscriptions.get(destination, {}).values())

    # -- delivery ------------------------------------------------------------------------

    def route_send(self, frame: Frame) -> int:
        """Copy a SEND to the subscribers of its destination and dot-prefixes."""
        destination = frame.headers["destination"]
        delivered = 0
        subscriptions = self._subscriptions
        for prefix in _prefixes(destination):
            if prefix not in subscriptions:
                continue  # the usual case for requests: nobody listens to the queue
            for sub in list(subscriptions[prefix].values()):
                headers = {"destination": destination, "subscription": sub.id}
                if "content-type" in frame.headers:
                    headers["content-type"] = frame.headers["content-type"]
                sub.connection.send(encode(Frame("MESSAGE", headers, frame.body)))
                delivered += 1
        return delivered

    def deliver_reply(self, reply_to: str, body: bytes) -> None:
        for sub in self.subscribers(reply_to):
            sub.connection.send(self._message(sub, reply_to, body))

    def deliver_event(self, notification: Notification) -> bool:
        """EventBus consumer: False when some subscriber had to drop the event."""
        all_taken = True
        for sub in self.subscribers(EVENTS_QUEUE):
            if not sub.connection.offer(self._message(sub, EVENTS_QUEUE, notification.payload)):
                all_taken = False
        return all_taken

    @staticmethod
    def _message(sub: Subscription, destination: str, body: bytes) -> bytes:
        headers = {
            "destination": destination,
            "content-type": "application/json",
            "subscription": sub.id,
        }
        return encode(Frame("MESSAGE", headers, body))

    # -- lifecycle -----------------------------------------------------------------------

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close("server shutting down")


class StompConnection(asyncio.Protocol):
    """One client connection, handed over by the listener after protocol detection."""

    def __init__(
        self,
        broker: StompBroker,
        peer: str,
        local_address: str,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.on_lost = on_lost
        self.id = broker.new_id()
        self.peer = peer
        self.local_address = local_address
        self.decoder = Decoder(broker.settings.limits)
        self.transport: asyncio.Transport | None = None
        self.connected = False
        self.subscriptions: dict[str, Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_paused = False
        self._reading_paused = False
        self._stalled_since: float | None = None
        self._last_received = time.monotonic()
        self._last_sent = time.monotonic()
        self._timers: list[asyncio.TimerHandle] = []
        self._closing = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Pause (and drop events) well before the hard limit cuts the client.
        transport.set_write_buffer_limits(
            high=min(WRITE_HIGH_WATER, self.broker.settings.max_pending_bytes // 2)
        )
        self.broker.connections.add(self)
        self.broker.metrics.connection_opened("stomp")

    def data_received(self, data: bytes) -> None:
        self._last_received = time.monotonic()
        try:
            frames = self.decoder.feed(data)
        except ProtocolError as e:
            self.broker.metrics.protocol_error("stomp")
            self.fail(str(e))
            return
        for frame in frames:
            if self._closing:
                return
            self._handle(frame)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        for timer in self._timers:
            timer.cancel()
        for sub in self.subscriptions.values():
            self.broker.unsubscribe(sub)
        self.subscriptions.clear()
        if self in self.broker.connections:
            self.broker.connections.discard(self)
            self.broker.metrics.connection_closed("stomp")
        log.debug("STOMP connection %s from %s closed", self.id, self.peer)
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._stalled_since = time.monotonic()
        self._update_reading()
        self._timers.append(
            asyncio.get_running_loop().call_later(
                self.broker.settings.stall_timeout, self._check_stall
            )
        )

    def resume_writing(self) -> None:
        self._write_paused = False
        self._stalled_since = None
        self._update_reading()

    # -- sending -------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue data that must not be dropped (replies, receipts, errors)."""
        transport = self.transport
        if transport is None or self._closing:
            return
        transport.write(data)
        self._last_sent = time.monotonic()
        pending = transport.get_write_buffer_size()
        if pending > self.broker.settings.max_pending_bytes:
            log.warning(
                "closing STOMP connection from %s: %d bytes unsent, limit %d (client not reading)",
                self.peer,
                pending,
                self.broker.settings.max_pending_bytes,
            )
            self.broker.metrics.protocol_error("stomp_backlog")
            self.abort()

    def offer(self, data: bytes) -> bool:
        """Queue data that may be dropped (events) when the client lags."""
        if self._closing:
            return True
        if self._write_paused:
            return False
        self.send(data)
        return True

    def send_error(self, message: str, detail: str = "") -> None:
        headers = {"message": message, "content-type": "text/plain"}
        self.send(encode(Frame("ERROR", headers, (detail or message).encode())))

    def fail(self, message: str) -> None:
        """A protocol violation: ERROR frame, then close."""
        log.warning("STOMP protocol error from %s: %s", self.peer, message)
        self.send_error(message)
        self.close(message)

    def close(self, reason: str) -> None:
        if self.transport is not None and not self._closing:
            log.debug("closing STOMP connection from %s: %s", self.peer, reason)
            self._closing = True
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    # -- frames --------------------------------------------------------------------------

    def _handle(self, frame: Frame) -> None:
        command = frame.command
        if command in ("CONNECT", "STOMP"):
            self._on_connect(frame)
            return
        if not self.connected:
            self.fail(f"Expected CONNECT, got {command}")
            return
        handler = _HANDLERS.get(command)
        if handler is not None:
            handler(self, frame)
        elif command in ("ACK", "NACK"):
            pass  # every subscription is ack:auto
        else:
            self.send_error(f"Unsupported command {command}")
            return
        self._receipt(frame)

    def _receipt(self, frame: Frame) -> None:
        receipt = frame.headers.get("receipt")
        if receipt and frame.command not in ("SEND", "DISCONNECT"):
            self.send(encode(Frame("RECEIPT", {"receipt-id": receipt})))

    def _on_connect(self, frame: Frame) -> None:
        versions = [v.strip() for v in frame.headers.get("accept-version", "").split(",")]
        if "1.2" not in versions:
            self.fail("Version unsupported")
            return
        if self.connected:
            self.fail("Already connected")
            return
        client_tx, client_rx = self._parse_heartbeat(frame.headers.get("heart-beat", "0,0"))
        if client_tx < 0:
            self.fail("Invalid heart-beat header")
            return
        self.connected = True
        self.send(
            encode(Frame("CONNECTED", {"version": "1.2", "heart-beat": f"{client_rx},{client_tx}"}))
        )
        loop = asyncio.get_running_loop()
        if client_rx:
            self._timers.append(loop.call_later(client_rx / 1000, self._beat, client_rx / 1000))
        if client_tx:
            period = client_tx / 1000 * HEARTBEAT_GRACE
            self._timers.append(loop.call_later(period, self._check_idle, period))

    @staticmethod
    def _parse_heartbeat(value: str) -> tuple[int, int]:
        try:
            tx, rx = (int(part) for part in value.split(","))
        except ValueError:
            return -1, -1
        if tx < 0 or rx < 0:
            return -1, -1
        # Non-zero periods below a second are raised to a second, as upstream does.
        return (max(tx, MIN_HEARTBEAT_MS) if tx else 0, max(rx, MIN_HEARTBEAT_MS) if rx else 0)

    def _beat(self, period: float) -> None:
        if self._closing or self.transport is None:
            return
        if time.monotonic() - self._last_sent >= period * 0.9 and not self._write_paused:
            self.transport.write(b"\n")
            self._last_sent = time.monotonic()
        self._timers.append(asyncio.get_running_loop().call_later(period, self._beat, period))

    def _check_idle(self, period: float) -> None:
        if self._closing:
            return
        if self._reading_paused:
            # We are not reading: the client's beats wait in the socket, not missing.
            self._last_received = time.monotonic()
        idle = time.monotonic() - self._last_received
        if idle > period:
            log.info("closing STOMP connection from %s: silent for %.1f s", self.peer, idle)
            self.close("heart-beat timeout")
            return
        self._timers.append(
            asyncio.get_running_loop().call_later(period - idle, self._check_idle, period)
        )

    def _check_stall(self) -> None:
        since = self._stalled_since
        if since is None or self._closing:
            return
        stalled = time.monotonic() - since
        if stalled >= self.broker.settings.stall_timeout:
            log.warning(
                "closing STOMP connection from %s: not reading for %.0f s", self.peer, stalled
            )
            self.broker.metrics.protocol_error("stomp_stall")
            self.abort()

    def _on_subscribe(self, frame: Frame) -> None:
        destination = frame.headers.get("destination")
        sub_id = frame.headers.get("id")
        if not destination or not sub_id:
            self.send_error("Missing destination or subscription id header")
            return
        if sub_id in self.subscriptions:
            self.send_error("Subscription id already exists")
            return
        sub = Subscription(self, sub_id, destination)
        self.subscriptions[sub_id] = sub
        self.broker.subscribe(sub)

    def _on_unsubscribe(self, frame: Frame) -> None:
        sub_id = frame.headers.get("id")
        if not sub_id:
            self.send_error("Missing id header")
            return
        sub = self.subscriptions.pop(sub_id, None)
        if sub is not None:
            self.broker.unsubscribe(sub)

    def _on_disconnect(self, frame: Frame) -> None:
        receipt = frame.headers.get("receipt")
        if receipt:
            self.send(encode(Frame("RECEIPT", {"receipt-id": receipt})))
        self.close("client disconnected")

    def _on_send(self, frame: Frame) -> None:
        destination = frame.headers.get("destination")
        if not destination:
            self.send_error("Missing destination header")
            return
        delivered = self.broker.route_send(frame)
        if is_request_queue(destination):
            self._start_request(frame)
        elif not delivered:
            self.send_error("Subscription not available", f"No subscription for {destination}")

    def _start_request(self, frame: Frame) -> None:
        meta = RequestMeta(self.peer, self.local_address, frame.headers.get(FLOW_ID_HEADER))
        task = asyncio.get_running_loop().create_task(
            self._serve(frame.body, frame.headers.get("reply-to"), meta)
        )
        self._tasks.add(task)
        task.add_done_callback(self._request_done)
        self._update_reading()

    async def _serve(self, body: bytes, reply_to: str | None, meta: RequestMeta) -> None:
        response = await self.broker.rpc(body, meta)
        if response is not None and reply_to:
            self.broker.deliver_reply(reply_to, response)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("request from %s failed", self.peer, exc_info=task.exception())
        self._update_reading()

    def _update_reading(self) -> None:
        """Stop reading requests while the client lags or too many are in flight."""
        transport = self.transport
        if transport is None or self._closing:
            return
        should_pause = self._write_paused or len(self._tasks) >= MAX_INFLIGHT
        if should_pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False
            # Activity while paused cannot be seen; do not count the pause as silence.
            self._last_received = time.monotonic()


_HANDLERS = {
    "SEND": StompConnection._on_send,
    "SUBSCRIBE": StompConnection._on_subscribe,
    "UNSUBSCRIBE": StompConnection._on_unsubscribe,
    "DISCONNECT": StompConnection._on_disconnect,
}

"""An asyncio JSON-RPC client over STOMP, speaking exactly like upstream's vdsm-client.

    CONNECT accept-version:1.2, heart-beat:<outgoing>,<incoming*0.8>
    SUBSCRIBE to a fresh reply destination
    SEND to jms.topic.vdsm_requests with reply-to, a one-element batch per call

Used by vdsm-client, vdsClient, the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from vdsm.rpc.stomp import Decoder, Frame, ProtocolError, encode

REQUEST_QUEUE = "jms.topic.vdsm_requests"
EVENTS_QUEUE = "jms.queue.events"


class ClientError(Exception):
    pass


class ConnectionFailed(ClientError):
    pass


class CallTimeout(ClientError):
    pass


class ServerError(ClientError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"(code={self.code}, message={self.message})"


def client_ssl_context(trust_store: Path) -> ssl.SSLContext:
    """Our certificate and key, and the CA that signed the server, from a trust store."""
    ctx = ssl.create_default_context(cafile=str(trust_store / "certs" / "cacert.pem"))
    # Hosts are reached by IP as often as by name; the CA is private to the cluster.
    ctx.check_hostname = False
    ctx.load_cert_chain(
        trust_store / "certs" / "vdsmcert.pem", trust_store / "keys" / "vdsmkey.pem"
    )
    return ctx


class StompClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = Decoder()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._queues: dict[str, asyncio.Queue[Frame]] = {}
        self._reply_destination = str(uuid.uuid4())
        self._reply_subscription = str(uuid.uuid4())
        self._connected: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._closed: BaseException | None = None
        self._reader_task = asyncio.create_task(self._read_loop())
        self._beat_task: asyncio.Task[None] | None = None
        self.server_heartbeat = (0, 0)

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 60.0,
        incoming_heartbeat: int = 30000,
        outgoing_heartbeat: int = 0,
    ) -> StompClient:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=ssl_context, limit=2**24), timeout
            )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            raise ConnectionFailed(str(e) or type(e).__name__) from None
        client = cls(reader, writer)
        try:
            await client._handshake(incoming_heartbeat, outgoing_heartbeat, timeout)
        except BaseException:
            await client.close()
            raise
        return client

    async def _handshake(self, incoming: int, outgoing: int, timeout: float) -> None:
        # Ask for server beats a bit more often than we need them, as upstream does.
        self.send(
            Frame(
                "CONNECT",
                {"accept-version": "1.2", "heart-beat": f"{outgoing},{int(incoming * 0.8)}"},
            )
        )
        try:
            frame = await asyncio.wait_for(asyncio.shield(self._connected), timeout)
        except TimeoutError:
            raise ConnectionFailed("no CONNECTED frame from the server") from None
        sx, _, sy = frame.headers.get("heart-beat", "0,0").partition(",")
        self.server_heartbeat = (int(sx or 0), int(sy or 0))
        self.send(
            Frame(
                "SUBSCRIBE",
                {
                    "destination": self._reply_destination,
                    "ack": "auto",
                    "id": self._reply_subscription,
                },
            )
        )
        if outgoing and self.server_heartbeat[1]:
            period = max(outgoing, self.server_heartbeat[1]) / 1000
            self._beat_task = asyncio.create_task(self._beat(period))

    async def _beat(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            self._writer.write(b"\n")

    def send(self, frame: Frame) -> None:
        if self._closed is not None:
            raise ConnectionFailed(f"connection closed: {self._closed}")
        self._writer.write(encode(frame))

    async def call(
        self,
        method: str,
        params: dict[str, Any] | list[Any] | None = None,
        *,
        timeout: float = 60.0,
        flow_id: str | None = None,
    ) -> Any:
        """Call a verb; answers its result, raises ServerError for an error answer."""
        request_id = str(uuid.uuid4())
        body = json.dumps(
            [{"jsonrpc": "2.0", "method": method, "params": params or {}, "id": request_id}]
        ).encode()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        headers = {
            "destination": REQUEST_QUEUE,
            "content-type": "application/json",
            "reply-to": self._reply_destination,
        }
        if flow_id:
            headers["ovirtCorrelationId"] = flow_id
        try:
            self.send(Frame("SEND", headers, body))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise CallTimeout(f"no answer to {method} in {timeout} s") from None
        finally:
            self._pending.pop(request_id, None)

    async def subscribe(self, destination: str = EVENTS_QUEUE) -> asyncio.Queue[Frame]:
        """Frames sent to `destination`; the queue gets MESSAGE frames as they arrive."""
        sub_id = str(uuid.uuid4())
        queue: asyncio.Queue[Frame] = asyncio.Queue()
        self._queues[sub_id] = queue
        self.send(Frame("SUBSCRIBE", {"destination": destination, "ack": "auto", "id": sub_id}))
        return queue

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Notifications from jms.queue.events as (method, params), forever."""
        queue = await self.subscribe(EVENTS_QUEUE)
        while True:
            frame = await queue.get()
            message = json.loads(frame.body)
            yield message.get("method", ""), message.get("params", {})

    async def _read_loop(self) -> None:
        error: BaseException = ConnectionFailed("connection closed by the server")
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for frame in self._decoder.feed(data):
                    self._dispatch(frame)
        except ProtocolError as e:
            error = ConnectionFailed(f"bad frame from the server: {e}")
        except (OSError, ssl.SSLError) as e:
            error = ConnectionFailed(str(e) or type(e).__name__)
        except asyncio.CancelledError:
            error = ConnectionFailed("client closed")
            raise
        finally:
            self._fail_all(error)

    def _dispatch(self, frame: Frame) -> None:
        if frame.command == "CONNECTED":
            if not self._connected.done():
                self._connected.set_result(frame)
        elif frame.command == "MESSAGE":
            subscription = frame.headers.get("subscription")
            if subscription == self._reply_subscription:
                self._resolve(frame.body)
            elif subscription in self._queues:
                self._queues[subscription].put_nowait(frame)
        elif frame.command == "ERROR":
            message = frame.headers.get("message") or frame.body.decode(errors="replace")
            error = ConnectionFailed(f"server error: {message}")
            if not self._connected.done():
                self._connected.set_exception(error)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)

    def _resolve(self, body: bytes) -> None:
        try:
            decoded = json.loads(body)
        except ValueError:
            return
        for response in decoded if isinstance(decoded, list) else [decoded]:
            if not isinstance(response, dict):
                continue
            future = self._pending.get(response.get("id"))  # type: ignore[arg-type]
            if future is None or future.done():
                continue
            if "error" in response:
                err = response["error"] or {}
                future.set_exception(ServerError(err.get("code", 0), err.get("message", "")))
            else:
                future.set_result(response.get("result"))

    def _fail_all(self, error: BaseException) -> None:
        self._closed = error
        if not self._connected.done():
            self._connected.set_exception(error)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        if self._beat_task is not None:
            self._beat_task.cancel()
        if self._closed is None:
            with contextlib.suppress(Exception):
                self._writer.write(encode(Frame("DISCONNECT", {})))
        self._reader_task.cancel()
        with contextlib.suppress(BaseException):
            await self._reader_task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        # The "connected" future may hold an exception nobody will read.
        if self._connected.done() and not self._connected.cancelled():
            self._connected.exception()

    async def __aenter__(self) -> StompClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

"""A blocking, byte-level STOMP peer for protocol tests: nothing hidden, every frame seen."""

from __future__ import annotations

import json
import socket
import ssl
import time
import uuid
from typing import Any

from vdsm.rpc.stomp import Decoder, Frame, encode

REQUESTS = "jms.topic.vdsm_requests"


class Closed(ConnectionError):
    pass


class RawStomp:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        sock: socket.socket | None = None,
    ) -> None:
        # `sock`: an already connected socket (e.g. made inside a network namespace).
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = (
            ssl_context.wrap_socket(sock, server_hostname=host) if ssl_context else sock
        )
        self.decoder = Decoder()
        self.frames: list[Frame] = []
        self.raw = bytearray()
        self._reply_to: str | None = None

    # -- sending ---------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_bytes(encode(Frame(command, headers or {}, body)))

    def connect(self, heartbeat: str = "0,0", version: str = "1.2") -> Frame:
        self.send("CONNECT", {"accept-version": version, "heart-beat": heartbeat})
        return self.expect("CONNECTED")

    def subscribe(self, destination: str, sub_id: str | None = None) -> str:
        sub_id = sub_id or str(uuid.uuid4())
        self.send("SUBSCRIBE", {"destination": destination, "id": sub_id, "ack": "auto"})
        return sub_id

    def request(
        self,
        method: str,
        params: Any = None,
        *,
        reply_to: str | None = None,
        request_id: str | None = None,
        flow_id: str | None = None,
        batch: bool = True,
    ) -> str:
        request_id = request_id or str(uuid.uuid4())
        message = {"jsonrpc": "2.0", "method": method, "params": params or {}, "id": request_id}
        headers = {"destination": REQUESTS, "content-type": "application/json"}
        if reply_to:
            headers["reply-to"] = reply_to
        if flow_id:
            headers["ovirtCorrelationId"] = flow_id
        self.send("SEND", headers, json.dumps([message] if batch else message).encode())
        return request_id

    def call(self, method: str, params: Any = None, *, timeout: float = 5.0, **kwargs: Any) -> Any:
        """Request and answer, as vdsm-client does: a reply destination of our own,
        subscribed on first use (CONNECT first)."""
        if self._reply_to is None:
            self._reply_to = str(uuid.uuid4())
            self.subscribe(self._reply_to)
        self.request(method, params, reply_to=self._reply_to, **kwargs)
        return self.answer(timeout)

    # -- receiving -------------------------------------------------------------------

    def read_frame(self, timeout: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout
        while not self.frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("no frame in time") from None
            if not data:
                raise Closed("connection closed by the server")
            self.raw += data
            self.frames += self.decoder.feed(data)
        return self.frames.pop(0)

    def expect(self, command: str, timeout: float = 5.0) -> Frame:
        frame = self.read_frame(timeout)
        assert frame.command == command, f"expected {command}, got {frame!r}: {frame.body!r}"
        return frame

    def answer(self, timeout: float = 5.0) -> Any:
        return json.loads(self.expect("MESSAGE", timeout).body)

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (after any pending frames)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not data:
                return True
            self.raw += data
            try:
                self.frames += self.decoder.feed(data)
            except Exception:
                pass
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> RawStomp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ping(host: str, port: int, **kwargs: Any) -> Any:
    """A full vdsm-client style exchange on a fresh connection; answers the reply."""
    with RawStomp(host, port, **kwargs) as c:
        c.connect()
        return c.call("Host.ping2")

"""The management port: one listener, TLS, then protocol detection (contract §1.1).

After the TLS handshake the first bytes decide: a STOMP command word goes to the STOMP
server, an HTTP method to the aiohttp application, anything else is logged and closed.
The HTTP side is built on its first client: aiohttp costs ~12 MB of memory, and the
engine itself speaks only STOMP, so most hosts never pay for it.
A client that sends nothing within `handshake_timeout` is closed.  Past
`max_connections` a new client is told so in its own protocol and closed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm.rpc.metrics import Metrics
from vdsm.rpc.stomp import Frame, encode
from vdsm.rpc.stomp_server import StompBroker, StompConnection

log = logging.getLogger("vdsm.rpc.listener")

# Words a STOMP peer may open with (upstream's detector list plus STOMP 1.2's "STOMP").
_STOMP_WORDS = (
    b"CONNECT",
    b"STOMP",
    b"SEND",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"DISCONNECT",
    b"MESSAGE",
    b"CONNECTED",
    b"ERROR",
    b"RECEIPT",
)
_HTTP_METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH")
_PEEK_LIMIT = 16

_BUSY_HTTP = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\nToo many connections\n"
)


ProtocolFactory = Callable[[], asyncio.Protocol]


def split_address(sockaddr: Any) -> tuple[str, int]:
    """(ip, port) of a socket address, IPv4-mapped IPv6 shown as plain IPv4."""
    if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
        return "", 0
    host = str(sockaddr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[len("::ffff:") :]
    return host, int(sockaddr[1])


def _show(sockaddr: Any) -> str:
    host, port = split_address(sockaddr)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class TlsFiles:
    key: Path
    cert: Path
    ca: Path


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2+ with a client certificate signed by our CA required."""
    for name, path in (("key", files.key), ("certificate", files.cert), ("CA", files.ca)):
        if not path.is_file():
            raise FileNotFoundError(f"TLS {name} file {path} does not exist")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.cert, files.key)
    ctx.load_verify_locations(cafile=str(files.ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _Tracked(asyncio.Protocol):
    """Forwards to the HTTP protocol and reports when the connection ends."""

    def __init__(self, inner: asyncio.Protocol, on_lost: Callable[[], None]) -> None:
        self.inner = inner
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.on_lost()


class Listener:
    def __init__(
        self,
        *,
        broker: StompBroker,
        http_builder: Callable[[], Coroutine[Any, Any, ProtocolFactory]],
        metrics: Metrics,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        handshake_timeout: float,
    ) -> None:
        self.broker = broker
        self.http_builder = http_builder
        self._http: asyncio.Task[ProtocolFactory] | None = None
        self.metrics = metrics
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.open_connections = 0
        self._server: asyncio.Server | None = None
        self._sniffing: set[_Sniffer] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; answers the bound (host, port).  '::' is dual-stack, else IPv4."""
        sock = _bind(host, port)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Sniffer(self),
            sock=sock,
            ssl=self.ssl_context,
            ssl_handshake_timeout=self.handshake_timeout if self.ssl_context else None,
            backlog=128,
        )
        bound_host, bound_port = split_address(sock.getsockname())
        return bound_host, bound_port

    def http_factory(self) -> asyncio.Task[ProtocolFactory]:
        """The HTTP protocol factory, built once on first use (retried if it failed)."""
        task = self._http
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = self._http = asyncio.get_running_loop().create_task(self.http_builder())
        return task

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def close_connections(self) -> None:
        """Closes the connections still sniffing and every STOMP connection.

        HTTP connections belong to the HTTP application, which closes its own.
        """
        for sniffer in list(self._sniffing):
            sniffer.close()
        self.broker.close_all()

    async def wait_closed(self, timeout: float) -> None:
        if self._server is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._server.wait_closed()
            except TimeoutError:
                log.warning(
                    "%d connections still open after %.0f s", self.open_connections, timeout
                )

    def _lost(self) -> None:
        self.open_connections -= 1


def _bind(host: str, port: int) -> socket.socket:
    if host in ("::", ""):
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            # Dual-stack: one socket for IPv6 and IPv4 clients, as upstream listens.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::", port))
        except OSError as e:
            if e.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            log.info("IPv6 unavailable (%s), listening on 0.0.0.0", e)
            return _bind("0.0.0.0", port)
    else:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    sock.setblocking(False)
    return sock


class _Sniffer(asyncio.Protocol):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.timer: asyncio.TimerHandle | None = None
        self.over_limit = False
        self.handed_over = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        listener = self.listener
        listener.open_connections += 1
        listener._sniffing.add(self)
        self.over_limit = listener.open_connections > listener.max_connections
        self.timer = asyncio.get_running_loop().call_later(
            listener.handshake_timeout, self._timeout
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head = self.buffer.lstrip(b"\r\n")
        if not head:
            return
        kind = _detect(head)
        if kind is None:
            if len(head) < _PEEK_LIMIT:
                return  # not enough bytes yet
            kind = "unknown"
        if kind == "unknown":
            log.warning(
                "closing connection from %s: unknown protocol, first bytes %r",
                self.peer,
                self.buffer[:_PEEK_LIMIT],
            )
            self.listener.metrics.protocol_error("unknown_protocol")
            self.close()
            return
        if self.over_limit:
            self._refuse(kind)
            return
        self._hand_over(kind)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handed_over:
            self._forget()
            self.listener._lost()

    @property
    def peer(self) -> str:
        return _show(self.transport.get_extra_info("peername")) if self.transport else "?"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _forget(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.listener._sniffing.discard(self)

    def _timeout(self) -> None:
        log.info(
            "closing connection from %s: nothing received in %.0f s",
            self.peer,
            self.listener.handshake_timeout,
        )
        self.listener.metrics.protocol_error("idle_before_protocol")
        self.close()

    def _refuse(self, kind: str) -> None:
        assert self.transport is not None
        log.warning(
            "refusing connection from %s: %d connections open, limit %d",
            self.peer,
            self.listener.open_connections,
            self.listener.max_connections,
        )
        self.listener.metrics.protocol_error("too_many_connections")
        if kind == "stomp":
            error = Frame(
                "ERROR",
                {"message": "Too many connections", "content-type": "text/plain"},
                b"Too many connections",
            )
            self.transport.write(encode(error))
        else:
            self.transport.write(_BUSY_HTTP)
        self.close()

    def _hand_over(self, kind: str) -> None:
        transport = self.transport
        assert transport is not None
        self._forget()
        if kind == "stomp":
            peer = _show(transport.get_extra_info("peername"))
            local_ip, _ = split_address(transport.get_extra_info("sockname"))
            self._attach(
                StompConnection(self.listener.broker, peer, local_ip, on_lost=self.listener._lost)
            )
            return
        factory = self.listener.http_factory()
        if factory.done():
            self._attach_http(factory)
        else:
            # The first HTTP client waits while the HTTP side is built.
            transport.pause_reading()
            factory.add_done_callback(self._attach_http)

    def _attach_http(self, factory: asyncio.Task[ProtocolFactory]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the client left while we were getting ready; already counted out
        if factory.cancelled() or factory.exception() is not None:
            log.error(
                "cannot serve HTTP to %s: %s",
                self.peer,
                "cancelled" if factory.cancelled() else factory.exception(),
            )
            self.close()
            return
        metrics = self.listener.metrics
        metrics.connection_opened("http")

        def lost() -> None:
            metrics.connection_closed("http")
            self.listener._lost()

        self._attach(_Tracked(factory.result()(), lost))
        transport.resume_reading()

    def _attach(self, protocol: asyncio.Protocol) -> None:
        transport = self.transport
        assert transport is not None
        self.handed_over = True
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(self.buffer)


def _detect(head: bytes) -> str | None:
    """'stomp', 'http', 'unknown', or None while the bytes could still be either."""
    for word in _STOMP_WORDS:
        if head.startswith(word + b"\n") or head.startswith(word + b"\r\n"):
            return "stomp"
    for method in _HTTP_METHODS:
        if head.startswith(method + b" "):
            return "http"
    candidates = [w + b"\n" for w in _STOMP_WORDS] + [m + b" " for m in _HTTP_METHODS]
    if any(c.startswith(head) for c in candidates) or head.rstrip(b"\r") in _STOMP_WORDS:
        return None
    return "unknown"

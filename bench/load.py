"""A STOMP JSON-RPC load generator: sequential latency and concurrent throughput.

Each connection keeps one request in flight (like an engine thread waiting for its
answer), so calls/s measures round trips, not pipelining.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid

from vdsm.rpc.stomp import Decoder, Frame, encode


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.decoder = Decoder()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Frame] | None = None
        self.reply_to = str(uuid.uuid4())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    async def exchange(self, data: bytes) -> Frame:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await asyncio.wait_for(self.waiter, 10)


async def open_connection(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(Connection, host, port)
    frame = await conn.exchange(
        encode(Frame("CONNECT", {"accept-version": "1.2", "heart-beat": "0,0"}))
    )
    assert frame.command == "CONNECTED", frame
    assert conn.transport is not None
    conn.transport.write(
        encode(Frame("SUBSCRIBE", {"destination": conn.reply_to, "id": "s", "ack": "auto"}))
    )
    return conn


def request(conn: Connection, method: str = "Host.ping2") -> bytes:
    body = json.dumps([{"jsonrpc": "2.0", "method": method, "params": {}, "id": str(uuid.uuid4())}])
    headers = {
        "destination": "jms.topic.vdsm_requests",
        "content-type": "application/json",
        "reply-to": conn.reply_to,
    }
    return encode(Frame("SEND", headers, body.encode()))


async def sequential(host: str, port: int, count: int) -> list[float]:
    conn = await open_connection(host, port)
    samples = []
    for _ in range(count):
        data = request(conn)
        start = time.perf_counter()
        frame = await conn.exchange(data)
        samples.append(time.perf_counter() - start)
        assert frame.command == "MESSAGE", frame
    assert conn.transport is not None
    conn.transport.close()
    return samples


async def throughput(host: str, port: int, connections: int, seconds: float) -> float:
    conns = [await open_connection(host, port) for _ in range(connections)]
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(conn: Connection) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            frame = await conn.exchange(request(conn))
            assert frame.command == "MESSAGE", frame
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return done / elapsed


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def summarize(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50) * 1000,
        "p99_ms": percentile(samples, 99) * 1000,
        "mean_ms": statistics.fmean(samples) * 1000,
    }

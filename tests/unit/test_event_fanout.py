"""A slow event consumer never blocks the daemon: drops are bounded and counted.

The real EventBus, STOMP broker and HTTP application run in-process on real loopback
sockets; the consumers are clients that subscribe and then stop reading.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from aiohttp import web

from vdsm.events import EventBus
from vdsm.lifecycle import Lifecycle, Phase
from vdsm.rpc.http import HttpApi
from vdsm.rpc.jsonrpc import Dispatcher
from vdsm.rpc.metrics import Metrics
from vdsm.rpc.stomp import Decoder, Frame, Limits, encode
from vdsm.rpc.stomp_server import ServerSettings, StompBroker, StompConnection

BIG = "x" * 100_000


def make_bus() -> EventBus:
    bus = EventBus()
    bus.enabled = True
    return bus


async def no_rpc(body: bytes, meta: object) -> bytes | None:
    return None


def test_bus_suppresses_events_until_enabled():
    bus = EventBus()
    got = []
    bus.subscribe(lambda n: got.append(n) or True)
    bus.publish("|net|host_conn|no_id", {})
    assert got == [] and bus.suppressed == 1
    bus.enabled = True
    bus.publish("|net|host_conn|no_id", {})
    assert len(got) == 1
    assert isinstance(got[0].params["notify_time"], int)
    assert json.loads(got[0].payload) == {
        "jsonrpc": "2.0",
        "method": "|net|host_conn|no_id",
        "params": got[0].params,
    }


def test_a_failing_consumer_does_not_stop_the_others():
    bus = make_bus()
    got = []

    def broken(_):
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.subscribe(lambda n: got.append(n) or True)
    bus.publish("e", {})
    assert len(got) == 1 and bus.dropped == 1


async def stomp_server(bus: EventBus) -> tuple[StompBroker, asyncio.Server, int]:
    """A real STOMP broker on a loopback port, delivering the bus's events."""
    settings = ServerSettings(Limits(), max_pending_bytes=4 * 1024 * 1024, stall_timeout=60)
    broker = StompBroker(no_rpc, Metrics(), settings)
    bus.subscribe(broker.deliver_event)
    server = await asyncio.get_running_loop().create_server(
        lambda: StompConnection(broker, "peer", "local"), "127.0.0.1", 0
    )
    return broker, server, server.sockets[0].getsockname()[1]


def test_stomp_subscriber_that_stops_reading_loses_events_not_the_daemon():
    async def scenario() -> tuple[int, int, float]:
        bus = make_bus()
        broker, server, port = await stomp_server(bus)
        slow = socket.create_connection(("127.0.0.1", port))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(encode(Frame("CONNECT", {"accept-version": "1.2"})))
        slow.sendall(encode(Frame("SUBSCRIBE", {"destination": "jms.queue.events", "id": "s"})))
        while not broker.subscribers("jms.queue.events"):
            await asyncio.sleep(0.01)
        worst = 0.0
        for _ in range(300):
            start = time.perf_counter()
            bus.publish("|test|event|x", {"blob": BIG})
            worst = max(worst, time.perf_counter() - start)
            await asyncio.sleep(0)  # let the transport try to write
        slow.close()
        server.close()
        return bus.published, bus.dropped, worst

    published, dropped, worst = asyncio.run(scenario())
    assert published == 300
    assert dropped > 0, "the lagging subscriber should have lost events"
    assert worst < 0.05, f"publishing blocked for {worst:.3f} s"


def test_websocket_client_that_stops_reading_loses_events_not_the_daemon():
    async def scenario() -> tuple[int, int, float, str]:
        bus = make_bus()
        lifecycle = Lifecycle()
        lifecycle.enter(Phase.READY)
        metrics = Metrics()
        dispatcher = Dispatcher({}, lifecycle, metrics, max_batch_size=10, call_timeout=5)
        api = HttpApi(
            dispatcher, lifecycle, metrics, bus, max_body_size=1 << 20, event_queue_size=5
        )
        runner = web.AppRunner(api.app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        # A WebSocket client made by hand, so that it can really stop reading.
        slow = socket.create_connection(("127.0.0.1", port))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(
            b"GET /events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        slow.setblocking(False)
        response = b""
        while b"\r\n\r\n" not in response:
            await asyncio.sleep(0.01)
            try:
                response += slow.recv(4096)
            except BlockingIOError:
                pass
        assert response.startswith(b"HTTP/1.1 101")
        while not api.websockets:
            await asyncio.sleep(0.01)
        worst = 0.0
        for _ in range(400):
            start = time.perf_counter()
            bus.publish("|test|event|x", {"blob": BIG})
            worst = max(worst, time.perf_counter() - start)
            await asyncio.sleep(0)
        text = metrics.render()
        slow.close()
        await runner.cleanup()
        return bus.published, bus.dropped, worst, text

    published, dropped, worst, text = asyncio.run(scenario())
    assert published == 400
    assert dropped > 0, "the lagging WebSocket client should have lost events"
    assert worst < 0.05, f"publishing blocked for {worst:.3f} s"
    assert 'vdsm_connections{protocol="websocket"} 1' in text


def test_event_frames_carry_the_subscription_and_json():
    async def scenario() -> Frame:
        bus = make_bus()
        broker, server, port = await stomp_server(bus)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode(Frame("CONNECT", {"accept-version": "1.2"})))
        writer.write(encode(Frame("SUBSCRIBE", {"destination": "jms.queue.events", "id": "e1"})))
        decoder = Decoder()
        frames: list[Frame] = []
        while not broker.subscribers("jms.queue.events"):
            frames += decoder.feed(await reader.read(4096))
        bus.publish("|virt|VM_status|abc", {"abc": {"status": "Up"}})
        while len(frames) < 2:
            frames += decoder.feed(await reader.read(65536))
        writer.close()
        server.close()
        return frames[1]

    frame = asyncio.run(scenario())
    assert frame.command == "MESSAGE"
    assert frame.headers["destination"] == "jms.queue.events"
    assert frame.headers["subscription"] == "e1"
    message = json.loads(frame.body)
    assert message["method"] == "|virt|VM_status|abc"
    assert message["params"]["abc"] == {"status": "Up"}


@pytest.mark.parametrize("size", [1, 3])
def test_metrics_render_external_counters(size):
    metrics = Metrics()
    metrics.register("vdsm_events_dropped_total", "counter", "Dropped.", lambda: size)
    text = metrics.render()
    assert "# TYPE vdsm_events_dropped_total counter" in text
    assert f"vdsm_events_dropped_total {size}" in text

"""HTTP on the management port: JSON-RPC, health, metrics, and the WebSocket event stream."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aiohttp
import pytest

from tests.support.rawstomp import ping

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon(vdsmd):
    return vdsmd()


def get(daemon, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://{daemon.host}:{daemon.port}{path}", timeout=5) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


def post(daemon, path: str, body: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://{daemon.host}:{daemon.port}{path}",
        data=body,
        headers=headers or {},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.status, r.read()


def test_health(daemon):
    status, content_type, body = get(daemon, "/health")
    assert status == 200 and content_type.startswith("application/json")
    health = json.loads(body)
    assert health["state"] == "ready"
    assert health["version"]
    assert health["uptime"] > 0


def test_jsonrpc_over_http(daemon):
    request = {"jsonrpc": "2.0", "method": "Host.echo", "params": {"message": "via http"}, "id": 7}
    status, body = post(
        daemon, "/jsonrpc", json.dumps(request).encode(), {"ovirtCorrelationId": "http-flow"}
    )
    assert status == 200
    assert json.loads(body) == {"jsonrpc": "2.0", "result": "via http", "id": 7}
    assert "flow_id=http-flow" in daemon.log_text()


def test_jsonrpc_over_http_errors_and_notifications(daemon):
    status, body = post(daemon, "/jsonrpc", b"[]")
    assert json.loads(body)["error"]["code"] == -32600
    status, body = post(
        daemon, "/jsonrpc", json.dumps({"jsonrpc": "2.0", "method": "Host.ping2"}).encode()
    )
    assert status == 204 and body == b""


def test_metrics_count_requests_and_connections(daemon):
    assert ping(daemon.host, daemon.port)["result"] is True
    status, content_type, text = get(daemon, "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert 'vdsm_rpc_requests_total{verb="Host.ping2",code="0"} 1' in text
    assert 'vdsm_rpc_request_seconds_bucket{verb="Host.ping2",le="+Inf"} 1' in text
    assert 'vdsm_connections_total{protocol="stomp"} 1' in text
    assert 'vdsm_connections{protocol="http"} 1' in text  # this very request
    assert "vdsm_ready 1" in text
    assert "# TYPE vdsm_rpc_request_seconds histogram" in text


def test_unknown_path_is_404(daemon):
    with pytest.raises(urllib.error.HTTPError) as info:
        get(daemon, "/nothing")
    assert info.value.code == 404


def test_websocket_follows_events(daemon, veth_pair):
    async def follow() -> dict:
        async with aiohttp.ClientSession() as session:
            url = f"http://{daemon.host}:{daemon.port}/events"
            async with session.ws_connect(url) as ws:
                await asyncio.sleep(0.2)  # subscribed before the change
                veth_pair()
                message = await ws.receive(timeout=10)
                return json.loads(message.data)

    event = asyncio.run(follow())
    assert event["method"] == "|net|host_conn|no_id"
    assert isinstance(event["params"]["notify_time"], int)


def aiohttp_loaded(pid: int) -> bool:
    return "aiohttp" in open(f"/proc/{pid}/maps").read()


def test_http_side_is_built_on_its_first_client(daemon):
    # An engine only speaks STOMP: it never pays for the HTTP stack.
    assert ping(daemon.host, daemon.port)["result"] is True
    assert not aiohttp_loaded(daemon.pid)
    status, _, _ = get(daemon, "/health")
    assert status == 200
    assert aiohttp_loaded(daemon.pid)


def test_concurrent_first_http_clients_all_get_answers(daemon):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: get(daemon, "/health")[0], range(8)))
    assert results == [200] * 8

"""STOMP 1.2 as the engine and vdsm-client speak it (contract §1.2), on a real daemon."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.support.rawstomp import RawStomp

pytestmark = pytest.mark.integration


@pytest.fixture
def daemon(vdsmd):
    return vdsmd()


def client(daemon) -> RawStomp:
    return RawStomp(daemon.host, daemon.port)


def test_vdsm_client_exchange(daemon):
    """The exchange observed between upstream's vdsm-client and vdsm, frame by frame."""
    with client(daemon) as c:
        connected = c.connect(heartbeat="0,24000")
        assert connected.headers["version"] == "1.2"
        # The server beats as often as the client asked; it expects nothing back.
        assert connected.headers["heart-beat"] == "24000,0"
        reply_to, sub_id = str(uuid.uuid4()), str(uuid.uuid4())
        c.subscribe(reply_to, sub_id)
        request_id = c.request("Host.ping2", reply_to=reply_to, flow_id="flow-xyz")
        message = c.expect("MESSAGE")
        assert message.headers["destination"] == reply_to
        assert message.headers["subscription"] == sub_id
        assert message.headers["content-type"] == "application/json"
        assert int(message.headers["content-length"]) == len(message.body)
        # A one-element batch is answered with a bare object.
        assert json.loads(message.body) == {"jsonrpc": "2.0", "result": True, "id": request_id}


def test_flow_id_reaches_the_log(daemon):
    with client(daemon) as c:
        c.connect()
        assert c.call("Host.echo", {"message": "hello"}, flow_id="flow-42")["result"] == "hello"
    deadline = time.monotonic() + 5
    while "flow_id=flow-42" not in daemon.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "flow_id=flow-42" in daemon.log_text()


def test_no_reply_to_means_no_answer(daemon):
    with client(daemon) as c:
        c.connect()
        reply_to = str(uuid.uuid4())
        c.subscribe(reply_to)
        c.request("Host.ping2")  # no reply-to: executed, answer dropped
        second = c.request("Host.ping2", reply_to=reply_to)
        assert c.answer()["id"] == second
        with pytest.raises(TimeoutError):
            c.read_frame(timeout=0.5)


def test_replies_go_to_every_reply_to_subscriber_on_any_connection(daemon):
    reply_to = str(uuid.uuid4())
    with client(daemon) as a, client(daemon) as b, client(daemon) as other:
        for c in (a, b, other):
            c.connect()
        a.subscribe(reply_to)
        b.subscribe(reply_to)
        other.subscribe(str(uuid.uuid4()))
        request_id = other.request("Host.ping2", reply_to=reply_to)
        assert a.answer()["id"] == request_id
        assert b.answer()["id"] == request_id
        with pytest.raises(TimeoutError):
            other.read_frame(timeout=0.5)


def test_send_fans_out_to_destination_and_dot_prefixes(daemon):
    with client(daemon) as sender, client(daemon) as listener:
        sender.connect()
        listener.connect()
        exact = listener.subscribe("a.b.c")
        prefix = listener.subscribe("a")
        listener.subscribe("a.b.c.d")  # longer: must not match
        sender.send("SEND", {"destination": "a.b.c", "content-type": "text/plain"}, b"payload")
        got = {listener.expect("MESSAGE").headers["subscription"] for _ in range(2)}
        assert got == {exact, prefix}
        with pytest.raises(TimeoutError):
            listener.read_frame(timeout=0.3)


def test_send_without_subscribers_is_an_error_but_keeps_the_connection(daemon):
    with client(daemon) as c:
        c.connect()
        c.send("SEND", {"destination": "nobody.listens"}, b"x")
        error = c.expect("ERROR")
        assert error.headers["message"] == "Subscription not available"
        assert c.call("Host.ping2")["result"] is True


def test_subscribe_errors(daemon):
    with client(daemon) as c:
        c.connect()
        c.send("SUBSCRIBE", {"destination": "x"})
        assert (
            c.expect("ERROR").headers["message"] == "Missing destination or subscription id header"
        )
        c.subscribe("x", "sub-1")
        c.subscribe("y", "sub-1")
        assert c.expect("ERROR").headers["message"] == "Subscription id already exists"


def test_unsubscribe_stops_delivery(daemon):
    with client(daemon) as c, client(daemon) as sender:
        c.connect()
        sender.connect()
        sub = c.subscribe("topic.x")
        c.send("UNSUBSCRIBE", {"id": sub, "receipt": "r1"})
        assert c.expect("RECEIPT").headers["receipt-id"] == "r1"
        sender.send("SEND", {"destination": "topic.x"}, b"x")
        assert sender.expect("ERROR").headers["message"] == "Subscription not available"


def test_unsupported_version_is_refused(daemon):
    with client(daemon) as c:
        c.send("CONNECT", {"accept-version": "1.0,1.1"})
        assert c.expect("ERROR").headers["message"] == "Version unsupported"
        assert c.closed_by_server()


def test_frames_before_connect_are_refused(daemon):
    with client(daemon) as c:
        c.send("SUBSCRIBE", {"destination": "x", "id": "1"})
        assert "Expected CONNECT" in c.expect("ERROR").headers["message"]
        assert c.closed_by_server()


def test_disconnect_with_receipt(daemon):
    with client(daemon) as c:
        c.connect()
        c.send("DISCONNECT", {"receipt": "bye-1"})
        assert c.expect("RECEIPT").headers["receipt-id"] == "bye-1"
        assert c.closed_by_server()


def test_server_heartbeats(daemon):
    with client(daemon) as c:
        connected = c.connect(heartbeat="0,1000")
        assert connected.headers["heart-beat"] == "1000,0"
        c.sock.settimeout(3)
        start = time.monotonic()
        data = c.sock.recv(10)
        assert data == b"\n"
        assert time.monotonic() - start < 2.5


def test_silent_client_with_heartbeats_is_closed(daemon):
    with client(daemon) as c:
        connected = c.connect(heartbeat="1000,0")
        assert connected.headers["heart-beat"] == "0,1000"
        start = time.monotonic()
        assert c.closed_by_server(timeout=5)
        assert 1.0 <= time.monotonic() - start <= 4.0


def test_client_heartbeats_keep_the_connection(daemon):
    with client(daemon) as c:
        c.connect(heartbeat="1000,0")
        for _ in range(5):
            time.sleep(0.5)
            c.send_bytes(b"\n")
        assert c.call("Host.ping2")["result"] is True


def test_small_heartbeats_are_raised_to_a_second(daemon):
    with client(daemon) as c:
        assert c.connect(heartbeat="10,20").headers["heart-beat"] == "1000,1000"


def test_escaped_headers_round_trip(daemon):
    reply_to = "reply:with\\colon\nand newline"
    with client(daemon) as c:
        c.connect()
        c.subscribe(reply_to)
        c.request("Host.ping2", reply_to=reply_to)
        message = c.expect("MESSAGE")
        assert message.headers["destination"] == reply_to
        assert b"reply\\cwith\\\\colon\\nand newline" in bytes(c.raw)


def test_irs_request_queue_is_served(daemon):
    with client(daemon) as c:
        c.connect()
        reply_to = str(uuid.uuid4())
        c.subscribe(reply_to)
        body = json.dumps({"jsonrpc": "2.0", "method": "Host.ping2", "id": "irs-1"}).encode()
        c.send("SEND", {"destination": "jms.topic.vdsm_irs_requests", "reply-to": reply_to}, body)
        assert c.answer() == {"jsonrpc": "2.0", "result": True, "id": "irs-1"}

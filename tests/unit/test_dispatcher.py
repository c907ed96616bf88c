"""JSON-RPC dispatch: VDSM's framing rules and error mapping, with a small test schema."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

import pytest

from vdsm import context, errors
from vdsm.api import registry, schema
from vdsm.lifecycle import Lifecycle, Phase
from vdsm.rpc.jsonrpc import BATCH_SLICE, Dispatcher, RequestMeta
from vdsm.rpc.metrics import Metrics

DOC = {
    "types": {"UUID": {"kind": "uuid"}},
    "verbs": {
        "Test.ping": {"description": "x", "during_recovery": True},
        "Test.echo": {"params": [{"name": "text", "type": "string"}], "returns": "string"},
        "Test.fail": {"params": [{"name": "code", "type": "int"}]},
        "Test.crash": {},
        "Test.slow": {},
        "Test.innerTimeout": {},
        "Test.whoami": {"params": [{"name": "password", "type": "string", "default": ""}]},
    },
}


# The turn of the event loop each Test.echo ran in (the batch slicing test counts them).
TURN = [0]
ECHO_TURNS: list[int] = []


class TestAPI:
    NAMESPACE = "Test"

    async def ping(self) -> None:
        return None

    async def echo(self, text: str) -> str:
        ECHO_TURNS.append(TURN[0])
        return text

    async def fail(self, code: int) -> None:
        if code == 1:
            raise errors.NoSuchVM(vmId="x")
        raise errors.ResourceUnavailable()

    async def crash(self) -> None:
        raise KeyError("boom")

    async def slow(self) -> None:
        await asyncio.sleep(10)

    async def innerTimeout(self) -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)

    async def whoami(self, password: str) -> dict:
        ctx = context.current()
        assert ctx is not None
        return {"peer": ctx.peer, "flow": ctx.flow_id, "method": ctx.method}


META = RequestMeta(peer="10.0.0.1:5000", local_address="10.0.0.2", flow_id="flow-1")


@pytest.fixture
def make():
    def build(ready: bool = True, max_batch: int = 100, timeout: float = 5.0) -> Dispatcher:
        lifecycle = Lifecycle()
        if ready:
            lifecycle.enter(Phase.READY)
        table = registry.build(schema.parse(DOC), [TestAPI()])
        return Dispatcher(
            table, lifecycle, Metrics(), max_batch_size=max_batch, call_timeout=timeout
        )

    return build


def call(dispatcher: Dispatcher, body) -> object:
    raw = body if isinstance(body, bytes) else json.dumps(body)
    answer = asyncio.run(dispatcher.handle(raw, META))
    return None if answer is None else json.loads(answer)


def req(method: str, params=None, id_="1") -> dict:
    r = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        r["params"] = params
    return r


def test_one_element_batch_is_answered_bare(make):
    assert call(make(), [req("Test.echo", {"text": "hi"})]) == {
        "jsonrpc": "2.0",
        "result": "hi",
        "id": "1",
    }


def test_batch_answers_each(make):
    answer = call(make(), [req("Test.echo", {"text": "a"}, "1"), req("Test.ping", None, "2")])
    assert [r["result"] for r in answer] == ["a", True]


def test_a_big_batch_is_answered_whole_with_the_loop_free_between_slices(make):
    """Past BATCH_SLICE calls, a batch runs in slices: other work gets the loop in
    between, and the answer is the same as unsliced (notifications unanswered)."""

    async def scenario() -> list[dict]:
        dispatcher = make(max_batch=1000)
        body = [req("Test.echo", {"text": str(i)}, str(i)) for i in range(250)]
        body.insert(7, {"jsonrpc": "2.0", "method": "Test.ping"})  # a notification

        async def other_work() -> None:
            while True:
                TURN[0] += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        answer = await dispatcher.handle(json.dumps(body), META)
        other.cancel()
        return json.loads(answer)

    ECHO_TURNS.clear()
    answers = asyncio.run(scenario())
    assert [(a["id"], a["result"]) for a in answers] == [(str(i), str(i)) for i in range(250)]
    # never more than a slice's calls without the other task running in between
    assert BATCH_SLICE < 250
    assert max(Counter(ECHO_TURNS).values()) <= BATCH_SLICE


def test_a_big_batch_with_an_invalid_element_is_refused_whole(make):
    body = [req("Test.ping", None, str(i)) for i in range(250)]
    body[200] = {"jsonrpc": "1.0", "method": "Test.ping", "id": "x"}
    assert call(make(max_batch=1000), body)["error"]["code"] == -32600


def test_void_verb_returns_true(make):
    assert call(make(), req("Test.ping"))["result"] is True


def test_positional_params(make):
    assert call(make(), req("Test.echo", ["x"]))["result"] == "x"


def test_parse_error(make):
    answer = call(make(), b"{not json")
    assert answer["error"]["code"] == -32700 and answer["id"] is None


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"method": "Test.ping", "id": 1},
        {"jsonrpc": "1.0", "method": "Test.ping", "id": 1},
        {"jsonrpc": "2.0", "method": 5, "id": 1},
        {"jsonrpc": "2.0", "method": "Test.ping", "params": "x", "id": 1},
        [1, 2],
        "just a string",
    ],
)
def test_invalid_requests(make, body):
    answer = call(make(), body)
    assert answer["error"]["code"] == -32600


def test_batch_limit_is_explained(make):
    answer = call(make(max_batch=3), [req("Test.ping", None, str(i)) for i in range(4)])
    assert answer["error"]["code"] == -32600
    assert "limit of 3" in answer["error"]["message"]


def test_unknown_method_text_follows_upstream(make):
    answer = call(make(), req("Nope.nothing"))
    assert answer["error"] == {
        "code": -32601,
        "message": "The method does not exist or is not available: {'method': 'Nope.nothing'}",
    }


def test_invalid_params_name_the_param(make):
    answer = call(make(), req("Test.echo", {}))
    assert answer["error"]["code"] == -32602
    assert "'text'" in answer["error"]["message"]


def test_unknown_params_are_dropped_and_logged_once(make, caplog):
    dispatcher = make()
    with caplog.at_level(logging.WARNING, logger="vdsm.api"):
        for _ in range(3):
            assert call(dispatcher, req("Test.echo", {"text": "a", "extra": 1}))["result"] == "a"
    assert sum("unknown param 'extra'" in r.getMessage() for r in caplog.records) == 1


def test_vdsm_errors_keep_their_code_and_text(make):
    assert call(make(), req("Test.fail", {"code": 1}))["error"] == {
        "code": 1,
        "message": "Virtual machine does not exist: {'vmId': 'x'}",
    }
    assert call(make(), req("Test.fail", {"code": "2"}))["error"]["code"] == 40


def test_unexpected_errors_become_100(make, caplog):
    with caplog.at_level(logging.ERROR, logger="vdsm.api"):
        answer = call(make(), req("Test.crash"))
    assert answer["error"]["code"] == 100
    assert "boom" in answer["error"]["message"]
    assert any(r.exc_info for r in caplog.records)


def test_recovery_answers_99_except_pings(make):
    dispatcher = make(ready=False)
    assert call(dispatcher, req("Test.echo", {"text": "a"}))["error"]["code"] == 99
    assert call(dispatcher, req("Test.ping"))["result"] is True


def test_notifications_get_no_answer(make):
    assert call(make(), {"jsonrpc": "2.0", "method": "Test.ping"}) is None


def test_call_timeout(make):
    answer = call(make(timeout=0.1), req("Test.slow"))
    assert answer["error"]["code"] == 100
    assert "timed out" in answer["error"]["message"]


def test_a_verbs_own_timeout_is_not_reported_as_ours(make):
    answer = call(make(timeout=30), req("Test.innerTimeout"))
    assert answer["error"]["code"] == 100
    assert "timed out after" not in answer["error"]["message"]


def test_context_carries_caller_and_flow_id(make):
    assert call(make(), req("Test.whoami"))["result"] == {
        "peer": "10.0.0.1:5000",
        "flow": "flow-1",
        "method": "Test.whoami",
    }


def test_passwords_are_masked_in_logs(make, caplog):
    with caplog.at_level(logging.INFO, logger="vdsm.api"):
        call(make(), req("Test.whoami", {"password": "s3cret"}))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "START Test.whoami" in text
    assert "s3cret" not in text


def test_metrics_count_calls_by_code(make):
    dispatcher = make()
    call(dispatcher, req("Test.ping"))
    call(dispatcher, req("Test.fail", {"code": 1}))
    rendered = dispatcher.metrics.render()
    assert 'vdsm_rpc_requests_total{verb="Test.ping",code="0"} 1' in rendered
    assert 'vdsm_rpc_requests_total{verb="Test.fail",code="1"} 1' in rendered
    assert 'vdsm_rpc_request_seconds_count{verb="Test.ping"} 1' in rendered


def test_registry_refuses_missing_or_mismatched_implementations():
    class Partial:
        NAMESPACE = "Test"

        async def ping(self) -> None: ...

        async def echo(self, message: str) -> str:
            return message

    with pytest.raises(registry.RegistryError) as info:
        registry.build(schema.parse(DOC), [Partial()])
    text = str(info.value)
    assert "Test.crash: no async implementation" in text
    assert "Test.echo: implementation takes ['message'], schema says ['text']" in text


def test_a_namespace_may_be_split_across_objects_but_a_verb_bound_once():
    echo = {"params": [{"name": "text", "type": "string"}]}
    doc = {"verbs": {"Test.ping": {}, "Test.echo": echo}}

    class Pinger:
        NAMESPACE = "Test"

        async def ping(self) -> None: ...

    class Echoer:
        NAMESPACE = "Test"

        async def echo(self, text: str) -> str:
            return text

    table = registry.build(schema.parse(doc), [Pinger(), Echoer()])
    assert set(table) == {"Test.ping", "Test.echo"}
    with pytest.raises(registry.RegistryError, match=r"Test\.ping: implemented 2 times"):
        registry.build(schema.parse(doc), [Pinger(), Echoer(), Pinger()])

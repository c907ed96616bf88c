"""vdsm-client --wait: the decisions and the drawing, without a daemon."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest

from vdsm.client import follow
from vdsm.client.follow import JobTracker, Outcome, Reporter, Target
from vdsm.client.stomp import CallTimeout, ServerError

JOB = "6e0b1ef4-3e44-4ae5-9ab0-cc6d8e2d3f10"
TASK = "2a5c2b0e-6f7e-4b5e-8a1d-3f4c5b6a7d8e"


# -- tasks -------------------------------------------------------------------------------


def status(state: str, result: str = "", code: int = 0, message: str = "") -> dict[str, Any]:
    return {
        "taskID": TASK,
        "taskState": state,
        "taskResult": result,
        "code": code,
        "message": message,
    }


@pytest.mark.parametrize("state", ["init", "running", "aborting", "cleaning", "unknown"])
def test_a_task_not_finished_has_no_outcome(state):
    assert follow.task_outcome(TASK, status(state)) is None


def test_a_finished_successful_task_is_ok():
    outcome = follow.task_outcome(TASK, status("finished", "success", 0, "1 jobs completed"))
    assert outcome == Outcome(True)
    assert outcome.exit_code == 0


@pytest.mark.parametrize("result", ["cleanSuccess", "cleanFailure"])
def test_a_rolled_back_task_failed_with_its_code(result):
    outcome = follow.task_outcome(
        TASK, status("finished", result, 395, "Current domain version is too advanced")
    )
    assert outcome is not None and outcome.exit_code == 1
    assert outcome.message == (
        f"task {TASK} failed: (code=395, message=Current domain version is too advanced)"
    )


def test_a_success_with_an_error_code_is_a_failure():
    outcome = follow.task_outcome(TASK, status("finished", "success", 100, "ERROR"))
    assert outcome == Outcome(False, f"task {TASK} failed: (code=100, message=ERROR)")


@pytest.mark.parametrize(
    ("returns", "result", "expected"),
    [
        ("UUID", TASK, True),
        ("UUID", "", False),
        ("UUID", True, False),
        ("TaskStatus", TASK, False),
        (None, TASK, False),
    ],
)
def test_which_results_may_be_tasks(returns, result, expected):
    assert follow.may_be_task(returns, result) is expected


# -- jobs --------------------------------------------------------------------------------


def test_job_id_comes_from_the_job_id_param():
    assert follow.job_id_param(["job_id", "source"], {"job_id": JOB}) == JOB
    assert follow.job_id_param(["storagepoolID"], {"job_id": JOB}) is None
    assert follow.job_id_param(["job_id"], {}) is None
    assert follow.job_id_param(["job_id"], {"job_id": ""}) is None


def info(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": JOB, "status": status, "description": "copy_data", "job_type": "storage"} | extra


def test_a_job_runs_then_is_done():
    job = JobTracker(JOB)
    job.update(info("pending"))
    assert job.outcome is None
    job.update(info("running", progress=42))
    assert (job.status, job.progress, job.outcome) == ("running", 42, None)
    job.update(info("done", progress=100))
    assert job.outcome == Outcome(True)


def test_a_failed_job_reports_its_error():
    job = JobTracker(JOB)
    job.update(info("running", progress=10))
    job.update(info("failed", error={"code": 79, "message": "Destination volume is too small"}))
    assert job.outcome == Outcome(
        False, f"job {JOB} failed: (code=79, message=Destination volume is too small)"
    )


def test_an_aborted_job_fails():
    job = JobTracker(JOB)
    job.update(info("aborting"))
    assert job.outcome is None
    job.update(info("aborted"))
    assert job.outcome == Outcome(False, f"job {JOB} aborted")


def test_the_end_is_final():
    job = JobTracker(JOB)
    job.update(info("done"))
    job.update(info("running", progress=3))  # a poll answer older than the event
    job.missing()
    assert job.outcome == Outcome(True)
    assert job.status == "done"


def test_a_job_forgotten_after_it_was_seen_done_is_ok():
    job = JobTracker(JOB)
    job.update(info("done"))
    assert job.outcome == Outcome(True)
    job = JobTracker(JOB)
    job.update({"status": "done"})  # event params may carry only some fields
    job.missing()
    assert job.outcome == Outcome(True)


def test_a_job_that_vanishes_while_running_failed():
    job = JobTracker(JOB)
    job.update(info("running", progress=50))
    job.missing()
    assert job.outcome == Outcome(False, f"job {JOB} disappeared from the host while running")


def test_a_job_never_listed_is_unknown_after_a_few_polls():
    job = JobTracker(JOB, not_found_polls=3)
    job.missing()
    job.missing()
    assert job.outcome is None
    job.missing()
    assert job.outcome == Outcome(False, f"job {JOB} is not known to the host")


def test_partial_updates_keep_what_was_known():
    job = JobTracker(JOB)
    job.update(info("running", progress=20))
    job.update({"id": JOB, "status": "running"})
    assert (job.progress, job.description, job.job_type) == (20, "copy_data", "storage")


def test_job_events_are_matched_by_method():
    def body(method: str, params: Any) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode()

    params = info("running", progress=5, notify_time=2147483647)
    assert follow.job_event(JOB, body(f"|jobs|status|{JOB}", params)) == params
    assert follow.job_event(JOB, body("|jobs|status|other", params)) is None
    assert follow.job_event(JOB, body("|net|host_conn|no_id", {})) is None
    assert follow.job_event(JOB, b"not json") is None
    assert follow.job_event(JOB, body(f"|jobs|status|{JOB}", [1])) is None


# -- drawing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (0, "[..........] 0%  copy_data"),
        (42, "[####......] 42%  copy_data"),
        (99.9, "[#########.] 99%  copy_data"),
        (100, "[##########] 100%  copy_data"),
        (130, "[##########] 100%  copy_data"),
        (-5, "[..........] 0%  copy_data"),
    ],
)
def test_progress_bar(progress, expected):
    assert follow.progress_bar(progress, "copy_data", width=10) == expected


def test_progress_bar_without_label():
    assert follow.progress_bar(50, width=4) == "[##..] 50%"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_task_lines_only_when_the_state_changes():
    out = io.StringIO()
    reporter = Reporter(out, terminal=False)
    for state in ("running", "running", "running", "finished"):
        reporter.task(TASK, state)
    reporter.close()
    assert out.getvalue() == f"task {TASK}: running\ntask {TASK}: finished\n"


def test_terminal_task_spinner_redraws_one_line():
    out = io.StringIO()
    clock = Clock()
    reporter = Reporter(out, terminal=True, clock=clock)
    reporter.task(TASK, "running")
    clock.now += 12.7
    reporter.task(TASK, "running")
    reporter.close()
    assert out.getvalue() == (
        f"\r| task {TASK} running 0s\x1b[K\r/ task {TASK} running 12s\x1b[K\n"
    )


def test_plain_job_lines_when_the_percent_changes():
    out = io.StringIO()
    reporter = Reporter(out, terminal=False)
    job = JobTracker(JOB)
    reporter.job(job)  # nothing known yet: nothing to say
    for update in (
        info("pending"),
        info("running", progress=0),
        info("running", progress=0.4),
        info("running", progress=42.2),
        info("running", progress=42.9),
        info("done", progress=100),
    ):
        job.update(update)
        reporter.job(job)
    reporter.close()
    assert out.getvalue().splitlines() == [
        f"job {JOB}: pending",
        f"job {JOB}: running",
        "progress: 0%",
        "progress: 42%",
        f"job {JOB}: done",
        "progress: 100%",
    ]


def test_terminal_job_bar():
    out = io.StringIO()
    reporter = Reporter(out, terminal=True)
    job = JobTracker(JOB)
    job.update(info("running", progress=42))
    reporter.job(job)
    reporter.close()
    bar = follow.progress_bar(42, "copy_data")
    assert out.getvalue() == f"\r{bar}  running\x1b[K\n"


def test_close_without_drawing_writes_nothing():
    out = io.StringIO()
    Reporter(out, terminal=True).close()
    assert out.getvalue() == ""


# -- the loops, fed by a scripted client -------------------------------------------------


@dataclass
class Message:
    body: bytes


class ScriptedClient:
    """Answers each method from a list of answers (an exception is raised)."""

    def __init__(self, answers: dict[str, list[Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, Any]] = []

    async def call(self, method, params=None, *, timeout=60.0, flow_id=None):
        self.calls.append((method, params))
        queue = self.answers[method]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def event(params: dict[str, Any]) -> Message:
    body = {"jsonrpc": "2.0", "method": f"|jobs|status|{JOB}", "params": params}
    return Message(json.dumps(body).encode())


def run(coro):
    return asyncio.run(coro)


def test_wait_task_polls_until_finished():
    client = ScriptedClient(
        {"Task.getStatus": [status("running"), status("running"), status("finished", "success")]}
    )
    out = io.StringIO()
    outcome = run(
        follow.wait_task(client, TASK, Reporter(out, False), call_timeout=5, interval=0.01)
    )
    assert outcome == Outcome(True)
    assert len(client.calls) == 3
    assert client.calls[0] == ("Task.getStatus", {"taskID": TASK})


def test_wait_task_that_vanishes():
    client = ScriptedClient({"Task.getStatus": [ServerError(401, "Task id unknown")]})
    outcome = run(follow.wait_task(client, TASK, Reporter(io.StringIO(), False), call_timeout=5))
    assert outcome == Outcome(
        False, f"lost track of task {TASK}: (code=401, message=Task id unknown)"
    )


def test_find_task_asks_the_daemon():
    known = ScriptedClient({"Task.getStatus": [status("running")]})
    unknown = ScriptedClient({"Task.getStatus": [ServerError(401, "Task id unknown")]})
    assert run(follow.find_task(known, "UUID", TASK, 5)) == TASK
    assert run(follow.find_task(unknown, "UUID", TASK, 5)) is None
    assert run(follow.find_task(known, "bool", True, 5)) is None
    assert len(known.calls) == 1  # a boolean result is not asked about


def test_wait_job_done_by_event_before_the_listing_forgets_it():
    # The job ends and is removed between two polls; its "done" event is queued before
    # the answer that no longer lists it.
    events: asyncio.Queue[Message] = asyncio.Queue()

    async def scenario() -> Outcome:
        client = ScriptedClient({"Host.getJobs": [{JOB: info("running", progress=10)}, {}]})
        original = client.call

        async def call(method, params=None, **kw):
            if len(client.calls) == 1:
                events.put_nowait(event(info("done", progress=100)))
            return await original(method, params, **kw)

        client.call = call  # type: ignore[method-assign]
        return await follow.wait_job(
            client, JOB, events, Reporter(io.StringIO(), False), call_timeout=5, interval=0.01
        )

    assert run(scenario()) == Outcome(True)


def test_wait_job_follows_events_between_polls():
    async def scenario() -> tuple[Outcome, str]:
        events: asyncio.Queue[Message] = asyncio.Queue()
        client = ScriptedClient({"Host.getJobs": [{JOB: info("running", progress=0)}]})
        out = io.StringIO()

        async def feed() -> None:
            for p in (30, 60):
                await asyncio.sleep(0.01)
                events.put_nowait(event(info("running", progress=p)))
            events.put_nowait(event(info("failed", error={"code": 79, "message": "too small"})))

        feeder = asyncio.create_task(feed())
        outcome = await follow.wait_job(
            client, JOB, events, Reporter(out, False), call_timeout=5, interval=10
        )
        await feeder
        return outcome, out.getvalue()

    outcome, text = run(scenario())
    assert outcome == Outcome(False, f"job {JOB} failed: (code=79, message=too small)")
    assert "progress: 30%\nprogress: 60%\n" in text


def test_wait_gives_up_after_the_wait_timeout():
    client = ScriptedClient({"Task.getStatus": [status("running")]})
    out = io.StringIO()
    outcome = run(
        follow.wait(
            client,
            Target("task", TASK),
            Reporter(out, True),
            events=None,
            call_timeout=5,
            wait_timeout=0.2,
        )
    )
    assert outcome == Outcome(
        False,
        f"gave up waiting for task {TASK} after 0.2 s (--wait-timeout); it goes on in the daemon",
    )
    assert out.getvalue().endswith("\n")  # the spinner line was ended


def test_wait_job_losing_the_connection_fails():
    client = ScriptedClient({"Host.getJobs": [CallTimeout("no answer")]})
    outcome = run(
        follow.wait_job(
            client, JOB, asyncio.Queue(), Reporter(io.StringIO(), False), call_timeout=1
        )
    )
    assert outcome == Outcome(False, f"lost track of job {JOB}: no answer")

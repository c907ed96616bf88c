"""Following what a verb started to its end: `vdsm-client --wait` (contract §1.4, §5).

Two kinds of long operations answer at once and go on in the daemon:

- storage tasks: the verb answers a task id (`returns: UUID` in the schema) that
  `Task.getStatus` knows; the task is polled until its taskState is "finished".
  Tasks report no progress, so a terminal shows a spinner with the elapsed time.
- host jobs: the verb takes a `job_id` param (the SDM verbs) and answers true; the job
  is followed through its `|jobs|status|<id>` events and, because events can be missed
  (they are not queued for a client that is busy or reconnecting), by polling
  `Host.getJobs` as well.  Progress is drawn as a bar on a terminal.

The decisions (when it is over, whether it failed, what to print) are plain functions
and small classes here, testable without a daemon; the `wait_*` coroutines only feed
them from a client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from vdsm.client.stomp import ClientError, ServerError

TASK_POLL_INTERVAL = 0.5
JOB_POLL_INTERVAL = 1.0
# A job the verb just started is listed by Host.getJobs at once; one that is still not
# listed (and sent no event) after this many polls does not exist on the host.
JOB_NOT_FOUND_POLLS = 3
JOB_EVENT_PREFIX = "|jobs|status|"

JOB_FINISHED = frozenset({"done", "failed", "aborted"})
BAR_WIDTH = 30
SPINNER = "|/-\\"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


@dataclass(frozen=True)
class Target:
    """What a call started: kind "task" or "job", and its id."""

    kind: str
    id: str


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str = ""  # why it failed, for stderr

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_FAILED


def _error_text(code: Any, message: Any) -> str:
    return f"(code={code}, message={message})"


# -- deciding ----------------------------------------------------------------------------


def job_id_param(param_names: list[str], params: Mapping[str, Any]) -> str | None:
    """The job id the caller chose, for a verb that runs a host job (has `job_id`)."""
    if "job_id" not in param_names:
        return None
    job_id = params.get("job_id")
    return job_id if isinstance(job_id, str) and job_id else None


def may_be_task(returns: str | None, result: Any) -> bool:
    """Whether a result could be a task id: asking Task.getStatus settles it."""
    return returns == "UUID" and isinstance(result, str) and bool(result)


def task_outcome(task_id: str, status: Mapping[str, Any]) -> Outcome | None:
    """None while the task runs; its outcome once Task.getStatus says "finished".

    "finished" covers three results: success, cleanSuccess (failed or stopped and
    rolled back) and cleanFailure (failed and the rollback failed too)."""
    if status.get("taskState") != "finished":
        return None
    code = status.get("code", 0)
    if status.get("taskResult") == "success" and not code:
        return Outcome(True)
    return Outcome(False, f"task {task_id} failed: {_error_text(code, status.get('message', ''))}")


class JobTracker:
    """What is known of one host job, fed by events and Host.getJobs answers."""

    def __init__(self, job_id: str, not_found_polls: int = JOB_NOT_FOUND_POLLS) -> None:
        self.job_id = job_id
        self.not_found_polls = not_found_polls
        self.status: str | None = None
        self.progress: float | None = None
        self.description = ""
        self.job_type = ""
        self.error: Mapping[str, Any] | None = None
        self.outcome: Outcome | None = None
        self._misses = 0

    @property
    def seen(self) -> bool:
        return self.status is not None

    def update(self, info: Mapping[str, Any]) -> None:
        """A job info (Host.getJobs entry or event params)."""
        if self.outcome is not None:
            return  # a late answer cannot undo the end
        status = info.get("status")
        if isinstance(status, str):
            self.status = status
        if isinstance(info.get("progress"), int | float):
            self.progress = info["progress"]
        self.description = str(info.get("description") or self.description)
        self.job_type = str(info.get("job_type") or self.job_type)
        if isinstance(info.get("error"), dict):
            self.error = info["error"]
        self._misses = 0
        if self.status in JOB_FINISHED:
            self.outcome = self._finished_outcome()

    def missing(self) -> None:
        """A Host.getJobs answer without the job."""
        if self.outcome is not None:
            return
        if self.seen:
            # Finished jobs are forgotten after `[jobs] autodelete_delay`: gone while
            # done is a success we only missed the end of; gone while running is not.
            if self.status == "done":
                self.outcome = Outcome(True)
            else:
                self.outcome = Outcome(
                    False, f"job {self.job_id} disappeared from the host while {self.status}"
                )
            return
        self._misses += 1
        if self._misses >= self.not_found_polls:
            self.outcome = Outcome(False, f"job {self.job_id} is not known to the host")

    def _finished_outcome(self) -> Outcome:
        if self.status == "done":
            return Outcome(True)
        word = "aborted" if self.status == "aborted" else "failed"
        if self.error is None:
            return Outcome(False, f"job {self.job_id} {word}")
        detail = _error_text(self.error.get("code", 0), self.error.get("message", ""))
        return Outcome(False, f"job {self.job_id} {word}: {detail}")


def job_event(job_id: str, body: bytes) -> Mapping[str, Any] | None:
    """The params of a `|jobs|status|<job_id>` notification, None for any other."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != JOB_EVENT_PREFIX + job_id:
        return None
    params = message.get("params")
    return params if isinstance(params, dict) else None


# -- rendering ---------------------------------------------------------------------------


def progress_bar(progress: float, label: str = "", width: int = BAR_WIDTH) -> str:
    """`[#####.....] 42%  copy_data`; progress is clamped to 0..100."""
    percent = int(min(max(progress, 0), 100))
    filled = percent * width // 100
    line = f"[{'#' * filled}{'.' * (width - filled)}] {percent}%"
    return f"{line}  {label}" if label else line


def spinner_line(kind: str, target_id: str, state: str, elapsed: float, tick: int) -> str:
    """`| task <id> running 12s`: something that moves while nothing else does."""
    return f"{SPINNER[tick % len(SPINNER)]} {kind} {target_id} {state} {int(elapsed)}s"


class Reporter:
    """Draws the state of what is followed on `stream` (stderr).

    On a terminal one line is redrawn in place (`\\r`, then erase to the end of the
    line); otherwise a plain line is written only when something changed, so a log or a
    pipe gets a short readable history."""

    def __init__(
        self,
        stream: TextIO,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.terminal = stream.isatty() if terminal is None else terminal
        self.clock = clock
        self.started = clock()
        self._tick = 0
        self._drawn = False
        self._last_state: str | None = None
        self._last_percent: int | None = None

    def task(self, task_id: str, state: str) -> None:
        if self.terminal:
            elapsed = self.clock() - self.started
            self._draw(spinner_line("task", task_id, state, elapsed, self._tick))
            self._tick += 1
        elif state != self._last_state:
            self._line(f"task {task_id}: {state}")
        self._last_state = state

    def job(self, job: JobTracker) -> None:
        if not job.seen:
            return
        state = job.status or ""
        if self.terminal:
            if job.progress is not None:
                label = job.description or job.job_type
                self._draw(f"{progress_bar(job.progress, label)}  {state}")
            else:
                elapsed = self.clock() - self.started
                self._draw(spinner_line("job", job.job_id, state, elapsed, self._tick))
                self._tick += 1
        else:
            if state != self._last_state:
                self._line(f"job {job.job_id}: {state}")
            if job.progress is not None:
                percent = int(min(max(job.progress, 0), 100))
                if percent != self._last_percent:
                    self._line(f"progress: {percent}%")
                self._last_percent = percent
        self._last_state = state

    def close(self) -> None:
        """Ends the redrawn line, so what is printed next starts on its own line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def _draw(self, text: str) -> None:
        self.stream.write(f"\r{text}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


# -- following ---------------------------------------------------------------------------


class Client(Protocol):
    async def call(
        self,
        method: str,
        params: dict[str, Any] | list[Any] | None = None,
        *,
        timeout: float = 60.0,
        flow_id: str | None = None,
    ) -> Any: ...


class Frames(Protocol):
    """The events subscription: MESSAGE frames with a `body`."""

    async def get(self) -> Any: ...

    def get_nowait(self) -> Any: ...

    def empty(self) -> bool: ...


async def find_task(client: Client, returns: str | None, result: Any, timeout: float) -> str | None:
    """The task id `result` is, if the daemon knows such a task."""
    if not may_be_task(returns, result):
        return None
    try:
        await client.call("Task.getStatus", {"taskID": result}, timeout=timeout)
    except ServerError:
        return None  # a UUID that is no task: a volume group, an image...
    return str(result)


async def wait_task(
    client: Client,
    task_id: str,
    reporter: Reporter,
    *,
    call_timeout: float,
    interval: float = TASK_POLL_INTERVAL,
) -> Outcome:
    while True:
        try:
            status = await client.call("Task.getStatus", {"taskID": task_id}, timeout=call_timeout)
        except ClientError as e:
            return Outcome(False, f"lost track of task {task_id}: {e}")
        reporter.task(task_id, str(status.get("taskState", "")))
        outcome = task_outcome(task_id, status)
        if outcome is not None:
            return outcome
        await asyncio.sleep(interval)


async def wait_job(
    client: Client,
    job_id: str,
    events: Frames,
    reporter: Reporter,
    *,
    call_timeout: float,
    interval: float = JOB_POLL_INTERVAL,
) -> Outcome:
    job = JobTracker(job_id)
    loop = asyncio.get_running_loop()

    def take(frame: Any) -> None:
        params = job_event(job_id, frame.body)
        if params is not None:
            job.update(params)
            reporter.job(job)

    while job.outcome is None:
        try:
            jobs = await client.call("Host.getJobs", {"job_ids": [job_id]}, timeout=call_timeout)
        except ClientError as e:
            return Outcome(False, f"lost track of job {job_id}: {e}")
        # Events that came in before this answer are older than it: apply them first,
        # so a "done" event is not overtaken by the job's removal from the listing.
        while not events.empty() and job.outcome is None:
            take(events.get_nowait())
        info = jobs.get(job_id) if isinstance(jobs, dict) else None
        if isinstance(info, dict):
            job.update(info)
        else:
            job.missing()
        reporter.job(job)
        deadline = loop.time() + interval
        while job.outcome is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                frame = await asyncio.wait_for(events.get(), remaining)
            except TimeoutError:
                break
            take(frame)
    return job.outcome


async def wait(
    client: Client,
    target: Target,
    reporter: Reporter,
    *,
    events: Frames | None,
    call_timeout: float,
    wait_timeout: float | None,
) -> Outcome:
    """Follows `target` to its end, or until `wait_timeout` seconds have passed."""
    try:
        async with asyncio.timeout(wait_timeout):
            if target.kind == "job":
                assert events is not None, "subscribe to the events before the call"
                return await wait_job(
                    client, target.id, events, reporter, call_timeout=call_timeout
                )
            return await wait_task(client, target.id, reporter, call_timeout=call_timeout)
    except TimeoutError:
        return Outcome(
            False,
            f"gave up waiting for {target.kind} {target.id} after {wait_timeout:g} s "
            "(--wait-timeout); it goes on in the daemon",
        )
    finally:
        reporter.close()

"""A storage task: upstream's states and reports, its rollback stack, its persistence.

See vdsm/storage/tasks.py for how tasks are created, listed, stopped and recovered.

The states and the way they are reported are upstream's:

    init -> preparing -> acquiring -> queued -> running -> finished
    on failure or Task.stop:  aborting -> racquiring -> recovering -> recovered
                                                                   \\-> raborting -> failed
    reported taskState/taskResult: running/"" ... finished/success, finished/cleanSuccess
    (rolled back), finished/cleanFailure (rollback failed), cleaning, aborting.

Rollback is a stack of recoveries the job pushes with `Task.add_recovery` *before*
each step it may have to undo; rolling back runs them last first.  A recovery names
a function of this project by (module, function) in a `RollbackRegistry`, with string
parameters, so it can be persisted and run again after a crash.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.storage import taskfiles
from vdsm.system.blocking import Bulkhead

log = logging.getLogger("vdsm.storage.tasks")


class State(enum.StrEnum):
    unknown = "unknown"
    init = "init"
    preparing = "preparing"
    blocked = "blocked"
    acquiring = "acquiring"
    queued = "queued"
    running = "running"
    finished = "finished"
    aborting = "aborting"
    waitrecover = "waitrecover"
    recovering = "recovering"
    racquiring = "racquiring"
    raborting = "raborting"
    recovered = "recovered"
    failed = "failed"


# What Task.getStatus and the Host listings report for each state (upstream's
# "deprecated" pair, which is what the engine reads).
REPORTED_STATE: dict[State, str] = {
    State.unknown: "unknown",
    State.init: "init",
    State.preparing: "running",
    State.blocked: "running",
    State.acquiring: "running",
    State.queued: "running",
    State.running: "running",
    State.finished: "finished",
    State.aborting: "aborting",
    State.waitrecover: "cleaning",
    State.recovering: "cleaning",
    State.racquiring: "cleaning",
    State.raborting: "aborting",
    State.recovered: "finished",
    State.failed: "finished",
}
REPORTED_RESULT: dict[State, str] = {
    State.finished: "success",
    State.recovered: "cleanSuccess",
    State.failed: "cleanFailure",
}

DONE = frozenset({State.finished, State.recovered, State.failed})
ABORTABLE = frozenset(
    {State.preparing, State.blocked, State.acquiring, State.queued, State.running}
)
RECOVERING = frozenset({State.racquiring, State.recovering})

ABORTED_CODE = errors.TaskAborted.code
# Upstream's texts, shown by the engine.
MSG_INITIALIZING = "Task is initializing"
MSG_STOPPED = "shutting down"
MSG_INTERRUPTED = "interrupted by a restart"

Rollback = Callable[[list[str]], Awaitable[None]]
_Snapshot = tuple[
    taskfiles.TaskRecord,
    list[taskfiles.JobRecord],
    list[taskfiles.RecoveryRecord],
    taskfiles.ResultRecord,
]
Job = Callable[["Task"], Awaitable[Any]]


class RollbackRegistry:
    """Maps the (module, function) names persisted in recoveries to the coroutine
    functions that undo a step.  Each gets the recovery's string parameters."""

    def __init__(self) -> None:
        self._functions: dict[tuple[str, str], Rollback] = {}

    def register(self, module: str, function: str, rollback: Rollback) -> None:
        _check_name(module)
        _check_name(function)
        self._functions[(module, function)] = rollback

    def get(self, module: str, function: str) -> Rollback:
        try:
            return self._functions[(module, function)]
        except KeyError:
            raise LookupError(f"no rollback registered for {module}.{function}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._functions


@dataclass(frozen=True)
class Recovery:
    name: str
    module: str
    function: str
    params: tuple[str, ...] = ()
    # Upstream's `object` field (the class holding the function there); informational.
    obj: str = "Task"


class Task:
    """One storage task.  Created by TaskManager; jobs receive it to push recoveries."""

    def __init__(
        self,
        task_id: str,
        verb: str,
        *,
        tag: str,
        rollbacks: RollbackRegistry,
        bulkhead: Bulkhead,
        persist_dir: Path | None = None,
        state: State = State.init,
    ) -> None:
        self.id = task_id
        self.verb = verb
        self.tag = tag
        self.state = state
        self.code = 0
        self.message = MSG_INITIALIZING
        self.result: Any = ""
        self.recoveries: list[Recovery] = []
        self.persist_dir = persist_dir
        self.recovery_policy = "auto"
        self.persist_policy = "auto" if persist_dir is not None else "none"
        self.clean_policy = "manual" if persist_dir is not None else "auto"
        self.priority = "low"
        self._rollbacks = rollbacks
        self._bulkhead = bulkhead
        self._jobs: list[taskfiles.JobRecord] = []
        self._job_task: asyncio.Future[Any] | None = None
        self._driver: asyncio.Task[None] | None = None
        self._abort_requested = False
        self._recovery_stop_requested = False
        # Persistence.  `_version` counts changes that must reach the disk; `_saved`
        # is the newest version known to be there.  The writing itself happens in
        # bulkhead threads that may outlive a caller that gave up on them (timeout,
        # cancel), so the file side is guarded by a thread lock and always writes the
        # newest snapshot: two saves of one task never overlap and the disk never goes
        # back to an older state.
        self._version = 0
        self._saved = 0
        self._latest: tuple[int, _Snapshot] | None = None
        self._file_lock = threading.Lock()
        self._disk_version = 0  # under _file_lock
        self._removed = False  # under _file_lock
        self._settled = asyncio.Event()
        self._settled.set()

    # -- reports (wire shapes) --------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in DONE

    def status(self) -> dict[str, Any]:
        return {
            "taskID": self.id,
            "taskState": REPORTED_STATE[self.state],
            "taskResult": REPORTED_RESULT.get(self.state, ""),
            "code": self.code,
            "message": self.message,
        }

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "verb": self.verb}

    def details(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "verb": self.verb,
            "state": str(self.state),
            "code": self.code,
            "message": self.message,
            "result": self.result,
            "tag": self.tag,
        }

    # -- for jobs ---------------------------------------------------------------------

    async def add_recovery(
        self, name: str, module: str, function: str, params: Iterable[str], *, obj: str = "Task"
    ) -> None:
        """Push a rollback step; it is on disk (for a persisted task) when this returns,
        so call it before doing what it undoes.  Names and parameters are checked here,
        where a mistake is the caller's, rather than when the file is written."""
        self._push_recovery(name, module, function, params, obj=obj)
        await self._persist(strict=True)

    def _push_recovery(
        self, name: str, module: str, function: str, params: Iterable[str], *, obj: str = "Task"
    ) -> None:
        params = tuple(params)
        if not name or any(rec.name == name for rec in self.recoveries):
            raise ValueError(f"recovery name {name!r} is empty or not unique")
        for word in (module, function, obj):
            _check_name(word)
        for text in (name, *params):
            if not isinstance(text, str) or taskfiles.EQ_ENCODED in text or _has_break(text):
                raise ValueError(f"recovery text {text!r} cannot be persisted")
        for param in params:
            if taskfiles.PARAM_SEP in param or param != param.strip():
                raise ValueError(f"recovery parameter {param!r} cannot be persisted")
        self.recoveries.append(Recovery(name, module, function, params, obj))
        self._version += 1

    async def clear_recoveries(self) -> None:
        """Forget every rollback step (past a point of no return)."""
        self.recoveries.clear()
        self._version += 1
        await self._persist(strict=True)

    async def wait(self) -> None:
        """Until the task has nothing running: done, or resting in waitrecover."""
        await self._settled.wait()

    # -- driving ----------------------------------------------------------------------

    def _start(self, coro: Awaitable[None]) -> None:
        self._settled.clear()

        async def drive() -> None:
            try:
                await coro
            except Exception:
                # A bug, not a job failure (those are handled in _run): do not leave
                # the task looking alive forever.
                log.exception("Task %s: driver failed in state %s", self.id, self.state)
                self._set(State.failed)
            finally:
                self._settled.set()

        self._driver = asyncio.create_task(drive(), name=f"task/{self.id[:8]}")

    async def _run(self, job: Job) -> None:
        self._jobs = [taskfiles.JobRecord(self.verb, f"{job!r} (args: () kwargs: {{}})")]
        # The states before running are passed in memory only: after a crash they all
        # mean "not started", so one write (of running, before the job) covers them.
        self._set(State.preparing)
        self._set(State.acquiring)
        self._set(State.queued)
        self.code, self.message = 0, "running job 1 of 1"
        try:
            await self._move(State.running, strict=True)
        except Exception as e:
            # Nothing reached the disk: running the job would leave a step no SPM
            # could roll back after a crash.
            log.error("Task %s: cannot persist, not running %s: %s", self.id, self.verb, e)
            self._set_error(errors.InvalidTask(f"cannot persist task: {e}"))
            self._set(State.failed)
            return
        if self._abort_requested:  # stopped while the states were being written
            self._set_error(errors.TaskAborted(), text=MSG_STOPPED)
            await self._abort()
            return
        job_task = self._job_task = asyncio.ensure_future(job(self))
        try:
            await asyncio.wait({job_task})
        except asyncio.CancelledError:
            # The daemon is going away: leave the disk saying "running" so the next
            # SPM rolls the job back, exactly as after a crash.
            job_task.cancel()
            raise
        if self._abort_requested or job_task.cancelled():
            self._set_error(errors.TaskAborted(), text=MSG_STOPPED)
        elif (error := job_task.exception()) is not None:
            if not isinstance(error, errors.VdsmError) or not error.expected:
                log.error("Task %s (%s) failed", self.id, self.verb, exc_info=error)
            self._set_error(error)
        else:
            value = job_task.result()
            self.result = "" if value is None else value
            self.code, self.message = 0, "1 jobs completed successfully"
            await self._move(State.finished)
            return
        await self._abort()

    async def _abort(self) -> None:
        await self._move(State.aborting)
        if self.recovery_policy == "auto":
            await self._recover()
        elif self.recovery_policy == "none":
            await self._move(State.failed)
        else:
            await self._move(State.waitrecover)

    async def _recover(self) -> None:
        self._recovery_stop_requested = False
        self._set(State.racquiring)
        await self._move(State.recovering)
        while self.recoveries:
            if self._recovery_stop_requested:
                log.warning("Task %s: rollback stopped", self.id)
                await self._move(State.raborting)
                break
            rec = self.recoveries[-1]
            log.info(
                "Task %s: rolling back %r (%s.%s)", self.id, rec.name, rec.module, rec.function
            )
            try:
                await self._rollbacks.get(rec.module, rec.function)(list(rec.params))
            except Exception:
                log.exception("Task %s: rollback %r failed", self.id, rec.name)
                await self._move(State.raborting)
                break
            self.recoveries.pop()
            # Persist progress so a crash re-runs only what is left.
            self._version += 1
            await self._persist()
        await self._move(State.failed if self.state == State.raborting else State.recovered)

    async def _resume(self) -> None:
        """Continue a task loaded from disk after a crash (upstream's recover())."""
        if self.done or self.state == State.waitrecover:
            return
        if self.state in ABORTABLE or self.state == State.aborting:
            # Upstream marks a task caught in "aborting" failed without rolling it
            # back; the rollback it was about to run is the safer end.
            self._set_error(errors.TaskAborted(), text=MSG_INTERRUPTED)
            await self._abort()
        elif self.state in RECOVERING:
            await self._recover()
        else:  # raborting, unknown: a rollback that was given up, or garbage
            await self._move(State.failed)

    def _set(self, state: State) -> None:
        log.debug("Task %s: %s -> %s", self.id, self.state, state)
        self.state = state
        self._version += 1

    async def _move(self, state: State, *, strict: bool = False) -> None:
        self._set(state)
        await self._persist(strict=strict)

    def _set_error(self, error: BaseException, *, text: str | None = None) -> None:
        code = error.code if isinstance(error, errors.VdsmError) else errors.GeneralException.code
        # Upstream's shape for a job that did not finish, which the engine shows.
        self.code = code
        self.message = f"value={str(error) if text is None else text} abortedcode={code}"
        self.result = ""

    async def _persist(self, *, strict: bool = False) -> None:
        """Bring the disk up to the current state; a failure is logged, or raised when
        `strict` (the caller must not go on without it)."""
        if self.persist_dir is None or self.persist_policy == "none":
            return
        version = self._version
        if self._saved >= version:
            return
        self._latest = (version, self._snapshot())
        try:
            written = await self._bulkhead.run(self._write_latest)
        except Exception as e:
            if strict:
                raise
            log.warning("Task %s: cannot persist state %s: %s", self.id, self.state, e)
            return
        self._saved = max(self._saved, written)

    def _write_latest(self) -> int:
        """In a bulkhead thread: write the newest snapshot unless it is already there
        (a save that waited for the lock may find its work done by another)."""
        assert self.persist_dir is not None and self._latest is not None
        with self._file_lock:
            version, snapshot = self._latest
            if self._removed:
                return version  # cleared: nothing may come back
            if version > self._disk_version:
                taskfiles.save_task(self.persist_dir, *snapshot)
                self._disk_version = version
            return self._disk_version

    def _remove_files(self) -> None:
        assert self.persist_dir is not None
        with self._file_lock:
            taskfiles.remove_task(self.persist_dir, self.id)
            self._removed = True

    def _snapshot(self) -> _Snapshot:
        record = taskfiles.TaskRecord(
            id=self.id,
            name=self.verb,
            tag=self.tag,
            store=str(self.persist_dir),
            recovery_policy=self.recovery_policy,
            persist_policy=self.persist_policy,
            clean_policy=self.clean_policy,
            priority=self.priority,
            state=str(self.state),
        )
        recoveries = [
            taskfiles.RecoveryRecord(r.name, r.module, r.obj, r.function, r.params)
            for r in self.recoveries
        ]
        result = self.result if isinstance(self.result, str) else str(self.result)
        return (
            record,
            list(self._jobs),
            recoveries,
            taskfiles.ResultRecord(self.code, self.message, result),
        )

    @classmethod
    def _from_disk(
        cls,
        persisted: taskfiles.PersistedTask,
        tasks_dir: Path,
        rollbacks: RollbackRegistry,
        bulkhead: Bulkhead,
    ) -> Task:
        rec = persisted.task
        state = State(rec.state) if rec.state in State.__members__ else State.unknown
        task = cls(
            rec.id,
            rec.name,
            tag=rec.tag,
            rollbacks=rollbacks,
            bulkhead=bulkhead,
            persist_dir=tasks_dir,
            state=state,
        )
        task.recovery_policy = rec.recovery_policy
        task.persist_policy = rec.persist_policy
        task.clean_policy = rec.clean_policy
        task.priority = rec.priority
        task._jobs = list(persisted.jobs)
        task.recoveries = [
            Recovery(r.name, r.module, r.function, r.params, r.object) for r in persisted.recoveries
        ]
        if persisted.result is not None:
            task.code = persisted.result.code
            task.message = persisted.result.message
            task.result = persisted.result.result
        # What was read is what is on disk (both versions are 0).
        return task

    async def _settle(self) -> None:
        """Wait until the driver is over, without letting a cancelled caller cancel it."""
        if self._driver is not None and not self._driver.done():
            await asyncio.shield(self._settled.wait())


def _check_name(name: str) -> None:
    # Upstream's rule for the names a recovery refers to: letters, digits, "_".
    if not name or not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"invalid recovery name part {name!r}")


def _has_break(text: str) -> bool:
    # The task file reader splits lines at \n and \r.
    return "\n" in text or "\r" in text

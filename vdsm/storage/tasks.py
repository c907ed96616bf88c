"""Storage tasks: asynchronous verbs the engine polls with Task.getStatus.

A verb that answers with a task id (spmStart, the SPM verbs) hands its work to
`TaskManager.create`: the job runs as an asyncio task (vdsm/storage/task.py) and the
engine polls Task.getStatus until the task is finished, then clears it (contract §5).

With a persist directory (the master domain's `master/tasks`, SPM tasks) every state
change and every pushed recovery is written with `taskfiles` in the format upstream
uses, through a bulkhead so a stuck master domain never blocks the event loop.  After
an SPM crash `load_and_recover` reads the directory back: finished tasks keep their
result, interrupted ones are rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.storage import taskfiles
from vdsm.storage.task import (
    RECOVERING,
    Job,
    RollbackRegistry,
    State,
    Task,
    _has_break,
)

__all__ = ["RollbackRegistry", "State", "Task", "TaskManager", "TaskRegistry"]
from vdsm.system.blocking import Bulkhead

log = logging.getLogger("vdsm.storage.tasks")


class TaskManager:
    """The tasks of this host, as Task.* and the Host task listings see them."""

    def __init__(
        self,
        rollbacks: RollbackRegistry | None = None,
        *,
        bulkhead: Bulkhead | None = None,
    ) -> None:
        self.rollbacks = rollbacks if rollbacks is not None else RollbackRegistry()
        # Task files live on the master domain; the composer passes that domain's
        # bulkhead.  The default keeps a stuck store from blocking anything else.
        self.bulkhead = bulkhead if bulkhead is not None else Bulkhead("task-store", 4, 60.0)
        self._tasks: dict[str, Task] = {}

    def create(
        self,
        verb: str,
        job: Job,
        *,
        tag: str = "",
        persist_dir: Path | None = None,
        task_id: str | None = None,
        bulkhead: Bulkhead | None = None,
        first_recovery: tuple[str, str, str, list[str]] | None = None,
    ) -> Task:
        """Start `job(task)` as a task and return the task at once.

        `first_recovery` (name, module, function, params) is the rollback of the job's
        first step, known before it starts: it reaches the disk with the task's first
        write instead of a write of its own."""
        task_id = task_id or str(uuid.uuid4())
        _check_id(task_id)
        if task_id in self._tasks:
            raise errors.InvalidTask(f"task id already in use: {task_id}")
        if "=" in tag or _has_break(tag) or _has_break(verb):
            raise ValueError(f"invalid task tag or verb: {tag!r} {verb!r}")
        task = Task(
            task_id,
            verb,
            tag=tag,
            rollbacks=self.rollbacks,
            bulkhead=bulkhead or self.bulkhead,
            persist_dir=persist_dir,
        )
        if first_recovery is not None:
            task._push_recovery(*first_recovery)
        self._tasks[task_id] = task
        task._start(task._run(job))
        return task

    def get(self, task_id: str) -> Task:
        _check_id(task_id)
        try:
            return self._tasks[task_id]
        except KeyError:
            raise errors.UnknownTask(task_id) from None

    async def clear(self, task_id: str) -> None:
        """Forget a done task and delete its files; TaskNotFinished (403) before."""
        task = self.get(task_id)
        if not task.done:
            raise errors.TaskNotFinished(task_id, str(task.state))
        await task._settle()
        if task.persist_dir is not None:
            await task._bulkhead.run(task._remove_files)
        self._tasks.pop(task_id, None)

    async def stop(self, task_id: str) -> None:
        """Abort a task: its job is cancelled and its recoveries run (aborting ->
        recovered or failed).  Returns once the abort is under way; `task.wait()` waits
        for its end.  A done task is left alone, as is a rollback in progress unless the
        task is persisted (then the rollback stops before its next step, -> failed)."""
        task = self.get(task_id)
        if task.done or task.state in (State.aborting, State.raborting):
            return
        if task.state in RECOVERING:
            if task.clean_policy != "auto":
                task._recovery_stop_requested = True
            return
        if task.state == State.waitrecover:
            await task._move(State.failed)
            return
        task._abort_requested = True
        if task._job_task is not None and not task._job_task.done():
            task._job_task.cancel()

    async def revert(self, task_id: str) -> None:
        """Roll back a finished task (upstream's Task.revert): its recoveries run, last
        first, and it ends recovered (or failed).  A task without rollback policy is
        left alone; one not done is TaskNotFinished (403); one already rolled back or
        failed cannot be reverted again."""
        task = self.get(task_id)
        if task.recovery_policy == "none":
            return
        if not task.done:
            raise errors.TaskNotFinished(task_id, str(task.state))
        if task.state != State.finished:
            raise errors.InvalidTask(f"cannot revert task {task_id} in state {task.state}")
        await task._settle()
        task._start(task._recover())
        await task._settle()

    def unfinished(self) -> list[Task]:
        return [task for task in self._tasks.values() if not task.done]

    def statuses(self, tag: str | None = None) -> dict[str, Any]:
        return {task.id: task.status() for task in self._select(tag)}

    def infos(self, tag: str | None = None) -> dict[str, Any]:
        return {task.id: task.info() for task in self._select(tag)}

    def details(self) -> dict[str, Any]:
        return {task.id: task.details() for task in self._tasks.values()}

    def unload(self, tag: str | None = None) -> None:
        """Forget tasks without touching their files (they belong to the next SPM)."""
        for task in self._select(tag):
            self._tasks.pop(task.id, None)

    async def load_and_recover(
        self,
        tasks_dir: Path,
        rollbacks: RollbackRegistry | None = None,
        *,
        bulkhead: Bulkhead | None = None,
        wait: bool = False,
    ) -> list[Task]:
        """Load the tasks persisted in `tasks_dir` (after an SPM crash or move) and
        resume them: done ones keep their state and result, interrupted ones are
        rolled back, an interrupted rollback starts again.  A task that cannot be
        loaded is logged and skipped.  Rollbacks run in the background unless `wait`."""
        bulkhead = bulkhead or self.bulkhead
        rollbacks = rollbacks or self.rollbacks
        loaded: list[Task] = []
        for task_id in await bulkhead.run(taskfiles.list_task_ids, tasks_dir):
            if task_id in self._tasks:
                log.warning("Task %s is already known, not loading it again", task_id)
                continue
            try:
                persisted = await bulkhead.run(taskfiles.load_task, tasks_dir, task_id)
            except Exception as e:
                log.error("Skipping task %s in %s: %s", task_id, tasks_dir, e)
                continue
            task = Task._from_disk(persisted, tasks_dir, rollbacks, bulkhead)
            log.info("Loaded task %s (%s) in state %s", task.id, task.verb, task.state)
            self._tasks[task.id] = task
            loaded.append(task)
            task._start(task._resume())
        if wait:
            await asyncio.gather(*(task.wait() for task in loaded))
        return loaded

    async def shutdown(self) -> None:
        """Cancel every running job and rollback without recording anything: the
        files stay as they are for the next SPM to resume, as after a crash."""
        drivers = [t._driver for t in self._tasks.values() if t._driver and not t._driver.done()]
        for driver in drivers:
            driver.cancel()
        for driver in drivers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await driver

    def _select(self, tag: str | None) -> list[Task]:
        # Upstream matches the tag as a substring of the task's tag.
        return [task for task in self._tasks.values() if not tag or tag in task.tag]


# Host verbs and the daemon were written against this name.
TaskRegistry = TaskManager


def _check_id(task_id: str) -> None:
    if not task_id or "." in task_id or "/" in task_id:
        raise errors.InvalidParameterException("taskID", task_id)

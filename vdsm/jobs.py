"""Host jobs: in-memory long operations (SDM.*, VM jobs) listed by Host.getJobs.

Storage and VM code register jobs here; the registry answers the listing with the wire
shape of upstream's HostJobInfo and forgets finished jobs after `autodelete_delay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from vdsm.errors import GeneralException, JobExists, NoSuchJob, VdsmError

log = logging.getLogger("vdsm.jobs")

FINISHED = frozenset({"done", "aborted", "failed"})


class Job(Protocol):
    id: str
    job_type: str
    status: str

    def info(self) -> dict[str, Any]: ...


class JobRegistry:
    def __init__(self, autodelete_delay: float = 3600.0) -> None:
        self.autodelete_delay = autodelete_delay
        self._jobs: dict[str, Job] = {}
        self._finished_at: dict[str, float] = {}

    def add(self, job: Job) -> None:
        if job.id in self._jobs:
            raise JobExists(job.id)
        self._jobs[job.id] = job

    def get(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise NoSuchJob(job_id) from None

    def info(self, job_type: str | None = None, job_ids: Iterable[str] = ()) -> dict[str, Any]:
        self._expire()
        wanted = set(job_ids)
        return {
            job.id: job.info()
            for job in self._jobs.values()
            if (job_type is None or job.job_type == job_type) and (not wanted or job.id in wanted)
        }

    def _expire(self) -> None:
        now = time.monotonic()
        for job_id, job in list(self._jobs.items()):
            if job.status in FINISHED:
                done = self._finished_at.setdefault(job_id, now)
                if now - done >= self.autodelete_delay:
                    del self._jobs[job_id]
                    del self._finished_at[job_id]


# Publishes `|jobs|status|<id>` notifications (the daemon passes EventBus.publish).
Notify = Callable[[str, dict[str, Any]], None]
JOB_STATUS_EVENT = "|jobs|status|"


class HostJob:
    """A long operation run in the background and followed with Host.getJobs and
    `|jobs|status|<id>` events (contract §1.4): pending -> running -> done | failed |
    aborted.  `work(job)` may set `job.progress` (0-100); a change of status, and of
    the integer progress, is announced."""

    def __init__(
        self,
        job_id: str,
        job_type: str,
        description: str,
        work: Callable[[HostJob], Awaitable[None]],
        notify: Notify | None = None,
    ) -> None:
        self.id = job_id
        self.job_type = job_type
        self.description = description
        self.status = "pending"
        self.error: VdsmError | None = None
        self._progress: float | None = None
        self._work = work
        self._notify = notify
        self._task: asyncio.Task[None] | None = None

    @property
    def progress(self) -> float | None:
        return self._progress

    @progress.setter
    def progress(self, value: float) -> None:
        before = None if self._progress is None else int(self._progress)
        self._progress = max(0.0, min(100.0, value))
        if int(self._progress) != before:
            self._announce()

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "description": self.description,
            "job_type": self.job_type,
        }
        if self._progress is not None:
            info["progress"] = int(self._progress)
        if self.error is not None:
            info["error"] = self.error.info()
        return info

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"job {self.id}")

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def abort(self) -> None:
        if self.status in FINISHED or self._task is None:
            return
        self._set("aborting")
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        self._set("running")
        try:
            await self._work(self)
        except asyncio.CancelledError:
            self._set("aborted")
            raise
        except VdsmError as e:
            self.error = e
            log.warning("job %s (%s) failed: %s", self.id, self.description, e)
            self._set("failed")
        except Exception as e:
            log.exception("job %s (%s) failed", self.id, self.description)
            self.error = GeneralException(str(e))
            self._set("failed")
        else:
            if self._progress is not None:
                self._progress = 100.0
            self._set("done")

    def _set(self, status: str) -> None:
        self.status = status
        self._announce()

    def _announce(self) -> None:
        if self._notify is not None:
            self._notify(f"{JOB_STATUS_EVENT}{self.id}", self.info())

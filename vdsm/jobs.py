"""Host jobs: in-memory long operations (SDM.*, VM jobs) listed by Host.getJobs.

Storage and VM code register jobs here; the registry answers the listing with the wire
shape of upstream's HostJobInfo and forgets finished jobs after `autodelete_delay`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from vdsm.errors import NoSuchJob

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

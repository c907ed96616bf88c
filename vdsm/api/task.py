"""The `Task` namespace: storage tasks (spmStart and the SPM's persisted tasks)."""

from __future__ import annotations

from typing import Any

from vdsm.storage.tasks import TaskManager


class TaskAPI:
    NAMESPACE = "Task"

    def __init__(self, *, tasks: TaskManager) -> None:
        self.tasks = tasks

    async def getStatus(self, taskID: str) -> dict[str, Any]:
        return self.tasks.get(taskID).status()

    async def getInfo(self, taskID: str) -> dict[str, Any]:
        return self.tasks.get(taskID).info()

    async def clear(self, taskID: str) -> None:
        await self.tasks.clear(taskID)

    async def stop(self, taskID: str) -> None:
        await self.tasks.stop(taskID)

    async def revert(self, taskID: str) -> None:
        await self.tasks.revert(taskID)

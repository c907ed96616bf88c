"""Storage tasks as the Host task listings report them.

The SPM task engine (persisted tasks, recovery) registers its tasks here; the listings
use upstream's wire shapes (contract §5 "Tasks").
"""

from __future__ import annotations

from typing import Any, Protocol


class Task(Protocol):
    id: str

    def status(self) -> dict[str, Any]: ...  # {taskID, taskState, taskResult, code, message}

    def info(self) -> dict[str, Any]: ...  # {id, verb}

    def details(self) -> dict[str, Any]: ...  # {id, verb, state, code, message, result, tag}


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def add(self, task: Task) -> None:
        self._tasks[task.id] = task

    def remove(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)

    def statuses(self) -> dict[str, Any]:
        return {task_id: task.status() for task_id, task in self._tasks.items()}

    def infos(self) -> dict[str, Any]:
        return {task_id: task.info() for task_id, task in self._tasks.items()}

    def details(self) -> dict[str, Any]:
        return {task_id: task.details() for task_id, task in self._tasks.items()}

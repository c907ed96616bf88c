"""SPM, cluster lock and storage task errors, with upstream's codes and texts
(storage/exception.py): 400-442 tasks, 650-704 SPM and locks."""

from __future__ import annotations

from vdsm.errors.storage import StorageError

__all__ = [
    "AcquireHostIdFailure",
    "AcquireLockFailure",
    "ClusterLockInitError",
    "DomainAlreadyLocked",
    "HostIdMismatch",
    "InvalidTask",
    "IsSpm",
    "ReleaseHostIdFailure",
    "SpmStartError",
    "SpmStatusError",
    "SpmStopError",
    "TaskAborted",
    "TaskNotFinished",
    "UnknownTask",
    "UnmanagedTask",
]


class InvalidTask(StorageError, code=400, message="Task invalid"):
    pass


class UnknownTask(StorageError, code=401, message="Task id unknown", expected=True):
    pass


class TaskNotFinished(StorageError, code=403, message="Task not finished", expected=True):
    pass


class TaskAborted(StorageError, code=411, message="Task is aborted"):
    pass


class UnmanagedTask(
    StorageError,
    code=412,
    message="Operation can't be performed on unmanaged task",
):
    pass


class SpmStartError(StorageError, code=650, message="Error starting SPM"):
    pass


class AcquireLockFailure(StorageError, code=651, message="Cannot obtain lock"):
    pass


class SpmStopError(
    StorageError,
    code=653,
    message="Error stopping SPM, SPM has unfinished task(s)",
    expected=True,
):
    pass


class SpmStatusError(StorageError, code=654, message="Not SPM", expected=True):
    pass


class IsSpm(
    StorageError,
    code=656,
    message="Operation not allowed while SPM is active",
    expected=True,
):
    pass


class DomainAlreadyLocked(
    StorageError,
    code=657,
    message="Cannot acquire lock, resource marked as locked",
):
    pass


class AcquireHostIdFailure(StorageError, code=661, message="Cannot acquire host id"):
    pass


class ReleaseHostIdFailure(StorageError, code=662, message="Cannot release host id"):
    pass


class HostIdMismatch(
    StorageError,
    code=700,
    message="Host id not found or does not match manager host id",
):
    pass


class ClusterLockInitError(StorageError, code=701, message="Could not initialize cluster lock"):
    pass

"""Storage probes that never block the daemon: read delay and free space.

Storage can hang: on a dead NFS server (or a stopped FUSE server) any system call on
the mount blocks in the kernel, and a thread blocked there can be neither cancelled
nor joined.  Each probe therefore runs in a child process of its own:

    read_delay   dd if=<path> of=/dev/null bs=4096 count=1 iflag=direct
                 (upstream storage/check.py; the delay is dd's own "copied, N s")
    space        stat --file-system --format "%S %b %a" <path>
                 (upstream fileSD.getStats: f_frsize * f_blocks, f_frsize * f_bavail)

A child rather than a thread (Bulkhead) for both, because a thread stuck in the
kernel is stuck inside the daemon: it pins a thread and its stack for as long as the
storage hangs, and a process with a thread in uninterruptible sleep cannot finish
exiting, so a stuck probe would also hang the daemon's shutdown and restart.  A stuck
child costs a pid and a pipe, the daemon exits when it wants, and killing the child
usually works (FUSE and NFS waits are killable); one spawn is ~1-2 ms, nothing next
to a check every 10 s.

On timeout a probe raises `ProbeTimeout` at its deadline: the child is killed and
left to a background reaper, never waited for (it may not be able to die until the
storage answers).  Reaping happens whenever it exits, so no zombie is left.

Stuck children must not pile up, one per check, on a domain that stays hung: use a
`Prober` (one per daemon), whose probes refuse to start while the previous child for
the same path is still alive (`ProbeBusy`, immediately, without spawning anything).
The module functions `read_delay` and `space` are the unguarded one-shots; a caller
using them directly is responsible for not calling again while one is stuck.

O_DIRECT: file systems without it (some FUSE servers; tmpfs before Linux 6.6) fail
the direct read with EINVAL.  The read is then done through the page cache, which is
logged once per path and remembered, so later checks of that path go straight to it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from vdsm import errors
from vdsm.system import mount

log = logging.getLogger("vdsm.storage.probe")

T = TypeVar("T")

BLOCK = 4096
# "4096 bytes (4.1 kB, 4.0 KiB) copied, 0.000349819 s, 11.7 MB/s" (LC_ALL=C)
_DD_SECONDS = re.compile(r", ([0-9][0-9.e+-]*) s, ")

# Paths where O_DIRECT failed with EINVAL: read through the page cache from then on.
# A fact about file systems, shared by every caller; it only ever grows by the
# number of monitored paths.
_buffered_only: set[str] = set()


class ProbeError(errors.StorageDomainAccessError):
    """A probe failed: the storage answered with an error."""


class ProbeTimeout(ProbeError):
    """A probe did not finish in time; its child was abandoned.

    `reaped` completes when the abandoned child has exited (None if it had already).
    """

    def __init__(self, *args: object, reaped: asyncio.Future[None] | None = None) -> None:
        super().__init__(*args)
        self.reaped = reaped


class ProbeBusy(ProbeTimeout):
    """The previous probe of this path is still stuck: no new one was started."""


async def _dd(argv: list[str], path: Path, timeout: float) -> tuple[int, str]:
    """(exit status, stderr) of dd; ProbeTimeout at the deadline."""
    try:
        rc, _, err = await mount.run(argv, timeout)
    except mount.CommandTimeout as e:
        raise ProbeTimeout(f"reading {path}: no answer within {timeout:g} s", reaped=e.reaped)
    except OSError as e:
        raise ProbeError(f"cannot run dd: {e}")
    return rc, err


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


async def read_delay(path: Path, timeout: float) -> float:
    """Seconds dd took to read the first 4 KiB of `path` with direct I/O.

    ProbeError if the read fails, ProbeTimeout if it does not finish within `timeout`
    seconds (which also bounds the buffered retry where O_DIRECT is refused).
    """
    deadline = time.monotonic() + timeout
    key = str(path)
    argv = ["dd", f"if={path}", "of=/dev/null", f"bs={BLOCK}", "count=1"]
    if key not in _buffered_only:
        rc, err = await _dd([*argv, "iflag=direct"], path, timeout)
        if rc == 0 or "Invalid argument" not in err:
            return _dd_seconds(path, rc, err)
        _buffered_only.add(key)
        log.warning(
            "%s: direct I/O is not supported there (%s): reading through the page "
            "cache from now on, so its read delay may look better than the storage is",
            path,
            _last_line(err),
        )
    rc, err = await _dd(argv, path, max(0.0, deadline - time.monotonic()))
    return _dd_seconds(path, rc, err)


def _dd_seconds(path: Path, rc: int, err: str) -> float:
    if rc != 0:
        raise ProbeError(f"reading {path} failed: {_last_line(err) or f'dd exit status {rc}'}")
    match = _DD_SECONDS.search(_last_line(err))
    if match is None:
        raise ProbeError(f"reading {path}: no timing in dd output {err!r}")
    try:
        return float(match.group(1))
    except ValueError:
        raise ProbeError(f"reading {path}: bad timing in dd output {err!r}")


async def space(path: Path, timeout: float) -> tuple[int, int]:
    """(total, free) bytes of the file system holding `path`.

    Free is what unprivileged users may still use (f_bavail), as upstream reports it.
    """
    argv = ["stat", "--file-system", "--format", "%S %b %a", "--", str(path)]
    try:
        rc, out, err = await mount.run(argv, timeout)
    except mount.CommandTimeout as e:
        raise ProbeTimeout(f"statfs {path}: no answer within {timeout:g} s", reaped=e.reaped)
    except OSError as e:
        raise ProbeError(f"cannot run stat: {e}")
    if rc != 0:
        raise ProbeError(f"statfs {path} failed: {_last_line(err) or f'exit status {rc}'}")
    try:
        frsize, blocks, available = (int(field) for field in out.split())
    except ValueError:
        raise ProbeError(f"statfs {path}: unexpected output {out!r}")
    return frsize * blocks, frsize * available


class Prober:
    """The probes, with at most one live child per (probe, path).

    While the child of an earlier probe of a path is still alive (stuck on hung
    storage after its timeout), the next probe of that path raises ProbeBusy at once
    instead of starting another child.  One Prober serves the whole daemon; its
    methods have the signatures of the module functions, so a bound method can be
    handed to whoever needs a probe function.
    """

    def __init__(self) -> None:
        # (probe, path) -> (monotonic start, reaped) of a child abandoned on timeout
        self._stuck: dict[tuple[str, str], tuple[float, asyncio.Future[None]]] = {}

    def busy(self, path: Path) -> bool:
        """Whether a probe of `path` is still stuck."""
        return any(self._stuck_since(name, path) is not None for name in ("read", "space"))

    async def read_delay(self, path: Path, timeout: float) -> float:
        return await self._guarded("read", path, read_delay, timeout)

    async def space(self, path: Path, timeout: float) -> tuple[int, int]:
        return await self._guarded("space", path, space, timeout)

    def _stuck_since(self, name: str, path: Path) -> float | None:
        key = (name, str(path))
        entry = self._stuck.get(key)
        if entry is None:
            return None
        started, reaped = entry
        if reaped.done():
            del self._stuck[key]
            return None
        return started

    async def _guarded(
        self,
        name: str,
        path: Path,
        probe: Callable[[Path, float], Awaitable[T]],
        timeout: float,
    ) -> T:
        since = self._stuck_since(name, path)
        if since is not None:
            raise ProbeBusy(
                f"{path}: the {name} probe started {time.monotonic() - since:.1f} s ago "
                "is still stuck"
            )
        started = time.monotonic()
        try:
            return await probe(path, timeout)
        except ProbeTimeout as e:
            if e.reaped is not None and not e.reaped.done():
                self._stuck[(name, str(path))] = (started, e.reaped)
            raise

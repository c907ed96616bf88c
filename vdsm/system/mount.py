"""mount(8), umount(8) and the kernel's mount table, for storage connections.

The mount table is read from /proc/self/mounts: procfs answers from kernel memory and
never calls into the mounted file systems, so reading it is safe while a mount hangs
(a dead NFS server).  Anything that touches a mount point itself (stat, access) can
hang and belongs in a child process with a timeout.

mount, umount and access checks (`access`: test(1), run as a given user) are child
processes with a timeout (`run`).  A child that does not exit in time is killed; if it
cannot die yet (blocked in the kernel on hung storage) it is left behind and reaped in
the background whenever it finally exits, so the caller gets its error at the
deadline and no zombie is left.  umount gets -c (no canonicalisation) so that it never
stats a mount point that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm import errors

log = logging.getLogger("vdsm.system.mount")

MOUNTS = Path("/proc/self/mounts")
SYS_DEV_BLOCK = Path("/sys/dev/block")

# The kernel escapes space, tab, newline and backslash in mount table fields as \ooo.
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
_DELETED = " (deleted)"
# Messages parsed by nobody, but kept stable for logs and tests.
_ENV = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}

# Background waits for children abandoned after a timeout: referenced here so they are
# not garbage collected before the child is reaped.
_reapers: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class MountRecord:
    spec: str  # the source as the kernel shows it ("srv:/export", "/dev/loop3", "tmpfs")
    target: str
    vfstype: str
    options: tuple[str, ...]


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[MountRecord]:
    """Records of a /proc/mounts style text, in mount order (later ones on top)."""
    records = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        target = _unescape(fields[1])
        # A mount point whose directory was removed after mounting.
        target = target.removesuffix(_DELETED)
        records.append(
            MountRecord(_unescape(fields[0]), target, fields[2], tuple(fields[3].split(",")))
        )
    return records


def read_mounts(path: Path = MOUNTS) -> list[MountRecord]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse_mounts(f.read())


def mounted_at(
    target: str | Path, records: Sequence[MountRecord] | None = None
) -> list[MountRecord]:
    """The mounts stacked on `target` (a canonical path), bottom first."""
    if records is None:
        records = read_mounts()
    return [r for r in records if r.target == str(target)]


def loop_backing_file(spec: str) -> str | None:
    """The file behind a loop device spec such as /dev/loop3, else None.

    The kernel lists a file mounted through a loop device under the device's name; a
    connection may name either.  Only /dev paths are looked at: devtmpfs and sysfs
    answer from memory, whereas stat on an arbitrary spec could touch a hung mount.
    """
    if not spec.startswith("/dev/"):
        return None
    try:
        st = os.stat(spec)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    backing = SYS_DEV_BLOCK / f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" / "loop"
    try:
        return (backing / "backing_file").read_text().rstrip("\n")
    except OSError:
        return None


def mount_argv(
    spec: str, target: str | Path, vfstype: str | None = None, options: str | None = None
) -> list[str]:
    """The command line upstream runs: mount [-t vfstype] [-o options] spec target."""
    argv = ["mount"]
    if vfstype:
        argv += ["-t", vfstype]
    if options:
        argv += ["-o", options]
    return [*argv, spec, str(target)]


def umount_argv(target: str | Path, *, force: bool = False, lazy: bool = False) -> list[str]:
    """umount [-f] [-l] -c target.

    -c (--no-canonicalize): the target is already canonical, and resolving it would
    stat the mount point, which blocks when the file system hangs.
    """
    argv = ["umount"]
    if force:
        argv.append("-f")
    if lazy:
        argv.append("-l")
    return [*argv, "-c", str(target)]


async def mount(
    spec: str,
    target: str | Path,
    *,
    vfstype: str | None = None,
    options: str | None = None,
    timeout: float,
) -> None:
    """Mounts spec on target; errors.MountError when mount fails or takes too long."""
    await _checked(mount_argv(spec, target, vfstype, options), timeout)


async def umount(
    target: str | Path, *, force: bool = False, lazy: bool = False, timeout: float
) -> None:
    """Unmounts target; errors.MountError when umount fails or takes too long."""
    await _checked(umount_argv(target, force=force, lazy=lazy), timeout)


@dataclass(frozen=True)
class Identity:
    """Whom a check runs as: a user with its groups (the first group is the primary)."""

    uid: int
    gids: tuple[int, ...]


async def access(
    path: str | Path,
    *,
    read: bool = False,
    write: bool = False,
    execute: bool = False,
    directory: bool = False,
    identity: Identity | None = None,
    timeout: float,
) -> bool:
    """Whether `identity` (None: this process) may use `path` as asked, as the kernel
    answers access(2) for it (ACLs, read-only mounts, NFS root squashing included).

    Runs test(1) in a child process, switched to the identity (needs root), because
    the path may be on storage that hangs; TimeoutError when it does not answer.
    """
    p = str(path)
    if not p.startswith("/"):
        raise ValueError(f"not an absolute path: {p!r}")  # test(1) would read it as syntax
    tests = [
        t
        for t, wanted in (("-d", directory), ("-r", read), ("-w", write), ("-x", execute))
        if wanted
    ]
    if not tests:
        raise ValueError("nothing to check")
    argv = ["test"]
    for i, flag in enumerate(tests):
        argv += (["-a"] if i else []) + [flag, p]
    switch: dict[str, object] = {}
    if identity is not None:
        switch = {
            "user": identity.uid,
            "group": identity.gids[0],
            "extra_groups": list(identity.gids),
        }
    rc, _, err = await run(argv, timeout, **switch)
    if rc > 1:
        raise OSError(f"{' '.join(argv)}: exit status {rc}: {err.strip()}")
    return rc == 0


async def _checked(argv: list[str], timeout: float) -> None:
    command = " ".join(argv)
    log.info("running %s", command)
    started = time.monotonic()
    try:
        rc, out, err = await run(argv, timeout)
    except TimeoutError:  # first: TimeoutError is an OSError
        raise errors.MountError(f"{command}: no answer after {timeout:g} s (killed)")
    except OSError as e:
        raise errors.MountError(f"{command}: cannot run {argv[0]}: {e}")
    elapsed = time.monotonic() - started
    if rc != 0:
        text = (err or out).strip()
        log.warning("%s failed after %.2f s: exit status %s: %s", command, elapsed, rc, text)
        raise errors.MountError(f"{command}: exit status {rc}: {text}")
    log.info("%s done in %.2f s", command, elapsed)


class CommandTimeout(TimeoutError):
    """A command did not finish in time; it was killed and left to a reaper.

    `reaped` is done once the child has really exited (it may be unable to die until
    the storage it waits for answers).
    """

    def __init__(self, argv: list[str], timeout: float, reaped: asyncio.Task[None]) -> None:
        super().__init__(f"{' '.join(argv)}: no answer after {timeout:g} s")
        self.argv = argv
        self.timeout = timeout
        self.reaped = reaped


class _Collect(asyncio.SubprocessProtocol):
    """Gathers a child's output; `done` resolves once it has exited and its pipes
    are closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.done: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        (self.out if fd == 1 else self.err).extend(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(argv: list[str], timeout: float, **popen: Any) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command; CommandTimeout after `timeout`.

    A command that times out (or whose caller is cancelled) is killed and left to a
    background reaper: the caller never waits for it to die.
    """
    loop = asyncio.get_running_loop()
    transport, proto = await loop.subprocess_exec(
        lambda: _Collect(loop),
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_ENV,
        **popen,
    )
    try:
        # Shielded: a timeout must not cancel the wait, which is what reaps the child.
        async with asyncio.timeout(timeout):
            await asyncio.shield(proto.done)
    except (TimeoutError, asyncio.CancelledError) as e:
        with contextlib.suppress(ProcessLookupError):
            transport.kill()
        reaped = reap_later(transport, proto.done, argv[0])
        if isinstance(e, asyncio.CancelledError):
            raise
        raise CommandTimeout(argv, timeout, reaped) from None
    rc = transport.get_returncode()
    transport.close()
    assert rc is not None
    return rc, proto.out.decode("utf-8", "replace"), proto.err.decode("utf-8", "replace")


def reap_later(
    transport: asyncio.SubprocessTransport, done: asyncio.Future[None], what: str
) -> asyncio.Task[None]:
    """Waits in the background for an abandoned child; the returned task is done
    once the child has exited.

    If the loop shuts down first, the transport is closed (the child keeps its kill
    signal; the loop's child watcher still reaps it when it exits).
    """
    started = time.monotonic()

    async def reap() -> None:
        try:
            await done
            log.info("abandoned %s exited after %.1f s", what, time.monotonic() - started)
        finally:
            transport.close()

    task = asyncio.get_running_loop().create_task(reap(), name=f"reap {what}")
    _reapers.add(task)
    task.add_done_callback(_reapers.discard)
    return task

"""qemu-img as an async subprocess: the only module that runs it.

Every call has a timeout; long operations (convert, commit) have none by default but
can be cancelled: cancelling the awaiting task kills qemu-img, waits for it, and
re-raises CancelledError, so the caller's clean-up runs on a dead writer.  Progress
comes from qemu-img's own `-p` output ("    (42.00/100%)\\r"), parsed as it arrives
and handed to a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("vdsm.system.qemuimg")

QEMU_IMG = "qemu-img"
RAW = "raw"
QCOW2 = "qcow2"
DEFAULT_TIMEOUT = 60.0

_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")

Progress = Callable[[float], None]


class QemuImgError(Exception):
    """qemu-img failed: its command line, exit code and stderr are kept for the log
    and the error the caller raises."""

    def __init__(self, argv: Sequence[str], rc: int | None, err: str) -> None:
        super().__init__(argv, rc, err)
        self.argv = list(argv)
        self.rc = rc
        self.err = err.strip()

    def __str__(self) -> str:
        return f"{' '.join(self.argv)} failed (rc={self.rc}): {self.err}"


class QemuImgTimeout(QemuImgError):
    pass


async def _run(
    argv: Sequence[str],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    progress: Progress | None = None,
) -> bytes:
    """Runs qemu-img; answers its stdout.  Kills it on timeout or cancellation."""
    log.debug("running %s", " ".join(argv))
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # Same process group as the daemon: a panic (killpg) stops a copy in flight too.
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    async def read_out() -> bytes:
        if progress is None:
            return await stdout.read()
        chunks: list[bytes] = []
        pending = b""
        while True:
            data = await stdout.read(4096)
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            pending += data
            # Progress lines end with '\r'; keep an unfinished tail for the next read.
            *complete, pending = re.split(rb"[\r\n]", pending)
            for line in complete:
                m = _PROGRESS.search(line)
                if m:
                    progress(float(m.group(1)))

    async def communicate() -> tuple[bytes, bytes]:
        out, err = await asyncio.gather(read_out(), stderr.read())
        await proc.wait()
        return out, err

    try:
        out, err = await asyncio.wait_for(communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as e:
        await _kill(proc)
        if isinstance(e, TimeoutError):
            raise QemuImgTimeout(argv, None, f"timed out after {timeout} s") from None
        raise
    if proc.returncode != 0:
        raise QemuImgError(argv, proc.returncode, err.decode("utf-8", "replace"))
    return out


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), 10)


def _json(out: bytes) -> Any:
    return json.loads(out.decode("utf-8"))


# -- queries ---------------------------------------------------------------------------


async def info(
    path: str,
    *,
    fmt: str | None = None,
    backing_chain: bool = False,
    unsafe: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """`qemu-img info --output json`: a dict, or a list of dicts with backing_chain.
    `unsafe` (-U) reads an image a VM may have open, as upstream does."""
    argv = [QEMU_IMG, "info", "--output", "json"]
    if fmt:
        argv += ["-f", fmt]
    if backing_chain:
        argv.append("--backing-chain")
    if unsafe:
        argv.append("-U")
    argv.append(path)
    return _json(await _run(argv, timeout=timeout))


async def check(path: str, *, fmt: str = QCOW2, timeout: float = DEFAULT_TIMEOUT) -> Any:
    argv = [QEMU_IMG, "check", "--output", "json", "-f", fmt, path]
    return _json(await _run(argv, timeout=timeout))


def _is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


async def measure(
    path: str,
    *,
    fmt: str,
    out_fmt: str,
    backing_chain: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """The size a copy of `path` needs in `out_fmt`: of the whole chain, or of the top
    layer alone (its backing cut off) without `backing_chain`."""
    argv = [QEMU_IMG, "measure", "--output", "json", "-O", out_fmt]
    if backing_chain:
        argv += ["-f", fmt, path]
    else:
        # qemu's "file" driver refuses block devices (an LV): they take "host_device"
        is_device = await asyncio.to_thread(_is_block_device, path)
        driver = "host_device" if is_device else "file"
        spec = {"driver": fmt, "backing": None, "file": {"driver": driver, "filename": path}}
        argv.append("json:" + json.dumps(spec))
    return _json(await _run(argv, timeout=timeout))


# -- changes ---------------------------------------------------------------------------


async def create(
    path: str,
    *,
    fmt: str,
    size: int | None = None,
    backing: str | None = None,
    backing_fmt: str | None = None,
    compat: str | None = None,
    preallocation: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    argv = [QEMU_IMG, "create", "-f", fmt]
    options = []
    if compat and fmt == QCOW2:
        options.append(f"compat={compat}")
    if preallocation:
        options.append(f"preallocation={preallocation}")
    if options:
        argv += ["-o", ",".join(options)]
    if backing:
        argv += ["-b", backing, "-F", backing_fmt or QCOW2]
        # With a backing file qemu-img opens it to learn the size when none is given;
        # -u keeps it from failing on a parent it cannot open yet.
        if size is not None:
            argv.append("-u")
    argv.append(path)
    if size is not None:
        argv.append(str(size))
    await _run(argv, timeout=timeout)


async def convert(
    src: str,
    dst: str,
    *,
    src_fmt: str,
    dst_fmt: str,
    compat: str | None = None,
    backing: str | None = None,
    backing_fmt: str | None = None,
    create: bool = False,
    preallocation: str | None = None,
    progress: Progress | None = None,
    timeout: float | None = None,
) -> None:
    """Copies `src` (with its backing chain) into `dst`.  Without `create` the target
    exists already (-n), as upstream copies into volumes it created beforehand."""
    argv = [QEMU_IMG, "convert", "-t", "none", "-T", "none", "-f", src_fmt, "-O", dst_fmt]
    if progress is not None:
        argv.append("-p")
    if not create:
        argv.append("-n")
    options = []
    if compat and dst_fmt == QCOW2 and create:
        options.append(f"compat={compat}")
    if preallocation and create:
        options.append(f"preallocation={preallocation}")
    if options:
        argv += ["-o", ",".join(options)]
    if backing:
        argv += ["-B", backing, "-F", backing_fmt or QCOW2]
    # Writes in parallel out of order (-W) as upstream does on file storage.
    argv += ["-W", src, dst]
    await _run(argv, timeout=timeout, progress=progress)


async def resize(
    path: str, size: int, *, fmt: str, shrink: bool = False, timeout: float = DEFAULT_TIMEOUT
) -> None:
    argv = [QEMU_IMG, "resize", "-f", fmt]
    if shrink:
        argv.append("--shrink")
    argv += [path, str(size)]
    await _run(argv, timeout=timeout)


async def commit(
    top: str,
    *,
    base: str,
    fmt: str = QCOW2,
    progress: Progress | None = None,
    timeout: float | None = None,
) -> None:
    """Commits `top` down to `base` (which must be in its chain); `top` is kept."""
    argv = [QEMU_IMG, "commit", "-t", "none", "-f", fmt, "-b", base, "-d"]
    if progress is not None:
        argv.append("-p")
    argv.append(top)
    await _run(argv, timeout=timeout, progress=progress)


async def rebase(
    path: str,
    backing: str,
    *,
    fmt: str = QCOW2,
    backing_fmt: str = QCOW2,
    unsafe: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Points `path` at another backing file; `unsafe` changes only the header, which
    is right when the new backing holds the same data (after a commit)."""
    argv = [QEMU_IMG, "rebase", "-t", "none", "-f", fmt, "-b", backing, "-F", backing_fmt]
    if unsafe:
        argv.append("-u")
    argv.append(path)
    await _run(argv, timeout=timeout)


async def amend(
    path: str, *, compat: str, fmt: str = QCOW2, timeout: float = DEFAULT_TIMEOUT
) -> None:
    await _run([QEMU_IMG, "amend", "-f", fmt, "-o", f"compat={compat}", path], timeout=timeout)

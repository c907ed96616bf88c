"""Direct I/O on shared storage: what one host writes, another reads at once, never
from a page cache.

Used for every on-disk area that other hosts read or write (xleases, the SPM mailbox).
O_DIRECT needs page-aligned memory, which anonymous mmap gives.  A file system without
direct I/O (EINVAL: tmpfs before Linux 6.6, some FUSE servers) gets buffered I/O, whose
writes are made durable with fsync all the same.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def aligned(size: int) -> Iterator[mmap.mmap]:
    buf = mmap.mmap(-1, size)
    try:
        yield buf
    finally:
        buf.close()


@contextmanager
def open_direct(path: Path | str, write: bool = False) -> Iterator[int]:
    flags = (os.O_RDWR if write else os.O_RDONLY) | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_DIRECT)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
        fd = os.open(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def pread(fd: int, size: int, offset: int) -> bytes:
    """Up to `size` bytes at `offset` (fewer only at the end of the file)."""
    with aligned(size) as buf:
        view = memoryview(buf)
        try:
            pos = 0
            while pos < size:
                n = os.preadv(fd, [view[pos:]], offset + pos)
                if n == 0:
                    break
                pos += n
            return bytes(view[:pos])
        finally:
            view.release()


def pwrite(fd: int, buf: mmap.mmap | memoryview, offset: int) -> None:
    """All of `buf` at `offset`, then fsync."""
    view = memoryview(buf)
    try:
        pos = 0
        while pos < len(view):
            pos += os.pwritev(fd, [view[pos:]], offset + pos)
        os.fsync(fd)
    finally:
        view.release()


def read_at(path: Path | str, offset: int, size: int) -> bytes:
    with open_direct(path) as fd:
        return pread(fd, size, offset)


def write_at(path: Path | str, offset: int, data: bytes) -> None:
    """`data` (a whole number of sectors) at `offset`, durable on return."""
    with aligned(len(data)) as buf:
        buf.write(data)
        with open_direct(path, write=True) as fd:
            pwrite(fd, buf, offset)

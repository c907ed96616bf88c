"""Storage that really hangs: a FUSE passthrough mount whose server can be frozen.

    freezable_mount(backing=None, *, mountpoint=None, source=None, direct_io=True)

is a factory fixture returning a `FreezableMount`: `.path` is a FUSE mount showing the
`backing` directory (a new one under tmp_path by default).  While frozen, every
operation on the mount blocks in the kernel, as on a dead NFS server:

    .freeze()                 the server is stopped (SIGSTOP); a process blocked on the
                              mount still dies on SIGKILL (its request is queued)
    .freeze(killable=False)   the server takes requests and answers none; a blocked
                              process sleeps uninterruptibly (state D) until thawed,
                              SIGKILL or not, as on a hard-mounted NFS export
    .thaw()                   answers everything pending and goes on
    with fm.hung(): ...       frozen inside the block only

Every mount is unmounted at teardown, frozen or not: the server is thawed first, then
the mount goes (`umount`, `umount -l` if still busy after 2 s), and if the server does
not exit its FUSE connection is aborted (fusectl), so nothing waiting on it stays
stuck; anything that had to be forced fails the test.

Entry and attribute cache timeouts are 0, so every path walk, stat and open reaches
the server (and blocks while frozen); reads with O_DIRECT always do.  With
`direct_io=False` the server refuses opens with O_DIRECT (EINVAL), like file systems
without direct I/O.  `source` is the mount's source in /proc/mounts (type
fuse.hangfs; default vdsmlab-<pid>-<n>), so a test can put the mount where a storage
connection would and have the connection find it already mounted.

The server is this file run as a program: the FUSE kernel protocol (7.31) in the
standard library only, no libfuse or fusermount, mounted with mount(2) on /dev/fuse
(root), single-threaded, passthrough to the backing directory as root, creating files
as the requesting user; the kernel checks permissions (default_permissions) and other
users may use it (allow_other).  Its stdin takes "stall"/"flow" (acknowledged on
stdout).

    python -I -S tests/lab/hangfs.py [--no-direct-io] [--source NAME] BACKING MOUNTPOINT

prints "ready" once mounted and serves until unmounted.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import select
import stat
import struct
import sys
import time
from typing import Any

# -- the FUSE protocol (linux/fuse.h) --------------------------------------------------

KERNEL_MAJOR, KERNEL_MINOR = 7, 31
ROOT_ID = 1

LOOKUP, FORGET, GETATTR, SETATTR, READLINK, SYMLINK = 1, 2, 3, 4, 5, 6
MKNOD, MKDIR, UNLINK, RMDIR, RENAME, LINK, OPEN, READ, WRITE = 8, 9, 10, 11, 12, 13, 14, 15, 16
STATFS, RELEASE, FSYNC, FLUSH, INIT, OPENDIR, READDIR = 17, 18, 20, 25, 26, 27, 28
RELEASEDIR, FSYNCDIR, ACCESS, CREATE, INTERRUPT, DESTROY = 29, 30, 34, 35, 36, 38
BATCH_FORGET, FALLOCATE, RENAME2, LSEEK = 42, 43, 45, 46
NO_REPLY = {FORGET, BATCH_FORGET, INTERRUPT}

FATTR_MODE, FATTR_UID, FATTR_GID, FATTR_SIZE = 1, 2, 4, 8
FATTR_ATIME, FATTR_MTIME, FATTR_FH, FATTR_ATIME_NOW, FATTR_MTIME_NOW = 16, 32, 64, 128, 256
GETATTR_FH = 1
INIT_BIG_WRITES, INIT_MAX_PAGES = 1 << 5, 1 << 22

MAX_WRITE = 128 * 1024
BUFFER = MAX_WRITE + 4096

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
ENTRY_HEAD = struct.Struct("<QQQQII")  # nodeid generation entry_valid attr_valid nsecs
ATTR_HEAD = struct.Struct("<QII")  # attr_valid attr_valid_nsec dummy
INIT_IN = struct.Struct("<IIII")
INIT_OUT = struct.Struct("<IIIIHHIIHHI28x")
OPEN_OUT = struct.Struct("<QII")
READ_IN = struct.Struct("<QQIIQII")
WRITE_IN = struct.Struct("<QQIIQII")
SETATTR_IN = struct.Struct("<IIQQQQQQIIIIIIII")
GETATTR_IN = struct.Struct("<IIQ")
STATFS_OUT = struct.Struct("<QQQQQIIII24x")
DIRENT = struct.Struct("<QQII")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")

MS_NOSUID, MS_NODEV = 2, 4


class Reply(Exception):
    """An error answer: raised by a handler with an errno."""

    def __init__(self, err: int) -> None:
        self.err = err


def _name(data: bytes) -> bytes:
    return data.split(b"\0", 1)[0]


class Server:
    def __init__(self, fd: int, backing: str, direct_io: bool) -> None:
        self.fd = fd
        self.backing = backing.encode()
        self.direct_io = direct_io
        self.paths: dict[int, bytes] = {ROOT_ID: b""}  # nodeid -> path under backing
        self.nodes: dict[bytes, int] = {b"": ROOT_ID}
        self.next_node = ROOT_ID + 1
        self.files: dict[int, int] = {}  # fh -> fd of the backing file
        self.dirs: dict[int, list[tuple[bytes, int, int]]] = {}
        self.next_fh = 1

    # -- plumbing ------------------------------------------------------------------------

    def serve(self, control: int) -> None:
        """Answers requests until unmounted.  `control` (stdin) takes "stall" (read
        requests but answer none: their callers wait in uninterruptible sleep, as on
        a hard-mounted NFS whose server is gone) and "flow" (answer them all, go on);
        each is acknowledged with the same word on stdout."""
        stalled: list[bytes] = []
        stalling = False
        while True:
            watched = [self.fd, control] if control >= 0 else [self.fd]
            readable, _, _ = select.select(watched, [], [])
            if control in readable:
                command = os.read(control, 64).strip()
                if not command:
                    control = -1  # the test side has gone: serve until unmounted
                    continue
                if command == b"stall":
                    stalling = True
                elif command == b"flow":
                    stalling = False
                    for request in stalled:
                        self.answer(request)
                    stalled.clear()
                print(command.decode(), flush=True)
                continue
            if self.fd not in readable:
                continue
            try:
                request = os.read(self.fd, BUFFER)
            except OSError as e:
                if e.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue  # interrupted before we read it
                if e.errno == errno.ENODEV:
                    return  # unmounted
                raise
            if stalling:
                stalled.append(request)
            else:
                self.answer(request)

    def answer(self, request: bytes) -> None:
        size, opcode, unique, nodeid, uid, gid, _pid, _ext, _ = IN_HEADER.unpack_from(request)
        body = request[IN_HEADER.size : size]
        handler = self.HANDLERS.get(opcode)
        try:
            if handler is None:
                raise Reply(errno.ENOSYS)
            payload = handler(self, nodeid, body, uid, gid)
            error = 0
        except Reply as r:
            payload, error = b"", -r.err
        except OSError as e:
            payload, error = b"", -(e.errno or errno.EIO)
        if opcode in NO_REPLY:
            return
        out = OUT_HEADER.pack(OUT_HEADER.size + len(payload), error, unique) + payload
        try:
            os.write(self.fd, out)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENODEV):  # interrupted, or unmounted
                raise

    def real(self, rel: bytes) -> bytes:
        return os.path.join(self.backing, rel) if rel else self.backing

    def path(self, nodeid: int) -> bytes:
        try:
            return self.paths[nodeid]
        except KeyError:
            raise Reply(errno.ESTALE)

    def child(self, nodeid: int, name: bytes) -> bytes:
        parent = self.path(nodeid)
        return os.path.join(parent, name) if parent else name

    def node(self, rel: bytes) -> int:
        nodeid = self.nodes.get(rel)
        if nodeid is None:
            nodeid = self.nodes[rel] = self.next_node
            self.paths[nodeid] = rel
            self.next_node += 1
        return nodeid

    @staticmethod
    def attr(st: os.stat_result) -> bytes:
        return ATTR.pack(
            st.st_ino,
            st.st_size,
            st.st_blocks,
            int(st.st_atime),
            int(st.st_mtime),
            int(st.st_ctime),
            st.st_atime_ns % 10**9,
            st.st_mtime_ns % 10**9,
            st.st_ctime_ns % 10**9,
            st.st_mode,
            st.st_nlink,
            st.st_uid,
            st.st_gid,
            st.st_rdev & 0xFFFFFFFF,
            st.st_blksize,
            0,
        )

    def entry(self, rel: bytes) -> bytes:
        st = os.lstat(self.real(rel))
        # Zero cache timeouts: every lookup and stat reaches the server.
        return ENTRY_HEAD.pack(self.node(rel), 0, 0, 0, 0, 0) + self.attr(st)

    def owned(self, rel: bytes, uid: int, gid: int) -> bytes:
        if uid != 0 or gid != 0:
            os.lchown(self.real(rel), uid, gid)
        return self.entry(rel)

    def new_fh(self) -> int:
        fh = self.next_fh
        self.next_fh += 1
        return fh

    def open_flags(self, flags: int) -> int:
        if flags & os.O_DIRECT and not self.direct_io:
            raise Reply(errno.EINVAL)
        # The backing file is read with unaligned buffers: no O_DIRECT there.
        return flags & ~(os.O_DIRECT | os.O_CREAT | os.O_EXCL | os.O_NOCTTY)

    # -- handlers (nodeid, body, uid, gid) -> payload -----------------------------------

    def init(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        major, minor, readahead, _flags = INIT_IN.unpack_from(body)
        if major != KERNEL_MAJOR:
            raise Reply(errno.EPROTO)
        return INIT_OUT.pack(
            KERNEL_MAJOR,
            min(minor, KERNEL_MINOR),
            readahead,
            INIT_BIG_WRITES | INIT_MAX_PAGES,
            16,
            12,
            MAX_WRITE,
            1,
            MAX_WRITE // 4096,
            0,
            0,
        )

    def lookup(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        return self.entry(self.child(nodeid, _name(body)))

    def forget(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        return b""  # nodes are kept for the life of the mount

    def getattr(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        flags, _, fh = GETATTR_IN.unpack_from(body)
        if flags & GETATTR_FH and fh in self.files:
            st = os.fstat(self.files[fh])
        else:
            st = os.lstat(self.real(self.path(nodeid)))
        return ATTR_HEAD.pack(0, 0, 0) + self.attr(st)

    def setattr(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        fields = SETATTR_IN.unpack_from(body)
        valid, _, fh, size, _, atime, mtime, _, atimens, mtimens, _, mode = fields[:12]
        new_uid, new_gid = fields[13], fields[14]
        real = self.real(self.path(nodeid))
        if valid & FATTR_MODE:
            os.chmod(real, stat.S_IMODE(mode))
        if valid & (FATTR_UID | FATTR_GID):
            os.lchown(
                real,
                new_uid if valid & FATTR_UID else -1,
                new_gid if valid & FATTR_GID else -1,
            )
        if valid & FATTR_SIZE:
            if valid & FATTR_FH and fh in self.files:
                os.ftruncate(self.files[fh], size)
            else:
                os.truncate(real, size)
        if valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW):
            st = os.lstat(real)
            now = None
            a = st.st_atime_ns
            m = st.st_mtime_ns
            if valid & (FATTR_ATIME_NOW | FATTR_MTIME_NOW):
                now = time.time_ns()
            if valid & FATTR_ATIME:
                a = atime * 10**9 + atimens
            if valid & FATTR_ATIME_NOW and now is not None:
                a = now
            if valid & FATTR_MTIME:
                m = mtime * 10**9 + mtimens
            if valid & FATTR_MTIME_NOW and now is not None:
                m = now
            os.utime(real, ns=(a, m), follow_symlinks=False)
        return ATTR_HEAD.pack(0, 0, 0) + self.attr(os.lstat(real))

    def readlink(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        return os.readlink(self.real(self.path(nodeid)))

    def symlink(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        name, target = body.split(b"\0")[:2]
        rel = self.child(nodeid, name)
        os.symlink(target, self.real(rel))
        return self.owned(rel, uid, gid)

    def mknod(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        mode, rdev, _umask, _ = struct.unpack_from("<IIII", body)
        rel = self.child(nodeid, _name(body[16:]))
        os.mknod(self.real(rel), mode, rdev)
        return self.owned(rel, uid, gid)

    def mkdir(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        mode, _umask = struct.unpack_from("<II", body)
        rel = self.child(nodeid, _name(body[8:]))
        os.mkdir(self.real(rel), stat.S_IMODE(mode))
        return self.owned(rel, uid, gid)

    def unlink(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        os.unlink(self.real(self.child(nodeid, _name(body))))
        return b""

    def rmdir(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        os.rmdir(self.real(self.child(nodeid, _name(body))))
        return b""

    def _rename(self, nodeid: int, newdir: int, names: bytes, flags: int) -> bytes:
        old, new = names.split(b"\0")[:2]
        src, dst = self.child(nodeid, old), self.child(newdir, new)
        if flags:
            raise Reply(errno.EINVAL)  # RENAME_NOREPLACE/EXCHANGE: not needed here
        os.rename(self.real(src), self.real(dst))
        # Nodes under the old name now live under the new one.
        for path, node in list(self.nodes.items()):
            if path == src or path.startswith(src + b"/"):
                moved = dst + path[len(src) :]
                del self.nodes[path]
                self.nodes[moved] = node
                self.paths[node] = moved
        return b""

    def rename(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        (newdir,) = U64.unpack_from(body)
        return self._rename(nodeid, newdir, body[8:], 0)

    def rename2(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        newdir, flags, _ = struct.unpack_from("<QII", body)
        return self._rename(nodeid, newdir, body[16:], flags)

    def link(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        (old,) = U64.unpack_from(body)
        rel = self.child(nodeid, _name(body[8:]))
        os.link(self.real(self.path(old)), self.real(rel))
        return self.entry(rel)

    def open(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        (flags,) = U32.unpack_from(body)
        fh = self.new_fh()
        self.files[fh] = os.open(self.real(self.path(nodeid)), self.open_flags(flags))
        return OPEN_OUT.pack(fh, 0, 0)

    def create(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        flags, mode, _umask, _ = struct.unpack_from("<IIII", body)
        rel = self.child(nodeid, _name(body[16:]))
        opened = self.open_flags(flags) | os.O_CREAT | (flags & os.O_EXCL)
        fd = os.open(self.real(rel), opened, stat.S_IMODE(mode))
        fh = self.new_fh()
        self.files[fh] = fd
        return self.owned(rel, uid, gid) + OPEN_OUT.pack(fh, 0, 0)

    def read(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        fh, offset, size = READ_IN.unpack_from(body)[:3]
        return os.pread(self.files[fh], size, offset)

    def write(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        fh, offset, size = WRITE_IN.unpack_from(body)[:3]
        data = body[WRITE_IN.size : WRITE_IN.size + size]
        return struct.pack("<II", os.pwrite(self.files[fh], data, offset), 0)

    def statfs(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        st = os.statvfs(self.backing)
        return STATFS_OUT.pack(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize,
            st.f_namemax,
            st.f_frsize,
            0,
        )

    def release(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        (fh,) = U64.unpack_from(body)
        fd = self.files.pop(fh, None)
        if fd is not None:
            os.close(fd)
        return b""

    def flush(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        return b""

    def fsync(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        fh, flags, _ = struct.unpack_from("<QII", body)
        if fh in self.files:
            (os.fdatasync if flags & 1 else os.fsync)(self.files[fh])
        return b""

    def opendir(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        rel = self.path(nodeid)
        entries = [(b".", ROOT_ID, stat.S_IFDIR >> 12), (b"..", ROOT_ID, stat.S_IFDIR >> 12)]
        with os.scandir(self.real(rel)) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                entries.append((e.name, e.inode(), stat.S_IFMT(st.st_mode) >> 12))
        fh = self.new_fh()
        self.dirs[fh] = entries
        return OPEN_OUT.pack(fh, 0, 0)

    def readdir(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        fh, offset, size = READ_IN.unpack_from(body)[:3]
        out = b""
        for index, (name, ino, kind) in enumerate(self.dirs.get(fh, [])[offset:], offset):
            record = DIRENT.pack(ino, index + 1, len(name), kind) + name
            record += b"\0" * (-len(record) % 8)
            if len(out) + len(record) > size:
                break
            out += record
        return out

    def releasedir(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        (fh,) = U64.unpack_from(body)
        self.dirs.pop(fh, None)
        return b""

    def fsyncdir(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        return b""

    def access(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        return b""  # default_permissions: the kernel has checked already

    def fallocate(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        fh, offset, length, mode, _ = struct.unpack_from("<QQQII", body)
        if mode:
            raise Reply(errno.EOPNOTSUPP)
        os.posix_fallocate(self.files[fh], offset, length)
        return b""

    def lseek(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        fh, offset, whence, _ = struct.unpack_from("<QQII", body)
        return U64.pack(os.lseek(self.files[fh], offset, whence))

    def destroy(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        return b""

    def interrupt(self, nodeid: int, body: bytes, uid: int, gid: int) -> bytes:
        return b""  # requests are answered one by one; nothing to interrupt

    HANDLERS: dict[int, Any] = {}


Server.HANDLERS = {
    INIT: Server.init,
    LOOKUP: Server.lookup,
    FORGET: Server.forget,
    BATCH_FORGET: Server.forget,
    GETATTR: Server.getattr,
    SETATTR: Server.setattr,
    READLINK: Server.readlink,
    SYMLINK: Server.symlink,
    MKNOD: Server.mknod,
    MKDIR: Server.mkdir,
    UNLINK: Server.unlink,
    RMDIR: Server.rmdir,
    RENAME: Server.rename,
    RENAME2: Server.rename2,
    LINK: Server.link,
    OPEN: Server.open,
    CREATE: Server.create,
    READ: Server.read,
    WRITE: Server.write,
    STATFS: Server.statfs,
    RELEASE: Server.release,
    FLUSH: Server.flush,
    FSYNC: Server.fsync,
    OPENDIR: Server.opendir,
    READDIR: Server.readdir,
    RELEASEDIR: Server.releasedir,
    FSYNCDIR: Server.fsyncdir,
    ACCESS: Server.access,
    FALLOCATE: Server.fallocate,
    LSEEK: Server.lseek,
    DESTROY: Server.destroy,
    INTERRUPT: Server.interrupt,
}


def mount_fuse(fd: int, source: str, mountpoint: str, root_mode: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    options = (
        f"fd={fd},rootmode={stat.S_IFMT(root_mode):o},user_id=0,group_id=0,"
        f"allow_other,default_permissions,max_read={MAX_WRITE}"
    )
    rc = libc.mount(
        source.encode(),
        mountpoint.encode(),
        b"fuse.hangfs",
        ctypes.c_ulong(MS_NOSUID | MS_NODEV),
        options.encode(),
    )
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"mount {mountpoint}: {os.strerror(e)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="FUSE passthrough that can be frozen")
    parser.add_argument("backing")
    parser.add_argument("mountpoint")
    parser.add_argument("--source", default="hangfs")
    parser.add_argument("--no-direct-io", dest="direct_io", action="store_false")
    args = parser.parse_args(argv)
    os.umask(0)  # modes come from the kernel with the caller's umask applied
    backing = os.path.realpath(args.backing)
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    mount_fuse(fd, args.source, args.mountpoint, os.stat(backing).st_mode)
    print("ready", flush=True)
    Server(fd, backing, args.direct_io).serve(sys.stdin.fileno())
    return 0


# Run as a program, the server stops here: what follows is the pytest side, which
# the server does not need (it runs with the bare interpreter, -I -S).
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

# -- the pytest side ------------------------------------------------------------------

import contextlib  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SERVER = Path(__file__).resolve()
FUSECTL = Path("/sys/fs/fuse/connections")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
BUSY_GRACE = 2.0


def mounted(path: Path) -> bool:
    """From the mount table: never touches the mount, so safe while it hangs."""
    target = str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return text.rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, wanted: Callable[[str], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not wanted(_state(pid)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} stays in state {_state(pid)!r}")
        time.sleep(0.005)


@dataclass
class FreezableMount:
    path: Path  # the mount point
    backing: Path
    source: str
    server: subprocess.Popen[bytes]
    device: int = 0  # st_dev of the mount: names its FUSE connection in fusectl
    frozen: str | None = None  # "stopped" or "stalled"

    def freeze(self, *, killable: bool = True) -> None:
        """From now on every operation on the mount blocks.

        killable=True: the server is stopped (SIGSTOP); requests queue in the kernel
        and a blocked process still dies on SIGKILL.  killable=False: the server
        takes requests and answers none; a blocked process sleeps uninterruptibly
        (state D) until `thaw()`, even through SIGKILL, like one on a hard-mounted
        NFS export whose server is gone.
        """
        if self.frozen:
            raise RuntimeError(f"{self.path} is already frozen ({self.frozen})")
        if killable:
            self.server.send_signal(signal.SIGSTOP)
            _wait_state(self.server.pid, lambda s: s in ("T", "t"))
            self.frozen = "stopped"
        else:
            self._control("stall")
            self.frozen = "stalled"

    def thaw(self) -> None:
        if self.frozen == "stopped":
            self.server.send_signal(signal.SIGCONT)
            _wait_state(self.server.pid, lambda s: s not in ("T", "t"))
        elif self.frozen == "stalled":
            self._control("flow")
        self.frozen = None

    @contextlib.contextmanager
    def hung(self, *, killable: bool = True) -> Iterator[None]:
        """Frozen inside the block, thawed after it whatever happens."""
        self.freeze(killable=killable)
        try:
            yield
        finally:
            self.thaw()

    def _control(self, command: str) -> None:
        assert self.server.stdin is not None and self.server.stdout is not None
        self.server.stdin.write(command.encode() + b"\n")
        self.server.stdin.flush()
        ready, _, _ = select.select([self.server.stdout], [], [], START_TIMEOUT)
        answer = self.server.stdout.readline().strip() if ready else b""
        if answer != command.encode():
            raise RuntimeError(f"hangfs server answered {answer!r} to {command!r}")

    def unmount(self) -> list[str]:
        """Thaw, unmount, stop the server; returns what had to be forced (for the
        fixture to report).  Safe to call twice."""
        forced: list[str] = []
        if self.server.poll() is None and self.frozen:
            try:
                self.thaw()
            except (OSError, RuntimeError, TimeoutError) as e:
                forced.append(f"could not thaw: {e}")
        # Processes just thawed may still be finishing with the mount: give them a
        # moment before calling it busy.
        deadline = time.monotonic() + BUSY_GRACE
        while mounted(self.path) and _umount(["umount", "-c", str(self.path)]) != 0:
            if time.monotonic() > deadline:
                forced.append("busy: lazy umount")
                _umount(["umount", "-l", "-c", str(self.path)])
                break
            time.sleep(0.05)
        try:
            self.server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            forced.append("server did not exit: connection aborted, server killed")
            if self.device:
                abort_connection(self.device)
            self.server.kill()
            self.server.wait(STOP_TIMEOUT)
        if mounted(self.path):  # the server died and the kernel kept the mount
            forced.append("dead mount: lazy umount")
            _umount(["umount", "-l", "-c", str(self.path)])
        for pipe in (self.server.stdin, self.server.stdout):
            if pipe is not None:
                pipe.close()
        with contextlib.suppress(OSError):
            self.path.rmdir()
        return forced


def _umount(argv: list[str]) -> int:
    try:
        return subprocess.run(argv, capture_output=True, timeout=STOP_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        return -1


def abort_connection(device: int) -> None:
    """Fail every request pending on a FUSE connection (fusectl's abort), so the
    processes waiting on it wake up; works on a lazily unmounted mount too."""
    connection = FUSECTL / str(os.minor(device))
    if not connection.exists():
        subprocess.run(["mount", "-t", "fusectl", "fusectl", str(FUSECTL)], capture_output=True)
    with contextlib.suppress(OSError):
        (connection / "abort").write_text("1")


def start_mount(
    backing: Path, mountpoint: Path, source: str, *, direct_io: bool = True
) -> FreezableMount:
    mountpoint.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-I", "-S", str(SERVER), "--source", source]
    if not direct_io:
        argv.append("--no-direct-io")
    argv += [str(backing), str(mountpoint)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VDSM_LAB_OWNER": str(os.getpid())}
    server = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        # Its own session: a ^C to the test run must not kill it before the teardown
        # has unmounted.
        start_new_session=True,
    )
    fm = FreezableMount(mountpoint, backing, source, server)
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], START_TIMEOUT)
    line = server.stdout.readline() if ready else b""
    if line.strip() != b"ready":
        fm.unmount()
        raise RuntimeError(f"hangfs server did not start (exit status {server.poll()})")
    fm.device = os.stat(mountpoint).st_dev
    return fm


@pytest.fixture
def freezable_mount(tmp_path: Path) -> Iterator[Callable[..., FreezableMount]]:
    """`freezable_mount(backing=None, *, mountpoint=None, source=None, direct_io=True)`:
    a FUSE mount of `backing` that `.freeze()` makes hang; always unmounted after."""
    from tests.lab.fixtures import require_root
    from tests.lab.resources import unique_name

    require_root()
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: modprobe fuse")
    made: list[FreezableMount] = []

    def create(
        backing: Path | None = None,
        *,
        mountpoint: Path | None = None,
        source: str | None = None,
        direct_io: bool = True,
    ) -> FreezableMount:
        name = unique_name()
        if backing is None:
            backing = tmp_path / f"{name}.backing"
            backing.mkdir()
        fm = start_mount(
            backing,
            mountpoint or tmp_path / f"{name}.mnt",
            source or name,
            direct_io=direct_io,
        )
        made.append(fm)
        return fm

    yield create
    problems = []
    for fm in reversed(made):
        forced = fm.unmount()
        if forced:
            problems.append(f"{fm.path}: {'; '.join(forced)}")
        if mounted(fm.path) or fm.server.poll() is None:
            problems.append(f"{fm.path}: still mounted or server {fm.server.pid} alive")
    if problems:
        pytest.fail("hangfs teardown:\n" + "\n".join(problems), pytrace=False)

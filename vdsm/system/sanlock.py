"""Async adapter over the sanlock daemon (python3-sanlock).

Every call of the binding blocks (it talks to the daemon over a unix socket, and many
calls make the daemon do I/O on shared storage), so each runs in a worker thread behind
a `Bulkhead`: one per lockspace, so a lockspace whose storage hangs fills only its own
bulkhead, and one for the process registration.  Timeouts derive from the sanlock
I/O timeout (`Timeouts.for_io_timeout`).

The process registration: the daemon ties resource leases to a registered connection
(`sanlock.register()`), and releases all of them when that connection closes.  Like
upstream, this adapter registers once, lazily, and acquires every lease on that one
descriptor.  The daemon answers one command per connection at a time, and two threads
waiting for answers on the same socket could read each other's answer; so commands on
the descriptor are serialized by a thread lock held by the worker thread itself (a call
given up after its timeout keeps the lock until the daemon has answered it).  When the
daemon is found to have closed the registration (EPIPE: it crashed or was restarted)
while leases were held, those leases are gone: that is `RegistrationLost`, which the
caller must treat as fatal.  Without leases a new registration is made transparently.

The binding is imported on first use, so the daemon's start-up does not pay for it.
Errors are `SanlockError` (errno from the daemon, negative values being sanlock's own
codes, see `RESULT_NAMES`) or `BlockingCallTimeout`.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vdsm.system.blocking import Bulkhead

log = logging.getLogger("vdsm.system.sanlock")

T = TypeVar("T")

Disk = tuple[str, int]  # (path, offset)

# Errors worth trying again later: the daemon is busy with another command for the
# same process (EBUSY), a lockspace is being added (EINPROGRESS), host status is not
# known yet (EAGAIN), ...
TEMPORARY_ERRNOS = frozenset(
    {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.EINPROGRESS, errno.ETIMEDOUT}
)

# The registration socket was closed by the daemon.
CONNECTION_LOST_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET})

# sanlock's own (negative) result codes, from its sanlock_rv.h.
RESULT_NAMES = {
    -201: "SANLK_ERROR",
    -202: "SANLK_AIO_TIMEOUT",
    -203: "SANLK_WD_ERROR",
    -210: "SANLK_DBLOCK_READ",
    -211: "SANLK_DBLOCK_WRITE",
    -212: "SANLK_DBLOCK_LVER",
    -213: "SANLK_DBLOCK_MBAL",
    -214: "SANLK_DBLOCK_CHECKSUM",
    -220: "SANLK_LEADER_READ",
    -221: "SANLK_LEADER_WRITE",
    -222: "SANLK_LEADER_DIFF",
    -223: "SANLK_LEADER_MAGIC",
    -224: "SANLK_LEADER_VERSION",
    -225: "SANLK_LEADER_SECTORSIZE",
    -226: "SANLK_LEADER_LOCKSPACE",
    -227: "SANLK_LEADER_RESOURCE",
    -228: "SANLK_LEADER_NUMHOSTS",
    -229: "SANLK_LEADER_CHECKSUM",
    -230: "SANLK_ADDLS_SIZES",
    -231: "SANLK_ADDLS_INVALID_HOSTID",
    -240: "SANLK_ACQUIRE_LVER",
    -241: "SANLK_ACQUIRE_LOCKSPACE",
    -242: "SANLK_ACQUIRE_IDDISK",
    -243: "SANLK_ACQUIRE_IDLIVE",
    -244: "SANLK_ACQUIRE_OWNED",
    -245: "SANLK_ACQUIRE_OTHER",
    -246: "SANLK_ACQUIRE_SHRETRY",
    -247: "SANLK_ACQUIRE_OWNED_RETRY",
    -250: "SANLK_RELEASE_LVER",
    -251: "SANLK_RELEASE_OWNER",
    -260: "SANLK_RENEW_OWNER",
    -261: "SANLK_RENEW_DIFF",
    -262: "SANLK_HOSTID_BUSY",
}

# Results meaning "another host holds the lease" (acquire).
HELD_ELSEWHERE = frozenset({-243, -244, -245, -246, -247, errno.EEXIST, errno.EAGAIN})

# sanlock's host flags (SANLK_HOST_*), as upstream names them in its host status.
HOST_STATUS = {1: "unknown", 2: "free", 3: "live", 4: "fail", 5: "dead"}


class SanlockError(Exception):
    """The daemon refused or failed a call."""

    def __init__(self, call: str, code: int, reason: str) -> None:
        name = RESULT_NAMES.get(code) or errno.errorcode.get(code, str(code))
        super().__init__(f"sanlock {call} failed: {reason} ({name})")
        self.call = call
        self.errno = code
        self.reason = reason

    @property
    def temporary(self) -> bool:
        return self.errno in TEMPORARY_ERRNOS


class RegistrationLost(SanlockError):
    """The daemon closed our registration while we held leases: they are lost.

    The process can no longer prove it holds anything; upstream panics here.
    """

    def __init__(self, call: str, code: int, reason: str, leases: Iterable[str]) -> None:
        super().__init__(call, code, reason)
        self.leases = tuple(sorted(leases))

    def __str__(self) -> str:
        held = ", ".join(self.leases)
        return f"sanlock registration closed while holding {held}: {self.reason}"


@dataclass(frozen=True)
class Timeouts:
    quick: float  # answered from the daemon's memory
    storage: float  # a few I/Os by the daemon on shared storage
    acquire: float  # may wait for a stale owner's host id to expire

    @classmethod
    def for_io_timeout(cls, io_timeout: float) -> Timeouts:
        # sanlock waits host_dead_seconds = 8 * io_timeout + 60 (its watchdog fire
        # timeout) before taking a lease whose owner stopped renewing, then needs a
        # few I/Os of at most io_timeout each.
        return cls(
            quick=io_timeout + 5.0,
            storage=6 * io_timeout + 5.0,
            acquire=14 * io_timeout + 65.0,
        )


@dataclass(frozen=True)
class HostInfo:
    host_id: int
    generation: int
    timestamp: int
    io_timeout: int
    flags: int

    @property
    def status(self) -> str:
        return HOST_STATUS.get(self.flags, "unknown")


@dataclass(frozen=True)
class HeldResource:
    """A resource lease this process holds (from the daemon's memory)."""

    lockspace: str
    resource: str
    version: int  # the lease version (lver) this holder got
    disks: tuple[Disk, ...]
    flags: int

    @property
    def key(self) -> str:
        return f"{self.lockspace}:{self.resource}"


@dataclass(frozen=True)
class ResourceInfo:
    """A resource lease as written on storage."""

    lockspace: str
    resource: str
    version: int


def _host(d: dict[str, Any]) -> HostInfo:
    return HostInfo(d["host_id"], d["generation"], d["timestamp"], d["io_timeout"], d["flags"])


def _disks(disks: Sequence[Disk]) -> list[tuple[str, int]]:
    return [(str(path), int(offset)) for path, offset in disks]


class Sanlock:
    """One per process (it owns the process registration); vdsm/daemon.py makes it."""

    def __init__(
        self,
        io_timeout: int,
        *,
        concurrency: int = 4,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.io_timeout = io_timeout
        self.timeouts = timeouts or Timeouts.for_io_timeout(io_timeout)
        self._concurrency = concurrency
        self._bulkheads: dict[str, Bulkhead] = {}
        self._registration = Bulkhead("sanlock registration", concurrency, self.timeouts.quick)
        self._module: Any = None
        # Guards the registration descriptor and what is held on it; taken by worker
        # threads only (see the module docstring).
        self._fd_lock = threading.Lock()
        self._fd: int | None = None
        self._held: set[str] = set()

    # -- plumbing ------------------------------------------------------------------------

    @property
    def sanlock(self) -> Any:
        if self._module is None:
            import sanlock

            self._module = sanlock
        return self._module

    def bulkhead(self, lockspace: str) -> Bulkhead:
        bulkhead = self._bulkheads.get(lockspace)
        if bulkhead is None:
            bulkhead = Bulkhead(f"sanlock {lockspace}", self._concurrency, self.timeouts.quick)
            self._bulkheads[lockspace] = bulkhead
        return bulkhead

    def forget(self, lockspace: str) -> None:
        """Drop the bulkhead of a lockspace no longer used (calls in flight finish)."""
        self._bulkheads.pop(lockspace, None)

    def _call(self, call: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run in a worker thread: the binding call, its errors as SanlockError."""
        sanlock = self.sanlock
        try:
            return fn(*args, **kwargs)
        except sanlock.SanlockException as e:
            raise SanlockError(call, e.errno, _reason(e)) from None

    async def _run(
        self, lockspace: str | None, timeout: float, fn: Callable[..., T], *args: Any
    ) -> T:
        bulkhead = self._registration if lockspace is None else self.bulkhead(lockspace)
        return await bulkhead.run(fn, *args, timeout=timeout)

    # -- lockspaces (the daemon's, shared by every process of this host) ----------------

    async def write_lockspace(
        self,
        lockspace: str,
        path: str,
        *,
        offset: int = 0,
        max_hosts: int = 0,
        io_timeout: int | None = None,
        align: int,
        sector: int,
    ) -> None:
        def write() -> None:
            self._call(
                "write_lockspace",
                self.sanlock.write_lockspace,
                lockspace.encode(),
                str(path),
                offset=offset,
                max_hosts=max_hosts,
                iotimeout=self.io_timeout if io_timeout is None else io_timeout,
                align=align,
                sector=sector,
            )

        await self._run(lockspace, self.timeouts.storage, write)

    async def write_resource(
        self,
        lockspace: str,
        resource: str,
        disks: Sequence[Disk],
        *,
        align: int,
        sector: int,
    ) -> None:
        def write() -> None:
            self._call(
                "write_resource",
                self.sanlock.write_resource,
                lockspace.encode(),
                resource.encode(),
                _disks(disks),
                align=align,
                sector=sector,
            )

        await self._run(lockspace, self.timeouts.storage, write)

    async def add_lockspace(
        self,
        lockspace: str,
        host_id: int,
        path: str,
        *,
        offset: int = 0,
        io_timeout: int | None = None,
    ) -> None:
        """Start joining (returns at once; see inq_lockspace).  EEXIST: joined already,
        EINPROGRESS: being joined."""

        def add() -> None:
            self._call(
                "add_lockspace",
                self.sanlock.add_lockspace,
                lockspace.encode(),
                host_id,
                str(path),
                offset=offset,
                iotimeout=self.io_timeout if io_timeout is None else io_timeout,
                wait=False,
            )

        await self._run(lockspace, self.timeouts.quick, add)

    async def inq_lockspace(
        self, lockspace: str, host_id: int, path: str, *, offset: int = 0
    ) -> bool | None:
        """True: joined with host_id; None: being joined or left; False: not joined."""

        def inq() -> bool | None:
            result = self._call(
                "inq_lockspace",
                self.sanlock.inq_lockspace,
                lockspace.encode(),
                host_id,
                str(path),
                offset=offset,
            )
            return None if result is None else bool(result)

        return await self._run(lockspace, self.timeouts.quick, inq)

    async def rem_lockspace(
        self,
        lockspace: str,
        host_id: int,
        path: str,
        *,
        offset: int = 0,
        unused: bool = False,
    ) -> None:
        """Leave, waiting until done.  unused=True fails with EBUSY while a process holds
        a lease in the lockspace; otherwise the daemon kills such processes."""

        def rem() -> None:
            self._call(
                "rem_lockspace",
                self.sanlock.rem_lockspace,
                lockspace.encode(),
                host_id,
                str(path),
                offset=offset,
                unused=unused,
                wait=True,
            )

        await self._run(lockspace, self.timeouts.storage, rem)

    async def get_hosts(self, lockspace: str, host_id: int = 0) -> list[HostInfo]:
        """Hosts of a joined lockspace (one when host_id is given).  ENOENT: not joined;
        EAGAIN: joined, but no host has been checked yet."""

        def get() -> list[HostInfo]:
            hosts = self._call("get_hosts", self.sanlock.get_hosts, lockspace.encode(), host_id)
            return [_host(h) for h in hosts]

        return await self._run(lockspace, self.timeouts.quick, get)

    # -- resources on storage -----------------------------------------------------------

    async def read_resource(
        self, lockspace: str, path: str, offset: int, *, align: int, sector: int
    ) -> ResourceInfo:
        """The leader record at path:offset (`lockspace` only picks the bulkhead)."""

        def read() -> ResourceInfo:
            r = self._call(
                "read_resource",
                self.sanlock.read_resource,
                str(path),
                offset,
                align=align,
                sector=sector,
            )
            return ResourceInfo(r["lockspace"].decode(), r["resource"].decode(), r["version"])

        return await self._run(lockspace, self.timeouts.storage, read)

    async def read_resource_owners(
        self,
        lockspace: str,
        resource: str,
        disks: Sequence[Disk],
        *,
        align: int,
        sector: int,
    ) -> list[HostInfo]:
        """Hosts recorded as owners on storage (not filtered by liveness; a cleanly
        released lease has none)."""

        def read() -> list[HostInfo]:
            owners = self._call(
                "read_resource_owners",
                self.sanlock.read_resource_owners,
                lockspace.encode(),
                resource.encode(),
                _disks(disks),
                align=align,
                sector=sector,
            )
            return [_host(h) for h in owners]

        return await self._run(lockspace, self.timeouts.storage, read)

    # -- leases held by this process ---------------------------------------------------

    @property
    def registered(self) -> bool:
        return self._fd is not None

    @property
    def leases_held(self) -> frozenset[str]:
        """`lockspace:resource` of the leases this process believes it holds."""
        return frozenset(self._held)

    async def register(self) -> int:
        """The process registration descriptor (made on first use)."""
        return await self._registration.run(
            self._locked, self.timeouts.quick, self._ensure_registered
        )

    async def acquire(
        self,
        lockspace: str,
        resource: str,
        disks: Sequence[Disk],
        *,
        version: int | None = None,
    ) -> HeldResource:
        """Acquire on the process registration; returns the lease as held, with the
        lver sanlock gave it.  `version`: acquire only if the lease's current lver is
        that (SANLK_ACQUIRE_LVER otherwise).

        If the caller gives up (timeout, cancellation) and the daemon grants the lease
        afterwards, the lease is released at once: nobody would know it is held.
        """
        key = f"{lockspace}:{resource}"
        encoded = (lockspace.encode(), resource.encode(), _disks(disks))
        abandoned = threading.Event()

        def acquire() -> HeldResource:
            extra = {} if version is None else {"version": version}
            for attempt in (1, 2):
                fd = self._ensure_registered()
                try:
                    self._call("acquire", self.sanlock.acquire, *encoded, slkfd=fd, **extra)
                except SanlockError as e:
                    if e.errno in CONNECTION_LOST_ERRNOS and attempt == 1:
                        self._registration_closed("acquire", e)  # raises if leases held
                        continue
                    raise
                break
            self._held.add(key)
            if abandoned.is_set():
                log.warning("releasing %s: acquired after its caller gave up", key)
                self._call("release", self.sanlock.release, *encoded, slkfd=fd)
                self._held.discard(key)
                raise SanlockError("acquire", errno.ECANCELED, "caller gave up")
            for held in self._inquire_locked():
                if held.key == key:
                    return held
            # Granted and gone at once: someone released it for us.
            raise SanlockError("acquire", errno.ENOENT, f"{key} not held after acquire")

        timeout = self.timeouts.acquire
        try:
            return await self._run(lockspace, timeout, self._locked, timeout, acquire)
        except BaseException:
            abandoned.set()
            raise

    async def release(self, lockspace: str, resource: str, disks: Sequence[Disk]) -> None:
        """Release a lease of this process.  EPERM: not held (any more)."""
        key = f"{lockspace}:{resource}"
        encoded = (lockspace.encode(), resource.encode(), _disks(disks))

        def release() -> None:
            if self._fd is None:
                self._held.discard(key)
                raise SanlockError("release", errno.EPERM, "not registered, nothing held")
            try:
                self._call("release", self.sanlock.release, *encoded, slkfd=self._fd)
            except SanlockError as e:
                if e.errno in CONNECTION_LOST_ERRNOS:
                    self._registration_closed("release", e)
                if e.errno == errno.EPERM:
                    self._held.discard(key)
                raise
            self._held.discard(key)

        await self._run(
            lockspace, self.timeouts.storage, self._locked, self.timeouts.storage, release
        )

    async def inquire(self) -> list[HeldResource]:
        """The leases the daemon says this process holds (no storage I/O)."""
        return await self._registration.run(self._locked, self.timeouts.quick, self._inquire_locked)

    def close(self) -> None:
        """Close the registration: the daemon releases every lease held on it.

        Does not wait for a command in flight on it (that command then fails)."""
        locked = self._fd_lock.acquire(timeout=0.1)
        try:
            fd, self._fd = self._fd, None
            self._held.clear()
        finally:
            if locked:
                self._fd_lock.release()
        if fd is not None:
            os.close(fd)

    # -- helpers run in worker threads -------------------------------------------------

    def _locked(self, wait: float, fn: Callable[[], T]) -> T:
        # The caller gives up after `wait` too: a thread must not queue for the
        # descriptor longer than someone waits for its answer.
        if not self._fd_lock.acquire(timeout=wait):
            raise SanlockError("registration", errno.EBUSY, "descriptor busy with another call")
        try:
            return fn()
        finally:
            self._fd_lock.release()

    def _ensure_registered(self) -> int:
        if self._fd is None:
            self._fd = self._call("register", self.sanlock.register)
            log.info("registered with sanlock (fd %d)", self._fd)
        return self._fd

    def _inquire_locked(self) -> list[HeldResource]:
        if self._fd is None:
            return []  # never registered (or registration closed): nothing held
        try:
            resources = self._call("inquire", self.sanlock.inquire, slkfd=self._fd)
        except SanlockError as e:
            if e.errno in CONNECTION_LOST_ERRNOS:
                self._registration_closed("inquire", e)
                return []
            raise
        return [
            HeldResource(
                r["lockspace"].decode(),
                r["resource"].decode(),
                r["version"],
                tuple((path, offset) for path, offset in r["disks"]),
                r["flags"],
            )
            for r in resources
        ]

    def _registration_closed(self, call: str, error: SanlockError) -> None:
        """The daemon closed our descriptor (it died or restarted): forget it; fatal
        when leases were held on it."""
        fd, self._fd = self._fd, None
        held, self._held = self._held, set()
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
        if held:
            log.critical("sanlock closed our registration while holding %s", sorted(held))
            raise RegistrationLost(call, error.errno, error.reason, held) from None
        log.warning("sanlock registration was closed (%s); registering again", error.reason)


def _reason(e: Any) -> str:
    # SanlockException args: (errno, message, strerror)
    args = getattr(e, "args", ())
    parts = [str(a) for a in args[1:] if a]
    return ": ".join(parts) or str(e)

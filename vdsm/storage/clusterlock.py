"""The cluster lock of one storage domain, on sanlock (domain versions 3, 4 and 5).

Two things live on the domain's storage (contract §5):

- the lockspace, named after the domain (sdUUID), of delta leases on `dom_md/ids` at
  offset 0: a host joins it with its host id and renews its delta lease from then on;
- the SDM resource: a paxos lease named `SDM` in that lockspace, on `dom_md/leases` at
  1 * alignment.  The SPM holds it on the master domain; its version (lver) grows by one
  with every acquisition.

Joining takes a while (about 3 s with io_timeout 1, 20-30 s with the default 10, minutes
after an unclean stop), so `join` only starts it and `joined` / `wait_joined` follow it.

The SDM lease is acquired on the process registration (`Sanlock`): if the process dies,
the daemon releases it.  `sdm_owner` reads who holds it from storage the way upstream's
getSpmStatus does; `inquire_sdm` asks the daemon what this process holds, for the lease
watchdog (vdsm.storage.spmwatchdog).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from vdsm import errors
from vdsm.system.blocking import BlockingCallTimeout
from vdsm.system.sanlock import (
    HELD_ELSEWHERE,
    Disk,
    HostInfo,
    RegistrationLost,
    Sanlock,
    SanlockError,
)

log = logging.getLogger("vdsm.storage.clusterlock")

SDM_RESOURCE = "SDM"
SDM_SLOT = 1  # the SDM lease sits at SDM_SLOT * alignment in `leases`
LOCKSPACE_OFFSET = 0  # the delta leases start at the beginning of `ids`

SPM_ID_FREE = -1
LVER_INVALID = -1

# Host status words (contract §5); sanlock's flags map to the first five.
HOST_LIVE = "live"
HOST_FAIL = "fail"
HOST_DEAD = "dead"
HOST_FREE = "free"
HOST_UNKNOWN = "unknown"
HOST_UNAVAILABLE = "unavailable"  # we cannot tell: not joined, or the call failed

# sanlock's valid (sector size, alignment) pairs.
VALID_GEOMETRY = {
    512: (1024 * 1024,),
    4096: (1024 * 1024, 2 * 1024 * 1024, 4 * 1024 * 1024, 8 * 1024 * 1024),
}

JOIN_POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class SdmInquiry:
    """What the daemon says this process holds of the SDM lease."""

    held: bool
    lver: int | None = None
    disks: tuple[Disk, ...] = ()


class DomainLock:
    def __init__(
        self,
        sanlock: Sanlock,
        sd_uuid: str,
        ids_path: Path,
        leases_path: Path,
        *,
        alignment: int,
        block_size: int,
        io_timeout: int,
    ) -> None:
        if alignment not in VALID_GEOMETRY.get(block_size, ()):
            raise ValueError(f"sanlock cannot use block size {block_size} with {alignment=}")
        self._sanlock = sanlock
        self.sd_uuid = sd_uuid
        self.ids_path = Path(ids_path)
        self.leases_path = Path(leases_path)
        self.alignment = alignment
        self.block_size = block_size
        self.io_timeout = io_timeout
        self._join_started: float | None = None
        self._joined_host: int | None = None  # the host id last seen joined

    @property
    def sdm_disk(self) -> Disk:
        return (str(self.leases_path), SDM_SLOT * self.alignment)

    def __repr__(self) -> str:
        return f"<DomainLock {self.sd_uuid} ids={self.ids_path} leases={self.leases_path}>"

    # -- creation ----------------------------------------------------------------------

    async def format(self) -> None:
        """Write the lockspace on `ids` and the SDM resource on `leases`, as at domain
        creation (overwrites whatever was there)."""
        log.info(
            "formatting sanlock areas of domain %s (ids=%s leases=%s alignment=%d "
            "block_size=%d io_timeout=%d)",
            self.sd_uuid,
            self.ids_path,
            self.leases_path,
            self.alignment,
            self.block_size,
            self.io_timeout,
        )
        geometry = {"align": self.alignment, "sector": self.block_size}
        try:
            await self._sanlock.write_lockspace(
                self.sd_uuid,
                str(self.ids_path),
                offset=LOCKSPACE_OFFSET,
                io_timeout=self.io_timeout,
                **geometry,
            )
            await self._sanlock.write_resource(
                self.sd_uuid, SDM_RESOURCE, [self.sdm_disk], **geometry
            )
        except (SanlockError, BlockingCallTimeout) as e:
            raise errors.ClusterLockInitError(self.sd_uuid, str(e)) from e

    async def format_volume_lease(self, vol_uuid: str, path: Path, offset: int = 0) -> None:
        """Write a volume's lease: a resource named after the volume in this domain's
        lockspace (file domains: `<vol>.lease` at offset 0)."""
        geometry = {"align": self.alignment, "sector": self.block_size}
        try:
            await self._sanlock.write_resource(
                self.sd_uuid, vol_uuid, [(str(path), offset)], **geometry
            )
        except (SanlockError, BlockingCallTimeout) as e:
            raise errors.ClusterLockInitError(self.sd_uuid, str(e)) from e

    # -- host id (lockspace) ------------------------------------------------------------

    async def join(self, host_id: int) -> None:
        """Start joining the lockspace with host_id; returns at once.  Joining (or being
        joined) already is fine."""
        log.info("joining lockspace %s with host id %d", self.sd_uuid, host_id)
        if self._join_started is None:
            self._join_started = time.monotonic()
        try:
            await self._sanlock.add_lockspace(
                self.sd_uuid,
                host_id,
                str(self.ids_path),
                offset=LOCKSPACE_OFFSET,
                io_timeout=self.io_timeout,
            )
        except SanlockError as e:
            if e.errno == errno.EINPROGRESS:
                log.debug("lockspace %s is being joined already", self.sd_uuid)
                return
            if e.errno == errno.EEXIST:
                log.info("lockspace %s joined already", self.sd_uuid)
                return
            self._join_started = None
            raise errors.AcquireHostIdFailure(self.sd_uuid, str(e)) from e
        except BlockingCallTimeout as e:
            self._join_started = None
            raise errors.AcquireHostIdFailure(self.sd_uuid, str(e)) from e

    async def joined(self, host_id: int) -> bool | None:
        """True: joined with host_id; None: joining (or leaving); False: not joined.

        Raises BlockingCallTimeout when the daemon does not answer in time.
        """
        try:
            state = await self._sanlock.inq_lockspace(
                self.sd_uuid, host_id, str(self.ids_path), offset=LOCKSPACE_OFFSET
            )
        except SanlockError as e:
            log.debug("cannot inquire lockspace %s: %s", self.sd_uuid, e)
            state = False
        if state is True:
            if self._join_started is not None:
                log.info(
                    "host id %d of lockspace %s acquired in %.1f s",
                    host_id,
                    self.sd_uuid,
                    time.monotonic() - self._join_started,
                )
                self._join_started = None
            self._joined_host = host_id
        elif state is False and self._joined_host == host_id:
            # sanlock leaves a lockspace it could not renew (storage unreachable)
            log.warning("host id %d of lockspace %s was lost", host_id, self.sd_uuid)
            self._joined_host = None
        return state

    async def wait_joined(self, host_id: int, timeout: float) -> None:
        """Wait until joined; AcquireHostIdFailure when the join fails or takes longer
        than timeout (upstream waits up to 180 s)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = await self.joined(host_id)
            except BlockingCallTimeout as e:
                raise errors.AcquireHostIdFailure(self.sd_uuid, str(e)) from e
            if state is True:
                return
            if state is False:
                raise errors.AcquireHostIdFailure(
                    self.sd_uuid, f"host id {host_id} is not joined (join failed or not started)"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.AcquireHostIdFailure(
                    self.sd_uuid, f"host id {host_id} not acquired within {timeout:g} s"
                )
            await asyncio.sleep(min(JOIN_POLL_INTERVAL, remaining))

    async def leave(self, host_id: int, unused: bool = False) -> None:
        """Leave the lockspace and wait until done; not being joined is fine.

        unused=True refuses (ReleaseHostIdFailure) while a process holds a lease in the
        lockspace; otherwise sanlock kills the processes holding leases in it.
        """
        log.info("leaving lockspace %s (host id %d, unused=%s)", self.sd_uuid, host_id, unused)
        self._joined_host = None
        self._join_started = None
        try:
            await self._sanlock.rem_lockspace(
                self.sd_uuid,
                host_id,
                str(self.ids_path),
                offset=LOCKSPACE_OFFSET,
                unused=unused,
            )
        except SanlockError as e:
            if e.errno == errno.ENOENT:
                return
            raise errors.ReleaseHostIdFailure(self.sd_uuid, str(e)) from e
        except BlockingCallTimeout as e:
            raise errors.ReleaseHostIdFailure(self.sd_uuid, str(e)) from e

    async def host_status(self, host_id: int) -> str:
        """live/fail/dead/free/unknown as sanlock sees host_id, or unavailable."""
        try:
            hosts = await self._sanlock.get_hosts(self.sd_uuid, host_id)
        except (SanlockError, BlockingCallTimeout) as e:
            log.debug("no status of host %d in lockspace %s: %s", host_id, self.sd_uuid, e)
            return HOST_UNAVAILABLE
        return hosts[0].status if hosts else HOST_UNAVAILABLE

    # -- the SDM lease ------------------------------------------------------------------

    async def acquire_sdm(self) -> int:
        """Acquire the SDM lease for this process; returns its new lver.

        AcquireLockFailure (651) when another process or host holds it (or on any other
        sanlock failure), AcquireHostIdFailure (661) when the lockspace is not joined.
        RegistrationLost (fatal) passes through.
        """
        log.info("acquiring the SDM lease of domain %s", self.sd_uuid)
        try:
            held = await self._sanlock.acquire(self.sd_uuid, SDM_RESOURCE, [self.sdm_disk])
        except RegistrationLost:
            raise
        except SanlockError as e:
            if e.errno == errno.ENOSPC:  # sanlock's answer for an unknown lockspace
                raise errors.AcquireHostIdFailure(
                    self.sd_uuid, "lockspace not joined, cannot acquire SDM"
                ) from e
            why = "held by another host or process" if e.errno in HELD_ELSEWHERE else "failed"
            raise errors.AcquireLockFailure(
                self.sd_uuid, e.errno, f"Cannot acquire SDM lease: {why}", str(e)
            ) from e
        except BlockingCallTimeout as e:
            raise errors.AcquireLockFailure(self.sd_uuid, None, "Cannot acquire SDM", str(e)) from e
        log.info("acquired the SDM lease of domain %s, lver %d", self.sd_uuid, held.version)
        return held.version

    async def release_sdm(self) -> None:
        """Release the SDM lease.  StorageError when sanlock refuses, e.g. the lease was
        not held any more (upstream's ReleaseLockFailure, code 660, is not in vdsm.errors
        yet).  RegistrationLost (fatal) passes through."""
        log.info("releasing the SDM lease of domain %s", self.sd_uuid)
        try:
            await self._sanlock.release(self.sd_uuid, SDM_RESOURCE, [self.sdm_disk])
        except RegistrationLost:
            raise
        except (SanlockError, BlockingCallTimeout) as e:
            raise errors.StorageError(self.sd_uuid, f"Cannot release SDM lease: {e}") from e

    async def sdm_owner(self) -> tuple[int, int]:
        """(lver, owner host id) of the SDM lease as on storage, like upstream's
        getSpmStatus (clusterlock inspect + the pool's `or -1`):

        - no owner recorded (never acquired, or cleanly released): (-1, -1);
        - the owner's host is dead or free in the lockspace, or the owner record is of
          an older generation of that host: (lver, -1);
        - otherwise (live, failing, unknown, or status not known yet): (lver, owner).

        GeneralException (100) when our lockspace is not joined yet, so the owner's
        liveness cannot be told (upstream's TemporaryFailure, which reaches the engine as
        a general error); StorageError for other failures.
        """
        offset = SDM_SLOT * self.alignment
        geometry = {"align": self.alignment, "sector": self.block_size}
        try:
            info = await self._sanlock.read_resource(
                self.sd_uuid, str(self.leases_path), offset, **geometry
            )
            if info.resource != SDM_RESOURCE or info.lockspace != self.sd_uuid:
                raise errors.StorageError(
                    self.sd_uuid,
                    f"lease at {self.leases_path}:{offset} is {info.lockspace}:{info.resource}",
                )
            owners = await self._sanlock.read_resource_owners(
                self.sd_uuid, SDM_RESOURCE, [self.sdm_disk], **geometry
            )
        except (SanlockError, BlockingCallTimeout) as e:
            raise errors.StorageError(self.sd_uuid, f"Cannot read SDM lease: {e}") from e
        if len(owners) > 1:
            raise errors.StorageError(self.sd_uuid, f"SDM lease has several owners: {owners}")
        lver = info.version if info.version > 0 else LVER_INVALID
        if not owners:
            return LVER_INVALID, SPM_ID_FREE
        owner = owners[0]
        host = await self._owner_host(owner)
        if host is None:  # status not known yet: it may well hold the lease
            return lver, owner.host_id
        if owner.generation != host.generation:
            log.debug("SDM owner record %s is of an older generation than %s", owner, host)
            return lver, SPM_ID_FREE
        if host.status in (HOST_DEAD, HOST_FREE):
            log.debug("SDM owner %s is %s: the lease is free", owner.host_id, host.status)
            return lver, SPM_ID_FREE
        return lver, owner.host_id

    async def _owner_host(self, owner: HostInfo) -> HostInfo | None:
        try:
            hosts = await self._sanlock.get_hosts(self.sd_uuid, owner.host_id)
        except SanlockError as e:
            if e.errno == errno.ENOENT:
                raise errors.GeneralException(
                    self.sd_uuid, f"lockspace not joined yet, cannot inspect SDM: {e}"
                ) from e
            if e.errno == errno.EAGAIN:
                return None
            raise errors.StorageError(self.sd_uuid, f"Cannot inspect SDM owner: {e}") from e
        except BlockingCallTimeout as e:
            raise errors.StorageError(self.sd_uuid, f"Cannot inspect SDM owner: {e}") from e
        return hosts[0] if hosts else None

    async def inquire_sdm(self) -> SdmInquiry:
        """Whether this process holds the SDM lease, per the daemon (no storage I/O).

        Raises SanlockError (`.temporary` tells EBUSY & co.), BlockingCallTimeout, or
        RegistrationLost: the watchdog decides what they mean.
        """
        for held in await self._sanlock.inquire():
            if held.lockspace == self.sd_uuid and held.resource == SDM_RESOURCE:
                return SdmInquiry(True, held.version, held.disks)
        return SdmInquiry(False)

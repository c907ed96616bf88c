"""Domain monitoring: one asyncio task per monitored domain, reported by repoStats.

Each check, every `interval` seconds:
- reads the first 4 KiB of the domain's metadata with direct I/O in a child process
  (vdsm.storage.probe), so storage that hangs blocks only that child;
- reports the domain's version and usage as last read; every `refresh_interval`
  seconds (upstream's repo_stats_cache_refresh_timeout, 5 minutes) it re-reads them
  from storage first (in the domain's own bulkhead, with a timeout).  In between, a
  block domain's VG is read again only after this host changed it: a check of an idle
  domain runs no LVM command, and the SPM's LV report survives the checks;
- joins the domain's sanlock lockspace with the host id when asked to, and reports
  whether the host id is acquired.

Every step has a deadline shorter than the interval: a domain whose storage hangs is
reported invalid at its next check, and since every domain has its own task, child
processes and bulkhead, it never delays another domain, the RPC edge or the events.
Upstream's wire shape (hsm._getRepoStats): code (the storage error code, 200 for other
errors), lastCheck ("%.1f" seconds ago), delay (seconds, as a string), valid, version,
acquired, actual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from vdsm import errors

log = logging.getLogger("vdsm.storage.monitor")

# Leaving a lockspace takes about 2 x sanlock's io_timeout; beyond this the storage is
# not answering and sanlock finishes the release on its own.
HOST_ID_RELEASE_TIMEOUT = 30.0


class HostIdLock(Protocol):
    async def join(self, host_id: int) -> None: ...

    async def joined(self, host_id: int) -> bool | None: ...

    async def leave(self, host_id: int, unused: bool = False) -> None: ...


class MonitoredDomain(Protocol):
    """What the monitor needs from a storage domain."""

    sd_uuid: str

    @property
    def metadata_path(self) -> Path: ...

    @property
    def lock(self) -> HostIdLock: ...

    @property
    def metadata(self) -> Any:
        """As last read by refresh() (has `version`)."""
        ...

    async def refresh(self) -> int:
        """Re-reads the metadata; answers the domain version."""
        ...

    async def usage(self) -> dict[str, Any]:
        """StorageDomain.getStats's figures (disktotal, diskfree, and the VG metadata
        area's mdasize, mdafree, mdavalid, mdathreshold), without re-reading what this
        host has not changed since the last refresh()."""
        ...


# Produces the domain object of a UUID (raises errors.StorageDomainDoesNotExist).
DomainProducer = Callable[[str], Awaitable[MonitoredDomain]]
ReadDelay = Callable[[Path, float], Coroutine[Any, Any, float]]


@dataclass(frozen=True)
class DomainStatus:
    error: BaseException | None = None
    checked_at: float = field(default_factory=time.time)
    read_delay: float = 0.0
    version: int = -1
    acquired: bool = False
    # False until one full check has finished: the engine ignores non-actual results.
    actual: bool = False
    disk_total: int | None = None
    disk_free: int | None = None
    # The VG metadata area of block domains (file domains: always valid, sizes 0).
    mda_valid: bool = True
    mda_size: int = 0
    mda_free: int = 0

    @property
    def valid(self) -> bool:
        return self.error is None

    @property
    def code(self) -> int:
        if self.error is None:
            return 0
        if isinstance(self.error, errors.StorageError):
            return self.error.code
        return errors.StorageError.code

    def wire(self, now: float) -> dict[str, Any]:
        return {
            "code": self.code,
            "lastCheck": f"{max(0.0, now - self.checked_at):.1f}",
            "delay": str(self.read_delay),
            "valid": self.valid,
            "version": self.version,
            "acquired": self.acquired,
            "actual": self.actual,
        }


class DomainMonitor:
    def __init__(
        self,
        sd_uuid: str,
        host_id: int | None,
        *,
        produce: DomainProducer,
        read_delay: ReadDelay,
        interval: float,
        pool_domain: bool,
        refresh_interval: float = 0.0,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.sd_uuid = sd_uuid
        self.host_id = host_id
        self.pool_domain = pool_domain
        self.interval = interval
        self.refresh_interval = refresh_interval
        self._refreshed_at: float | None = None
        self.status = DomainStatus()
        self._produce = produce
        self._read_delay = read_delay
        self._on_change = on_change
        self._domain: MonitoredDomain | None = None
        # The host id is ours to give back: this monitor joined the lockspace, or found
        # it joined (by this daemon before a restart).
        self._holds_host_id = False
        self._probe: asyncio.Task[float] | None = None
        self.stopping = False
        # False when the daemon shuts down: VMs holding leases in the lockspace keep
        # running, and the next daemon finds the host id still acquired.
        self.release_host_id = True

    async def run(self) -> None:
        log.info("monitoring domain %s (host id %s)", self.sd_uuid, self.host_id)
        try:
            while not self.stopping:
                started = time.monotonic()
                await self.check()
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            if self.release_host_id:
                await self._release_host_id()
            log.info("stopped monitoring domain %s", self.sd_uuid)

    async def check(self) -> None:
        """One check; never takes longer than the interval, never raises."""
        deadline = self.interval * 0.9
        status = DomainStatus(read_delay=self.status.read_delay, version=self.status.version)
        try:
            async with asyncio.timeout(deadline):
                domain = await self._domain_object()
                # The probe gives up before the check does, so a hung read is reported
                # as the probe's own timeout.
                probe_timeout = self.interval * 0.8
                status = replace(status, read_delay=await self._check_path(domain, probe_timeout))
                status = replace(status, version=await self._version(domain))
                stats = await domain.usage()
                status = replace(
                    status,
                    disk_total=int(stats["disktotal"]),
                    disk_free=int(stats["diskfree"]),
                    mda_valid=bool(stats["mdavalid"]),
                    mda_size=int(stats["mdasize"]),
                    mda_free=int(stats["mdafree"]),
                )
                status = replace(status, acquired=await self._host_id(domain))
        except TimeoutError:
            status = replace(status, error=errors.StorageDomainAccessError(self.sd_uuid))
            log.warning("domain %s did not answer within %.1f s", self.sd_uuid, deadline)
        except errors.VdsmError as e:
            status = replace(status, error=e)
            log.warning("domain %s check failed: %s", self.sd_uuid, e)
        except Exception as e:
            status = replace(status, error=e)
            log.exception("domain %s check failed", self.sd_uuid)
        self._update(replace(status, checked_at=time.time(), actual=True))

    async def _version(self, domain: MonitoredDomain) -> int:
        """Re-reads the metadata when the last read is older than refresh_interval
        (another host may have changed it); else answers it as last read."""
        now = time.monotonic()
        if self._refreshed_at is not None and now - self._refreshed_at < self.refresh_interval:
            return domain.metadata.version
        version = await domain.refresh()
        self._refreshed_at = now
        return version

    async def _domain_object(self) -> MonitoredDomain:
        if self._domain is None:
            self._domain = await self._produce(self.sd_uuid)
        return self._domain

    async def _check_path(self, domain: MonitoredDomain, timeout: float) -> float:
        # A probe stuck on hung storage is not replaced by another one: the domain
        # stays invalid until the stuck child finally returns.
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._read_delay(domain.metadata_path, timeout))
            # Outlived by a check deadline, its outcome would go unread otherwise.
            self._probe.add_done_callback(_retrieve)
        try:
            return await asyncio.shield(self._probe)
        except (errors.VdsmError, asyncio.CancelledError, TimeoutError):
            raise
        except Exception as e:
            # The probe's own failures (a timeout, an I/O error): the domain is not
            # readable, whatever the cause.
            log.warning("domain %s: read check failed: %s", self.sd_uuid, e)
            raise errors.StorageDomainAccessError(self.sd_uuid) from e

    async def _host_id(self, domain: MonitoredDomain) -> bool:
        if self.host_id is None:
            return False
        joined = await domain.lock.joined(self.host_id)
        if joined is False and not self.stopping:
            # Not joined yet, or lost (sanlock drops a lockspace it cannot renew): join
            # again, as upstream does, so the host id comes back with the storage.
            log.info("joining the lockspace of %s as host %d", self.sd_uuid, self.host_id)
            self._holds_host_id = True
            await domain.lock.join(self.host_id)
            joined = await domain.lock.joined(self.host_id)
        if joined is True:
            self._holds_host_id = True
        return joined is True

    async def _release_host_id(self) -> None:
        domain = self._domain
        if domain is None or self.host_id is None:
            return
        try:
            async with asyncio.timeout(HOST_ID_RELEASE_TIMEOUT):
                # Never confirmed by a check (sanlock was busy with the lockspace, e.g.
                # renewing it after storage hung), it may still be held: a previous
                # daemon's join is ours too.
                if not self._holds_host_id and await domain.lock.joined(self.host_id) is False:
                    return
                # unused: sanlock refuses while a process (a VM) holds a lease in the
                # lockspace, instead of killing it.
                await domain.lock.leave(self.host_id, unused=True)
            self._holds_host_id = False
        except errors.ReleaseHostIdFailure as e:
            log.warning("host id %d of %s kept: %s", self.host_id, self.sd_uuid, e)
        except Exception:
            log.exception("cannot release host id %d of %s", self.host_id, self.sd_uuid)

    def _update(self, status: DomainStatus) -> None:
        changed = not self.status.actual or self.status.valid != status.valid
        self.status = status
        if changed:
            log.info("domain %s became %s", self.sd_uuid, "VALID" if status.valid else "INVALID")
            if self._on_change is not None:
                self._on_change(self.sd_uuid, status.valid)


def _retrieve(task: asyncio.Task[float]) -> None:
    if not task.cancelled():
        task.exception()


class MonitorRegistry:
    """All domain monitors of this host: pool domains and externally requested ones.

    `run()` lives in the daemon's TaskGroup and owns the monitors' tasks.
    """

    def __init__(
        self,
        *,
        produce: DomainProducer,
        read_delay: ReadDelay,
        interval: float,
        refresh_interval: float = 0.0,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._produce = produce
        self._read_delay = read_delay
        self.interval = interval
        self.refresh_interval = refresh_interval
        self._on_change = on_change
        self.monitors: dict[str, DomainMonitor] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._started = asyncio.Event()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._started.set()
            try:
                await asyncio.Event().wait()
            finally:
                self._group = None

    def start(self, sd_uuid: str, host_id: int | None, *, pool_domain: bool) -> None:
        if sd_uuid in self.monitors:
            monitor = self.monitors[sd_uuid]
            monitor.pool_domain = monitor.pool_domain or pool_domain
            return
        monitor = DomainMonitor(
            sd_uuid,
            host_id,
            produce=self._produce,
            read_delay=self._read_delay,
            interval=self.interval,
            refresh_interval=self.refresh_interval,
            pool_domain=pool_domain,
            on_change=self._on_change,
        )
        self.monitors[sd_uuid] = monitor
        spawn = self._group.create_task if self._group is not None else asyncio.create_task
        task = spawn(monitor.run(), name=f"monitor {sd_uuid}")
        self._tasks[sd_uuid] = task
        task.add_done_callback(lambda _: self._tasks.pop(sd_uuid, None))

    async def stop(self, sd_uuids: list[str], *, release_host_ids: bool = True) -> None:
        """Stop monitoring; the host ids are given back unless release_host_ids is False
        (the daemon shuts down) or a VM holds a lease in the lockspace."""
        tasks = []
        for sd_uuid in sd_uuids:
            monitor = self.monitors.pop(sd_uuid, None)
            if monitor is not None:
                monitor.stopping = True
                monitor.release_host_id = release_host_ids
            task = self._tasks.pop(sd_uuid, None)
            if task is not None:
                tasks.append(task)
        for task in tasks:
            # A cancellation can be lost in a race with a completing call: insist.
            while not task.done():
                task.cancel()
                # Long enough for the monitor to leave its lockspace.
                await asyncio.wait({task}, timeout=HOST_ID_RELEASE_TIMEOUT + 5.0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()

    @property
    def pool_domains(self) -> set[str]:
        return {sd for sd, m in self.monitors.items() if m.pool_domain}

    def is_monitoring(self, sd_uuid: str) -> bool:
        return sd_uuid in self.monitors

    def stats(self, sd_uuids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        now = time.time()
        wanted = set(sd_uuids or ())
        return {
            sd: m.status.wire(now) for sd, m in self.monitors.items() if not wanted or sd in wanted
        }

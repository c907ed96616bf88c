"""The Storage Pool Manager role of the connected pool (contract §5).

spmStart answers a task id at once; the task contends for the master domain's SDM
lease through sanlock (Contend), records the new lease version, creates the master tree,
reloads and recovers the persisted SPM tasks, and only then becomes SPM.

While SPM, a watchdog inquires the held lease every `[spm] watchdog_interval` seconds.
When the lease is lost or moved the role drops to Free at once (every SPM write checks
the role right before writing, so nothing more is written) and then the daemon exits
the way upstream "panics": the service manager restarts it and the engine elects
another SPM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import mailbox
from vdsm.storage.pool import StoragePool
from vdsm.storage.repository import DOMAIN_MD_DIR

log = logging.getLogger("vdsm.storage.spm")

FREE = "Free"
CONTEND = "Contend"
SPM = "SPM"
JOIN_TIMEOUT = 180.0  # upstream waits this long for the host id before acquiring


class Task(Protocol):
    id: str


class Tasks(Protocol):
    def create(
        self,
        verb: str,
        job: Callable[[Any], Awaitable[Any]],
        *,
        tag: str = "",
        persist_dir: Path | None = None,
        first_recovery: tuple[str, str, str, list[str]] | None = None,
        task_id: str | None = None,
    ) -> Any: ...

    def unfinished(self) -> list[Any]: ...

    async def load_and_recover(self, tasks_dir: Path, rollbacks: Any = None) -> list[Any]: ...

    def unload(self, tag: str) -> Any: ...

    async def shutdown(self) -> None: ...


class Watchdog(Protocol):
    async def run(self) -> None: ...


# Builds the lease watchdog: (pool, expected lver, on_lost) -> watchdog.
WatchdogFactory = Callable[[StoragePool, int, Callable[[str], Awaitable[None]]], Watchdog]
Panic = Callable[[str], None]


class Spm:
    def __init__(
        self,
        pool: StoragePool,
        tasks: Tasks,
        *,
        rollbacks: Any,
        watchdog: WatchdogFactory | None,
        panic: Panic,
        mailbox: mailbox.MailboxSettings | None = None,
    ) -> None:
        self.pool = pool
        self.tasks = tasks
        self.rollbacks = rollbacks
        self._watchdog_factory = watchdog
        self._panic = panic
        self.role = FREE
        self.lver = sc.LVER_INVALID
        self._holding = False  # the SDM lease is ours (acquired, not yet released)
        self._watchdog: asyncio.Task[None] | None = None
        self._mailbox_settings = mailbox
        self._mailbox: asyncio.Task[None] | None = None
        self._serial = asyncio.Lock()

    def ensure_spm(self) -> None:
        if self.role != SPM:
            raise errors.SpmStatusError(self.pool.sp_uuid)

    # -- start ------------------------------------------------------------------------

    def start(
        self,
        prev_id: int,
        prev_lver: int,
        dom_version: int | None,
        max_host_id: int = sc.HOSTS_DEFAULT,
    ) -> str:
        """Schedules the contention; answers the task id at once."""
        if self.role == SPM:
            raise errors.IsSpm(self.pool.sp_uuid)
        if self.role == CONTEND:
            raise errors.MiscOperationInProgress(f"spm start {self.pool.sp_uuid}")
        if dom_version is not None and dom_version not in (3, 4, 5):
            raise errors.UnsupportedDomainVersion(dom_version)
        if not 1 <= max_host_id <= sc.HOSTS_MAX:
            raise errors.InvalidParameterException("maxHostID", max_host_id)

        async def job(task: Any) -> None:
            await self._start(prev_id, prev_lver, dom_version, max_host_id)

        task = self.tasks.create("spmStart", job, tag="hsm")
        return str(task.id)

    async def _start(
        self, prev_id: int, prev_lver: int, dom_version: int | None, max_host_id: int
    ) -> None:
        async with self._serial:
            if self.role == SPM:
                return
            master = self.pool.master
            await master.refresh()
            version = master.metadata.version
            if dom_version is not None and version > dom_version:
                raise errors.CurrentVersionTooAdvancedError(master.sd_uuid)
            old_lver, old_id = await master.lock.sdm_owner()
            if (old_lver, old_id) != (prev_lver, prev_id):
                log.info(
                    "SPM of pool %s: expected id %s lver %s, sanlock says id %s lver %s",
                    self.pool.sp_uuid,
                    prev_id,
                    prev_lver,
                    old_id,
                    old_lver,
                )
            self.role = CONTEND
            log.info(
                "contending for SPM of pool %s as host %d", self.pool.sp_uuid, self.pool.host_id
            )
            try:
                if await master.lock.joined(self.pool.host_id) is not True:
                    await master.lock.join(self.pool.host_id)
                await master.lock.wait_joined(self.pool.host_id, JOIN_TIMEOUT)
                self.lver = await master.lock.acquire_sdm()
                self._holding = True
            except BaseException:
                self.role = FREE
                raise
            try:
                await self.pool.backend.set_spm_status(lver=self.lver, spm_id=self.pool.host_id)
                await master.create_master_tree()
                self.role = SPM
                self._start_watchdog()
                self._start_mailbox(max_host_id)
                recovered = await self.tasks.load_and_recover(master.tasks_dir, self.rollbacks)
                await self._remove_orphans()
                log.info(
                    "host %d is SPM of pool %s (lver %d), %d persisted tasks reloaded",
                    self.pool.host_id,
                    self.pool.sp_uuid,
                    self.lver,
                    len(recovered),
                )
            except BaseException:
                log.exception("SPM start of pool %s failed, releasing", self.pool.sp_uuid)
                await self._stop(force=True)
                raise

    async def _remove_orphans(self) -> None:
        """Volumes whose creation no task will finish or undo (the daemon was killed
        before the task was saved) are removed, as upstream's SPM start does with LVs
        left OVIRT_VOL_INITIALIZING."""
        live = {str(t.id) for t in self.tasks.unfinished()}
        for sd_uuid in self.pool.domains(active_only=True) or [self.pool.master.sd_uuid]:
            try:
                domain = await self.pool.domain_source.produce(sd_uuid)
                removed = await domain.remove_orphans(live)
            except errors.VdsmError as e:
                log.warning("cannot look for orphan volumes in %s: %s", sd_uuid, e)
                continue
            if removed:
                log.info("removed orphan volumes of %s: %s", sd_uuid, ", ".join(removed))

    # -- stop -------------------------------------------------------------------------

    async def stop(self) -> None:
        async with self._serial:
            await self._stop(force=False)

    async def stop_for_shutdown(self) -> None:
        """The daemon stops: the lease goes back whatever runs; tasks resume elsewhere."""
        async with self._serial:
            await self._stop(force=True)

    async def _stop(self, force: bool) -> None:
        if not force and self.role == FREE:
            return
        unfinished = [t for t in self.tasks.unfinished() if getattr(t, "tag", "") == "spm"]
        if unfinished and not force:
            raise errors.SpmStopError(self.pool.sp_uuid, [t.id for t in unfinished])
        await self._stop_watchdog()
        await mailbox.stop(self._mailbox)
        self._mailbox = None
        was_spm = self.role == SPM
        self.role = FREE
        self.tasks.unload("spm")
        if was_spm:
            with contextlib.suppress(errors.VdsmError):
                await self.pool.backend.set_spm_status(spm_id=sc.SPM_ID_FREE)
        try:
            # block masters: the master file system is mounted only on the SPM
            await self.pool.master.release_master_tree()
        except Exception as e:
            log.error("cannot release the master tree of pool %s: %s", self.pool.sp_uuid, e)
        if not self._holding:
            return
        try:
            await self.pool.master.lock.release_sdm()
            self._holding = False
        except errors.VdsmError as e:
            log.error("cannot release the SDM lease of pool %s: %s", self.pool.sp_uuid, e)
            self._panic(f"cannot release the SDM lease: {e}")
        log.info("host %d is no longer SPM of pool %s", self.pool.host_id, self.pool.sp_uuid)

    # -- status -----------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """getSpmStatus: our role, and the lease version and owner sanlock reports."""
        lver, owner = await self.pool.master.lock.sdm_owner()
        return {"spmStatus": self.role, "spmLver": lver, "spmId": owner}

    # -- the mailbox ------------------------------------------------------------------

    def _start_mailbox(self, max_host_id: int) -> None:
        master = self.pool.master
        if self._mailbox_settings is None or not master.supports_mailbox:
            return
        settings = self._mailbox_settings
        md_dir = master.path / DOMAIN_MD_DIR
        monitor = mailbox.SpmMailbox(
            md_dir / "inbox",
            md_dir / "outbox",
            max_host_id + 1,  # mailbox 0 is the event block, host ids start at 1
            self._extend_volume,
            monitor_interval=settings.monitor_interval,
            events_interval=settings.events_interval,
            io_timeout=settings.io_timeout,
        )
        self._mailbox = asyncio.create_task(monitor.run(), name=f"spm mailbox {self.pool.sp_uuid}")
        self._mailbox.add_done_callback(self._mailbox_ended)

    def _mailbox_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("SPM mailbox of pool %s stopped: %r", self.pool.sp_uuid, task.exception())

    async def _extend_volume(self, sd_uuid: str, vol_uuid: str, size: int) -> None:
        """A host's extend request: only volumes of the pool's domains, only while SPM."""
        if sd_uuid not in self.pool.domains():
            raise errors.StorageDomainNotInPool(sd_uuid, self.pool.sp_uuid)
        domain = await self.pool.domain_source.produce(sd_uuid)
        self.ensure_spm()
        await domain.extend_volume(vol_uuid, size)

    # -- the lease watchdog -----------------------------------------------------------

    def _start_watchdog(self) -> None:
        if self._watchdog_factory is None:
            return
        watchdog = self._watchdog_factory(self.pool, self.lver, self._lease_lost)
        self._watchdog = asyncio.create_task(
            watchdog.run(), name=f"spm watchdog {self.pool.sp_uuid}"
        )

    async def _stop_watchdog(self) -> None:
        task, self._watchdog = self._watchdog, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _lease_lost(self, reason: str) -> None:
        # Fence first: from here on every SPM write refuses.
        self.role = FREE
        log.critical("SPM lease of pool %s lost: %s", self.pool.sp_uuid, reason)
        self._panic(f"SPM lease lost: {reason}")

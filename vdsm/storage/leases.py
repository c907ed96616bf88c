"""External (VM) leases in a domain's xleases volume (contract §4.5): Lease.* verbs.

Creating and deleting a lease are SPM tasks, persisted on the master domain like every
SPM task: the rollback of a create is recorded before anything is written, so after a
crash the next SPM removes a half-created lease.  A lease is a record in the xleases
index plus a sanlock resource at (3 + record number) x alignment in the same volume.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from vdsm import errors
from vdsm.storage import xlease
from vdsm.storage.domain import StorageDomain
from vdsm.storage.service import StorageService
from vdsm.system.blocking import BlockingCallTimeout, Bulkhead

log = logging.getLogger("vdsm.storage.leases")

ROLLBACK_MODULE = "xlease"
ROLLBACK_REMOVE = "remove_lease"


class Leases:
    def __init__(self, storage: StorageService, sanlock: Any, *, timeout: float) -> None:
        self.storage = storage
        self.sanlock = sanlock
        self.timeout = timeout
        # One xleases change at a time per domain, in a single-slot bulkhead: a change
        # stuck on hung storage keeps its slot until its thread really ends, so the
        # rollback of an aborted task can never overtake the change it undoes.
        self._xleases: dict[str, Bulkhead] = {}
        storage.rollbacks.register(ROLLBACK_MODULE, ROLLBACK_REMOVE, self._rollback_create)

    def _bulkhead(self, sd_id: str) -> Bulkhead:
        bulkhead = self._xleases.get(sd_id)
        if bulkhead is None:
            bulkhead = self._xleases[sd_id] = Bulkhead(f"xleases {sd_id}", 1, self.timeout)
        return bulkhead

    async def _domain(self, sd_id: str) -> StorageDomain:
        domain = await self.storage.domains.produce(sd_id)
        await domain.refresh()
        if not domain.metadata.supports_xleases:
            raise errors.UnsupportedOperation(
                reason=f"domain {sd_id} is V{domain.metadata.version}: no xleases volume"
            )
        return domain

    def _ensure_spm(self) -> None:
        # Right before writing: a host that just lost the SPM lease writes nothing.
        if self.storage.spm is None:
            raise errors.StoragePoolNotConnected()
        self.storage.spm.ensure_spm()

    def _spm_master(self) -> StorageDomain:
        pool = self.storage.pool
        if pool is None or self.storage.spm is None:
            raise errors.StoragePoolNotConnected()
        self.storage.spm.ensure_spm()
        return pool.master

    # -- SPM tasks -------------------------------------------------------------------

    def create(self, sd_id: str, lease_id: str, metadata: dict[str, Any] | None) -> str:
        if metadata:
            raise errors.UnsupportedOperation(reason="lease metadata (LVB) is not supported yet")
        master = self._spm_master()

        async def job(task: Any) -> None:
            # Recorded (and persisted) before the index or sanlock is touched.
            await task.add_recovery(
                "Remove lease", ROLLBACK_MODULE, ROLLBACK_REMOVE, [sd_id, lease_id]
            )
            domain = await self._domain(sd_id)
            self._ensure_spm()
            offset = await self._run(domain, xlease.add, lease_id, self._writer(domain, lease_id))
            log.info("created lease %s on %s at offset %d", lease_id, sd_id, offset)

        return self._schedule("create_lease", job, master)

    def delete(self, sd_id: str, lease_id: str) -> str:
        master = self._spm_master()

        async def job(task: Any) -> None:
            domain = await self._domain(sd_id)
            self._ensure_spm()
            offset = await self._run(domain, xlease.remove, lease_id, None)
            log.info("deleted lease %s on %s (offset %d)", lease_id, sd_id, offset)

        return self._schedule("delete_lease", job, master)

    def _schedule(self, verb: str, job: Any, master: StorageDomain) -> str:
        task = self.storage.tasks.create(verb, job, tag="spm", persist_dir=master.tasks_dir)
        return str(task.id)

    async def _rollback_create(self, params: Sequence[str]) -> None:
        sd_id, lease_id = params
        domain = await self._domain(sd_id)
        try:
            await self._run(domain, xlease.remove, lease_id, None)
            log.info("rolled back the creation of lease %s on %s", lease_id, sd_id)
        except errors.NoSuchLease:
            log.info("lease %s on %s was never written: nothing to roll back", lease_id, sd_id)

    def _writer(self, domain: StorageDomain, lease_id: str) -> Any:
        """The sanlock resource writer xlease.add calls from the domain's worker thread:
        it hands the write to the event loop's sanlock adapter and waits for it."""
        loop = asyncio.get_running_loop()
        meta = domain.metadata

        def write(offset: int) -> None:
            coro = self.sanlock.write_resource(
                domain.sd_uuid,
                lease_id,
                [(str(domain.xleases_path), offset)],
                align=meta.alignment,
                sector=meta.block_size,
            )
            asyncio.run_coroutine_threadsafe(coro, loop).result(self.timeout)

        return write

    async def _run(self, domain: StorageDomain, op: Any, lease_id: str, callback: Any) -> int:
        """xlease.add or xlease.remove on the domain's xleases, in its bulkhead."""
        meta = domain.metadata
        try:
            result: int = await self._bulkhead(domain.sd_uuid).run(
                op, domain.xleases_path, lease_id, meta.alignment, meta.block_size, callback
            )
        except BlockingCallTimeout:
            raise errors.StorageDomainAccessError(domain.sd_uuid) from None
        return result

    # -- HSM verbs ---------------------------------------------------------------------

    async def info(self, sd_id: str, lease_id: str) -> dict[str, Any]:
        domain = await self._domain(sd_id)
        meta = domain.metadata
        try:
            offset: int = await domain.bulkhead.run(
                xlease.lookup, domain.xleases_path, lease_id, meta.alignment, meta.block_size
            )
        except BlockingCallTimeout:
            raise errors.StorageDomainAccessError(sd_id) from None
        return {
            "sd_id": sd_id,
            "lease_id": lease_id,
            "path": str(domain.xleases_path),
            "offset": offset,
        }

    async def status(self, sd_id: str, lease_id: str) -> dict[str, Any]:
        info = await self.info(sd_id, lease_id)
        domain = await self._domain(sd_id)
        meta = domain.metadata
        disks = [(info["path"], info["offset"])]
        resource = await self.sanlock.read_resource(
            sd_id, info["path"], info["offset"], align=meta.alignment, sector=meta.block_size
        )
        owners = await self.sanlock.read_resource_owners(
            sd_id, lease_id, disks, align=meta.alignment, sector=meta.block_size
        )
        return {"owners": [o.host_id for o in owners], "version": resource.version}

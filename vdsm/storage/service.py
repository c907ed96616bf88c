"""This host's storage: the domains it can see and the one pool it may be connected to.

Upstream's HSM, kept thin: the logic lives in filedomain, pool, spm and monitor; this
module holds the state that ties them together (the domain cache, the connected pool
and its SPM) and the flows that span several of them (creating domains and pools).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.storage import blockcreate, blockdomain, filedomain, sdmetadata
from vdsm.storage import constants as sc
from vdsm.storage.blockdomain import BlockDomain
from vdsm.storage.blockvolumestore import DEFAULT_CHUNK
from vdsm.storage.domain import StorageDomain
from vdsm.storage.filedomain import FileDomain, LockFactory
from vdsm.storage.mailbox import MailboxSettings
from vdsm.storage.monitor import MonitorRegistry
from vdsm.storage.pool import MAX_HOST_ID, RESERVED_HOST_ID, StoragePool
from vdsm.storage.repository import BLOCK_SD_DIR, Repository
from vdsm.storage.spm import Spm, Tasks, WatchdogFactory
from vdsm.storage.volumegroups import VolumeGroups
from vdsm.system.lvm import Lvm

log = logging.getLogger("vdsm.storage.service")


class DomainCache:
    """One domain object per domain UUID: file domains found through the repository's
    mounts, block domains among the VGs LVM sees."""

    def __init__(
        self,
        repository: Repository,
        lock_factory: LockFactory,
        op_timeout: float,
        lvm: Lvm | None = None,
        block_chunk: int = DEFAULT_CHUNK,
    ):
        self.repository = repository
        self.lock_factory = lock_factory
        self.op_timeout = op_timeout
        self.lvm = lvm
        self.block_chunk = block_chunk
        self._domains: dict[str, StorageDomain] = {}

    @property
    def blocksd_dir(self) -> Path:
        return self.repository.mnt / BLOCK_SD_DIR

    async def produce(self, sd_uuid: str) -> StorageDomain:
        known = self._domains.get(sd_uuid)
        if known is not None:
            return known
        domain: StorageDomain
        try:
            path = await self.repository.find_domain(sd_uuid)
        except errors.StorageDomainDoesNotExist:
            if self.lvm is None or not await blockdomain.find(self.lvm, sd_uuid):
                raise
            block = BlockDomain(
                sd_uuid,
                self.blocksd_dir / sd_uuid,
                lvm=self.lvm,
                lock_factory=self.lock_factory,
                op_timeout=self.op_timeout,
                chunk=self.block_chunk,
            )
            await block.refresh()
            await block.activate_special_lvs()
            domain = block
        else:
            file_domain = FileDomain(
                sd_uuid, path, lock_factory=self.lock_factory, op_timeout=self.op_timeout
            )
            await file_domain.refresh()
            domain = file_domain
        self._domains[sd_uuid] = domain
        return domain

    async def all_uuids(self) -> list[str]:
        """Every domain visible: file domains under the mounts, block domain VGs."""
        found = set(await self.repository.domains())
        if self.lvm is not None:
            found.update(await blockdomain.domain_vgs(self.lvm))
        return sorted(found)

    def add(self, domain: StorageDomain) -> None:
        self._domains[domain.sd_uuid] = domain

    def forget(self, sd_uuid: str) -> None:
        self._domains.pop(sd_uuid, None)
        self.repository.forget(sd_uuid)

    async def exists(self, sd_uuid: str) -> bool:
        try:
            await self.produce(sd_uuid)
        except errors.StorageDomainDoesNotExist:
            return False
        return True


class StorageService:
    def __init__(
        self,
        *,
        repository: Repository,
        domains: DomainCache,
        monitor: MonitorRegistry,
        tasks: Tasks,
        rollbacks: Any,
        mount_point: Callable[[int, str], Path],
        watchdog: WatchdogFactory | None,
        panic: Callable[[str], None],
        max_domains: int,
        join_timeout: float,
        mailbox: MailboxSettings | None = None,
    ) -> None:
        self.repository = repository
        self.domains = domains
        self.monitor = monitor
        self.tasks = tasks
        self.rollbacks = rollbacks
        self.mount_point = mount_point
        self.watchdog = watchdog
        self.mailbox = mailbox
        self.panic = panic
        self.max_domains = max_domains
        self.join_timeout = join_timeout
        self.pool: StoragePool | None = None
        self.spm: Spm | None = None

    # -- domains ---------------------------------------------------------------------

    async def create_domain(
        self,
        *,
        sd_uuid: str,
        domain_type: int,
        remote_path: str,
        description: str,
        domain_class: int,
        version: int | None,
        block_size: int,
        max_hosts: int,
    ) -> None:
        if await self.domains.exists(sd_uuid):
            raise errors.StorageDomainAlreadyExists(sd_uuid)
        if domain_type in sc.BLOCK_DOMAIN_TYPES and self.domains.lvm is not None:
            block = await blockcreate.create(
                self.domains.lvm,
                self.domains.blocksd_dir,
                sd_uuid=sd_uuid,
                domain_type=domain_type,
                domain_class=domain_class,
                description=description,
                vg_uuid=remote_path,
                version=version if version is not None else 5,
                block_size=block_size,
                max_hosts=max_hosts,
                lock_factory=self.domains.lock_factory,
                op_timeout=self.domains.op_timeout,
                chunk=self.domains.block_chunk,
            )
            self.domains.add(block)
            return
        if not sc.is_file_type(domain_type):
            raise errors.UnsupportedOperation(reason=f"domain type {domain_type}")
        if domain_type == sc.NFS_DOMAIN and ":" not in remote_path:
            raise errors.StorageDomainIllegalRemotePath(remote_path)
        if domain_type == sc.LOCALFS_DOMAIN and not remote_path.startswith("/"):
            raise errors.StorageDomainIllegalRemotePath(remote_path)
        domain = await filedomain.create(
            self.mount_point(domain_type, remote_path),
            sd_uuid=sd_uuid,
            domain_type=domain_type,
            domain_class=domain_class,
            description=description,
            remote_path=remote_path,
            version=version if version is not None else 5,
            block_size=block_size,
            max_hosts=max_hosts,
            lock_factory=self.domains.lock_factory,
            op_timeout=self.domains.op_timeout,
        )
        self.domains.add(domain)

    async def _block_domain_of_pool(self, sd_uuid: str, sp_uuid: str) -> BlockDomain:
        self.get_spm(sp_uuid).ensure_spm()
        domain = await self.domains.produce(sd_uuid)
        if not isinstance(domain, BlockDomain):
            raise errors.UnsupportedOperation(reason=f"{sd_uuid} is not a block domain")
        return domain

    async def extend_domain(
        self, sd_uuid: str, sp_uuid: str, guids: list[str], force: bool, vgs: VolumeGroups
    ) -> None:
        domain = await self._block_domain_of_pool(sd_uuid, sp_uuid)
        await vgs.extend(sd_uuid, guids, force=force)
        await domain.update_pv_mapping()

    async def resize_domain_pv(
        self, sd_uuid: str, sp_uuid: str, guid: str, vgs: VolumeGroups
    ) -> int:
        domain = await self._block_domain_of_pool(sd_uuid, sp_uuid)
        size = await vgs.resize_pv(sd_uuid, guid)
        await domain.refresh()
        return size

    async def format_domain(self, sd_uuid: str, auto_detach: bool) -> None:
        domain = await self.domains.produce(sd_uuid)
        await domain.refresh()
        if self.pool is not None and sd_uuid in self.pool.domains():
            raise errors.CannotFormatStorageDomainInConnectedPool(sd_uuid)
        if domain.metadata.pool_uuids and not auto_detach:
            raise errors.CannotFormatAttachedStorageDomain(sd_uuid)
        await self.monitor.stop([sd_uuid])
        await domain.remove()
        self.domains.forget(sd_uuid)
        log.info("formatted storage domain %s", sd_uuid)

    async def list_domains(
        self,
        sp_uuid: str | None,
        domain_class: int | None,
        storage_type: int | None,
        remote_path: str | None,
    ) -> list[str]:
        if sp_uuid and sp_uuid != sc.BLANK_UUID:
            candidates = list(self.get_pool(sp_uuid).domains())
        else:
            candidates = await self.domains.all_uuids()
        found = []
        for sd_uuid in candidates:
            try:
                domain = await self.domains.produce(sd_uuid)
            except errors.VdsmError as e:
                log.warning("domain %s not listed: %s", sd_uuid, e)
                continue
            meta = domain.metadata
            if storage_type and meta.domain_type_code != storage_type:
                continue
            if domain_class and meta.domain_class_code != domain_class:
                continue
            if remote_path and meta.remote_path != remote_path:
                continue
            found.append(sd_uuid)
        return found

    async def set_domain_description(self, sd_uuid: str, description: str) -> None:
        domain = await self.domains.produce(sd_uuid)
        await domain.refresh()
        if domain.metadata.pool_uuids:
            # A domain of a pool is changed by the SPM of that pool only.
            pool = self.get_pool(domain.metadata.pool_uuids[0])
            self._spm_of(pool).ensure_spm()
        await domain.update(lambda v: sdmetadata.with_description(v, description))

    # -- pools -------------------------------------------------------------------------

    def get_pool(self, sp_uuid: str) -> StoragePool:
        if self.pool is None or self.pool.sp_uuid != sp_uuid:
            raise errors.StoragePoolUnknown(sp_uuid)
        return self.pool

    def _spm_of(self, pool: StoragePool) -> Spm:
        assert self.spm is not None and self.spm.pool is pool
        return self.spm

    def get_spm(self, sp_uuid: str) -> Spm:
        return self._spm_of(self.get_pool(sp_uuid))

    async def create_pool(
        self,
        sp_uuid: str,
        name: str,
        master_sd: str,
        master_version: int,
        domain_list: list[str],
        leases: dict[str, str],
    ) -> None:
        if master_sd not in domain_list:
            raise errors.InvalidParameterException("masterDom", master_sd)
        if len(name) > 50:
            raise errors.StoragePoolDescriptionTooLongError()
        domains: dict[str, StorageDomain] = {}
        for sd_uuid in domain_list:
            try:
                domain = await self.domains.produce(sd_uuid)
                await domain.validate()
            except errors.StorageDomainDoesNotExist:
                raise
            except errors.VdsmError:
                raise errors.StorageDomainAccessError(sd_uuid) from None
            pools = domain.metadata.pool_uuids
            if domain.metadata.domain_class != "Iso" and pools:
                raise errors.StorageDomainAlreadyAttached(pools[0], sd_uuid)
            domains[sd_uuid] = domain
        master = domains[master_sd]
        for domain in domains.values():
            if (
                domain.metadata.domain_class == "Data"
                and domain.metadata.version != master.metadata.version
            ):
                raise errors.MixedSDVersionError(domain.sd_uuid)

        async def make_master() -> None:
            await master.update(
                lambda v: {
                    **sdmetadata.as_master(v, sp_uuid, leases),
                    **sdmetadata.pool_keys(name, master_sd, master_version),
                }
            )
            for sd_uuid, domain in domains.items():
                if sd_uuid != master_sd:
                    await domain.update(partial(sdmetadata.with_pool, pool_uuid=sp_uuid))
                    await master.update(
                        partial(
                            sdmetadata.with_domain_status,
                            sd_uuid=sd_uuid,
                            status=sc.STATUS_ATTACHED,
                        )
                    )

        # As upstream: the pool is born under the master's SDM lease, held with the
        # reserved host id.
        await self.with_domain_lease(master, RESERVED_HOST_ID, make_master)
        log.info("created pool %s (master %s, domains %s)", sp_uuid, master_sd, domain_list)

    async def with_domain_lease(
        self, domain: StorageDomain, host_id: int, work: Callable[[], Awaitable[None]]
    ) -> None:
        lock = domain.lock
        joined_before = await lock.joined(host_id) is True
        if not joined_before:
            await lock.join(host_id)
        try:
            await lock.wait_joined(host_id, self.join_timeout)
            await lock.acquire_sdm()
            try:
                await work()
            finally:
                await lock.release_sdm()
        finally:
            keep = joined_before or self.monitor.is_monitoring(domain.sd_uuid)
            if not keep:
                await lock.leave(host_id)

    async def connect_pool(
        self,
        sp_uuid: str,
        host_id: int,
        master_sd: str,
        master_version: int,
        domain_dict: dict[str, str] | None,
    ) -> None:
        if not 1 <= host_id <= MAX_HOST_ID:
            raise errors.InvalidParameterException("hostID", host_id)
        if self.pool is not None:
            if self.pool.sp_uuid != sp_uuid:
                raise errors.CannotConnectMultiplePools(self.pool.sp_uuid)
            await self.pool.update(host_id, master_sd, master_version, domain_dict)
            return
        pool = StoragePool(
            sp_uuid,
            host_id,
            repository=self.repository,
            domains=self.domains,
            monitoring=self.monitor,
            max_domains=self.max_domains,
        )
        await pool.connect(master_sd, master_version, domain_dict)
        spm = Spm(
            pool,
            self.tasks,
            rollbacks=self.rollbacks,
            watchdog=self.watchdog,
            panic=self.panic,
            mailbox=self.mailbox,
        )
        pool.spm = spm
        self.pool, self.spm = pool, spm

    async def disconnect_pool(self, sp_uuid: str, host_id: int) -> None:
        pool = self.get_pool(sp_uuid)
        spm = self._spm_of(pool)
        if spm.role != "Free":
            # Upstream refuses too: the engine stops the SPM first.
            raise errors.IsSpm(sp_uuid)
        await pool.disconnect()
        self.pool = self.spm = None

    def connected_pools(self) -> list[str]:
        return [self.pool.sp_uuid] if self.pool is not None else []

    async def deactivate_unused_lvs(self) -> None:
        """Start-up: what an earlier daemon left active on block domains and nothing
        uses goes inactive (VMs were recovered first: their LVs are open)."""
        if self.domains.lvm is None:
            return
        for vg, names in (await blockdomain.deactivate_unused_lvs(self.domains.lvm)).items():
            log.info("deactivated LVs left active in %s: %s", vg, ", ".join(names))

    async def shutdown(self) -> None:
        """Clean stop: give the SPM lease back, stop the monitors, drop the tasks
        (persisted ones are recovered by the next SPM).

        The lockspaces stay joined, as upstream's do: VMs holding leases keep running
        through a daemon restart, and the restarted daemon finds its host ids acquired.
        """
        if self.spm is not None and self.spm.role != "Free":
            try:
                await self.spm.stop_for_shutdown()
            except Exception:
                log.exception("cannot stop SPM cleanly")
        await self.monitor.stop(sorted(self.monitor.monitors), release_host_ids=False)
        await self.tasks.shutdown()

"""The storage pool this host is connected to: its master domain, its domains, links.

Where the pool's shared state lives depends on how the engine connected (upstream's
two backends): without `domainDict`, on the master domain's metadata (POOL_DOMAINS,
MASTER_VERSION, POOL_SPM_ID, POOL_SPM_LVER, POOL_DESCRIPTION); with it, in memory, as
the engine tells it.  Domain metadata (POOL_UUID, ROLE) is written either way.

    <repository>/<spUUID>/<sdUUID> -> active domain dir
    <repository>/<spUUID>/mastersd -> master domain dir

Operations that change the pool are the SPM's: they check `spm.ensure_spm()` right
before writing, so a host that has just lost the SPM lease writes nothing more.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import sdmetadata
from vdsm.storage.domain import StorageDomain
from vdsm.storage.repository import MASTER_LINK, Repository, is_uuid

log = logging.getLogger("vdsm.storage.pool")

RESERVED_HOST_ID = 250  # upstream's sanlock reserved id, used while creating a pool
MAX_HOST_ID = 250
MAX_DESCRIPTION = 50


class DomainSource(Protocol):
    async def produce(self, sd_uuid: str) -> StorageDomain: ...


class Monitoring(Protocol):
    def start(self, sd_uuid: str, host_id: int | None, *, pool_domain: bool) -> None: ...

    async def stop(self, sd_uuids: list[str]) -> None: ...

    @property
    def pool_domains(self) -> set[str]: ...


class SpmGuard(Protocol):
    def ensure_spm(self) -> None: ...


# -- backends -------------------------------------------------------------------------------


class DiskBackend:
    """Pool state on the master domain's metadata (connect without domainDict)."""

    def __init__(self, pool: StoragePool) -> None:
        self.pool = pool

    def domains(self) -> dict[str, str]:
        return dict(self.pool.master.metadata.pool_domains or {})

    async def set_domains(self, domains: dict[str, str]) -> None:
        await self.pool.master.update(lambda v: sdmetadata.with_pool_domains(v, domains))

    @property
    def master_version(self) -> int:
        return self.pool.master.metadata.master_version or 0

    def validate_master_version(self, master: StorageDomain, master_version: int) -> None:
        if master.metadata.master_version != master_version:
            log.warning(
                "master %s has version %s, expected %s",
                master.sd_uuid,
                master.metadata.master_version,
                master_version,
            )
            raise errors.StoragePoolWrongMaster(self.pool.sp_uuid, master.sd_uuid)

    async def set_spm_status(self, lver: int | None = None, spm_id: int | None = None) -> None:
        await self.pool.master.update(
            lambda v: sdmetadata.with_spm_status(v, lver=lver, spm_id=spm_id)
        )

    async def set_description(self, description: str) -> None:
        await self.pool.master.update(lambda v: sdmetadata.with_pool_description(v, description))

    def info(self) -> dict[str, Any]:
        meta = self.pool.master.metadata
        return {
            "name": meta.pool_description or "",
            "domains": sdmetadata.encode_domains(meta.pool_domains or {}),
            "master_ver": meta.master_version,
            "lver": meta.pool_spm_lver,
            "spm_id": meta.pool_spm_id,
        }


class MemoryBackend:
    """Pool state as the engine gives it (connect with domainDict)."""

    def __init__(self, pool: StoragePool, master_version: int, domains: dict[str, str]) -> None:
        self.pool = pool
        self.update(master_version, domains)

    def update(self, master_version: int, domains: dict[str, str]) -> None:
        self._master_version = master_version
        self._domains = {sd: sdmetadata.normalize_status(s) for sd, s in domains.items()}

    def domains(self) -> dict[str, str]:
        return dict(self._domains)

    async def set_domains(self, domains: dict[str, str]) -> None:
        self._domains = dict(domains)

    @property
    def master_version(self) -> int:
        return self._master_version

    def validate_master_version(self, master: StorageDomain, master_version: int) -> None:
        if master_version != self._master_version:
            raise errors.StoragePoolWrongMaster(self.pool.sp_uuid, master.sd_uuid)

    async def set_spm_status(self, lver: int | None = None, spm_id: int | None = None) -> None:
        log.debug("memory backend ignores SPM status (lver=%s, id=%s)", lver, spm_id)

    async def set_description(self, description: str) -> None:
        log.debug("memory backend ignores the pool description")

    def info(self) -> dict[str, Any]:
        return {
            "name": "No Description",
            "domains": sdmetadata.encode_domains(self._domains),
            "master_ver": self._master_version,
        }


Backend = DiskBackend | MemoryBackend


# -- the pool ---------------------------------------------------------------------------------


class StoragePool:
    def __init__(
        self,
        sp_uuid: str,
        host_id: int,
        *,
        repository: Repository,
        domains: DomainSource,
        monitoring: Monitoring,
        max_domains: int,
    ) -> None:
        self.sp_uuid = sp_uuid
        self.host_id = host_id
        self.repository = repository
        self.domain_source = domains
        self.monitoring = monitoring
        self.max_domains = max_domains
        self._master: StorageDomain | None = None
        self.backend: Backend = DiskBackend(self)
        self.spm: SpmGuard | None = None

    @property
    def master(self) -> StorageDomain:
        if self._master is None:
            raise errors.StoragePoolMasterNotFound(self.sp_uuid)
        return self._master

    @property
    def path(self) -> Path:
        return self.repository.pool_dir(self.sp_uuid)

    def domains(self, active_only: bool = False) -> dict[str, str]:
        return {
            sd: status
            for sd, status in self.backend.domains().items()
            if not active_only or status == sc.STATUS_ACTIVE
        }

    def _ensure_spm(self) -> None:
        if self.spm is None:
            raise errors.SpmStatusError(self.sp_uuid)
        self.spm.ensure_spm()

    # -- connection --------------------------------------------------------------------

    async def connect(
        self, master_sd: str, master_version: int, domain_dict: dict[str, str] | None
    ) -> None:
        if domain_dict is not None:
            self.backend = MemoryBackend(self, master_version, domain_dict)
        await self._rebuild(master_sd, master_version)
        log.info("host %d connected to pool %s, master %s", self.host_id, self.sp_uuid, master_sd)

    async def update(
        self, host_id: int, master_sd: str, master_version: int, domain_dict: dict[str, str] | None
    ) -> None:
        """A second connect of the same pool: new domains or master version."""
        if host_id != self.host_id:
            raise errors.StoragePoolConnected(f"hostId={self.host_id}, newHostId={host_id}")
        if domain_dict is None:
            if isinstance(self.backend, MemoryBackend):
                raise errors.StoragePoolConnected("Cannot downgrade pool backend")
        elif isinstance(self.backend, MemoryBackend):
            self.backend.update(master_version, domain_dict)
        else:
            self.backend = MemoryBackend(self, master_version, domain_dict)
        await self.refresh(master_sd, master_version)

    async def refresh(self, master_sd: str, master_version: int) -> None:
        await self._rebuild(master_sd, master_version)

    async def disconnect(self) -> None:
        await self.monitoring.stop(sorted(self.monitoring.pool_domains))
        _remove_tree(self.path)
        log.info("host %d disconnected from pool %s", self.host_id, self.sp_uuid)

    async def _set_master(self, master_sd: str, master_version: int) -> None:
        try:
            master = await self.domain_source.produce(master_sd)
        except errors.StorageDomainDoesNotExist:
            raise errors.StoragePoolMasterNotFound(self.sp_uuid, master_sd) from None
        await master.refresh()
        meta = master.metadata
        if not meta.is_master or self.sp_uuid not in meta.pool_uuids:
            log.warning("domain %s is not the master of pool %s", master_sd, self.sp_uuid)
            raise errors.StoragePoolWrongMaster(self.sp_uuid, master_sd)
        self.backend.validate_master_version(master, master_version)
        self._master = master

    async def _rebuild(self, master_sd: str, master_version: int) -> None:
        await self._set_master(master_sd, master_version)
        active = self.domains(active_only=True)
        if master_sd not in active:
            log.warning("master %s is not an active domain of pool %s", master_sd, self.sp_uuid)
            raise errors.StoragePoolWrongMaster(self.sp_uuid, master_sd)
        targets: dict[str, Path] = {}
        for sd_uuid in active:
            try:
                targets[sd_uuid] = (await self.domain_source.produce(sd_uuid)).path
            except errors.VdsmError as e:
                log.warning("pool %s: active domain %s not reachable: %s", self.sp_uuid, sd_uuid, e)
        _link_domains(self.path, targets, self.master.path)
        await self._update_monitoring()

    async def _update_monitoring(self) -> None:
        active = set(self.domains(active_only=True))
        monitored = self.monitoring.pool_domains
        await self.monitoring.stop(sorted(monitored - active))
        for sd_uuid in sorted(active - monitored):
            self.monitoring.start(sd_uuid, self.host_id, pool_domain=True)

    # -- info ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        master_info = self.master.info()
        info: dict[str, Any] = {
            "domains": "",
            "isoprefix": "",
            "lver": sc.LVER_INVALID,
            "master_uuid": self.master.sd_uuid,
            "master_ver": self.backend.master_version,
            "name": "",
            "pool_status": "connected",
            "spm_id": sc.SPM_ID_FREE,
            "type": master_info["type"],
            "version": master_info["version"],
        }
        info.update(self.backend.info())
        return info

    # -- SPM operations ------------------------------------------------------------------

    async def set_description(self, description: str) -> None:
        if len(description) > MAX_DESCRIPTION:
            raise errors.StoragePoolDescriptionTooLongError()
        self._ensure_spm()
        await self.backend.set_description(description)

    async def attach(self, sd_uuid: str, with_lease: WithDomainLease) -> None:
        domains = self.domains()
        if sd_uuid in domains:
            log.info("domain %s is already attached to pool %s", sd_uuid, self.sp_uuid)
            return
        if len(domains) >= self.max_domains:
            raise errors.TooManyDomainsInStoragePoolError()
        domain = await self.domain_source.produce(sd_uuid)
        await domain.refresh()
        pools = domain.metadata.pool_uuids
        if self.sp_uuid in pools:
            # Attached on the domain's side but not in the map: finish the job.
            pass
        elif pools and domain.metadata.domain_class != "Iso":
            raise errors.StorageDomainAlreadyAttached(pools[0], sd_uuid)
        master_version = self.master.metadata.version
        if domain.metadata.domain_class == "Data" and domain.metadata.version > master_version:
            raise errors.MixedSDVersionError(sd_uuid)

        async def attach_domain() -> None:
            self._ensure_spm()
            await domain.update(lambda v: sdmetadata.with_pool(v, self.sp_uuid))
            self._ensure_spm()
            await self.backend.set_domains({**self.domains(), sd_uuid: sc.STATUS_ATTACHED})

        # As upstream: the domain's own SDM lease is held while its metadata changes.
        await with_lease(domain, self.host_id, attach_domain)
        log.info("domain %s attached to pool %s", sd_uuid, self.sp_uuid)

    async def detach(self, sd_uuid: str) -> None:
        domains = self.domains()
        if sd_uuid not in domains:
            raise errors.StorageDomainNotInPool(self.sp_uuid, sd_uuid)
        if domains[sd_uuid] != sc.STATUS_ATTACHED:
            raise errors.StorageDomainStatusError(sd_uuid, domains[sd_uuid])
        if sd_uuid == self.master.sd_uuid:
            raise errors.CannotDetachMasterStorageDomain(sd_uuid)
        domain = await self.domain_source.produce(sd_uuid)
        self._ensure_spm()
        await domain.update(
            lambda v: sdmetadata.with_role(
                sdmetadata.without_pool(v, self.sp_uuid), sc.ROLE_REGULAR
            )
        )
        await self._forget_domain(sd_uuid)
        log.info("domain %s detached from pool %s", sd_uuid, self.sp_uuid)

    async def force_detach(self, sd_uuid: str) -> None:
        if sd_uuid in self.domains():
            await self._forget_domain(sd_uuid)

    async def _forget_domain(self, sd_uuid: str) -> None:
        self._ensure_spm()
        domains = self.domains()
        domains.pop(sd_uuid, None)
        await self.backend.set_domains(domains)
        (self.path / sd_uuid).unlink(missing_ok=True)
        await self._update_monitoring()

    async def activate(self, sd_uuid: str) -> None:
        domains = self.domains()
        if sd_uuid not in domains:
            raise errors.StorageDomainNotInPool(self.sp_uuid, sd_uuid)
        domain = await self.domain_source.produce(sd_uuid)
        await domain.refresh()
        if self.sp_uuid not in domain.metadata.pool_uuids:
            raise errors.StorageDomainNotMemberOfPool(self.sp_uuid, sd_uuid)
        if domains[sd_uuid] == sc.STATUS_ACTIVE:
            return
        self._ensure_spm()
        if sd_uuid != self.master.sd_uuid and domain.metadata.role != sc.ROLE_REGULAR:
            await domain.update(lambda v: sdmetadata.with_role(v, sc.ROLE_REGULAR))
        self._ensure_spm()
        await self.backend.set_domains({**domains, sd_uuid: sc.STATUS_ACTIVE})
        _link(self.path / sd_uuid, domain.path)
        await self._update_monitoring()
        log.info("domain %s activated in pool %s", sd_uuid, self.sp_uuid)

    async def deactivate(self, sd_uuid: str, new_master: str, master_version: int) -> None:
        domains = self.domains()
        if sd_uuid not in domains:
            raise errors.StorageDomainNotInPool(self.sp_uuid, sd_uuid)
        if sd_uuid == self.master.sd_uuid:
            if new_master == sc.BLANK_UUID:
                log.info("ignoring the deactivation of master domain %s", sd_uuid)
                return
            # Moving the master role (masterMigrate) is not part of this release.
            raise errors.UnsupportedOperation(
                reason="deactivating the master domain with a new master is not supported yet"
            )
        self._ensure_spm()
        await self.backend.set_domains({**domains, sd_uuid: sc.STATUS_ATTACHED})
        (self.path / sd_uuid).unlink(missing_ok=True)
        await self._update_monitoring()
        log.info("domain %s deactivated in pool %s", sd_uuid, self.sp_uuid)


# Runs `work` while holding the domain's SDM lease (joining its lockspace as `host_id`).
WithDomainLease = Callable[[StorageDomain, int, Callable[[], Awaitable[None]]], Awaitable[None]]


# -- links (local, blocking, cheap: /rhev/data-center is on local disk) -------------------


def _link(name: Path, target: Path) -> None:
    if name.is_symlink() and os.readlink(name) == str(target):
        return
    tmp = name.with_name(f".{name.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(name)  # atomic: readers never see the link missing


def _link_domains(pool_dir: Path, targets: dict[str, Path], master: Path) -> None:
    pool_dir.mkdir(parents=True, exist_ok=True)
    for sd_uuid, target in targets.items():
        _link(pool_dir / sd_uuid, target)
    _link(pool_dir / MASTER_LINK, master)
    for entry in os.listdir(pool_dir):
        if is_uuid(entry) and entry not in targets:
            (pool_dir / entry).unlink(missing_ok=True)


def _remove_tree(pool_dir: Path) -> None:
    if pool_dir.is_dir():
        shutil.rmtree(pool_dir, ignore_errors=True)

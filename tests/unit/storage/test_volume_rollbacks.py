"""Rollbacks persisted in task files by earlier daemons must still run: their module,
function and parameter lists are a format on disk, whatever the volume code becomes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from vdsm.storage.domain import StorageDomain
from vdsm.storage.task import RollbackRegistry
from vdsm.storage.volume import halfbaked_rollback
from vdsm.storage.volumes import Volumes

from .volumestores import BASE, IMG, SD_UUID, create, file_domain, metadata


def volumes_over(domain: StorageDomain) -> tuple[Volumes, RollbackRegistry]:
    async def produce(sd_uuid: str) -> StorageDomain:
        assert sd_uuid == domain.sd_uuid
        return domain

    registry = RollbackRegistry()
    # Only what Volumes takes from the storage service for rollbacks: the registry and
    # the domain look-up.
    storage = SimpleNamespace(rollbacks=registry, domains=SimpleNamespace(produce=produce))
    return Volumes(storage), registry  # type: ignore[arg-type]


def test_the_persisted_rollback_names_and_params_are_unchanged() -> None:
    assert halfbaked_rollback(SD_UUID, IMG, BASE, "task-a") == (
        f"Halfbaked volume rollback {BASE}",
        "volume",
        "remove_halfbaked",
        [SD_UUID, IMG, BASE, "task-a"],
    )


def test_a_half_created_volume_left_by_a_killed_daemon_is_rolled_back(tmp_path: Path) -> None:
    async def main() -> None:
        domain = await file_domain(tmp_path)
        _, registry = volumes_over(domain)
        for function in ("remove_halfbaked", "set_voltype", "set_capacity"):
            assert ("volume", function) in registry
        store = domain.volumes
        # The task had claimed the volume and written its metadata when it died.
        md = metadata(domain, IMG)
        await store.start_volume(IMG, BASE, "task-a", md, None)
        await store.create_metadata_and_lease(IMG, BASE, md)
        _, module, function, params = halfbaked_rollback(SD_UUID, IMG, BASE, "task-a")
        await registry.get(module, function)(params)
        assert not await store.volume_exists(IMG, BASE)
        assert not await store.image_exists(IMG)  # the image it had started is gone too

    asyncio.run(main())


def test_the_parent_and_capacity_rollbacks_restore_the_metadata(tmp_path: Path) -> None:
    async def main() -> None:
        domain = await file_domain(tmp_path)
        _, registry = volumes_over(domain)
        md = await create(domain.volumes, domain, IMG, BASE, "task-a")
        await domain.volumes.write_metadata(IMG, BASE, md.replace(voltype="INTERNAL"))
        await registry.get("volume", "set_voltype")([SD_UUID, IMG, BASE, "LEAF"])
        await registry.get("volume", "set_capacity")([SD_UUID, IMG, BASE, "4096"])
        after = await domain.volumes.read_metadata(IMG, BASE)
        assert (after.voltype, after.capacity) == ("LEAF", 4096)

    asyncio.run(main())

"""The file store's own layout and faults, on a real domain in a tmp directory (what
the contract tests cannot see: which files, which names, which modes)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from vdsm import errors
from vdsm.storage import volmeta
from vdsm.storage.filedomain import FileDomain
from vdsm.storage.filevolumestore import FileVolumeStore
from vdsm.system.blocking import Bulkhead

from .volumestores import BASE, IMG, TOP, MiB, create, file_domain, metadata

Scenario = Callable[[FileDomain, FileVolumeStore], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        domain = await file_domain(tmp_path)
        assert isinstance(domain, FileDomain)
        await scenario(domain, domain.volumes)

    asyncio.run(main())


def test_a_volume_is_three_files_in_its_image_directory(tmp_path: Path) -> None:
    async def scenario(domain: FileDomain, store: FileVolumeStore) -> None:
        md = await create(store, domain, IMG, BASE, "task-1")
        await store.fix_permissions(IMG, BASE)
        image_dir = domain.images_dir / IMG
        assert sorted(os.listdir(image_dir)) == sorted([BASE, f"{BASE}.meta", f"{BASE}.lease"])
        assert store.data_path(IMG, BASE) == image_dir / BASE
        assert (image_dir / BASE).stat().st_mode & 0o777 == 0o660
        assert (image_dir / BASE).stat().st_size == MiB
        assert volmeta.parse((image_dir / f"{BASE}.meta").read_bytes()) == md
        lease = await store.lease(IMG, BASE)
        assert (lease.path, lease.offset) == (image_dir / f"{BASE}.lease", 0)

    run(tmp_path, scenario)


def test_the_claim_is_a_hidden_link_kept_until_the_creation_ends(tmp_path: Path) -> None:
    async def scenario(domain: FileDomain, store: FileVolumeStore) -> None:
        await store.start_volume(IMG, BASE, "task-a", metadata(domain, IMG), None)
        claim = domain.images_dir / IMG / f".{BASE}.task-a"
        assert claim.exists()
        assert claim.samefile(store.data_path(IMG, BASE))
        await store.end_claim(IMG, BASE, "task-a")
        assert not claim.exists()
        assert store.data_path(IMG, BASE).exists()

    run(tmp_path, scenario)


def test_garbage_of_an_interrupted_deletion_is_found_and_purged(tmp_path: Path) -> None:
    async def scenario(domain: FileDomain, store: FileVolumeStore) -> None:
        await create(store, domain, IMG, BASE, "task-1")
        # What a daemon killed between the rename and the removal leaves behind.
        os.rename(domain.images_dir / IMG, domain.images_dir / f"_remove_me_{IMG}")
        assert await store.image_ids() == []
        assert await store.garbage() == [f"_remove_me_{IMG}"]
        await store.purge(f"_remove_me_{IMG}")
        assert os.listdir(domain.images_dir) == []
        # Only images marked removed can be purged.
        await create(store, domain, IMG, BASE, "task-2")
        with pytest.raises(ValueError):
            await store.purge(IMG)
        assert await store.volume_ids(IMG) == [BASE]

    run(tmp_path, scenario)


def test_rewritten_data_replaces_the_volume_only_when_complete(tmp_path: Path) -> None:
    async def scenario(domain: FileDomain, store: FileVolumeStore) -> None:
        await create(store, domain, IMG, BASE, "task-1")
        data = store.data_path(IMG, BASE)
        data.write_bytes(b"old")
        with pytest.raises(RuntimeError):
            async with store.rewrite_data(IMG, BASE) as scratch:
                scratch.write_bytes(b"half")
                raise RuntimeError("qemu-img failed")
        assert data.read_bytes() == b"old"
        assert not scratch.exists()
        async with store.rewrite_data(IMG, BASE, size=MiB) as scratch:
            scratch.write_bytes(b"new")
        assert data.read_bytes()[:3] == b"new"
        assert data.stat().st_size == MiB
        assert data.stat().st_mode & 0o777 == 0o660
        assert not scratch.exists()

    run(tmp_path, scenario)


def test_the_run_link_points_at_the_image_directory(tmp_path: Path) -> None:
    async def scenario(domain: FileDomain, store: FileVolumeStore) -> None:
        await create(store, domain, IMG, BASE, "task-1")
        await create(store, domain, IMG, TOP, "task-2", parent=BASE, fmt="COW")
        link = tmp_path / "run" / domain.sd_uuid / IMG
        link.parent.mkdir(parents=True)
        link.symlink_to(tmp_path)  # stale, from another mount of the domain
        await store.link_image(IMG, [BASE, TOP], link)
        assert os.readlink(link) == str(domain.images_dir / IMG)

    run(tmp_path, scenario)


def test_storage_that_does_not_answer_is_379(tmp_path: Path) -> None:
    async def scenario(domain: FileDomain, store: FileVolumeStore) -> None:
        await create(store, domain, IMG, BASE, "task-1")
        domain.bulkhead = Bulkhead("hung", 1, 0.2)
        release = threading.Event()
        # A call stuck in the storage keeps the only slot, as on a hung NFS server.
        stuck = asyncio.ensure_future(domain.bulkhead.run(release.wait, timeout=5))
        await asyncio.sleep(0.05)
        try:
            with pytest.raises(errors.StorageDomainAccessError):
                await store.read_metadata(IMG, BASE)
        finally:
            release.set()
            await stuck

    run(tmp_path, scenario)

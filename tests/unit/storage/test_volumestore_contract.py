"""What every VolumeStore must do (vdsm/storage/volumestore.py), run against each real
store in volumestores.STORE_FACTORIES: the volume verbs rely on exactly this and on
nothing of a store's layout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from vdsm import errors
from vdsm.storage import volmeta
from vdsm.storage.domain import StorageDomain
from vdsm.storage.volmeta import VolumeMetadata
from vdsm.storage.volumestore import LeaseLocation, VolumeStore, activated

from .volumestores import (
    BASE,
    IMG,
    OTHER_IMG,
    STORE_FACTORIES,
    TOP,
    DomainFactory,
    MiB,
    create,
    metadata,
)

Scenario = Callable[[StorageDomain, VolumeStore], Awaitable[None]]


@pytest.fixture(params=sorted(STORE_FACTORIES))
def make_domain(request: pytest.FixtureRequest) -> DomainFactory:
    return STORE_FACTORIES[request.param]


@pytest.fixture
def run(make_domain: DomainFactory, tmp_path: Path) -> Callable[[Scenario], None]:
    """Runs a scenario on a fresh domain, all in one event loop (the domain's bulkhead
    belongs to the loop that first used it)."""

    def runner(scenario: Scenario) -> None:
        async def main() -> None:
            domain = await make_domain(tmp_path)
            await scenario(domain, domain.volumes)

        asyncio.run(main())

    return runner


def test_metadata_round_trip_and_listings(run: Callable[[Scenario], None]) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        assert await store.image_ids() == []
        assert not await store.image_exists(IMG)
        assert not await store.volume_exists(IMG, BASE)
        md = await create(store, domain, IMG, BASE, "task-1")
        assert await store.read_metadata(IMG, BASE) == md
        legal = md.replace(legality=volmeta.LEGAL, description="changed")
        await store.write_metadata(IMG, BASE, legal)
        assert await store.read_metadata(IMG, BASE) == legal
        await create(store, domain, IMG, TOP, "task-2", parent=BASE, fmt="COW")
        assert await store.image_ids() == [IMG]
        assert await store.image_exists(IMG)
        assert await store.volume_exists(IMG, TOP)
        assert await store.volume_ids(IMG) == sorted([BASE, TOP])
        found = await store.read_image(IMG)
        assert set(found) == {BASE, TOP}
        top = found[TOP]
        assert isinstance(top, VolumeMetadata) and top.parent == BASE
        assert await store.read_image(OTHER_IMG) == {}
        assert await store.volume_ids(OTHER_IMG) == []

    run(scenario)


def test_missing_volume_is_201(run: Callable[[Scenario], None]) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        with pytest.raises(errors.VolumeDoesNotExist):
            await store.read_metadata(IMG, BASE)
        with pytest.raises(errors.VolumeDoesNotExist):
            await store.read_metadata_and_sizes(IMG, BASE)
        await create(store, domain, IMG, BASE, "task-1")
        with pytest.raises(errors.VolumeDoesNotExist):  # not in that image
            await store.read_metadata(OTHER_IMG, BASE)

    run(scenario)


def test_metadata_too_big_is_refused_before_writing(run: Callable[[Scenario], None]) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        md = await create(store, domain, IMG, BASE, "task-1")
        with pytest.raises(errors.MetadataOverflowError):
            # Two UTF-8 bytes a character: past the 512 bytes of a metadata block.
            await store.write_metadata(IMG, BASE, md.replace(description="\u00e9" * 210))
        assert await store.read_metadata(IMG, BASE) == md

    run(scenario)


def test_a_rollback_removes_only_what_its_own_task_created(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        md = metadata(domain, IMG)
        await store.start_volume(IMG, BASE, "task-a", md, None)
        await store.create_metadata_and_lease(IMG, BASE, md)
        # A second creation of the same id is refused, and its rollback touches nothing.
        with pytest.raises(errors.VolumeAlreadyExists):
            await store.start_volume(IMG, BASE, "task-b", md, None)
        assert await store.remove_claimed(IMG, BASE, "task-b") is False
        assert await store.read_metadata(IMG, BASE) == md
        # The creator's rollback removes the volume; the empty image goes with tidy.
        assert await store.remove_claimed(IMG, BASE, "task-a") is True
        assert not await store.volume_exists(IMG, BASE)
        await store.tidy_image(IMG)
        assert not await store.image_exists(IMG)
        assert await store.image_ids() == []
        # Running the rollback again (a crash during it) is harmless.
        assert await store.remove_claimed(IMG, BASE, "task-a") is False

    run(scenario)


def test_a_completed_creation_is_no_longer_rolled_back(run: Callable[[Scenario], None]) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        md = await create(store, domain, IMG, BASE, "task-a")
        assert await store.remove_claimed(IMG, BASE, "task-a") is False
        await store.tidy_image(IMG)
        assert await store.read_metadata(IMG, BASE) == md
        # Another task's volume with the same id after a deletion is not ours either.
        await store.remove_volume(IMG, BASE)
        await create(store, domain, IMG, BASE, "task-b")
        assert await store.remove_claimed(IMG, BASE, "task-a") is False
        assert await store.volume_exists(IMG, BASE)

    run(scenario)


def test_a_half_created_volume_is_removed_by_its_rollback(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        # Claimed but never given metadata: the daemon died right after start_volume.
        await store.start_volume(IMG, BASE, "task-a", metadata(domain, IMG), None)
        assert await store.volume_ids(IMG) == []  # not a volume yet
        assert await store.remove_claimed(IMG, BASE, "task-a") is True
        assert not await store.volume_exists(IMG, BASE)

    run(scenario)


def write_head(path: Path, data: bytes) -> None:
    # In place, as qemu writes a block device: no truncation, no new file.
    with open(path, "r+b") as f:
        f.write(data)


def read_head(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def test_data_is_written_and_read_at_the_data_path(run: Callable[[Scenario], None]) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        await create(store, domain, IMG, BASE, "task-1")
        path = store.data_path(IMG, BASE)
        async with activated(store, IMG, [BASE]):
            await asyncio.to_thread(write_head, path, b"contract")
            assert await asyncio.to_thread(read_head, path, 8) == b"contract"
        apparent, true = await store.sizes(IMG, BASE)
        assert apparent >= MiB and true > 0
        md, sizes = await store.read_metadata_and_sizes(IMG, BASE)
        assert md.image == IMG and sizes == (apparent, true)
        await store.allocate_data(IMG, BASE, 2 * MiB)
        await store.extend_data(IMG, BASE, 2 * MiB)
        assert (await store.read_metadata(IMG, BASE)).capacity == MiB  # data, not capacity
        lease = await store.lease(IMG, BASE)
        assert isinstance(lease, LeaseLocation) and lease.offset >= 0
        await store.refresh_volume(IMG, BASE)
        apparent, true = await store.sizes(IMG, BASE)
        assert apparent >= 2 * MiB and true >= 2 * MiB  # allocated, not only promised
        assert store.drive_type in ("file", "block")
        await store.deactivate(IMG, None)
        await store.deactivate(IMG, [BASE])  # twice: harmless

    run(scenario)


def test_removal_takes_metadata_last_and_listings_follow(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        await create(store, domain, IMG, BASE, "task-1")
        await create(store, domain, IMG, TOP, "task-2", parent=BASE, fmt="COW")
        await store.remove_volume(IMG, TOP)
        await store.remove_volume(IMG, TOP)  # parts already gone: nothing to do
        assert await store.volume_ids(IMG) == [BASE]
        with pytest.raises(errors.VolumeDoesNotExist):
            await store.read_metadata(IMG, TOP)
        await store.tidy_image(IMG)  # not empty: stays
        assert await store.image_exists(IMG)
        await store.remove_volume(IMG, BASE)
        await store.tidy_image(IMG)
        assert not await store.image_exists(IMG)

    run(scenario)


def test_an_image_marked_removed_is_out_of_sight_until_purged(
    run: Callable[[Scenario], None],
) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        await create(store, domain, IMG, BASE, "task-1")
        await create(store, domain, OTHER_IMG, TOP, "task-2")
        trash = await store.mark_image_removed(IMG)
        assert await store.image_ids() == [OTHER_IMG]
        assert not await store.image_exists(IMG)
        assert await store.volume_ids(IMG) == []
        # The deletion was interrupted here: the next one finds the garbage.
        assert await store.garbage() == [trash]
        await store.purge(trash)
        assert await store.garbage() == []
        assert await store.image_ids() == [OTHER_IMG]
        assert await store.volume_ids(OTHER_IMG) == [TOP]

    run(scenario)


def test_a_linked_image_names_every_volume_under_the_link(
    run: Callable[[Scenario], None], tmp_path: Path
) -> None:
    async def scenario(domain: StorageDomain, store: VolumeStore) -> None:
        await create(store, domain, IMG, BASE, "task-1")
        await create(store, domain, IMG, TOP, "task-2", parent=BASE, fmt="COW")
        link = tmp_path / "run" / "storage" / domain.sd_uuid / IMG
        await store.activate(IMG, [TOP])
        await store.check_readable(IMG, [BASE, TOP])
        await store.link_image(IMG, [BASE, TOP], link)
        await store.link_image(IMG, [BASE, TOP], link)  # again: same result
        for vol in (BASE, TOP):
            assert (link / vol).resolve() == store.data_path(IMG, vol).resolve()
        await store.deactivate(IMG, None)
        await store.remove_volume(IMG, TOP)
        with pytest.raises(OSError):
            await store.check_readable(IMG, [TOP])
        with pytest.raises(OSError):
            await store.link_image(IMG, [BASE, TOP], link)

    run(scenario)

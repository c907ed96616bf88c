"""vdsm.system.lvm against real LVM on loop devices (metadata-only on this host's
kernel; the kernel lab repeats the data-path parts with device-mapper)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.resources import LoopDevice, unique_name
from vdsm.system import lvm
from vdsm.system.lvm import Lvm, LvmError

MiB = 1024 * 1024


def adapter(*devices: LoopDevice, **kw: object) -> Lvm:
    return Lvm(lambda: [d.path for d in devices], timeout=30, **kw)  # type: ignore[arg-type]


def test_vg_lv_tags_and_the_cache(loop_device: Callable[[int | str], LoopDevice]) -> None:
    dev = loop_device("1g")
    name = unique_name("_")

    async def scenario() -> None:
        lvm_ = adapter(dev)
        assert await lvm_.vgs() == {}
        await lvm_.create_pvs([dev.path], metadata_size=16 * MiB)
        await lvm_.create_vg(
            name, [dev.path], extent_size=128 * MiB, tags=["RHAT_storage_domain_UNREADY"]
        )
        vg = await lvm_.vg(name)
        assert vg is not None and vg.tags == ("RHAT_storage_domain_UNREADY",)
        assert vg.extent_size == 128 * MiB and vg.pv_names == (dev.path,)
        assert vg.mda_size > 0 and 0 < vg.mda_free <= vg.mda_size

        await lvm_.create_lv(name, "metadata", 128 * MiB, device=dev.path)
        await lvm_.create_lv(name, "vol", 1, tags=["IU_img", "MD_1"])  # rounded up to an extent
        lvs = await lvm_.lvs(name)
        assert lvs["metadata"].segments == ((dev.path, 0),)
        assert lvs["vol"].size == 128 * MiB and lvs["vol"].tags == ("IU_img", "MD_1")
        assert not lvs["vol"].active

        # cached: a second read runs no command
        await lvm_.vgs()
        before = lvm_.commands_run
        await lvm_.lvs(name)
        await lvm_.vgs()
        assert lvm_.commands_run == before

        await lvm_.change_lv_tags(name, "vol", add=["PU_x"], remove=["MD_1"])
        await lvm_.extend_lv(name, "vol", 300 * MiB)
        vol = (await lvm_.lvs(name))["vol"]
        assert set(vol.tags) == {"IU_img", "PU_x"} and vol.size == 384 * MiB
        await lvm_.extend_lv(name, "vol", 1)  # never shrinks, runs nothing
        assert (await lvm_.lvs(name))["vol"].size == 384 * MiB

        await lvm_.change_vg_tags(
            name, add=["RHAT_storage_domain", "MDT_A&61&=1"], remove=["RHAT_storage_domain_UNREADY"]
        )
        assert set((await lvm_.vg(name)).tags) == {"RHAT_storage_domain", "MDT_A&61&=1"}  # type: ignore[union-attr]

        pv = (await lvm_.pvs())[dev.path]
        assert pv.vg_name == name and pv.pe_count == vg.extent_count

        await lvm_.remove_lvs(name, ["vol"])
        assert "vol" not in await lvm_.lvs(name)
        await lvm_.remove_vg(name)
        assert await lvm_.vg(name) is None

    asyncio.run(scenario())


def test_another_writer_is_seen_after_invalidation(
    loop_device: Callable[[int | str], LoopDevice],
) -> None:
    dev = loop_device("512m")
    name = unique_name("_")

    async def scenario() -> None:
        ours, theirs = adapter(dev), adapter(dev)
        await ours.create_pvs([dev.path], metadata_size=8 * MiB)
        await ours.create_vg(name, [dev.path], extent_size=4 * MiB)
        assert await ours.lvs(name) == {}
        await theirs.create_lv(name, "made-elsewhere", 4 * MiB)
        assert await ours.lvs(name) == {}  # the cache, as designed
        # a lookup by name re-reads once before saying "no such LV"
        assert (await ours.lv(name, "made-elsewhere")) is not None
        await ours.remove_vg(name)

    asyncio.run(scenario())


def test_filter_hides_other_devices(loop_device: Callable[[int | str], LoopDevice]) -> None:
    mine, other = loop_device("256m"), loop_device("256m")
    name = unique_name("_")

    async def scenario() -> None:
        await adapter(other).create_pvs([other.path], metadata_size=8 * MiB)
        await adapter(other).create_vg(name, [other.path], extent_size=4 * MiB)
        assert await adapter(mine).vgs() == {}
        assert await adapter(mine).pvs() == {}
        with pytest.raises(LvmError) as e:
            await adapter(mine).lvs(name)
        assert e.value.not_found
        await adapter(other).remove_vg(name)

    asyncio.run(scenario())


def test_timeout_kills_the_command(tmp_path: Path) -> None:
    script = tmp_path / "slow-lvm"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)

    async def scenario() -> None:
        lvm_ = Lvm(lambda: [], timeout=0.3, command=str(script))
        with pytest.raises(lvm.LvmTimeout):
            await lvm_.vgs()

    asyncio.run(scenario())


def test_metadata_only_mode_refuses_activation(
    loop_device: Callable[[int | str], LoopDevice],
) -> None:
    dev = loop_device("256m")

    async def scenario() -> None:
        lvm_ = adapter(dev, device_mapper=False)
        assert lvm_.mode == "metadata-only"
        with pytest.raises(lvm.LvmUnavailable):
            await lvm_.activate("vg", ["lv"])

    asyncio.run(scenario())


def _facts(lvs: dict[str, lvm.LV]) -> dict[str, tuple[int, frozenset[str], bool]]:
    """What the in-place cache updates keep (uuid and segments wait for a report)."""
    return {n: (lv.size, frozenset(lv.tags), lv.active) for n, lv in lvs.items()}


def test_own_changes_update_the_cache_as_a_report_would(
    loop_device: Callable[[int | str], LoopDevice],
) -> None:
    dev = loop_device("1g")
    name = unique_name("_")

    async def scenario() -> None:
        lvm_ = adapter(dev)
        await lvm_.create_pvs([dev.path], metadata_size=8 * MiB)
        await lvm_.create_vg(name, [dev.path], extent_size=8 * MiB)
        await lvm_.create_lv(name, "keep", 8 * MiB)
        assert "keep" in await lvm_.lvs(name)  # cached from here on

        async def same_as_a_report() -> None:
            cached = await lvm_.lvs(name)
            fresh = await adapter(dev).lvs(name)
            assert _facts(cached) == _facts(fresh)

        async def no_command(coro: object) -> None:
            before = lvm_.commands_run
            await coro  # type: ignore[misc]
            assert lvm_.commands_run == before, "a lookup after our own change ran lvm"

        steps = [
            lvm_.create_lv(name, "vol", 9 * MiB + 1, tags=["IU_img", "MD_1", "OVIRT_X"]),
            lvm_.change_lv_tags(name, "vol", add=["PU_p"], remove=["OVIRT_X", "MD_1"]),
            lvm_.extend_lv(name, "vol", 33 * MiB),
            lvm_.rename_lv(name, "vol", "vol2"),
            lvm_.remove_lvs(name, ["vol2"]),
        ]
        for step in steps:
            before = lvm_.commands_run
            await step
            assert lvm_.commands_run == before + 1
            await no_command(lvm_.lvs(name))
            await same_as_a_report()
        vol = await lvm_.lv(name, "keep")
        assert vol is not None and vol.size == 8 * MiB
        # the rule for lookups by name still holds: a miss re-reads the VG once
        before = lvm_.commands_run
        assert await lvm_.lv(name, "vol2") is None
        assert lvm_.commands_run == before + 1

        # a failed change leaves nothing cached to trust
        with pytest.raises(LvmError):
            await lvm_.create_lv(name, "too-big", 4096 * MiB)
        before = lvm_.commands_run
        await same_as_a_report()
        assert lvm_.commands_run == before + 1  # re-read
        await lvm_.remove_vg(name)

    asyncio.run(scenario())

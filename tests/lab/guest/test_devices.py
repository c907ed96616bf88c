"""Kernel lab: discovery with device-mapper: a dm map is a LUN whose paths are its
slaves; an activated LV under /dev/mapper is never taken for a LUN."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator

import pytest

from tests.lab.resources import LoopDevice, VolumeGroup, run, unique_name
from vdsm.storage.devices import BlockDevices, Discovery
from vdsm.system.lvm import Lvm

pytestmark = pytest.mark.lab

SECTOR = 512


@pytest.fixture
def dm_lun(loop_device: Callable[[int | str], LoopDevice]) -> Iterator[tuple[str, LoopDevice]]:
    """A linear dm map over a loop device: /dev/mapper/<name> as a multipath map is."""
    run(["modprobe", "dm_mod"])
    dev = loop_device("64m")
    name = unique_name()
    run(["dmsetup", "create", name, "--table", f"0 {dev.size // SECTOR} linear {dev.path} 0"])
    try:
        yield f"/dev/mapper/{name}", dev
    finally:
        with contextlib.suppress(Exception):
            run(["dmsetup", "remove", name])


def test_dm_luns_and_lvs(dm_lun: tuple[str, LoopDevice], lvm_vg: Callable[..., VolumeGroup]):
    lun_path, slave = dm_lun
    vg = lvm_vg(size="256m")
    lv = vg.create_lv("data", "8m", activate=True)
    lv_mapper = f"/dev/mapper/{vg.name}-data"
    assert os.path.realpath(lv) == os.path.realpath(lv_mapper)

    devices = BlockDevices(f"{lun_path} /dev/mapper/{vg.name}-*")
    assert devices.paths() == [lun_path]

    async def discover() -> None:
        discovery = Discovery(devices, Lvm(devices.paths, device_mapper=True), timeout=60)
        [device] = await discovery.listing()
        assert device.guid == os.path.basename(lun_path)
        assert device.facts.name.startswith("dm-")
        assert device.facts.size == slave.size
        assert [p.name for p in device.facts.paths] == [os.path.basename(slave.path)]
        assert device.status == "free"
        assert await discovery.path_of(device.guid) == lun_path

    asyncio.run(discover())

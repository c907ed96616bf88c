"""Kernel lab: LVM with device-mapper: an activated LV written and read back."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.lab.resources import VolumeGroup, run

pytestmark = pytest.mark.lab


def test_activated_lv_is_written_and_read_back(lvm_vg: Callable[..., VolumeGroup]) -> None:
    run(["modprobe", "dm_mod"])
    vg = lvm_vg(tags=["RHAT_storage_domain"], size="256m")
    path = vg.create_lv("data", "8m", tags=["IU_image"], activate=True)
    assert os.path.realpath(path).startswith("/dev/dm-")
    payload = os.urandom(4096) * 16
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, payload, 1024 * 1024)
        os.fsync(fd)
    finally:
        os.close(fd)

    # deactivate (the device goes away), activate again, and read what reached the PV
    vg.lvm("lvchange", "-an", f"{vg.name}/data")
    assert not os.path.exists(path)
    vg.lvm("lvchange", "-ay", f"{vg.name}/data")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, len(payload), 1024 * 1024) == payload
    finally:
        os.close(fd)
    [row] = vg.report("lvs", "lv_name,lv_tags,lv_active", f"{vg.name}/data")
    assert row["lv_tags"] == "IU_image" and row["lv_active"] == "active"

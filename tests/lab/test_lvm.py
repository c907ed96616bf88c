"""LVM for real (metadata only on a host without device-mapper): VG and LV tags."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.lab.resources import VolumeGroup, run

pytestmark = pytest.mark.integration


def test_vg_tags_written_and_read_back(lvm_vg: Callable[..., VolumeGroup]) -> None:
    vg = lvm_vg(tags=["RHAT_storage_domain", "MDT_VERSION=5"])
    assert sorted(vg.tags()) == ["MDT_VERSION=5", "RHAT_storage_domain"]

    vg.lvm("vgchange", "--addtag", "MDT_POOL_UUID=abc", "--deltag", "MDT_VERSION=5", vg.name)
    # read back exactly the way the daemon will: plain `vgs` with a JSON report
    out = run(
        ["vgs", "--config", vg.config, "--reportformat", "json", "-o", "vg_name,vg_tags", vg.name],
        env={"LVM_SUPPRESS_FD_WARNINGS": "1"},
    ).stdout
    [row] = json.loads(out)["report"][0]["vg"]
    assert row["vg_name"] == vg.name
    assert sorted(row["vg_tags"].split(",")) == ["MDT_POOL_UUID=abc", "RHAT_storage_domain"]


def test_lvs_with_tags_and_extents(lvm_vg: Callable[..., VolumeGroup]) -> None:
    vg = lvm_vg(size="512m")
    vg.create_lv("metadata", "128m", tags=["RHAT_storage_domain_UNREADY"])
    vg.create_lv("ids", "8m")
    vg.lvm("lvchange", "--addtag", "IU_some-image", f"{vg.name}/ids")
    vg.lvm("lvextend", "--driverloaded", "n", "-L", "+8m", f"{vg.name}/ids")
    rows = {
        r["lv_name"]: r for r in vg.report("lvs", "lv_name,lv_tags,lv_size,seg_pe_ranges", vg.name)
    }
    assert rows["metadata"]["lv_tags"] == "RHAT_storage_domain_UNREADY"
    assert rows["ids"]["lv_tags"] == "IU_some-image"
    assert int(rows["ids"]["lv_size"]) == 16 * 1024 * 1024
    assert rows["metadata"]["seg_pe_ranges"] == f"{vg.pv.path}:0-31"


def test_parallel_vgs_do_not_see_each_other(lvm_vg: Callable[..., VolumeGroup]) -> None:
    a, b = lvm_vg(size="64m"), lvm_vg(size="64m")
    names_a = [r["vg_name"] for r in a.report("vgs", "vg_name")]
    names_b = [r["vg_name"] for r in b.report("vgs", "vg_name")]
    assert names_a == [a.name] and names_b == [b.name]

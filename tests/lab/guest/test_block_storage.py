"""Kernel lab: block storage domains with device-mapper, through a real daemon.

A V5 ISCSI domain on two loop "LUNs": the special LVs activated and linked, the
xleases index, sanlock's lockspace on the `ids` LV and the SDM resource at 1 MiB of the
`leases` LV; then a pool on it and SPM start through real sanlock (the master LV's file
system mounted for the tasks), SPM stop, format.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sanlock as sanlock_lib

from tests.lab.fixtures import SanlockDaemon
from tests.lab.resources import LoopDevice, run
from tests.support import block
from tests.support.storage import Site, new_uuid, read_xleases_header

pytestmark = pytest.mark.lab

MiB = block.MiB


def lab_site(vdsmd: Callable[..., Any], tmp_path: Path, luns: list[str]) -> Site:
    def slow_start(config: dict[str, Any]) -> Any:
        return vdsmd(config, start_timeout=600)

    site = Site(slow_start, tmp_path, extra={"lvm": {"devices": " ".join(luns)}})
    site.vdsm.timeout = 600
    return site


def test_block_domain_pool_and_spm(
    sanlock: SanlockDaemon,
    loop_device: Callable[[int | str], LoopDevice],
    vdsmd: Callable[..., Any],
    tmp_path: Path,
) -> None:
    run(["modprobe", "dm_mod"])
    luns = [loop_device("8g").path for _ in range(2)]
    site = lab_site(vdsmd, tmp_path, luns)
    devices = site.vdsm.call("Host.getDeviceList", storageType=3, guids=[], checkStatus=True)
    assert sorted(d["GUID"] for d in devices) == sorted(Path(p).name for p in luns)
    assert all(d["status"] == "free" for d in devices)
    sd = new_uuid()
    vg_uuid = site.vdsm.call(
        "LVMVolumeGroup.create", name=sd, devlist=[Path(p).name for p in luns], force=False
    )
    site.vdsm.call(
        "StorageDomain.create",
        storagedomainID=sd,
        domainType=3,
        typeArgs=vg_uuid,
        name="lab-block",
        domainClass=1,
        version=5,
    )
    try:
        # the special LVs are active and linked under mnt/blockSD/<sd>/dom_md
        md_dir = site.repo / "mnt" / "blockSD" / sd / "dom_md"
        for lv in ("metadata", "ids", "leases", "inbox", "outbox", "xleases", "master"):
            assert os.readlink(md_dir / lv) == f"/dev/{sd}/{lv}"
            assert Path(f"/dev/{sd}/{lv}").exists()
        # sanlock's own reader sees the lockspace and the SDM resource we wrote
        lockspace = sanlock_lib.read_lockspace(f"/dev/{sd}/ids", offset=0, align=MiB, sector=512)
        assert lockspace["lockspace"] == sd.encode()
        resource = sanlock_lib.read_resource(f"/dev/{sd}/leases", offset=MiB, align=MiB, sector=512)
        assert resource["lockspace"] == sd.encode() and resource["resource"] == b"SDM"
        header = read_xleases_header(Path(f"/dev/{sd}/xleases"), MiB)
        assert header["magic"] == 0x12152016 and header["lockspace"] == sd
        # the volume metadata areas start zeroed
        with open(f"/dev/{sd}/metadata", "rb") as f:
            assert f.read(17 * MiB) == bytes(17 * MiB)

        site.new_pool(sd)
        spm = site.start_spm()
        assert spm["spmId"] == 1 and spm["spmLver"] >= 1
        master = site.repo / "mnt" / "blockSD" / sd / "master"
        mounts = Path("/proc/mounts").read_text()
        assert f" {master} " in mounts
        assert (master / "tasks").is_dir() and (master / "vms").is_dir()
        info = site.vdsm.call("StoragePool.getInfo", storagepoolID=site.sp)
        assert info["info"]["master_uuid"] == sd
        meta = block.domain_metadata(block.vg_tags(luns, sd))
        assert meta["ROLE"] == "Master" and meta["POOL_UUID"] == site.sp

        site.vdsm.call("StoragePool.spmStop", storagepoolID=site.sp)
        assert f" {master} " not in Path("/proc/mounts").read_text()
        site.vdsm.call("StoragePool.disconnect", storagepoolID=site.sp, hostID=1, scsiKey="")
    finally:
        site.teardown()
    site.vdsm = type(site.vdsm)(site.daemon, timeout=600)
    site.vdsm.call("StorageDomain.format", storagedomainID=sd, autoDetach=True)
    assert block.report(luns, "vgs", "vg_name") == []

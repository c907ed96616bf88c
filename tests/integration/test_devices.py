"""Device discovery and LVM volume groups through a real daemon over STOMP.

Loop devices stand in for LUNs; each daemon's `[lvm] devices` names exactly its
test's loop devices, so parallel tests never see each other's.  LVM runs in the
daemon's own mode (metadata-only on a kernel without device-mapper), and the VG
layout is checked with an independent `lvm` call.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.lab.resources import LVM_ENV, LoopDevice, lvm_config
from tests.support.storage import CallFailed, Vdsm, new_uuid

pytestmark = pytest.mark.integration

GiB = 1024**3
MiB = 1024**2
# the first two hold a VG together (at least 10 GiB), the third one alone
SIZES = ["6g", "6g", "10g", "1g", "2g", "3g", "4g", "512m"]


def guid(dev: LoopDevice) -> str:
    return os.path.basename(dev.path)


def by_guid(devices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["GUID"]: d for d in devices}


def lvm_report(devices: list[LoopDevice], command: str, fields: str) -> list[dict[str, str]]:
    """An LVM report read by the test itself, not through the daemon."""
    out = subprocess.run(
        [
            "lvm",
            command,
            "--config",
            lvm_config([d.path for d in devices]),
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            fields,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **LVM_ENV},
    ).stdout
    key = {"vgs": "vg", "pvs": "pv"}[command]
    return json.loads(out)["report"][0][key]


@pytest.fixture
def luns(loop_device: Callable[[int | str], LoopDevice]) -> list[LoopDevice]:
    return [loop_device(size) for size in SIZES]


@pytest.fixture
def vdsm(vdsmd, luns):
    daemon = vdsmd({"lvm": {"devices": " ".join(d.path for d in luns)}})
    client = Vdsm(daemon)
    yield client
    client.close()


def device_list(vdsm: Vdsm, **params: Any) -> dict[str, dict[str, Any]]:
    return by_guid(vdsm.call("Host.getDeviceList", **params))


def test_discovers_the_luns_with_sizes_and_free_status(vdsm, luns):
    devices = device_list(vdsm)
    assert set(devices) == {guid(d) for d in luns}
    for lun in luns:
        dev = devices[guid(lun)]
        assert dev["capacity"] == str(lun.size)
        assert dev["status"] == "free"
        assert dev["pvUUID"] == "" and dev["vgUUID"] == "" and dev["pvsize"] == ""
        assert dev["logicalblocksize"] == "512" and dev["physicalblocksize"].isdigit()
        assert dev["devtype"] == "FCP"  # upstream's name for any non-iSCSI path
        assert dev["pathlist"] == []
        [path] = dev["pathstatus"]
        assert path == {
            "physdev": guid(lun),
            "state": "active",
            "capacity": str(lun.size),
            "lun": 0,
            "type": "FCP",
        }
        assert isinstance(dev["discard_max_bytes"], int) and dev["discard_zeroes_data"] == 0
        for key in ("vendorID", "productID", "serial", "fwrev"):
            assert isinstance(dev[key], str)

    # without checkStatus the status is not looked at
    unchecked = device_list(vdsm, checkStatus=False)
    assert {d["status"] for d in unchecked.values()} == {"unknown"}

    # only the GUIDs asked for
    some = vdsm.call("Host.getDeviceList", guids=[guid(luns[3]), guid(luns[4])])
    assert sorted(d["GUID"] for d in some) == sorted([guid(luns[3]), guid(luns[4])])

    # storage type filters: every loop path counts as FCP (2), none as iSCSI (3)
    assert len(vdsm.call("Host.getDeviceList", storageType=2, checkStatus=False)) == len(luns)
    assert vdsm.call("Host.getDeviceList", storageType="iSCSI", checkStatus=False) == []


def test_a_filesystem_makes_a_lun_used(vdsm, luns):
    lun = luns[7]
    assert device_list(vdsm)[guid(lun)]["status"] == "free"
    subprocess.run(["mkfs.ext4", "-q", "-F", lun.path], check=True, timeout=120)
    # the engine's check before it uses a LUN: its GUID with checkStatus reads again
    [dev] = vdsm.call("Host.getDeviceList", guids=[guid(lun)], checkStatus=True)
    assert dev["status"] == "used"
    # and it cannot become a PV without force
    with pytest.raises(CallFailed) as refused:
        vdsm.call("LVMVolumeGroup.create", name=new_uuid(), devlist=[guid(luns[2]), guid(lun)])
    assert refused.value.code == 601 and "ext4" in refused.value.message


def test_volume_group_life_cycle(vdsm, luns):
    first, second = luns[0], luns[1]
    name = new_uuid()
    vg_uuid = vdsm.call("LVMVolumeGroup.create", name=name, devlist=[guid(first), guid(second)])
    assert isinstance(vg_uuid, str) and vg_uuid

    devices = device_list(vdsm)
    for lun in (first, second):
        dev = devices[guid(lun)]
        assert dev["status"] == "used"
        assert dev["vgUUID"] == vg_uuid
        assert dev["pvUUID"] and int(dev["pvsize"]) > 0
    assert {devices[guid(d)]["status"] for d in luns[2:]} == {"free"}

    # upstream's layout, read without the daemon
    [vg] = [
        r
        for r in lvm_report(luns, "vgs", "vg_name,vg_uuid,vg_tags,vg_extent_size,vg_size,vg_attr")
        if r["vg_name"] == name
    ]
    assert vg["vg_uuid"] == vg_uuid
    assert vg["vg_tags"] == "RHAT_storage_domain_UNREADY"
    assert int(vg["vg_extent_size"]) == 128 * MiB
    pvs = {
        r["pv_name"]: r
        for r in lvm_report(luns, "pvs", "pv_name,pv_uuid,pv_mda_count,pv_mda_used_count,vg_name")
    }
    assert {pvs[first.path]["vg_name"], pvs[second.path]["vg_name"]} == {name}
    assert pvs[first.path]["pv_mda_count"] == "2" and pvs[second.path]["pv_mda_count"] == "2"
    # only the first PV's metadata areas are in use
    assert pvs[first.path]["pv_mda_used_count"] == "2"
    assert pvs[second.path]["pv_mda_used_count"] == "0"
    assert devices[guid(first)]["pvUUID"] == pvs[first.path]["pv_uuid"]

    listed = {v["vgUUID"]: v for v in vdsm.call("Host.getLVMVolumeGroups")}
    assert set(listed) == {vg_uuid}
    entry = listed[vg_uuid]
    assert entry["name"] == name and entry["vgsize"] == vg["vg_size"]
    assert int(entry["vgfree"]) <= int(entry["vgsize"])
    assert entry["state"] == "OK" and entry["type"] == 2  # FCP, as its PVs
    assert entry["attr"]["permission"] == "w" and entry["attr"]["partial"] == "-"
    assert "pvlist" not in entry
    assert vdsm.call("Host.getLVMVolumeGroups", storageType=2) == [entry]
    assert vdsm.call("Host.getLVMVolumeGroups", storageType=3) == []

    info = vdsm.call("LVMVolumeGroup.getInfo", lvmvolumegroupID=vg_uuid)
    assert {k: v for k, v in info.items() if k != "pvlist"} == entry
    pvlist = {pv["GUID"]: pv for pv in info["pvlist"]}
    assert set(pvlist) == {guid(first), guid(second)}
    for lun in (first, second):
        pv = pvlist[guid(lun)]
        assert pv["vgUUID"] == vg_uuid and pv["pvUUID"] == pvs[lun.path]["pv_uuid"]
        assert pv["devcapacity"] == str(lun.size)
        assert int(pv["capacity"]) < lun.size and int(pv["pe_count"]) > 0
        assert pv["pathstatus"][0]["physdev"] == guid(lun)

    # a LUN of this VG goes to no other VG without force, and nothing is touched
    with pytest.raises(CallFailed) as refused:
        vdsm.call("LVMVolumeGroup.create", name=new_uuid(), devlist=[guid(luns[2]), guid(first)])
    assert refused.value.code == 601 and name in refused.value.message
    assert device_list(vdsm)[guid(luns[2])]["pvUUID"] == ""

    vdsm.call("LVMVolumeGroup.remove", lvmvolumegroupID=vg_uuid)
    assert vdsm.code("LVMVolumeGroup.getInfo", lvmvolumegroupID=vg_uuid) == 506
    assert vdsm.call("Host.getLVMVolumeGroups") == []
    devices = device_list(vdsm)
    # the PVs stay, in no VG: free again
    assert devices[guid(first)]["status"] == "free" and devices[guid(first)]["vgUUID"] == ""
    # removing it again is no error (as upstream)
    vdsm.call("LVMVolumeGroup.remove", lvmvolumegroupID=vg_uuid)


def test_force_takes_a_lun_from_another_vg(vdsm, luns):
    lone = luns[2]
    other = vdsm.call("LVMVolumeGroup.create", name=new_uuid(), devlist=[guid(lone)])
    assert device_list(vdsm)[guid(lone)]["vgUUID"] == other

    devlist = [guid(lone), guid(luns[0])]
    assert vdsm.code("LVMVolumeGroup.create", name=new_uuid(), devlist=devlist) == 601
    taken = vdsm.call("LVMVolumeGroup.create", name=new_uuid(), devlist=devlist, force=True)
    devices = device_list(vdsm)
    assert devices[guid(lone)]["vgUUID"] == taken
    # the other VG lived on that LUN alone: it is gone
    assert [v["vgUUID"] for v in vdsm.call("Host.getLVMVolumeGroups")] == [taken]
    vdsm.call("LVMVolumeGroup.remove", lvmvolumegroupID=taken)


def test_bad_devices_get_upstreams_codes(vdsm, luns):
    with pytest.raises(CallFailed) as unknown:
        vdsm.call("LVMVolumeGroup.create", name=new_uuid(), devlist=[guid(luns[0]), "nosuchlun"])
    assert unknown.value.code == 606 and "nosuchlun" in unknown.value.message
    # less than 10 GiB in all
    assert (
        vdsm.code("LVMVolumeGroup.create", name=new_uuid(), devlist=[guid(luns[3]), guid(luns[4])])
        == 504
    )
    assert vdsm.code("LVMVolumeGroup.create", name="not-a-uuid", devlist=[guid(luns[2])]) != 0
    assert vdsm.code("LVMVolumeGroup.getInfo", lvmvolumegroupID="nosuchvg") == 506
    assert vdsm.code("Host.getDeviceList", storageType="TAPE") == 1000
    # GUIDs are only ever compared with the configured devices' names
    hostile = "../../../dev/sda"
    assert vdsm.call("Host.getDeviceList", guids=[hostile]) == []
    assert vdsm.call("Host.getDevicesVisibility", guidList=[hostile]) == {hostile: False}
    assert vdsm.code("LVMVolumeGroup.create", name=new_uuid(), devlist=[hostile]) == 606
    assert vdsm.code("LVMVolumeGroup.remove", lvmvolumegroupID=hostile) == 0
    # nothing was created, and the daemon still serves
    assert {d["status"] for d in vdsm.call("Host.getDeviceList")} == {"free"}


def test_visibility_of_present_and_absent_luns(vdsm, luns):
    answer = vdsm.call("Host.getDevicesVisibility", guidList=[guid(luns[0]), "3600nosuchwwid"])
    assert answer == {guid(luns[0]): True, "3600nosuchwwid": False}


def test_a_resized_lun_is_seen_through_udev_events(vdsm, luns):
    lun = luns[7]
    assert device_list(vdsm, checkStatus=False)[guid(lun)]["capacity"] == str(lun.size)
    grown = lun.size + 256 * MiB
    os.truncate(lun.backing, grown)
    subprocess.run(["losetup", "--set-capacity", lun.path], check=True, timeout=30)
    # the device set did not change: only the kernel's change event refreshes the cache
    deadline = time.monotonic() + 10
    while device_list(vdsm, checkStatus=False)[guid(lun)]["capacity"] != str(grown):
        assert time.monotonic() < deadline, "the resize was not noticed"
        time.sleep(0.1)


def test_a_lun_that_appears_later_is_seen(vdsmd, loop_device, tmp_path: Path):
    """LUNs named by a glob (as /dev/mapper/*): one that appears after start is found
    by the next verb that asks, with no restart."""
    luns_dir = tmp_path / "luns"
    luns_dir.mkdir()
    early, late = loop_device("1g"), loop_device("2g")
    (luns_dir / "wwid-early").symlink_to(early.path)
    daemon = vdsmd({"lvm": {"devices": f"{luns_dir}/*"}})
    vdsm = Vdsm(daemon)
    try:
        assert [d["GUID"] for d in vdsm.call("Host.getDeviceList")] == ["wwid-early"]
        assert vdsm.call("Host.getDevicesVisibility", guidList=["wwid-late"]) == {
            "wwid-late": False
        }
        (luns_dir / "wwid-late").symlink_to(late.path)
        assert vdsm.call("Host.getDevicesVisibility", guidList=["wwid-late"]) == {"wwid-late": True}
        devices = device_list(vdsm, checkStatus=False)
        assert set(devices) == {"wwid-early", "wwid-late"}
        assert devices["wwid-late"]["capacity"] == str(2 * GiB)
        # its path is the kernel's device under the link
        assert devices["wwid-late"]["pathstatus"][0]["physdev"] == guid(late)
    finally:
        vdsm.close()

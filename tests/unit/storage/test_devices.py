"""Parsing and deciding in device discovery: blkid output, free/used, the wire shapes."""

from __future__ import annotations

import asyncio

import pytest

from vdsm import errors
from vdsm.api.devices import block_type, device_info, vg_info
from vdsm.storage.devices import (
    FREE,
    UNKNOWN,
    USED,
    BlockDevices,
    Device,
    Discovery,
    guid_of,
    used_by,
)
from vdsm.storage.volumegroups import VolumeGroup
from vdsm.system import blkid
from vdsm.system.lvm import PV, VG, Lvm
from vdsm.system.udev import FCP, ISCSI, MIXED, BlockEvent, DeviceFacts, PathFacts

BLKID_OUTPUT = """\
DEVNAME=/dev/loop2
UUID=f4edf513-2b1e-4e3e-9ecc-e36232323060
BLOCK_SIZE=1024
TYPE=ext4
USAGE=filesystem

DEVNAME=/dev/mapper/36001405abc
PTUUID=7c1d2b5e
PTTYPE=gpt
"""


def facts(path: str = "/dev/mapper/36001405abc", partitions: tuple[str, ...] = ()) -> DeviceFacts:
    return DeviceFacts(
        path=path,
        name="dm-3",
        size=10 * 1024**3,
        logical_block_size=512,
        physical_block_size=4096,
        discard_max_bytes=1 << 30,
        vendor="LIO-ORG",
        model="disk1",
        fwrev="4.0",
        serial="36001405abc",
        partitions=partitions,
        paths=(
            PathFacts(name="sdb", size=10 * 1024**3, lun=1, transport=ISCSI, state="active"),
            PathFacts(name="sdc", size=10 * 1024**3, lun=1, transport=ISCSI, state="failed"),
        ),
    )


def pv(vg_name: str = "", path: str = "/dev/mapper/36001405abc") -> PV:
    return PV(
        name=path,
        uuid="pvuuid-1",
        size=10 * 1024**3 - 256 * 1024**2,
        free=0,
        pe_start=1024**2,
        pe_count=78,
        pe_alloc_count=0,
        mda_count=2,
        mda_size=128 * 1024**2,
        mda_free=128 * 1024**2,
        dev_size=10 * 1024**3,
        vg_name=vg_name,
        vg_uuid="vguuid-1" if vg_name else "",
    )


def test_blkid_export_groups_by_device():
    probes = blkid.parse_export(BLKID_OUTPUT)
    assert probes["/dev/loop2"]["TYPE"] == "ext4"
    assert blkid.signature(probes["/dev/loop2"]) == "ext4"
    # a partition table names the device before any content type
    assert blkid.signature(probes["/dev/mapper/36001405abc"]) == "gpt"
    assert blkid.signature({}) == ""
    assert blkid.parse_export("") == {}


def test_used_follows_upstreams_rule():
    assert used_by(facts(), None, "") == ""
    # a PV without a VG is free: pvcreate takes it again
    assert used_by(facts(), pv(), "LVM2_member") == ""
    assert used_by(facts(), pv("vg1"), "LVM2_member") == "PV of VG vg1"
    assert used_by(facts(partitions=("dm-4",)), None, "") == "partitions dm-4"
    assert used_by(facts(), None, "ext4") == "ext4 signature"
    assert used_by(facts(), None, "gpt") == "gpt signature"


def test_device_status():
    assert Device(facts(), None, used_by=None).status == UNKNOWN
    assert Device(facts(), None, used_by="").status == FREE
    assert Device(facts(), None, used_by="ext4 signature").status == USED


def test_guid_is_the_last_path_component():
    assert guid_of("/dev/mapper/36001405abc") == "36001405abc"
    assert guid_of("/dev/loop3") == "loop3"


def test_configured_patterns_match_paths():
    devices = BlockDevices("/dev/mapper/* /dev/loop3")
    assert devices.matches("/dev/mapper/3600a")
    assert devices.matches("/dev/loop3")
    assert not devices.matches("/dev/loop31")


def test_devtype_of_paths():
    assert facts().devtype == ISCSI
    mixed = DeviceFacts(
        **{
            **facts().__dict__,
            "paths": (
                PathFacts("sdb", 1, 0, ISCSI, "active"),
                PathFacts("sdc", 1, 0, FCP, "active"),
            ),
        }
    )
    assert mixed.devtype == MIXED


def test_device_info_has_upstreams_wire_types():
    info = device_info(Device(facts(), pv("vg1"), used_by="PV of VG vg1"))
    assert info == {
        "GUID": "36001405abc",
        "capacity": str(10 * 1024**3),
        "devtype": "iSCSI",
        "fwrev": "4.0",
        "logicalblocksize": "512",
        "pathlist": [],
        "pathstatus": [
            {
                "physdev": "sdb",
                "state": "active",
                "capacity": str(10 * 1024**3),
                "lun": 1,
                "type": "iSCSI",
            },
            {
                "physdev": "sdc",
                "state": "failed",
                "capacity": str(10 * 1024**3),
                "lun": 1,
                "type": "iSCSI",
            },
        ],
        "physicalblocksize": "4096",
        "productID": "disk1",
        "pvUUID": "pvuuid-1",
        "pvsize": str(10 * 1024**3 - 256 * 1024**2),
        "serial": "36001405abc",
        "vendorID": "LIO-ORG",
        "vgUUID": "vguuid-1",
        "discard_max_bytes": 1 << 30,
        "discard_zeroes_data": 0,
        "status": "used",
    }
    free = device_info(Device(facts(), None, used_by=""))
    assert (free["pvUUID"], free["pvsize"], free["vgUUID"], free["status"]) == ("", "", "", "free")


def test_vg_info_attr_state_and_type():
    vg = VG(
        name="sd1",
        uuid="vguuid-1",
        attr="wz--n-",
        size=20 * 1024**3,
        free=19 * 1024**3,
        extent_size=128 * 1024**2,
        extent_count=160,
        free_count=152,
        tags=("RHAT_storage_domain_UNREADY",),
        mda_size=128 * 1024**2,
        mda_free=127 * 1024**2,
        lv_count=0,
        pv_names=("/dev/mapper/36001405abc",),
    )
    group = VolumeGroup(vg=vg, pvs=((pv("sd1"), facts()),))
    info = vg_info(group, with_pvs=True)
    assert info["attr"] == {
        "permission": "w",
        "resizeable": "z",
        "exported": "-",
        "partial": "-",
        "allocation": "n",
        "clustered": "-",
    }
    assert (info["state"], info["type"], info["vgsize"]) == ("OK", 3, str(20 * 1024**3))
    [member] = info["pvlist"]
    assert member["GUID"] == "36001405abc" and member["fwrev"] == "0000"
    assert member["pe_count"] == "78" and member["devcapacity"] == str(10 * 1024**3)
    assert "pvlist" not in vg_info(group, with_pvs=False)
    partial = VolumeGroup(vg=VG(**{**vg.__dict__, "attr": "wz-pn-"}), pvs=())
    assert vg_info(partial, with_pvs=False)["state"] == "PARTIAL"


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        (None, None),
        ("", None),
        (3, ISCSI),
        ("3", ISCSI),
        ("iSCSI", ISCSI),
        (2, FCP),
        ("FCP", FCP),
        ("MIXED", MIXED),
    ],
)
def test_storage_type_as_the_engine_sends_it(sent, meant):
    assert block_type(sent) == meant


def test_unknown_storage_type_is_refused():
    with pytest.raises(errors.InvalidParameterException):
        block_type("TAPE")


def test_only_events_about_our_devices_drop_the_caches(tmp_path):
    devices = BlockDevices(f"{tmp_path}/luns/*")
    lvm = Lvm(devices.paths, device_mapper=False)
    discovery = Discovery(devices, lvm, timeout=5)

    async def scenario() -> None:
        assert await discovery.facts() == {}
        assert await discovery.facts() == {}
        assert discovery.scans == 1  # cached
        generation = lvm.generation

        discovery.on_event(BlockEvent("change", "loop99", "/dev/loop99"))  # someone else's
        await discovery.facts()
        assert (discovery.scans, lvm.generation) == (1, generation)

        discovery.on_event(BlockEvent("change", "sdx", f"{tmp_path}/luns/wwid1"))
        await discovery.facts()
        assert discovery.scans == 2 and lvm.generation > generation

    asyncio.run(scenario())

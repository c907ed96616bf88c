"""Block storage domains through JSON-RPC on real LVM (loop devices as LUNs).

This host's kernel has no device-mapper: the daemon runs LVM in metadata-only mode,
so these tests cover everything kept in LVM metadata (the VG, its tags, the special
LVs); the kernel lab covers the LV data (sanlock, metadata slots, volumes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.resources import LoopDevice
from tests.support import block
from tests.support.storage import CallFailed, Site, new_uuid

MiB = block.MiB
ISCSI = 3


@pytest.fixture
def luns(loop_device: Callable[[int | str], LoopDevice]) -> list[str]:
    # sparse; LVMVolumeGroup.create wants 10 GiB at least (upstream's minimum)
    return [loop_device("6g").path for _ in range(2)]


def block_site(vdsmd: Callable[..., object], tmp_path: Path, luns: list[str]) -> Site:
    return Site(vdsmd, tmp_path, extra={"lvm": {"devices": " ".join(luns)}})


def create(site: Site, sd: str, vg_uuid: str, version: int = 5, name: str = "block-data") -> None:
    site.vdsm.call(
        "StorageDomain.create",
        storagedomainID=sd,
        domainType=ISCSI,
        typeArgs=vg_uuid,
        name=name,
        domainClass=1,
        version=version,
    )


@pytest.mark.parametrize("version", [5, 4])
def test_create_lays_out_the_vg_as_upstream(
    vdsmd: Callable[..., object], tmp_path: Path, luns: list[str], version: int
) -> None:
    site = block_site(vdsmd, tmp_path, luns)
    sd = new_uuid()
    vg_uuid = site.vdsm.call(
        "LVMVolumeGroup.create", name=sd, devlist=[Path(p).name for p in luns], force=False
    )
    create(site, sd, vg_uuid, version, name="Données & co")

    tags = block.vg_tags(luns, sd)
    assert block.DOMAIN_TAG in tags and block.UNREADY_TAG not in tags
    values = block.domain_metadata(tags)
    expected_keys = {
        "CLASS", "DESCRIPTION", "IOOPTIMEOUTSEC", "LEASERETRIES", "LEASETIMESEC",
        "LOCKPOLICY", "LOCKRENEWALINTERVALSEC", "POOL_UUID", "ROLE", "SDUUID", "TYPE",
        "VERSION", "VGUUID", "PV0", "PV1",
    }  # fmt: skip
    expected_keys |= {"ALIGNMENT", "BLOCK_SIZE"} if version == 5 else {"LOGBLKSIZE", "PHYBLKSIZE"}
    assert set(values) == expected_keys
    assert values["TYPE"] == "ISCSI" and values["VGUUID"] == vg_uuid
    assert values["DESCRIPTION"] == "Données & co" and values["VERSION"] == str(version)
    # the description's space, accents and '&' are escaped in the tag
    assert "MDT_DESCRIPTION=Donn&233&es&32&&38&&32&co" in tags
    pvs = {r["pv_name"]: r for r in block.report(luns, "pvs", "pv_name,pv_uuid,pv_pe_count")}
    lv_rows = block.report(luns, "lvs", "lv_name,devices", sd)
    metadata_pv = next(r["devices"] for r in lv_rows if r["lv_name"] == "metadata").split("(")[0]
    other = next(p for p in luns if p != metadata_pv)
    assert values["PV0"] == (
        f"pv:{Path(metadata_pv).name},uuid:{pvs[metadata_pv]['pv_uuid']},pestart:0,"
        f"pecount:{pvs[metadata_pv]['pv_pe_count']},mapoffset:0"
    )
    assert values["PV1"].startswith(f"pv:{Path(other).name},uuid:{pvs[other]['pv_uuid']},")
    assert values["PV1"].endswith(f"mapoffset:{pvs[metadata_pv]['pv_pe_count']}")

    lvs = block.lvs(luns, sd)
    sizes = {
        "metadata": 128 * MiB,
        "ids": 128 * MiB,
        "inbox": 128 * MiB,
        "outbox": 128 * MiB,
        "leases": 2048 * MiB,
        "master": 1024 * MiB,
    }  # fmt: skip  (extents are 128 MiB: ids/inbox/outbox round up to one)
    if version >= 4:
        sizes["xleases"] = 1024 * MiB
    assert {n: lv["size"] for n, lv in lvs.items()} == sizes

    info = site.vdsm.call("StorageDomain.getInfo", storagedomainID=sd)
    assert info["type"] == "ISCSI" and info["vguuid"] == vg_uuid and info["state"] == "OK"
    assert info["name"] == "Données & co" and info["version"] == str(version)
    assert info["metadataDevice"] == Path(metadata_pv).name
    stats = site.vdsm.call("StorageDomain.getStats", storagedomainID=sd)
    vg = block.report(luns, "vgs", "vg_size,vg_free,vg_mda_size,vg_mda_free", sd)[0]
    assert stats["disktotal"] == vg["vg_size"] and stats["diskfree"] == vg["vg_free"]
    assert stats["mdasize"] == int(vg["vg_mda_size"]) and stats["mdavalid"] is True
    assert site.vdsm.call("Host.getStorageDomains") == [sd]
    assert site.vdsm.call("Host.getStorageDomains", storageType=ISCSI) == [sd]

    site.vdsm.call("StorageDomain.setDescription", storagedomainID=sd, description="renamed")
    assert block.domain_metadata(block.vg_tags(luns, sd))["DESCRIPTION"] == "renamed"

    site.vdsm.call("StorageDomain.format", storagedomainID=sd, autoDetach=False)
    assert block.report(luns, "vgs", "vg_name") == []
    assert site.vdsm.code("StorageDomain.getInfo", storagedomainID=sd) == 358


def test_bad_vgs_are_refused(vdsmd: Callable[..., object], tmp_path: Path, luns: list[str]) -> None:
    site = block_site(vdsmd, tmp_path, luns)
    # a VG that is not known
    assert site.vdsm.code(
        "StorageDomain.create", storagedomainID=new_uuid(), domainType=ISCSI,
        typeArgs="nOsUch-VGuu-id00-0000-0000-0000-000000", name="x", domainClass=1, version=5,
    ) == 506  # fmt: skip
    # a VG without the UNREADY tag LVMVolumeGroup.create puts on it
    sd = new_uuid()
    vg_uuid = block.make_vg(luns[:1], sd, tags=("someone_elses",))
    with pytest.raises(CallFailed) as e:
        create(site, sd, vg_uuid)
    assert e.value.code == 515
    assert block.vg_tags(luns, sd) == ["someone_elses"] and block.lvs(luns, sd) == {}
    # a VG whose LVs are not ours
    sd2 = new_uuid()
    vg2 = block.make_vg(luns[1:], sd2)
    block.lvm(luns, "lvcreate", "-an", "--zero", "n", "-n", "data", "-L", "128m", sd2)
    with pytest.raises(CallFailed) as e:
        create(site, sd2, vg2)
    assert e.value.code == 361
    assert list(block.lvs(luns, sd2)) == ["data"]
    # the daemon still serves
    assert site.vdsm.call("Host.ping2") is True


def test_broken_metadata_seal_answers_752(
    vdsmd: Callable[..., object], tmp_path: Path, luns: list[str]
) -> None:
    site = block_site(vdsmd, tmp_path, luns)
    sd = new_uuid()
    create(site, sd, block.make_vg(luns, sd))
    tags = block.vg_tags(luns, sd)
    old = next(t for t in tags if t.startswith("MDT_DESCRIPTION="))
    # another writer changes a line without resealing
    block.lvm(luns, "vgchange", "--deltag", old, "--addtag", "MDT_DESCRIPTION=tampered", sd)
    assert site.vdsm.code("StorageDomain.getInfo", storagedomainID=sd) == 752
    assert site.vdsm.call("Host.ping2") is True


def test_two_vgs_with_one_name(
    vdsmd: Callable[..., object], tmp_path: Path, luns: list[str]
) -> None:
    site = block_site(vdsmd, tmp_path, luns)
    sd = new_uuid()
    # made apart (each LVM seeing only its device), then both visible to the daemon
    uuid_a = block.make_vg(luns[:1], sd)
    block.make_vg(luns[1:], sd)
    with pytest.raises(CallFailed) as e:
        create(site, sd, uuid_a)
    assert e.value.code == 513
    assert all(t == block.UNREADY_TAG for t in block.vg_tags(luns[:1], sd))
    assert site.vdsm.call("Host.ping2") is True


def test_lvcreate_failing_half_way_leaves_nothing(
    vdsmd: Callable[..., object], tmp_path: Path, loop_device: Callable[[int | str], LoopDevice]
) -> None:
    # 4 GiB (30 extents of 128 MiB) holds a V3 domain (28 extents) but not a V5 one
    # (36): its lvcreate of `master` fails after six LVs were made
    lun = loop_device("4g").path
    site = block_site(vdsmd, tmp_path, [lun])
    sd = new_uuid()
    vg_uuid = block.make_vg([lun], sd)
    with pytest.raises(CallFailed) as e:
        create(site, sd, vg_uuid)
    assert e.value.code == 550 and "-n master" in e.value.message
    # the LVs it made are gone, no metadata tag stayed, nothing looks like a domain
    assert block.lvs([lun], sd) == {}
    assert block.vg_tags([lun], sd) == [block.UNREADY_TAG]
    assert site.vdsm.code("StorageDomain.getInfo", storagedomainID=sd) == 358
    assert site.vdsm.call("Host.getStorageDomains") == []
    # a V3 domain (no xleases) fits: the VG is usable again after the failure
    create(site, sd, vg_uuid, version=3)
    assert site.vdsm.call("StorageDomain.getInfo", storagedomainID=sd)["version"] == "3"

"""Kernel lab: block storage domains with device-mapper, through a real daemon.

A V5 ISCSI domain on two loop "LUNs": the special LVs activated and linked, the
xleases index, sanlock's lockspace on the `ids` LV and the SDM resource at 1 MiB of the
`leases` LV; then a pool on it and SPM start through real sanlock (the master LV's file
system mounted for the tasks), SPM stop, format.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sanlock as sanlock_lib

from tests.integration.conftest import wait_until_ready
from tests.lab.fixtures import SanlockDaemon
from tests.lab.resources import LoopDevice, run
from tests.support import block
from tests.support.storage import Site, new_uuid, read_xleases_header

pytestmark = pytest.mark.lab

MiB = block.MiB


def lab_site(vdsmd: Callable[..., Any], tmp_path: Path, luns: list[str]) -> Site:
    def slow_start(config: dict[str, Any]) -> Any:
        return vdsmd(config, start_timeout=600)

    # a glob: LUNs added later are seen (the guest is ours alone, no other loop users)
    # sanlock io_timeout 5 s, not the host tests' 1 s: under TCG emulation with qemu-img
    # and mkfs running, renewals every 2 s fall behind an 8 s expiry and wdmd's
    # watchdog resets the guest (as it would a real host whose storage is that slow)
    site = Site(
        slow_start,
        tmp_path,
        extra={
            "lvm": {"devices": "/dev/loop*"},
            "sanlock": {"io_timeout": "5"},
            # thin volumes made without initialSize start at 128 MiB, not 2.5 GiB: a
            # copy of 160 MiB then has to grow its destination first
            "irs": {"volume_utilization_chunk_mb": "128"},
        },
    )
    site.vdsm.timeout = 600
    wait_until_ready(site.daemon, timeout=600)  # VM recovery first: 99 until then
    return site


def run_task(site: Site, method: str, **params: Any) -> dict[str, Any]:
    task = site.vdsm.call(method, **params)
    status = site.vdsm.wait_task(task, timeout=900)
    site.vdsm.call("Task.clear", taskID=task)
    assert status["taskResult"] == "success", (method, status)
    return status


def qemu(tool: str, *args: str) -> str:
    return run([tool, *args], timeout=300).stdout


def read_slot(sd: str, slot: int) -> dict[str, str]:
    """A V5 volume metadata slot, read by hand: 1 MiB + slot x 8 KiB of the metadata LV,
    sorted KEY=VALUE lines, EOF, NUL padding to 512 bytes."""
    fd = os.open(f"/dev/{sd}/metadata", os.O_RDONLY)
    try:
        raw = os.pread(fd, 8192, MiB + slot * 8192)
    finally:
        os.close(fd)
    text, _, padding = raw[:512].partition(b"EOF\n")
    assert padding.strip(b"\0") == b"" and raw[512:] == bytes(8192 - 512)
    lines = text.decode().splitlines()
    assert lines == sorted(lines)
    return dict(line.split("=", 1) for line in lines)


LV_CHANGE = re.compile(
    r"\[vdsm\.system\.lvm\] running lvm (lvcreate|lvchange|lvextend|lvremove|lvrename) "
    r"--config (.*)"
)


def lv_changes(site: Site) -> list[tuple[str, str]]:
    """The LV changing lvm commands the daemon ran so far: (command, arguments)."""
    return LV_CHANGE.findall(site.daemon.log_path.read_text())


def lv_tags(luns: list[str], sd: str) -> dict[str, list[str]]:
    return {name: lv["tags"] for name, lv in block.lvs(luns, sd).items()}


def volumes_on_block_domain(
    site: Site, sd: str, luns: list[str], loop_device: Callable[[int | str], LoopDevice]
) -> None:
    """Thin volume, snapshot, extend, prepare and write, copy to a file domain, delete."""
    img, base, top = new_uuid(), new_uuid(), new_uuid()
    blank = "00000000-0000-0000-0000-000000000000"
    GiB = 1024 * MiB

    def create(vol: str, parent: str) -> None:
        run_task(
            site, "Volume.create", volumeID=vol, storagepoolID=site.sp, storagedomainID=sd,
            imageID=img, size=str(GiB), volFormat=4, preallocate=2, diskType="DATA",
            desc="lab", srcImgUUID=img if parent != blank else blank, srcVolUUID=parent,
            initialSize=str(256 * MiB),
        )  # fmt: skip

    # the LVM changes one creation costs: lvcreate (active) and one lvchange that
    # deactivates and drops the claim tags; a snapshot adds its inactive parent's
    # activation for qemu-img and the deactivation after
    before = len(lv_changes(site))
    create(base, blank)
    changes = lv_changes(site)[before:]
    assert [c for c, _ in changes] == ["lvcreate", "lvchange"], changes
    assert " -a y " in changes[0][1]
    assert (
        changes[1][1].endswith(f" -a n {sd}/{base}") and "OVIRT_VOL_INITIALIZING" in changes[1][1]
    )
    before = len(lv_changes(site))
    create(top, base)
    changes = lv_changes(site)[before:]
    assert [(c, a.split()[-1]) for c, a in changes] == [
        ("lvcreate", sd), ("lvchange", f"{sd}/{base}"), ("lvchange", f"{sd}/{base}"),
        ("lvchange", f"{sd}/{top}"),
    ], changes  # fmt: skip
    assert changes[1][1].startswith("-a y ") and changes[2][1] == f"-a n {sd}/{base}"
    active = block.report(luns, "lvs", "lv_name", "--select", "lv_active=active", sd)
    assert not {r["lv_name"] for r in active} & {base, top}
    tags = lv_tags(luns, sd)
    assert sorted(tags[base]) == sorted([f"IU_{img}", f"PU_{blank}", "MD_1"])
    assert sorted(tags[top]) == sorted([f"IU_{img}", f"PU_{base}", "MD_2"])
    sizes = {n: lv["size"] for n, lv in block.lvs(luns, sd).items()}
    assert sizes[base] == sizes[top] == 384 * MiB  # 256 MiB x 1.1, whole 128 MiB extents
    meta = read_slot(sd, 1)
    assert meta["VOLTYPE"] == "INTERNAL" and meta["PUUID"] == blank
    meta = read_slot(sd, 2)
    assert {k: meta[k] for k in ("CAP", "FORMAT", "TYPE", "VOLTYPE", "LEGALITY", "IMAGE",
            "DOMAIN", "PUUID", "DISKTYPE", "DESCRIPTION")} == {
        "CAP": str(GiB), "FORMAT": "COW", "TYPE": "SPARSE", "VOLTYPE": "LEAF",
        "LEGALITY": "LEGAL", "IMAGE": img, "DOMAIN": sd, "PUUID": base, "DISKTYPE": "DATA",
        "DESCRIPTION": "lab",
    }  # fmt: skip
    # the volume lease: a sanlock resource named after the volume at (100 + slot) MiB
    lease = sanlock_lib.read_resource(f"/dev/{sd}/leases", offset=102 * MiB, align=MiB, sector=512)
    assert lease["resource"] == top.encode() and lease["lockspace"] == sd.encode()

    pdiv = {"storagepoolID": site.sp, "storagedomainID": sd, "imageID": img, "volumeID": top}
    run_task(site, "Volume.extendSize", newSize=str(2 * GiB), **pdiv)
    assert read_slot(sd, 2)["CAP"] == str(2 * GiB)

    prepared = site.vdsm.call("Image.prepare", **pdiv)
    assert [v["volumeID"] for v in prepared["imgVolumesInfo"]] == [base, top]
    qemu("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 8M", prepared["path"])
    chain = json.loads(
        qemu("qemu-img", "info", "--output", "json", "--backing-chain", "-U", prepared["path"])
    )
    assert chain[0]["virtual-size"] == 2 * GiB and len(chain) == 2
    site.vdsm.call("Image.teardown", storagepoolID=site.sp, storagedomainID=sd, imageID=img)
    assert not block.report(luns, "lvs", "lv_name", "--select", "lv_active=active", f"{sd}/{top}")

    # a file domain of the pool (ext4 on a loop device: the guest's /tmp has no O_DIRECT)
    fs = loop_device("2g")
    run(["mkfs.ext4", "-q", fs.path])
    mnt = site.local("filesd")
    run(["mount", fs.path, str(mnt)])
    try:
        other = new_uuid()
        site.connect_dirs(mnt)
        site.create_domain(other, mnt)
        site.vdsm.call("StorageDomain.attach", storagedomainID=other, storagepoolID=site.sp)
        site.vdsm.call("StorageDomain.activate", storagedomainID=other, storagepoolID=site.sp)
        run_task(
            site, "Image.move", imageID=img, storagepoolID=site.sp, storagedomainID=sd,
            dstSdUUID=other, operation=1, postZero=False, force=False,
        )  # fmt: skip
        copied = mnt / other / "images" / img
        site.vdsm.call("Image.prepare", **pdiv)
        try:
            assert "Images are identical" in qemu(
                "qemu-img", "compare", "-U", prepared["path"], str(copied / top)
            )
        finally:
            site.vdsm.call("Image.teardown", storagepoolID=site.sp, storagedomainID=sd, imageID=img)

        run_task(
            site, "Image.delete", storagepoolID=site.sp, storagedomainID=sd, imageID=img,
            postZero=False, force=False,
        )  # fmt: skip
        assert set(block.lvs(luns, sd)) == {"metadata", "ids", "leases", "inbox", "outbox",
                                            "xleases", "master"}  # fmt: skip
        # the freed slots read as cleared (757 to a reader), never as volumes
        assert set(read_slot(sd, 1)) == set(read_slot(sd, 2)) == {"NONE"}
        run_task(
            site, "Image.delete", storagepoolID=site.sp, storagedomainID=other, imageID=img,
            postZero=False, force=False,
        )  # fmt: skip
        site.vdsm.call(
            "StorageDomain.deactivate", storagedomainID=other, storagepoolID=site.sp,
            masterSdUUID=sd, masterVersion=1,
        )  # fmt: skip
        site.vdsm.call(
            "StorageDomain.detach", storagedomainID=other, storagepoolID=site.sp,
            masterSdUUID=sd, masterVersion=1, force=False,
        )  # fmt: skip
    finally:
        site.vdsm.call(
            "StoragePool.disconnectStorageServer", storagepoolID=block.BLANK, domainType=4,
            connectionParams=[{"id": new_uuid(), "connection": str(mnt)}],
        )  # fmt: skip
        run(["umount", "-l", str(mnt)], check=False)


def direct_read(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        with mmap.mmap(-1, size) as buf:
            os.preadv(fd, [buf], offset)
            return bytes(buf)
    finally:
        os.close(fd)


def direct_write(path: str, offset: int, data: bytes) -> None:
    """As another host writes to shared storage: past this host's page cache."""
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        with mmap.mmap(-1, len(data)) as buf:
            buf.write(data)
            os.pwritev(fd, [buf], offset)
    finally:
        os.close(fd)


def extend_through_the_mailbox(site: Site, sd: str, luns: list[str]) -> tuple[str, str]:
    """Another host (id 2) asks the SPM to grow a thin volume the way upstream VDSM
    does: a request in its mailbox of the master's inbox LV and an event at offset 0.
    The LV grows and the reply lands in its mailbox of the outbox LV; a request for a
    volume that does not exist is answered with size 0; a clean message frees the slot."""
    img, vol = new_uuid(), new_uuid()
    run_task(
        site, "Volume.create", volumeID=vol, storagepoolID=site.sp, storagedomainID=sd,
        imageID=img, size=str(4096 * MiB), volFormat=4, preallocate=2, diskType="DATA",
        desc="thin", srcImgUUID=block.BLANK, srcVolUUID=block.BLANK,
        initialSize=str(256 * MiB),
    )  # fmt: skip
    assert block.lvs(luns, sd)[vol]["size"] == 384 * MiB
    host = 2
    request = block.extend_message(sd, vol, 1024)
    missing = new_uuid()
    unknown = block.extend_message(sd, missing, 1024)
    inbox, outbox = f"/dev/{sd}/inbox", f"/dev/{sd}/outbox"

    def reply(slot: int) -> bytes:
        return direct_read(outbox, host * block.MAILBOX, block.MAILBOX)[slot * 64 : slot * 64 + 64]

    direct_write(inbox, host * block.MAILBOX, block.host_mailbox({0: request, 1: unknown}))
    direct_write(inbox, 0, block.event_block())
    wait_for(lambda: reply(0) == request and reply(1) != bytes(64), 120)
    assert block.lvs(luns, sd)[vol]["size"] == 1024 * MiB
    assert reply(1) == block.extend_message(sd, missing, 0)
    # the host read the replies: it cleans its slot, the SPM frees its reply slot
    direct_write(inbox, host * block.MAILBOX, block.host_mailbox({0: b"\1" * 64, 1: unknown}))
    wait_for(lambda: reply(0) == b"\1" * 64, 120)
    assert block.lvs(luns, sd)[vol]["size"] == 1024 * MiB
    return vol, img


def copy_into_block(site: Site, sd: str, luns: list[str], img: str, vol: str) -> None:
    """Volume.copy into a new thin volume of the block domain: its LV starts at one
    chunk (128 MiB here), the data is 160 MiB, so the LV must grow before qemu-img
    writes (a copy into the bare chunk would fail with ENOSPC)."""
    src = {"storagepoolID": site.sp, "storagedomainID": sd, "imageID": img, "volumeID": vol}
    prepared = site.vdsm.call("Image.prepare", **src)
    # 32 MiB at a time: qemu-io allocates a buffer as large as one write
    writes = [arg for i in range(5) for arg in ("-c", f"write -P 0x33 {i * 32}M 32M")]
    qemu("qemu-io", "-f", "qcow2", *writes, prepared["path"])
    site.vdsm.call("Image.teardown", storagepoolID=site.sp, storagedomainID=sd, imageID=img)
    dst_img, dst_vol = new_uuid(), new_uuid()
    run_task(
        site, "Volume.copy", dstSdUUID=sd, dstImgUUID=dst_img, dstVolUUID=dst_vol,
        desc="copy", volType=8, volFormat=4, preallocate=2, postZero=False, force=False, **src,
    )  # fmt: skip
    assert 160 * MiB < block.lvs(luns, sd)[dst_vol]["size"] < 1024 * MiB
    dst = {**src, "imageID": dst_img, "volumeID": dst_vol}
    first = site.vdsm.call("Image.prepare", **src)["path"]
    second = site.vdsm.call("Image.prepare", **dst)["path"]
    try:
        assert "Images are identical" in qemu("qemu-img", "compare", "-U", first, second)
    finally:
        for image in (img, dst_img):
            site.vdsm.call(
                "Image.teardown", storagepoolID=site.sp, storagedomainID=sd, imageID=image
            )


def a_killed_copy_is_undone(site: Site, sd: str, luns: list[str], img: str, vol: str) -> None:
    """kill -9 of the SPM while Volume.copy writes into a new volume of the block
    domain: the destination LV stays behind tagged OVIRT_VOL_INITIALIZING, and when
    the daemon is back and SPM again, the half-made volume is gone (the persisted
    task's rollback, or the clean-up of initializing LVs)."""
    dst_img, dst_vol = new_uuid(), new_uuid()
    site.vdsm.call(
        "Volume.copy", storagepoolID=site.sp, storagedomainID=sd, imageID=img, volumeID=vol,
        dstSdUUID=sd, dstImgUUID=dst_img, dstVolUUID=dst_vol, desc="killed", volType=8,
        volFormat=4, preallocate=2, postZero=False, force=False,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while dst_vol not in block.lvs(luns, sd):
        assert time.monotonic() < deadline, "the copy's LV never appeared"
        time.sleep(0.1)
    site.daemon.kill()
    left = block.lvs(luns, sd)[dst_vol]
    assert "OVIRT_VOL_INITIALIZING" in left["tags"], left  # killed mid-creation
    site.daemon.start()
    wait_until_ready(site.daemon, timeout=600)
    site.reconnect()
    site.vdsm.timeout = 600
    site.connect_pool(sd)
    site.start_spm()
    wait_for(lambda: dst_vol not in block.lvs(luns, sd), 300)
    assert dst_img not in site.vdsm.call("StorageDomain.getImages", storagedomainID=sd)
    info = site.vdsm.call(
        "Volume.getInfo", storagepoolID=site.sp, storagedomainID=sd, imageID=img, volumeID=vol
    )
    assert info["legality"] == "LEGAL"  # the source is untouched


def pool_dominfo_with_figures(site: Site, sd: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        info = site.vdsm.call("StoragePool.getInfo", storagepoolID=site.sp)
        if "disktotal" in info["dominfo"][sd]:
            return info["dominfo"][sd]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, info
        time.sleep(0.5)


def wait_for(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def grow_the_domain(
    site: Site, sd: str, luns: list[str], loop_device: Callable[[int | str], LoopDevice]
) -> list[str]:
    """StorageDomain.extend with a new LUN, then resizePV after that LUN grew; answers
    the domain's LUNs."""
    lun = loop_device("2g")
    free_before = int(site.vdsm.call("StorageDomain.getStats", storagedomainID=sd)["diskfree"])
    site.vdsm.call(
        "StorageDomain.extend", storagedomainID=sd, storagepoolID=site.sp,
        devlist=[Path(lun.path).name], force=False,
    )  # fmt: skip
    all_luns = [*luns, lun.path]
    meta = block.domain_metadata(block.vg_tags(all_luns, sd))
    assert meta["PV2"].startswith(f"pv:{Path(lun.path).name},")
    pv0, pv1 = (dict(i.split(":", 1) for i in meta[k].split(",")) for k in ("PV0", "PV1"))
    pv2 = dict(i.split(":", 1) for i in meta["PV2"].split(","))
    assert int(pv2["mapoffset"]) == int(pv1["mapoffset"]) + int(pv1["pecount"])
    assert int(pv0["mapoffset"]) == 0
    stats = site.vdsm.call("StorageDomain.getStats", storagedomainID=sd)
    assert int(stats["diskfree"]) > free_before

    with open(lun.backing, "r+b") as f:
        f.truncate(3 * 1024 * MiB)
    run(["losetup", "--set-capacity", lun.path])
    size = site.vdsm.call(
        "StorageDomain.resizePV", storagedomainID=sd, storagepoolID=site.sp,
        guid=Path(lun.path).name,
    )  # fmt: skip
    [pv] = [r for r in block.report(all_luns, "pvs", "pv_name,pv_size") if r["pv_name"] == lun.path]
    assert size == int(pv["pv_size"]) > 2 * 1024 * MiB
    return all_luns


def orphans_go_at_spm_start(site: Site, sd: str, luns: list[str]) -> None:
    """An LV a killed daemon left OVIRT_VOL_INITIALIZING (no task will finish or undo
    it) is removed when this host becomes SPM again."""
    orphan = new_uuid()
    block.lvm(
        luns, "lvcreate", "-an", "--zero", "n", "-W", "n", "-n", orphan, "-L", "128m",
        "--addtag", f"IU_{new_uuid()}", "--addtag", f"PU_{block.BLANK}",
        "--addtag", "MD_7", "--addtag", "OVIRT_VOL_INITIALIZING", sd,
    )  # fmt: skip
    site.vdsm.call("StoragePool.spmStop", storagepoolID=site.sp)
    site.start_spm()
    assert orphan not in block.lvs(luns, sd)


@pytest.mark.timeout(1800)
def test_block_domain_pool_and_spm(
    sanlock: SanlockDaemon,
    loop_device: Callable[[int | str], LoopDevice],
    vdsmd: Callable[..., Any],
    shared_tmp_path: Path,
) -> None:
    run(["modprobe", "dm_mod"])
    luns = [loop_device("8g").path for _ in range(2)]
    # traversable by the storage access check (the file domain is mounted below it)
    site = lab_site(vdsmd, shared_tmp_path, luns)
    devices = site.vdsm.call("Host.getDeviceList", checkStatus=True)
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
        # the monitor's figures: the VG's size and free space, no small-metadata alert
        # (under emulation a check may overrun its 1 s interval: wait for a good one)
        dominfo = pool_dominfo_with_figures(site, sd)
        [vg] = block.report(luns, "vgs", "vg_size,vg_free", sd)
        assert dominfo["alerts"] == [] and dominfo["disktotal"] == vg["vg_size"]
        meta = block.domain_metadata(block.vg_tags(luns, sd))
        assert meta["ROLE"] == "Master" and meta["POOL_UUID"] == site.sp

        volumes_on_block_domain(site, sd, luns, loop_device)
        thin, thin_img = extend_through_the_mailbox(site, sd, luns)
        copy_into_block(site, sd, luns, thin_img, thin)
        a_killed_copy_is_undone(site, sd, luns, thin_img, thin)
        luns = grow_the_domain(site, sd, luns, loop_device)
        orphans_go_at_spm_start(site, sd, luns)

        site.vdsm.call("StoragePool.spmStop", storagepoolID=site.sp)
        assert f" {master} " not in Path("/proc/mounts").read_text()
        site.vdsm.call("StoragePool.disconnect", storagepoolID=site.sp, hostID=1, scsiKey="")
    finally:
        site.teardown()

    # an LV an earlier daemon left active (a prepared image nobody tore down) and no
    # process holds open is deactivated when the daemon starts again
    def active(lv: str) -> bool:
        return bool(block.report(luns, "lvs", "lv_name", "--select", "lv_active=active", lv))

    block.lvm(luns, "lvchange", "-ay", f"{sd}/{thin}")
    assert active(f"{sd}/{thin}")
    site.daemon.restart()
    wait_until_ready(site.daemon, timeout=600)
    wait_for(lambda: not active(f"{sd}/{thin}"), 120)
    site.vdsm = type(site.vdsm)(site.daemon, timeout=600)
    site.vdsm.call("StorageDomain.format", storagedomainID=sd, autoDetach=True)
    assert block.report(luns, "vgs", "vg_name") == []

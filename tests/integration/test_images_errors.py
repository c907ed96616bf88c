"""Bad input and faults on images and volumes (issue 5): each answers the contract's
code, nothing half-written is reported LEGAL, and nothing is left behind after the
rollback or recovery.  Real daemon, real sanlock, real qemu-img, real file systems."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_images_flow import qemu_io, read_meta
from tests.support.storage import BLANK, CallFailed, Site, new_uuid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024


class Disks:
    """Volume verbs on one SPM site, with the task's final status or the call's code."""

    def __init__(self, site: Site, sd: str) -> None:
        self.site = site
        self.sd = sd

    def create(self, img: str, vol: str, **overrides: Any) -> str:
        params: dict[str, Any] = {
            "volumeID": vol,
            "storagepoolID": self.site.sp,
            "storagedomainID": self.sd,
            "imageID": img,
            "size": str(64 * MiB),
            "volFormat": 4,
            "preallocate": 2,
            "diskType": "DATA",
            "desc": "",
            "srcImgUUID": BLANK,
            "srcVolUUID": BLANK,
        }
        params.update(overrides)
        return self.site.vdsm.call("Volume.create", **params)

    def finish(self, task: str) -> dict[str, Any]:
        status = self.site.vdsm.wait_task(task)
        self.site.vdsm.call("Task.clear", taskID=task)
        return status

    def info(self, img: str, vol: str) -> dict[str, Any]:
        return self.site.vdsm.call(
            "Volume.getInfo",
            volumeID=vol,
            storagepoolID=self.site.sp,
            storagedomainID=self.sd,
            imageID=img,
        )

    def code(self, method: str, **params: Any) -> int:
        return self.site.vdsm.code(method, **params)


def call_code(fn: Any, *args: Any, **kwargs: Any) -> int:
    try:
        fn(*args, **kwargs)
    except CallFailed as e:
        return e.code
    return 0


def test_bad_volume_requests_answer_their_codes(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    master, d = site.new_domain("master")
    site.new_pool(master)
    disks = Disks(site, master)
    img, vol = new_uuid(), new_uuid()

    # Not SPM yet: 654, nothing written.
    assert call_code(disks.create, img, vol) == 654
    site.start_spm()
    images = d / master / "images"

    # Sizes: a decimal string of bytes, a multiple of 512, at least 1.
    assert call_code(disks.create, img, vol, size=64 * MiB) == 1000  # an int
    assert call_code(disks.create, img, vol, size="64M") == 1000
    assert call_code(disks.create, img, vol, size="1000") == 1000  # not aligned
    assert call_code(disks.create, img, vol, size="0") == 229
    assert call_code(disks.create, img, vol, volFormat=7) == -32602  # not in the schema
    assert call_code(disks.create, img, vol, diskType="NOPE") == -32602
    # initialSize is not for thin volumes on file domains (as upstream).
    assert call_code(disks.create, img, vol, initialSize=str(MiB)) == 1000
    assert list(images.iterdir()) == []

    # A base volume, then snapshots' parents that cannot be.
    assert disks.finish(disks.create(img, vol))["code"] == 0
    other_img = new_uuid()
    assert call_code(disks.create, other_img, new_uuid(), srcImgUUID=img, srcVolUUID=vol) == 1000
    assert (
        call_code(disks.create, img, new_uuid(), volFormat=5, srcImgUUID=img, srcVolUUID=vol) == 202
    )  # a RAW snapshot
    missing_parent = disks.finish(
        disks.create(img, new_uuid(), srcImgUUID=img, srcVolUUID=new_uuid())
    )
    assert missing_parent["code"] == 201 and missing_parent["taskResult"] == "cleanSuccess"
    # Over an existing volume: 212, the existing one untouched.
    before = (images / img / f"{vol}.meta").read_bytes()
    over = disks.finish(disks.create(img, vol))
    assert over["code"] == 212, over
    assert (images / img / f"{vol}.meta").read_bytes() == before
    assert disks.info(img, vol)["legality"] == "LEGAL"

    # Two creations of one new volume at once: one wins, the other answers 212 and its
    # rollback leaves the winner's volume alone.
    twin = new_uuid()
    tasks = [disks.create(img, twin), disks.create(img, twin)]
    codes = sorted(disks.finish(t)["code"] for t in tasks)
    assert codes == [0, 212], codes
    assert disks.info(img, twin)["legality"] == "LEGAL"
    assert sorted(p.name for p in (images / img).iterdir() if twin in p.name) == [
        twin,
        f"{twin}.lease",
        f"{twin}.meta",
    ]

    # Metadata that cannot fit 512 bytes: 756, and the half volume is rolled back.
    fat = new_uuid()
    overflow = disks.finish(disks.create(img, fat, desc="é" * 210))
    assert overflow["code"] == 756, overflow
    assert not any(p.name.startswith(fat) for p in (images / img).iterdir())

    # A volume with children cannot be deleted (204); it stays LEGAL.
    snap = new_uuid()
    assert disks.finish(disks.create(img, snap, srcImgUUID=img, srcVolUUID=vol))["code"] == 0
    delete = site.vdsm.call(
        "Volume.delete",
        volumeID=vol,
        storagepoolID=site.sp,
        storagedomainID=master,
        imageID=img,
        postZero=False,
        force=False,
    )
    assert disks.finish(delete)["code"] == 204
    assert disks.info(img, vol)["legality"] == "LEGAL"
    assert read_meta(images / img / f"{vol}.meta")["VOLTYPE"] == "INTERNAL"

    # Unknown volumes and images.
    assert (
        disks.code(
            "Volume.getInfo",
            volumeID=new_uuid(),
            storagepoolID=site.sp,
            storagedomainID=master,
            imageID=img,
        )
        == 201
    )
    gone = site.vdsm.call(
        "Image.delete",
        imageID=new_uuid(),
        storagepoolID=site.sp,
        storagedomainID=master,
        postZero=False,
        force=False,
    )
    assert disks.finish(gone)["code"] == 268
    bad_extend = site.vdsm.call(
        "Volume.extendSize",
        storagepoolID=site.sp,
        storagedomainID=master,
        imageID=img,
        volumeID=snap,
        newSize=str(MiB),
    )
    assert disks.finish(bad_extend)["code"] == 232  # shrinking

    # An ILLEGAL volume is not prepared unless the caller allows it (227).
    site.vdsm.call(
        "Volume.setLegality",
        volumeID=snap,
        storagepoolID=site.sp,
        storagedomainID=master,
        imageID=img,
        legality="ILLEGAL",
    )
    prepare = {
        "storagepoolID": site.sp,
        "storagedomainID": master,
        "imageID": img,
        "volumeID": snap,
    }
    assert disks.code("Image.prepare", **prepare) == 227
    assert site.vdsm.call("Image.prepare", allowIllegal=True, **prepare)["path"]
    site.vdsm.call("Image.teardown", storagepoolID=site.sp, storagedomainID=master, imageID=img)

    # A copy into a smaller volume: 79, the destination not marked LEGAL.
    small_img, small = new_uuid(), new_uuid()
    assert disks.finish(disks.create(small_img, small, size=str(16 * MiB)))["code"] == 0
    job = new_uuid()
    site.vdsm.call(
        "SDM.copy_data",
        job_id=job,
        source={"endpoint_type": "div", "sd_id": master, "img_id": img, "vol_id": vol},
        destination={"endpoint_type": "div", "sd_id": master, "img_id": small_img, "vol_id": small},
    )
    deadline = time.monotonic() + 30
    while (info := site.vdsm.call("Host.getJobs", job_ids=[job])[job])["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["status"] == "failed" and info["error"]["code"] == 79, info
    # A generation that moved on is refused (the engine's guard against stale jobs).
    stale = new_uuid()
    site.vdsm.call(
        "SDM.update_volume",
        job_id=stale,
        vol_info={"sd_id": master, "img_id": small_img, "vol_id": small, "generation": 7},
        vol_attr={"description": "x"},
    )
    time.sleep(0.5)
    assert site.vdsm.call("Host.getJobs", job_ids=[stale])[stale]["error"]["code"] == 1000
    # The daemon still serves.
    assert site.vdsm.call("Host.ping2") is True
    site.teardown()


def test_disk_full_during_preallocated_create(vdsmd, sanlock, shared_tmp_path, loop_device):
    """A preallocated volume larger than the file system: 205, and no files left."""
    site = Site(vdsmd, shared_tmp_path)
    dev = loop_device("64M")
    mountpoint = site.local("small")
    subprocess.run(["mkfs.ext4", "-q", "-F", dev.path], check=True, capture_output=True)
    subprocess.run(["mount", dev.path, str(mountpoint)], check=True)
    try:
        master, _ = site.new_domain("small", mountpoint)
        site.new_pool(master)
        site.start_spm()
        disks = Disks(site, master)
        img, vol = new_uuid(), new_uuid()
        status = disks.finish(
            disks.create(img, vol, size=str(256 * MiB), volFormat=5, preallocate=1)
        )
        assert status["code"] == 205 and "No space left" in status["message"], status
        assert status["taskResult"] == "cleanSuccess"
        assert list((mountpoint / master / "images").iterdir()) == []
        # The space is back: a volume that fits is created.
        status = disks.finish(disks.create(img, vol, size=str(8 * MiB), volFormat=5, preallocate=1))
        assert status["code"] == 0
        site.teardown()
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@dataclass
class CopyUnderWay:
    """A Volume.copy from the master domain into a domain on a freezable mount, seen
    writing its destination (its metadata exists)."""

    site: Site
    fm: Any
    master: str
    disks: Disks
    img: str
    vol: str
    src: Path
    task: str
    dst_dir: Path
    dst_vol: str


def start_copy(vdsmd: Any, root: Path, freezable_mount: Any, vol_format: int) -> CopyUnderWay:
    site = Site(vdsmd, root)
    fm = freezable_mount(mountpoint=site.local("frozen"))
    master, other, d_master = site.spm_with_second_domain(fm.path)
    site.vdsm.call("StorageDomain.activate", storagedomainID=other, storagepoolID=site.sp)
    disks = Disks(site, master)
    img, vol = new_uuid(), new_uuid()
    assert disks.finish(disks.create(img, vol))["code"] == 0
    src = d_master / master / "images" / img / vol
    qemu_io(src, "write -P 0x5a 0 8M")
    dst_img, dst_vol = new_uuid(), new_uuid()
    dst_dir = fm.path / other / "images" / dst_img
    task = site.vdsm.call(
        "Volume.copy",
        volumeID=vol,
        storagepoolID=site.sp,
        storagedomainID=master,
        imageID=img,
        dstSdUUID=other,
        dstImgUUID=dst_img,
        dstVolUUID=dst_vol,
        desc="copy",
        volType=8,
        volFormat=vol_format,
        preallocate=2,
        postZero=False,
        force=False,
    )
    deadline = time.monotonic() + 30
    while not (dst_dir / f"{dst_vol}.meta").exists():
        assert time.monotonic() < deadline, site.vdsm.call("Task.getStatus", taskID=task)
        time.sleep(0.02)
    return CopyUnderWay(site, fm, master, disks, img, vol, src, task, dst_dir, dst_vol)


def sha1(path: Path) -> str:
    return subprocess.run(["sha1sum", str(path)], capture_output=True, text=True).stdout.split()[0]


def test_kill_during_a_copy_leaves_nothing_legal_and_recovery_cleans(
    vdsmd, sanlock, shared_tmp_path, freezable_mount
):
    """kill -9 while Volume.copy writes into a domain whose storage hangs: after the
    restart the next SPM rolls the copy back (no destination files); the source stays
    LEGAL and intact."""
    copy = start_copy(vdsmd, shared_tmp_path, freezable_mount, vol_format=4)
    site, disks, fm, master = copy.site, copy.disks, copy.fm, copy.master
    img, vol, src, task = copy.img, copy.vol, copy.src, copy.task
    dst_dir, dst_vol = copy.dst_dir, copy.dst_vol
    checksum_before = sha1(src)
    fm.freeze()  # the copy now hangs in the destination's storage
    time.sleep(0.5)
    site.daemon.kill()
    fm.thaw()
    meta = read_meta(dst_dir / f"{dst_vol}.meta") if (dst_dir / f"{dst_vol}.meta").exists() else {}
    assert meta.get("LEGALITY") != "LEGAL"

    site.restart()
    site.connect_pool(master)
    site.start_spm()
    deadline = time.monotonic() + 30
    while site.vdsm.call("Host.getAllTasksStatuses").get(task, {}).get("taskState") != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert site.vdsm.call("Task.getStatus", taskID=task)["taskResult"] == "cleanSuccess"
    site.vdsm.call("Task.clear", taskID=task)
    assert not dst_dir.exists()
    assert sha1(src) == checksum_before
    assert disks.info(img, vol)["legality"] == "LEGAL"
    site.teardown()


def test_stopping_a_copy_task_kills_qemu_img_and_rolls_back(
    vdsmd, sanlock, shared_tmp_path, freezable_mount
):
    copy = start_copy(vdsmd, shared_tmp_path, freezable_mount, vol_format=5)
    site, task, dst_dir, dst_vol = copy.site, copy.task, copy.dst_dir, copy.dst_vol
    site.vdsm.call("Task.stop", taskID=task)
    status = site.vdsm.wait_task(task)
    assert status["taskResult"] == "cleanSuccess", status
    assert not dst_dir.exists()
    out = subprocess.run(["pgrep", "-af", "qemu-img convert"], capture_output=True, text=True)
    assert dst_vol not in out.stdout
    site.vdsm.call("Task.clear", taskID=task)
    site.teardown()


def test_v4_domains_get_size_in_blocks(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    directory = site.local("v4")
    site.connect_dirs(directory)
    sd = new_uuid()
    site.create_domain(sd, directory, version=4)
    site.new_pool(sd)
    site.start_spm()
    disks = Disks(site, sd)
    img, vol = new_uuid(), new_uuid()
    assert disks.finish(disks.create(img, vol, size=str(64 * MiB), volFormat=5))["code"] == 0
    meta = read_meta(directory / sd / "images" / img / f"{vol}.meta")
    assert meta["SIZE"] == str(64 * MiB // 512) and meta["MTIME"] == "0"
    assert "CAP" not in meta and "SEQ" not in meta
    info = disks.info(img, vol)
    assert info["capacity"] == str(64 * MiB) and info["format"] == "RAW"
    chain = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output", "json", str(directory / sd / "images" / img / vol)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert chain["format"] == "raw" and chain["virtual-size"] == 64 * MiB
    site.teardown()

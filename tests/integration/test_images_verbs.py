"""The other image and volume verbs on a real SPM site: extend, sizes, qemu-img info,
measure, verify_untrusted, descriptions, Volume.copy to a template, Image.move (copy
and move), syncData, and the SDM jobs update_volume / amend_volume / sparsify_volume
with their `|jobs|status|` events."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from tests.integration.test_images_errors import Disks
from tests.integration.test_images_flow import qemu_img, qemu_io, read_meta
from tests.support.rawstomp import RawStomp
from tests.support.storage import Site, new_uuid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024


def wait_job(site: Site, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        info = site.vdsm.call("Host.getJobs", job_ids=[job_id])[job_id]
        if info["status"] not in ("pending", "running"):
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def test_volume_and_image_verbs(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    second = site.local("second")
    master, other, d_master = site.spm_with_second_domain(second)
    site.vdsm.call("StorageDomain.activate", storagedomainID=other, storagepoolID=site.sp)
    disks = Disks(site, master)
    img, vol = new_uuid(), new_uuid()
    images = d_master / master / "images"
    pdiv = {"volumeID": vol, "storagepoolID": site.sp, "storagedomainID": master, "imageID": img}
    assert disks.finish(disks.create(img, vol, size=str(64 * MiB)))["code"] == 0
    qemu_io(images / img / vol, "write -P 0x42 0 4M")

    # Sizes and qemu-img's view.
    size = site.vdsm.call("Volume.getSize", **pdiv)
    assert int(size["apparentsize"]) == (images / img / vol).stat().st_size
    assert int(size["truesize"]) >= 4 * MiB
    qinfo = site.vdsm.call("Volume.getQemuImageInfo", **pdiv)
    assert qinfo["format"] == "qcow2" and qinfo["virtualsize"] == 64 * MiB
    assert qinfo["compat"] == "1.1" and qinfo["clustersize"] == 65536
    measured = site.vdsm.call("Volume.measure", dstVolFormat=5, **pdiv)
    assert measured["required"] == 64 * MiB
    assert site.vdsm.call("Volume.verify_untrusted", **pdiv) is True
    assert site.vdsm.call("Volume.refresh", **pdiv) is True

    # Extend (an SPM task): capacity, qemu-img and a new generation.
    generation = disks.info(img, vol)["generation"]
    task = site.vdsm.call(
        "Volume.extendSize",
        storagepoolID=site.sp,
        storagedomainID=master,
        imageID=img,
        volumeID=vol,
        newSize=str(128 * MiB),
    )
    assert disks.finish(task)["code"] == 0
    info = disks.info(img, vol)
    assert info["capacity"] == str(128 * MiB) and info["generation"] == generation + 1
    assert (
        qemu_img("info", "--output", "json", str(images / img / vol))["virtual-size"] == 128 * MiB
    )

    # A file that lies about itself fails verification (484).
    liar_img, liar = new_uuid(), new_uuid()
    assert disks.finish(disks.create(liar_img, liar, volFormat=5))["code"] == 0
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(images / liar_img / liar), "32M"],
        check=True,
    )
    assert (
        disks.code(
            "Volume.verify_untrusted",
            storagepoolID=site.sp,
            storagedomainID=master,
            imageID=liar_img,
            volumeID=liar,
        )
        == 484
    )

    # Descriptions.
    site.vdsm.call("Volume.setDescription", description="renamed", **pdiv)
    assert read_meta(images / img / f"{vol}.meta")["DESCRIPTION"] == "renamed"

    # Volume.copy to a template on the other domain: one collapsed base volume, SHARED.
    snap = new_uuid()
    assert (
        disks.finish(disks.create(img, snap, size=str(128 * MiB), srcImgUUID=img, srcVolUUID=vol))[
            "code"
        ]
        == 0
    )
    qemu_io(images / img / snap, "write -P 0x43 8M 1M")
    t_img, t_vol = new_uuid(), new_uuid()
    task = site.vdsm.call(
        "Volume.copy",
        volumeID=snap,
        storagepoolID=site.sp,
        storagedomainID=master,
        imageID=img,
        dstSdUUID=other,
        dstImgUUID=t_img,
        dstVolUUID=t_vol,
        desc="template",
        volType=6,
        volFormat=5,
        preallocate=2,
        postZero=False,
        force=False,
    )
    assert disks.finish(task)["code"] == 0
    template = second / other / "images" / t_img / t_vol
    meta = read_meta(template.with_name(f"{t_vol}.meta"))
    assert meta["VOLTYPE"] == "SHARED" and meta["FORMAT"] == "RAW" and meta["LEGALITY"] == "LEGAL"
    assert "Images are identical" in qemu_img(
        "compare", "-U", str(images / img / snap), str(template)
    )

    # Image.move, operation 1 (copy): the whole chain on the other domain, the source kept.
    task = site.vdsm.call(
        "Image.move",
        imageID=img,
        storagepoolID=site.sp,
        storagedomainID=master,
        dstSdUUID=other,
        operation=1,
        postZero=False,
        force=False,
    )
    assert disks.finish(task)["code"] == 0
    copied = second / other / "images" / img
    assert "Images are identical" in qemu_img(
        "compare", "-U", str(images / img / snap), str(copied / snap)
    )
    assert read_meta(copied / f"{snap}.meta")["PUUID"] == vol
    assert (images / img / snap).exists()

    # syncData refreshes the copy's leaf after the source changed.
    qemu_io(images / img / snap, "write -P 0x44 16M 1M")
    task = site.vdsm.call(
        "Image.syncData",
        imageID=img,
        storagepoolID=site.sp,
        storagedomainID=master,
        dstSdUUID=other,
        syncType="LEAF",
    )
    assert disks.finish(task)["code"] == 0
    assert "Images are identical" in qemu_img(
        "compare", "-U", str(images / img / snap), str(copied / snap)
    )

    # Image.move, operation 2 (move) of another image: gone from the source.
    m_img, m_vol = new_uuid(), new_uuid()
    assert disks.finish(disks.create(m_img, m_vol))["code"] == 0
    task = site.vdsm.call(
        "Image.move",
        imageID=m_img,
        storagepoolID=site.sp,
        storagedomainID=master,
        dstSdUUID=other,
        operation=2,
        postZero=False,
        force=False,
    )
    assert disks.finish(task)["code"] == 0
    assert not (images / m_img).exists()
    assert (second / other / "images" / m_img / m_vol).exists()
    assert m_img in site.vdsm.call("StorageDomain.getImages", storagedomainID=other)

    # SDM jobs, watched through their events too.
    events = RawStomp(site.daemon.host, site.daemon.port, timeout=30)
    events.connect()
    events.subscribe("jms.queue.events")
    vol_info = {"sd_id": master, "img_id": img, "vol_id": snap}
    job = new_uuid()
    site.vdsm.call(
        "SDM.update_volume",
        job_id=job,
        vol_info=vol_info,
        vol_attr={"description": json.dumps({"DiskAlias": "d"}), "generation": 5},
    )
    assert wait_job(site, job)["status"] == "done"
    meta = read_meta(images / img / f"{snap}.meta")
    assert meta["GEN"] == "5" and meta["DESCRIPTION"] == '{"DiskAlias": "d"}'
    statuses = []
    deadline = time.monotonic() + 10
    while "done" not in statuses and time.monotonic() < deadline:
        frame = events.read_frame(timeout=10)
        message = json.loads(frame.body)
        if message.get("method") == f"|jobs|status|{job}":
            params = message["params"]
            assert params["job_type"] == "storage" and params["id"] == job
            assert isinstance(params["notify_time"], int)
            statuses.append(params["status"])
    assert statuses[-2:] == ["running", "done"], statuses
    events.close()

    job = new_uuid()
    site.vdsm.call(
        "SDM.amend_volume",
        job_id=job,
        vol_info=vol_info | {"generation": 5},
        qcow2_attr={"compat": "1.1"},
    )
    assert wait_job(site, job)["status"] == "done"
    assert read_meta(images / img / f"{snap}.meta")["GEN"] == "6"

    # Sparsify: zeroed data gives its space back, the content is unchanged.
    raw_img, raw = new_uuid(), new_uuid()
    assert disks.finish(disks.create(raw_img, raw, volFormat=5, size=str(32 * MiB)))["code"] == 0
    raw_path = images / raw_img / raw
    qemu_io(raw_path, "write -P 0x1 0 16M", fmt="raw")
    qemu_io(raw_path, "write -z 0 12M", fmt="raw")
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={raw_path}", "bs=1M", "count=8", "conv=notrunc"],
        check=True,
        capture_output=True,
    )
    before = raw_path.stat().st_blocks * 512
    content = raw_path.read_bytes()
    job = new_uuid()
    site.vdsm.call(
        "SDM.sparsify_volume",
        job_id=job,
        vol_info={"sd_id": master, "img_id": raw_img, "vol_id": raw},
    )
    assert wait_job(site, job)["status"] == "done"
    after = raw_path.stat().st_blocks * 512
    assert after < before and after <= 4 * MiB + 64 * 1024, (before, after)
    assert raw_path.read_bytes() == content
    assert raw_path.stat().st_size == 32 * MiB
    assert read_meta(raw_path.with_name(f"{raw}.meta"))["LEGALITY"] == "LEGAL"
    site.teardown()

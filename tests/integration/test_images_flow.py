"""The engine's disk flows on real file domains under SPM, through JSON-RPC alone
(issue 5's "done when"): a thin COW disk, two snapshots, the chain prepared for a VM, the
image copied to a second domain with visible progress, a snapshot merged and deleted,
the image deleted.  The resulting `.meta` files and qcow2 chains are checked with
`qemu-img` and a reader written here from the contract, not with the project's own."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.storage import BLANK, Site, Vdsm, new_uuid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024
GiB = 1024 * MiB


def qemu_img(*args: str) -> Any:
    out = subprocess.run(
        ["qemu-img", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return json.loads(out) if "--output" in args else out


def qemu_io(path: Path, command: str, fmt: str = "qcow2") -> None:
    subprocess.run(
        ["qemu-io", "-f", fmt, "-c", command, str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def read_meta(path: Path) -> dict[str, str]:
    """Contract §4.3 by hand: sorted KEY=VALUE lines, then EOF, within 512 bytes."""
    data = path.read_bytes()
    assert len(data) <= 512, f"{path} is {len(data)} bytes"
    lines = data.decode().split("\n")
    assert lines[-2:] == ["EOF", ""], lines
    body = lines[:-2]
    keys = [line.split("=", 1)[0] for line in body]
    assert keys == sorted(keys), f"{path}: keys not sorted: {keys}"
    return dict(line.split("=", 1) for line in body)


def run_task(vdsm: Vdsm, method: str, **params: Any) -> dict[str, Any]:
    task = vdsm.call(method, **params)
    status = vdsm.wait_task(task)
    vdsm.call("Task.clear", taskID=task)
    return status


def create_volume(
    site: Site,
    sd: str,
    img: str,
    vol: str,
    *,
    size: int,
    parent: str = BLANK,
    fmt: int = 4,
    prealloc: int = 2,
) -> dict[str, Any]:
    return run_task(
        site.vdsm,
        "Volume.create",
        volumeID=vol,
        storagepoolID=site.sp,
        storagedomainID=sd,
        imageID=img,
        size=str(size),
        volFormat=fmt,
        preallocate=prealloc,
        diskType="DATA",
        desc=json.dumps({"DiskAlias": "disk1", "DiskDescription": ""}),
        srcImgUUID=img if parent != BLANK else BLANK,
        srcVolUUID=parent,
    )


def run_job(vdsm: Vdsm, method: str, **params: Any) -> list[int]:
    """Starts a host job and follows it with Host.getJobs; answers the progress seen."""
    job_id = new_uuid()
    assert vdsm.call(method, job_id=job_id, **params) is True
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while True:
        info = vdsm.call("Host.getJobs", job_ids=[job_id])[job_id]
        assert info["job_type"] == "storage"
        if "progress" in info and (not seen or seen[-1] != info["progress"]):
            seen.append(info["progress"])
        if info["status"] in ("done", "failed", "aborted"):
            assert info["status"] == "done", info
            return seen
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def volume_info(site: Site, sd: str, img: str, vol: str) -> dict[str, Any]:
    return site.vdsm.call(
        "Volume.getInfo", volumeID=vol, storagepoolID=site.sp, storagedomainID=sd, imageID=img
    )


def test_disk_lifecycle_on_file_domains(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    second = site.local("second")
    master, other, d_master = site.spm_with_second_domain(second)
    site.vdsm.call("StorageDomain.activate", storagedomainID=other, storagepoolID=site.sp)
    img, base, snap1, snap2 = new_uuid(), new_uuid(), new_uuid(), new_uuid()
    image_dir = d_master / master / "images" / img

    # A thin COW disk, with data, and two snapshots, each with data of its own.
    status = create_volume(site, master, img, base, size=GiB)
    assert status["taskResult"] == "success", status
    qemu_io(image_dir / base, "write -P 0x11 0 4M")
    assert create_volume(site, master, img, snap1, size=GiB, parent=base)["code"] == 0
    qemu_io(image_dir / snap1, "write -P 0x22 4M 4M")
    assert create_volume(site, master, img, snap2, size=GiB, parent=snap1)["code"] == 0
    qemu_io(image_dir / snap2, "write -P 0x33 8M 1M")

    info = volume_info(site, master, img, snap2)
    assert info["voltype"] == "LEAF" and info["parent"] == snap1
    assert info["format"] == "COW" and info["type"] == "SPARSE"
    assert info["capacity"] == str(GiB) and info["legality"] == "LEGAL"
    assert info["status"] == "OK" and isinstance(info["generation"], int)
    assert volume_info(site, master, img, base)["voltype"] == "INTERNAL"
    assert sorted(
        site.vdsm.call(
            "Image.getVolumes", imageID=img, storagepoolID=site.sp, storagedomainID=master
        )
    ) == sorted([base, snap1, snap2])
    assert site.vdsm.call("StorageDomain.getImages", storagedomainID=master) == [img]

    # The metadata and chain as upstream lays them out, read independently.
    for vol, parent, voltype in (
        (base, BLANK, "INTERNAL"),
        (snap1, base, "INTERNAL"),
        (snap2, snap1, "LEAF"),
    ):
        meta = read_meta(image_dir / f"{vol}.meta")
        assert meta["PUUID"] == parent and meta["VOLTYPE"] == voltype
        assert meta["CAP"] == str(GiB) and meta["FORMAT"] == "COW" and meta["TYPE"] == "SPARSE"
        assert meta["DOMAIN"] == master and meta["IMAGE"] == img and meta["LEGALITY"] == "LEGAL"
        assert meta["DISKTYPE"] == "DATA" and "SIZE" not in meta and "SEQ" in meta
        assert (image_dir / f"{vol}.lease").stat().st_size == MiB  # a sanlock resource
        assert (image_dir / vol).stat().st_mode & 0o777 == 0o660
    chain = qemu_img("info", "--output", "json", "--backing-chain", "-U", str(image_dir / snap2))
    assert [Path(layer["filename"]).name for layer in chain] == [snap2, snap1, base]
    assert [layer.get("backing-filename") for layer in chain] == [snap1, base, None]
    assert all(layer["format"] == "qcow2" for layer in chain)
    assert chain[0]["format-specific"]["data"]["compat"] == "1.1"

    # Prepared for a VM: a path that reaches the whole chain.
    prepared = site.vdsm.call(
        "Image.prepare",
        storagepoolID=site.sp,
        storagedomainID=master,
        imageID=img,
        volumeID=snap2,
    )
    assert prepared["path"].endswith(f"/storage/{master}/{img}/{snap2}")
    assert [v["volumeID"] for v in prepared["imgVolumesInfo"]] == [base, snap1, snap2]
    via_link = qemu_img("info", "--output", "json", "--backing-chain", "-U", prepared["path"])
    assert len(via_link) == 3
    site.vdsm.call("Image.teardown", storagepoolID=site.sp, storagedomainID=master, imageID=img)
    assert not Path(prepared["path"]).parent.exists()

    # Copied to the second domain: the structure, then each volume's data with progress.
    assert (
        run_task(
            site.vdsm,
            "Image.cloneStructure",
            imageID=img,
            storagepoolID=site.sp,
            storagedomainID=master,
            dstSdUUID=other,
        )["code"]
        == 0
    )
    assert site.vdsm.call(
        "StoragePool.getDomainsContainingImage", storagepoolID=site.sp, imageID=img
    ) == sorted([master, other])
    copy_dir = second / other / "images" / img
    assert read_meta(copy_dir / f"{snap2}.meta")["LEGALITY"] == "ILLEGAL"
    for vol in (base, snap1, snap2):
        generation = volume_info(site, other, img, vol)["generation"]
        progress = run_job(
            site.vdsm,
            "SDM.copy_data",
            source={"endpoint_type": "div", "sd_id": master, "img_id": img, "vol_id": vol},
            destination={
                "endpoint_type": "div",
                "sd_id": other,
                "img_id": img,
                "vol_id": vol,
                "generation": generation,
            },
        )
        assert progress and progress[-1] == 100, progress
        copied = volume_info(site, other, img, vol)
        assert copied["legality"] == "LEGAL" and copied["generation"] == generation + 1
    assert "Images are identical" in qemu_img(
        "compare", "-U", str(image_dir / snap2), str(copy_dir / snap2)
    )
    copy_chain = qemu_img(
        "info", "--output", "json", "--backing-chain", "-U", str(copy_dir / snap2)
    )
    assert [layer.get("backing-filename") for layer in copy_chain] == [snap1, base, None]

    # Merge the middle snapshot into the base, then delete it: same data, shorter chain.
    run_job(
        site.vdsm,
        "SDM.merge",
        subchain_info={
            "sd_id": master,
            "img_id": img,
            "top_id": snap1,
            "base_id": base,
            "base_generation": volume_info(site, master, img, base)["generation"],
        },
    )
    assert volume_info(site, master, img, snap2)["parent"] == base
    assert (
        run_task(
            site.vdsm,
            "Image.deleteVolumes",
            imageID=img,
            storagepoolID=site.sp,
            storagedomainID=master,
            volumeList=[snap1],
        )["code"]
        == 0
    )
    assert not (image_dir / snap1).exists() and not (image_dir / f"{snap1}.meta").exists()
    chain = qemu_img("info", "--output", "json", "--backing-chain", "-U", str(image_dir / snap2))
    assert [Path(layer["filename"]).name for layer in chain] == [snap2, base]
    assert read_meta(image_dir / f"{snap2}.meta")["PUUID"] == base
    assert read_meta(image_dir / f"{base}.meta")["VOLTYPE"] == "INTERNAL"
    assert "Images are identical" in qemu_img(
        "compare", "-U", str(image_dir / snap2), str(copy_dir / snap2)
    )

    # Deleting the image leaves nothing behind.
    assert (
        run_task(
            site.vdsm,
            "Image.delete",
            imageID=img,
            storagepoolID=site.sp,
            storagedomainID=master,
            postZero=False,
            force=False,
        )["code"]
        == 0
    )
    assert site.vdsm.call("StorageDomain.getImages", storagedomainID=master) == []
    assert list((d_master / master / "images").iterdir()) == []
    site.teardown()

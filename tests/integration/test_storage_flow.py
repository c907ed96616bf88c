"""The engine's storage flow through JSON-RPC alone, against the real sanlock daemon:
connectStorageServer -> StorageDomain.create (V5 LOCALFS and POSIXFS on a loop-mounted
ext4) -> StoragePool.create -> connect -> spmStart -> Task finished -> getSpmStatus SPM ->
create and attach a second domain -> activate -> getInfo -> deactivate -> detach ->
spmStop -> disconnect; and the files on disk checked with an independent reader."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.storage import (
    BLANK,
    POOL_KEYS,
    V5_FILE_DOMAIN_KEYS,
    XLEASES_MAGIC,
    Vdsm,
    check_metadata_file,
    new_uuid,
    read_xleases_header,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024
STORAGE_CONFIG = {
    "sanlock": {"io_timeout": "1"},
    "irs": {"sd_health_check_delay": "1"},
    "spm": {"watchdog_interval": "1"},
}


@pytest.fixture
def local_dir(shared_tmp_path: Path):
    def make(name: str) -> Path:
        path = shared_tmp_path / name
        path.mkdir()
        path.chmod(0o755)
        return path

    return make


@pytest.fixture
def ext4_device(loop_device):
    dev = loop_device("256m")
    subprocess.run(["mkfs.ext4", "-q", "-F", str(dev.path)], check=True, timeout=60)
    return dev


def mangle(path: str) -> str:
    """Contract §4.1: "_" -> "__", then "/" -> "_"."""
    return path.replace("_", "__").replace("/", "_")


def dom_md(domain_dir: Path) -> Path:
    return domain_dir / "dom_md"


def check_file_domain_layout(domain_dir: Path, sd_uuid: str, alignment: int) -> None:
    md = dom_md(domain_dir)
    assert stat.S_IMODE(md.stat().st_mode) == 0o775
    for name in ("ids", "leases", "inbox", "outbox", "xleases"):
        assert stat.S_IMODE((md / name).stat().st_mode) == 0o660, name
    assert (md / "inbox").stat().st_size == 16 * MiB
    assert (md / "outbox").stat().st_size == 16 * MiB
    # sanlock wrote the lockspace (ids @0) and the SDM resource (leases @1 x alignment).
    assert (md / "ids").stat().st_size > 0
    assert (md / "leases").stat().st_size >= 2 * alignment
    header = read_xleases_header(md / "xleases", alignment)
    assert header["magic"] == XLEASES_MAGIC
    assert header["version"] == "0001"
    assert header["lockspace"] == sd_uuid
    assert header["flag"] == "-"
    assert header["tail"] == b"\n"
    assert (domain_dir / "images").is_dir()


def storage_daemon(vdsmd, shared_tmp_path: Path):
    """A daemon whose repository other users can traverse, as /rhev/data-center is:
    qemu's user must reach the mounts (connectStorageServer checks it)."""
    repo = shared_tmp_path / "data-center"
    config = {**STORAGE_CONFIG, "irs": {**STORAGE_CONFIG["irs"], "repository": str(repo)}}
    return vdsmd(config), repo


def test_the_engine_storage_flow(vdsmd, sanlock, shared_tmp_path, local_dir, ext4_device):
    daemon, repo = storage_daemon(vdsmd, shared_tmp_path)
    vdsm = Vdsm(daemon)
    sp, sd1, sd2 = new_uuid(), new_uuid(), new_uuid()
    local = local_dir("local-sd")
    dev = str(ext4_device.path)

    # -- connect the storage ---------------------------------------------------------
    statuses = vdsm.call(
        "StoragePool.connectStorageServer",
        storagepoolID=BLANK,
        domainType=4,
        connectionParams=[{"id": "c1", "connection": str(local)}],
    )
    assert statuses == [{"id": "c1", "status": 0}]
    statuses = vdsm.call(
        "StoragePool.connectStorageServer",
        storagepoolID=BLANK,
        domainType=6,
        connectionParams=[{"id": "c2", "connection": dev, "vfs_type": "ext4"}],
    )
    assert statuses == [{"id": "c2", "status": 0}]
    posix_mount = repo / "mnt" / mangle(dev)
    local_mount = repo / "mnt" / mangle(str(local))
    assert os.readlink(local_mount) == str(local)  # LOCALFS: a link to the directory
    assert os.path.ismount(posix_mount)

    # -- the master domain: V5 LOCALFS -----------------------------------------------
    vdsm.call(
        "StorageDomain.create",
        storagedomainID=sd1,
        domainType=4,
        typeArgs=str(local),
        name="master data",
        domainClass=1,
        version=5,
    )
    info = vdsm.call("StorageDomain.getInfo", storagedomainID=sd1)
    assert info == {
        "uuid": sd1,
        "type": "LOCALFS",
        "class": "Data",
        "name": "master data",
        "role": "Regular",
        "pool": [],
        "version": "5",
        "block_size": 512,
        "alignment": MiB,
        "remotePath": str(local),
    }
    values = check_metadata_file(local / sd1 / "dom_md" / "metadata")
    assert set(values) == V5_FILE_DOMAIN_KEYS
    assert values["TYPE"] == "LOCALFS" and values["VERSION"] == "5"
    check_file_domain_layout(local / sd1, sd1, MiB)
    assert vdsm.call("Host.getStorageDomains") == [sd1]

    # -- the pool ----------------------------------------------------------------------
    vdsm.call(
        "StoragePool.create",
        storagepoolID=sp,
        name="the pool",
        masterSdUUID=sd1,
        masterVersion=1,
        domainList=[sd1],
        lockRenewalIntervalSec=5,
        leaseTimeSec=60,
        ioOpTimeoutSec=10,
        leaseRetries=3,
    )
    values = check_metadata_file(local / sd1 / "dom_md" / "metadata")
    assert set(values) == V5_FILE_DOMAIN_KEYS | POOL_KEYS
    assert values["ROLE"] == "Master" and values["POOL_UUID"] == sp
    assert values["POOL_DOMAINS"] == f"{sd1}:Active"
    assert values["MASTER_VERSION"] == "1" and values["POOL_DESCRIPTION"] == "the pool"
    assert (values["POOL_SPM_ID"], values["POOL_SPM_LVER"]) == ("-1", "-1")

    vdsm.call(
        "StoragePool.connect",
        storagepoolID=sp,
        hostID=1,
        scsiKey=sp,
        masterSdUUID=sd1,
        masterVersion=1,
    )
    assert vdsm.call("Host.getConnectedStoragePools") == [sp]
    assert os.readlink(repo / sp / "mastersd") == str(local_mount / sd1)
    assert os.readlink(repo / sp / sd1) == str(local_mount / sd1)
    assert vdsm.call("StoragePool.getSpmStatus", storagepoolID=sp)["spmStatus"] == "Free"

    # -- SPM ---------------------------------------------------------------------------
    task = vdsm.call(
        "StoragePool.spmStart",
        storagepoolID=sp,
        prevID=-1,
        prevLver="-1",
        enableScsiFencing="false",
    )
    status = vdsm.wait_task(task)
    assert (status["taskState"], status["taskResult"], status["code"]) == ("finished", "success", 0)
    assert vdsm.call("Task.getInfo", taskID=task) == {"id": task, "verb": "spmStart"}
    vdsm.call("Task.clear", taskID=task)
    assert vdsm.code("Task.getStatus", taskID=task) == 401
    spm = vdsm.call("StoragePool.getSpmStatus", storagepoolID=sp)
    assert spm["spmStatus"] == "SPM" and spm["spmId"] == 1 and spm["spmLver"] > 0
    values = check_metadata_file(local / sd1 / "dom_md" / "metadata")
    assert values["POOL_SPM_ID"] == "1" and values["POOL_SPM_LVER"] == str(spm["spmLver"])
    assert (local / sd1 / "master" / "tasks").is_dir()
    assert (local / sd1 / "master" / "vms").is_dir()

    # -- a second domain: V5 POSIXFS on ext4 --------------------------------------------
    vdsm.call(
        "StorageDomain.create",
        storagedomainID=sd2,
        domainType=6,
        typeArgs=dev,
        name="posix data",
        domainClass=1,
        version=5,
    )
    values = check_metadata_file(posix_mount / sd2 / "dom_md" / "metadata")
    assert set(values) == V5_FILE_DOMAIN_KEYS and values["TYPE"] == "POSIXFS"
    assert values["REMOTE_PATH"] == dev
    check_file_domain_layout(posix_mount / sd2, sd2, MiB)
    assert sorted(vdsm.call("Host.getStorageDomains")) == sorted([sd1, sd2])
    assert vdsm.call("Host.getStorageDomains", storageType=6) == [sd2]
    assert vdsm.call("Host.getStorageDomains", storagepoolID=sp) == [sd1]

    vdsm.call("StorageDomain.attach", storagedomainID=sd2, storagepoolID=sp)
    assert check_metadata_file(posix_mount / sd2 / "dom_md" / "metadata")["POOL_UUID"] == sp
    values = check_metadata_file(local / sd1 / "dom_md" / "metadata")
    assert values["POOL_DOMAINS"] == f"{sd1}:Active,{sd2}:Attached"

    vdsm.call("StorageDomain.activate", storagedomainID=sd2, storagepoolID=sp)
    values = check_metadata_file(local / sd1 / "dom_md" / "metadata")
    assert values["POOL_DOMAINS"] == f"{sd1}:Active,{sd2}:Active"
    assert os.readlink(repo / sp / sd2) == str(posix_mount / sd2)

    pool_info = vdsm.call("StoragePool.getInfo", storagepoolID=sp)
    info = pool_info["info"]
    assert info["master_uuid"] == sd1 and info["name"] == "the pool"
    assert info["spm_id"] == 1 and info["lver"] == spm["spmLver"]
    assert info["pool_status"] == "connected" and info["version"] == "5"
    assert set(pool_info["dominfo"]) == {sd1, sd2}
    assert pool_info["dominfo"][sd2]["status"] == "Active"

    # Both domains are monitored, their lockspaces joined with host id 1.
    deadline = time.monotonic() + 30
    while True:
        stats = vdsm.call("Host.getStorageRepoStats")
        if all(stats.get(sd, {}).get("acquired") for sd in (sd1, sd2)):
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.5)
    for sd in (sd1, sd2):
        assert stats[sd]["valid"] is True and stats[sd]["code"] == 0
        assert stats[sd]["version"] == 5 and stats[sd]["actual"] is True
        assert float(stats[sd]["delay"]) < 1 and float(stats[sd]["lastCheck"]) < 5
    domain_stats = vdsm.call("StorageDomain.getStats", storagedomainID=sd2)
    assert int(domain_stats["disktotal"]) > 200 * MiB
    assert int(domain_stats["diskfree"]) <= int(domain_stats["disktotal"])

    # -- and back ----------------------------------------------------------------------
    vdsm.call(
        "StorageDomain.deactivate",
        storagedomainID=sd2,
        storagepoolID=sp,
        masterSdUUID=BLANK,
        masterVersion=1,
    )
    values = check_metadata_file(local / sd1 / "dom_md" / "metadata")
    assert values["POOL_DOMAINS"] == f"{sd1}:Active,{sd2}:Attached"
    assert not (repo / sp / sd2).exists()
    vdsm.call("StorageDomain.detach", storagedomainID=sd2, storagepoolID=sp)
    values = check_metadata_file(posix_mount / sd2 / "dom_md" / "metadata")
    assert values["POOL_UUID"] == "" and values["ROLE"] == "Regular"
    assert (
        check_metadata_file(local / sd1 / "dom_md" / "metadata")["POOL_DOMAINS"] == f"{sd1}:Active"
    )

    vdsm.call("StoragePool.spmStop", storagepoolID=sp)
    after = vdsm.call("StoragePool.getSpmStatus", storagepoolID=sp)
    assert after["spmStatus"] == "Free" and after["spmId"] == -1
    assert check_metadata_file(local / sd1 / "dom_md" / "metadata")["POOL_SPM_ID"] == "-1"
    vdsm.call("StoragePool.disconnect", storagepoolID=sp, hostID=1, scsiKey=sp)
    assert vdsm.call("Host.getConnectedStoragePools") == []
    assert not (repo / sp).exists()

    statuses = vdsm.call(
        "StoragePool.disconnectStorageServer",
        storagepoolID=BLANK,
        domainType=6,
        connectionParams=[{"id": "c2", "connection": dev, "vfs_type": "ext4"}],
    )
    assert statuses == [{"id": "c2", "status": 0}]
    assert not os.path.ismount(posix_mount)
    vdsm.close()

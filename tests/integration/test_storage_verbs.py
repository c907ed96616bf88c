"""The storage verbs beyond the main flow: domain versions and classes, images, validate,
descriptions, format, pools connected with the engine's domainDict, refresh, and a task
stopped while its storage hangs."""

from __future__ import annotations

import time

import pytest

from tests.support.storage import (
    BLANK,
    FILE_DOMAIN_KEYS,
    V5_FILE_DOMAIN_KEYS,
    XLEASES_MAGIC,
    CallFailed,
    Site,
    check_metadata_file,
    new_uuid,
    read_xleases_header,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@pytest.mark.parametrize("version", [3, 4, 5])
def test_domain_versions_lay_out_as_upstream(vdsmd, sanlock, shared_tmp_path, version):
    site = Site(vdsmd, shared_tmp_path)
    sd, d = new_uuid(), site.local("sd")
    site.connect_dirs(d)
    site.create_domain(sd, d, version=version)
    values = check_metadata_file(d / sd / "dom_md" / "metadata")
    expected = V5_FILE_DOMAIN_KEYS if version == 5 else FILE_DOMAIN_KEYS
    assert set(values) == expected and values["VERSION"] == str(version)
    md = sorted(p.name for p in (d / sd / "dom_md").iterdir())
    specials = ["ids", "inbox", "leases", "metadata", "outbox"]
    assert md == sorted(specials + (["xleases"] if version >= 4 else []))
    if version >= 4:
        assert read_xleases_header(d / sd / "dom_md" / "xleases", MiB)["magic"] == XLEASES_MAGIC
    info = site.vdsm.call("StorageDomain.getInfo", storagedomainID=sd)
    assert info["version"] == str(version) and info["alignment"] == MiB
    site.teardown()


def test_iso_and_backup_domains(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    iso, backup = new_uuid(), new_uuid()
    d_iso, d_backup = site.local("iso"), site.local("backup")
    site.connect_dirs(d_iso, d_backup)
    site.create_domain(iso, d_iso, domain_class=2)
    site.create_domain(backup, d_backup, domain_class=3)
    assert (d_iso / iso / "images" / "11111111-1111-1111-1111-111111111111").is_dir()
    assert site.vdsm.call("StorageDomain.getInfo", storagedomainID=iso)["class"] == "Iso"
    assert site.vdsm.call("StorageDomain.getInfo", storagedomainID=backup)["class"] == "Backup"
    assert site.vdsm.call("Host.getStorageDomains", domainClass=2) == [iso]
    assert site.vdsm.call("Host.getStorageDomains", domainClass=3) == [backup]
    assert site.vdsm.call("Host.getStorageDomains", remotePath=str(d_backup)) == [backup]
    assert site.vdsm.call("StorageDomain.getImages", storagedomainID=iso) == [
        "11111111-1111-1111-1111-111111111111"
    ]
    site.teardown()


def test_images_validate_description_format(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    sd, d = new_uuid(), site.local("sd")
    site.connect_dirs(d)
    site.create_domain(sd, d, name="plain")
    assert site.vdsm.call("StorageDomain.getImages", storagedomainID=sd) == []
    image = new_uuid()
    (d / sd / "images" / image).mkdir()
    (d / sd / "images" / f"_remove_me_{new_uuid()}").mkdir()  # garbage being deleted
    assert site.vdsm.call("StorageDomain.getImages", storagedomainID=sd) == [image]
    assert site.vdsm.call("StorageDomain.validate", storagedomainID=sd) is True

    site.vdsm.call("StorageDomain.setDescription", storagedomainID=sd, description="renamed ü")
    values = check_metadata_file(d / sd / "dom_md" / "metadata")
    assert values["DESCRIPTION"] == "renamed ü"
    assert site.vdsm.call("StorageDomain.getInfo", storagedomainID=sd)["name"] == "renamed ü"
    assert (
        site.vdsm.code("StorageDomain.setDescription", storagedomainID=sd, description="x" * 51)
        == 387
    )

    site.vdsm.call("StorageDomain.format", storagedomainID=sd, autoDetach=False)
    assert not (d / sd).exists()
    assert site.vdsm.code("StorageDomain.getInfo", storagedomainID=sd) == 358
    site.teardown()


def test_format_refuses_attached_domains(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    master, d = site.new_domain("master")
    site.create_pool(master)
    assert site.vdsm.code("StorageDomain.format", storagedomainID=master, autoDetach=False) == 391
    site.connect_pool(master)
    assert site.vdsm.code("StorageDomain.format", storagedomainID=master, autoDetach=True) == 392
    assert (d / master / "dom_md" / "metadata").exists()
    site.teardown()


def test_pool_connected_with_the_engines_domain_dict(vdsmd, sanlock, shared_tmp_path):
    """With domainDict the pool state is the engine's, in memory: the master's POOL_DOMAINS
    is not rewritten (upstream's memory backend), domain metadata still is."""
    site = Site(vdsmd, shared_tmp_path)
    master, other = new_uuid(), new_uuid()
    d_master, d_other = site.local("master"), site.local("other")
    site.connect_dirs(d_master, d_other)
    site.create_domain(master, d_master)
    site.create_domain(other, d_other)
    site.create_pool(master)
    site.connect_pool(master, host_id=2, domain_dict={master: "active"})
    site.start_spm()
    before = check_metadata_file(d_master / master / "dom_md" / "metadata")["POOL_DOMAINS"]
    site.vdsm.call("StorageDomain.attach", storagedomainID=other, storagepoolID=site.sp)
    site.vdsm.call("StorageDomain.activate", storagedomainID=other, storagepoolID=site.sp)
    info = site.vdsm.call("StoragePool.getInfo", storagepoolID=site.sp)
    assert info["info"]["domains"] == f"{master}:Active,{other}:Active"
    assert info["info"]["name"] == "No Description"
    assert check_metadata_file(d_master / master / "dom_md" / "metadata")["POOL_DOMAINS"] == before
    assert check_metadata_file(d_other / other / "dom_md" / "metadata")["POOL_UUID"] == site.sp
    # A newer map from the engine, as on a reconnect, and a refresh.
    site.connect_pool(master, host_id=2, domain_dict={master: "active", other: "attached"})
    info = site.vdsm.call("StoragePool.getInfo", storagepoolID=site.sp)
    assert info["info"]["domains"] == f"{master}:Active,{other}:Attached"
    site.vdsm.call(
        "StoragePool.refresh", storagepoolID=site.sp, masterSdUUID=master, masterVersion=1
    )
    assert not (site.repo / site.sp / other).exists()
    # The same pool with another host id is refused.
    assert (
        site.vdsm.code(
            "StoragePool.connect",
            storagepoolID=site.sp,
            hostID=3,
            scsiKey="",
            masterSdUUID=master,
            masterVersion=1,
        )
        == 325
    )
    site.vdsm.call("StorageDomain.detach", storagedomainID=other, storagepoolID=site.sp)
    site.teardown()


def test_a_task_stopped_while_its_storage_hangs_is_rolled_back(
    vdsmd, sanlock, shared_tmp_path, freezable_mount
):
    site = Site(vdsmd, shared_tmp_path, process_pool_timeout="30")
    fm = freezable_mount(mountpoint=site.local("frozen"))
    master, other, d_master = site.spm_with_second_domain(fm.path)
    lease = {"sd_id": other, "lease_id": new_uuid()}
    fm.freeze()
    task = site.vdsm.call("Lease.create", lease=lease)
    recover = d_master / master / "master" / "tasks" / task / f"{task}.recover.0"
    deadline = time.monotonic() + 10
    while not recover.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    site.vdsm.call("Task.stop", taskID=task)
    time.sleep(1)
    fm.thaw()  # the stuck add finishes first; then the rollback removes its record
    status = site.vdsm.wait_task(task, timeout=60)
    assert status["taskResult"] == "cleanSuccess", status
    with pytest.raises(CallFailed) as info:
        site.vdsm.call("Lease.info", lease=lease)
    assert info.value.code == 936
    site.vdsm.call("Task.clear", taskID=task)
    assert site.vdsm.code("Task.revert", taskID=task) == 401
    site.teardown()


def test_the_blank_pool_lists_every_domain(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    sd, d = new_uuid(), site.local("sd")
    site.connect_dirs(d)
    site.create_domain(sd, d)
    assert site.vdsm.call("Host.getStorageDomains", storagepoolID=BLANK) == [sd]
    site.teardown()

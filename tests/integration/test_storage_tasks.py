"""SPM tasks persisted on the master domain, and crashes: a kill -9 during spmStart,
during a domain creation and during a persisted SPM task, followed by a restart: nothing
half-written is reported as valid, and the next spmStart recovers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.storage import CallFailed, Site, check_metadata_file, new_uuid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024


def read_task_file(path: Path) -> dict[str, str]:
    """Upstream's `field = value` lines (contract §5), read by hand."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(" = ")
        assert sep, f"not a 'field = value' line: {line!r}"
        values[key] = value
    return values


def test_leases_are_persisted_spm_tasks(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    master, d = site.new_domain("master")
    site.new_pool(master)
    lease = {"sd_id": master, "lease_id": new_uuid()}
    with pytest.raises(CallFailed) as info:
        site.vdsm.call("Lease.create", lease=lease)
    assert info.value.code == 654  # not SPM yet
    site.start_spm()

    task = site.vdsm.call("Lease.create", lease=lease)
    status = site.vdsm.wait_task(task)
    assert (status["taskState"], status["taskResult"]) == ("finished", "success")
    assert site.vdsm.call("Task.getInfo", taskID=task) == {"id": task, "verb": "create_lease"}
    assert task in site.vdsm.call("Host.getAllTasksStatuses")

    # Persisted on the master, in upstream's layout, until cleared.
    task_dir = d / master / "master" / "tasks" / task
    record = read_task_file(task_dir / f"{task}.task")
    assert record["id"] == task and record["name"] == "create_lease"
    assert record["state"] == "finished" and record["persistPolicy"] == "auto"
    recovery = read_task_file(task_dir / f"{task}.recover.0")
    assert recovery["params"] == f"{master},{lease['lease_id']}"
    assert read_task_file(task_dir / f"{task}.result")["code"] == "0"
    site.vdsm.call("Task.clear", taskID=task)
    assert not task_dir.exists()

    info = site.vdsm.call("Lease.info", lease=lease)
    assert info == {
        "sd_id": master,
        "lease_id": lease["lease_id"],
        "path": str(
            site.repo
            / "mnt"
            / str(d).replace("_", "__").replace("/", "_")
            / master
            / "dom_md"
            / "xleases"
        ),
        "offset": 3 * MiB,  # record 0 -> slot 3
    }
    xleases = (d / master / "dom_md" / "xleases").read_bytes()
    record0 = xleases[MiB + 512 : MiB + 512 + 64]
    assert record0[:48].rstrip(b"\0").decode() == lease["lease_id"]
    status = site.vdsm.call("Lease.status", lease=lease)
    assert status == {"owners": [], "version": 0}

    task = site.vdsm.call("Lease.delete", lease=lease)
    assert site.vdsm.wait_task(task)["taskResult"] == "success"
    site.vdsm.call("Task.clear", taskID=task)
    with pytest.raises(CallFailed) as info:
        site.vdsm.call("Lease.info", lease=lease)
    assert info.value.code == 936
    site.teardown()


def test_kill_during_a_persisted_spm_task_is_rolled_back_by_the_next_spm(
    vdsmd, sanlock, shared_tmp_path, freezable_mount
):
    site = Site(vdsmd, shared_tmp_path)
    fm = freezable_mount(mountpoint=site.local("frozen"))
    master, other, d_master = site.spm_with_second_domain(fm.path)
    site.vdsm.call("StorageDomain.activate", storagedomainID=other, storagepoolID=site.sp)

    lease = {"sd_id": other, "lease_id": new_uuid()}
    fm.freeze()
    task = site.vdsm.call("Lease.create", lease=lease)
    task_dir = d_master / master / "master" / "tasks" / task
    deadline = time.monotonic() + 10
    while not (task_dir / f"{task}.recover.0").exists():
        assert time.monotonic() < deadline, "the rollback was not persisted before acting"
        time.sleep(0.05)
    assert site.vdsm.call("Task.getStatus", taskID=task)["taskState"] == "running"
    # An SPM with unfinished tasks refuses to stop.
    with pytest.raises(CallFailed) as info:
        site.vdsm.call("StoragePool.spmStop", storagepoolID=site.sp)
    assert info.value.code == 653

    site.daemon.kill()
    fm.thaw()
    site.restart()
    assert site.vdsm.call("Host.getAllTasksStatuses") == {}
    site.connect_pool(master)
    site.start_spm()
    deadline = time.monotonic() + 30
    while True:
        statuses = site.vdsm.call("Host.getAllTasksStatuses")
        if statuses.get(task, {}).get("taskState") == "finished":
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)
    assert statuses[task]["taskResult"] == "cleanSuccess"
    with pytest.raises(CallFailed) as info:
        site.vdsm.call("Lease.info", lease=lease)
    assert info.value.code == 936
    site.vdsm.call("Task.clear", taskID=task)
    site.teardown()


def test_kill_during_spm_start_then_restart(vdsmd, sanlock, shared_tmp_path):
    site = Site(vdsmd, shared_tmp_path)
    master, d = site.new_domain("master")
    site.new_pool(master)
    # Killed while contending: joining the lockspace alone takes seconds.
    site.vdsm.call(
        "StoragePool.spmStart",
        storagepoolID=site.sp,
        prevID=-1,
        prevLver="-1",
        enableScsiFencing="false",
    )
    time.sleep(0.5)
    site.daemon.kill()
    values = check_metadata_file(d / master / "dom_md" / "metadata")  # never half-written
    assert values["ROLE"] == "Master"
    site.restart()
    site.connect_pool(master)
    spm = site.start_spm()
    assert spm["spmId"] == 1
    values = check_metadata_file(d / master / "dom_md" / "metadata")
    assert values["POOL_SPM_ID"] == "1" and values["POOL_SPM_LVER"] == str(spm["spmLver"])
    site.teardown()


def test_kill_during_domain_creation_leaves_no_domain(
    vdsmd, sanlock, shared_tmp_path, freezable_mount
):
    site = Site(vdsmd, shared_tmp_path)
    fm = freezable_mount(mountpoint=site.local("frozen"))
    site.connect_dirs(fm.path)
    sd = new_uuid()
    fm.freeze()
    # The creation hangs on the frozen storage; the call itself answers only later.
    site.vdsm.conn.request(
        "StorageDomain.create",
        {
            "storagedomainID": sd,
            "domainType": 4,
            "typeArgs": str(fm.path),
            "name": "half",
            "domainClass": 1,
            "version": 5,
        },
        reply_to="nobody",
    )
    time.sleep(1)
    site.daemon.kill()
    fm.thaw()
    remains = [p.name for p in fm.backing.iterdir()]
    assert sd not in remains  # only a hidden staging dir can be there
    site.restart()
    site.connect_dirs(fm.path)
    assert sd not in site.vdsm.call("Host.getStorageDomains")
    assert site.vdsm.code("StorageDomain.getInfo", storagedomainID=sd) == 358
    site.create_domain(sd, fm.path)  # the remains do not stand in the way
    assert site.vdsm.call("StorageDomain.getInfo", storagedomainID=sd)["name"] == sd[:8]
    assert [p.name for p in fm.backing.iterdir()] == [sd]
    site.teardown()

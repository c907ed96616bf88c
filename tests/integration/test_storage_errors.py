"""Bad input and wrong states on the storage verbs: the contract's codes, nothing touched."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import wait_until_ready
from tests.lab.vdsmd import VdsmdProcess
from tests.support.storage import BLANK, CallFailed, Vdsm, new_uuid
from vdsm.api import schema

pytestmark = pytest.mark.integration

HOSTILE_IDS = [
    "../../etc/passwd",
    "",
    "not-a-uuid",
    "00000000-0000-0000-0000-00000000000g",
    "/rhev/data-center",
    "00000000-0000-0000-0000-000000000000/../x",
]


class Setup:
    """One daemon with a connected pool (master sd1, host id 1, not SPM) and a spare
    unattached domain sd2 on its own LOCALFS directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.repo = root / "data-center"
        self.daemon = VdsmdProcess(
            root / "vdsmd",
            {
                "irs": {"repository": str(self.repo), "sd_health_check_delay": "1"},
                "sanlock": {"io_timeout": "1"},
            },
        ).start()
        wait_until_ready(self.daemon)
        self.vdsm = Vdsm(self.daemon)
        self.sp, self.sd1, self.sd2 = new_uuid(), new_uuid(), new_uuid()
        self.dir1, self.dir2 = self.local("sd1"), self.local("sd2")
        self.connect_local(self.dir1, self.dir2)
        for sd, d in ((self.sd1, self.dir1), (self.sd2, self.dir2)):
            self.vdsm.call(
                "StorageDomain.create",
                storagedomainID=sd,
                domainType=4,
                typeArgs=str(d),
                name=sd[:8],
                domainClass=1,
                version=5,
            )
        self.vdsm.call(
            "StoragePool.create",
            storagepoolID=self.sp,
            name="pool",
            masterSdUUID=self.sd1,
            masterVersion=1,
            domainList=[self.sd1],
            lockRenewalIntervalSec=5,
            leaseTimeSec=60,
            ioOpTimeoutSec=10,
            leaseRetries=3,
        )
        self.vdsm.call(
            "StoragePool.connect",
            storagepoolID=self.sp,
            hostID=1,
            scsiKey="",
            masterSdUUID=self.sd1,
            masterVersion=1,
        )

    def local(self, name: str) -> Path:
        path = self.root / name
        path.mkdir()
        path.chmod(0o755)
        return path

    def connect_local(self, *dirs: Path) -> list[dict[str, object]]:
        params = [{"id": new_uuid(), "connection": str(d)} for d in dirs]
        result: list[dict[str, object]] = self.vdsm.call(
            "StoragePool.connectStorageServer",
            storagepoolID=BLANK,
            domainType=4,
            connectionParams=params,
        )
        return result

    def close(self) -> None:
        try:
            self.vdsm.call("StoragePool.disconnect", storagepoolID=self.sp, hostID=1, scsiKey="")
        except CallFailed:
            pass
        self.vdsm.close()
        assert self.daemon.stop() == 0


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    request.getfixturevalue("sanlock")
    root = Path(tempfile.mkdtemp(prefix="vdsm-errors-", dir="/var/tmp"))
    root.chmod(0o755)
    s = Setup(root)
    yield s
    s.close()
    shutil.rmtree(root, ignore_errors=True)


STORAGE_HOST_VERBS = {
    "Host.getStorageDomains",
    "Host.getStorageRepoStats",
    "Host.startMonitoringDomain",
    "Host.stopMonitoringDomain",
}


def storage_verbs_with_ids() -> list[tuple[str, str]]:
    cases = []
    for name, verb in sorted(schema.load().verbs.items()):
        if verb.namespace in ("StoragePool", "StorageDomain", "Task") or name in STORAGE_HOST_VERBS:
            cases += [(name, p.name) for p in verb.params if p.type in ("UUID", "list[UUID]")]
    return cases


def valid_params(verb: schema.Verb) -> dict[str, object]:
    """Well-formed values for every param (they need not name anything that exists)."""
    samples = {
        "UUID": BLANK,
        "list[UUID]": [BLANK],
        "int": 1,
        "string": "x",
        "boolean": False,
        "StorageDomainType": 4,
        "StorageDomainImageClass": 1,
        "list[dict]": [{}],
    }
    return {p.name: samples.get(p.type) for p in verb.params if p.required}


@pytest.mark.parametrize(("verb", "param"), storage_verbs_with_ids())
def test_hostile_ids_are_refused_before_any_file_access(setup, verb, param):
    spec = schema.load().verbs[verb]
    is_list = next(p for p in spec.params if p.name == param).type.startswith("list")
    for value in HOSTILE_IDS:
        params = valid_params(spec)
        params[param] = [value] if is_list else value
        with pytest.raises(CallFailed) as info:
            setup.vdsm.call(verb, **params)
        assert info.value.code == -32602, (verb, param, value, info.value)
        assert param in info.value.message


def test_unknown_domain_is_358(setup):
    assert setup.vdsm.code("StorageDomain.getInfo", storagedomainID=new_uuid()) == 358
    assert setup.vdsm.code("StorageDomain.getStats", storagedomainID=new_uuid()) == 358


def test_unknown_pool_is_309(setup):
    assert setup.vdsm.code("StoragePool.getInfo", storagepoolID=new_uuid()) == 309
    assert setup.vdsm.code("StoragePool.getSpmStatus", storagepoolID=new_uuid()) == 309


def test_second_pool_is_323(setup):
    code = setup.vdsm.code(
        "StoragePool.connect",
        storagepoolID=new_uuid(),
        hostID=1,
        scsiKey="",
        masterSdUUID=setup.sd1,
        masterVersion=1,
    )
    assert code == 323


def test_reconnect_with_the_wrong_master_version_is_324(setup):
    code = setup.vdsm.code(
        "StoragePool.connect",
        storagepoolID=setup.sp,
        hostID=1,
        scsiKey="",
        masterSdUUID=setup.sd1,
        masterVersion=7,
    )
    assert code == 324
    code = setup.vdsm.code(
        "StoragePool.refresh", storagepoolID=setup.sp, masterSdUUID=setup.sd2, masterVersion=1
    )
    assert code == 324  # sd2 is no master


def test_host_id_out_of_range(setup):
    for host_id in (0, 251, -1):
        code = setup.vdsm.code(
            "StoragePool.connect",
            storagepoolID=setup.sp,
            hostID=host_id,
            scsiKey="",
            masterSdUUID=setup.sd1,
            masterVersion=1,
        )
        assert code in (1000, 325), host_id  # invalid, or a different id for a connected pool


def test_domain_created_twice_is_365(setup):
    code = setup.vdsm.code(
        "StorageDomain.create",
        storagedomainID=setup.sd2,
        domainType=4,
        typeArgs=str(setup.dir2),
        name="again",
        domainClass=1,
        version=5,
    )
    assert code == 365


def test_second_domain_on_the_same_storage_is_361(setup):
    code = setup.vdsm.code(
        "StorageDomain.create",
        storagedomainID=new_uuid(),
        domainType=4,
        typeArgs=str(setup.dir2),
        name="other",
        domainClass=1,
        version=5,
    )
    assert code == 361


def test_creation_refusals(setup):
    d = setup.local("refusals")
    setup.connect_local(d)
    base = {"storagedomainID": new_uuid(), "domainType": 4, "typeArgs": str(d), "domainClass": 1}
    assert setup.vdsm.code("StorageDomain.create", **base, name="x" * 51, version=5) == 387
    assert setup.vdsm.code("StorageDomain.create", **base, name="v", version=2) == 394
    assert (
        setup.vdsm.code("StorageDomain.create", **base, name="b", version=4, blockSize=4096) == 1000
    )
    code = setup.vdsm.code(
        "StorageDomain.create", **{**base, "typeArgs": "relative/path"}, name="r", version=5
    )
    assert code == 390
    # Nothing was left behind by the refused attempts.
    assert [p.name for p in d.iterdir()] == []


def test_not_connected_storage_is_360(setup):
    d = setup.local("never-connected")
    code = setup.vdsm.code(
        "StorageDomain.create",
        storagedomainID=new_uuid(),
        domainType=4,
        typeArgs=str(d),
        name="n",
        domainClass=1,
        version=5,
    )
    assert code == 360


def test_spm_verbs_on_a_host_that_is_not_spm_are_654(setup):
    v = setup.vdsm
    assert v.code("StorageDomain.attach", storagedomainID=setup.sd2, storagepoolID=setup.sp) == 654
    assert (
        v.code("StorageDomain.activate", storagedomainID=setup.sd1, storagepoolID=setup.sp) == 654
    )
    assert (
        v.code(
            "StorageDomain.deactivate",
            storagedomainID=setup.sd1,
            storagepoolID=setup.sp,
            masterSdUUID=BLANK,
            masterVersion=1,
        )
        == 654
    )
    assert v.code("StorageDomain.detach", storagedomainID=setup.sd2, storagepoolID=setup.sp) == 654
    assert v.code("StoragePool.setDescription", storagepoolID=setup.sp, description="d") == 654
    assert v.code("StorageDomain.setDescription", storagedomainID=setup.sd1, description="d") == 654


def test_spm_start_with_a_max_host_id_out_of_range_is_1000(setup):
    # maxHostID sizes the SPM mailbox: 1..2000, refused before any contention
    for max_host_id in (0, 2001):
        code = setup.vdsm.code(
            "StoragePool.spmStart",
            storagepoolID=setup.sp,
            prevID=-1,
            prevLver="-1",
            enableScsiFencing="false",
            maxHostID=max_host_id,
        )
        assert code == 1000
    assert (
        setup.vdsm.call("StoragePool.getSpmStatus", storagepoolID=setup.sp)["spmStatus"] == "Free"
    )


def test_unknown_tasks_are_401(setup):
    for verb in ("Task.getStatus", "Task.getInfo", "Task.clear", "Task.stop", "Task.revert"):
        assert setup.vdsm.code(verb, taskID=new_uuid()) == 401, verb


def test_pool_domain_monitoring_cannot_be_stopped_by_hand(setup):
    assert setup.vdsm.code("Host.stopMonitoringDomain", sdUUID=setup.sd1) == 900


def test_connect_storage_server_answers_each_entry(setup):
    good = setup.local("good")
    missing = setup.root / "does-not-exist"
    locked = setup.local("locked")
    locked.chmod(0o700)
    statuses = setup.vdsm.call(
        "StoragePool.connectStorageServer",
        storagepoolID=BLANK,
        domainType=4,
        connectionParams=[
            {"id": "good", "connection": str(good)},
            {"id": "missing", "connection": str(missing)},
            {"id": "locked", "connection": str(locked)},
            {"id": "relative", "connection": "relative/dir"},
        ],
    )
    codes = {s["id"]: s["status"] for s in statuses}
    assert codes["good"] == 0
    assert codes["missing"] != 0 and codes["relative"] != 0
    if os.geteuid() == 0 and any(
        Path("/etc/passwd").read_text().count(u) for u in ("libvirt-qemu:", "qemu:")
    ):
        assert codes["locked"] == 469


def test_broken_checksum_is_752_and_nothing_is_rewritten(setup):
    d = setup.local("broken")
    setup.connect_local(d)
    sd = new_uuid()
    setup.vdsm.call(
        "StorageDomain.create",
        storagedomainID=sd,
        domainType=4,
        typeArgs=str(d),
        name="to break",
        domainClass=1,
        version=5,
    )
    metadata = d / sd / "dom_md" / "metadata"
    text = metadata.read_text().replace("DESCRIPTION=to break", "DESCRIPTION=tampered")
    metadata.write_text(text)
    assert setup.vdsm.code("StorageDomain.getInfo", storagedomainID=sd) == 752
    assert (
        setup.vdsm.code("StorageDomain.setDescription", storagedomainID=sd, description="x") == 752
    )
    assert metadata.read_text() == text

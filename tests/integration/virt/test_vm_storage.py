"""Drives on storage domains: the VM manager asks its ImagePreparer for the path of
every drive whose ovirt-vm:device metadata names poolID/domainID/imageID/volumeID,
and tears them down when the VM goes away.

The first tests use a trivial preparer that maps volume ids to qcow2 files, run by a
VmManager in a fresh interpreter (`python -m tests.integration.virt.test_vm_storage`)
on the real libvirtd (libvirt's event loop binds to one asyncio loop per process).  The
last one runs the daemon as shipped, whose preparer is the storage side's Image.prepare
on a real file domain under SPM.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.virt import VdsmClient, engine_xml, make_disk

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def storage_xml(vm_id: str, name: str, ref: dict[str, str]) -> str:
    disk = (
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/rhev/data-center/placeholder'/><target dev='vda' bus='virtio'/></disk>"
    )
    meta = "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in ref.items())
    device = f"<ovirt-vm:device devtype='disk' name='vda'>{meta}</ovirt-vm:device>"
    _, _, xml = engine_xml(vm_id=vm_id, name=name, devices=disk, metadata_extra=device)
    return xml


def new_ref() -> dict[str, str]:
    return {
        "poolID": str(uuid.uuid4()),
        "domainID": str(uuid.uuid4()),
        "imageID": str(uuid.uuid4()),
        "volumeID": str(uuid.uuid4()),
    }


class FilePreparer:
    """Volume id -> an existing qcow2 file; records the calls."""

    def __init__(self, paths: dict[str, str], fail: set[str]) -> None:
        self.paths = paths
        self.fail = fail
        self.calls: list[tuple[str, str]] = []

    async def prepare(self, pool_id: str, domain_id: str, image_id: str, volume_id: str) -> str:
        self.calls.append(("prepare", volume_id))
        if volume_id in self.fail:
            raise RuntimeError(f"volume {volume_id} is not on any connected domain")
        return self.paths[volume_id]

    async def teardown(self, pool_id: str, domain_id: str, image_id: str, volume_id: str) -> None:
        self.calls.append(("teardown", volume_id))


async def scenario(spec: dict[str, Any]) -> dict[str, Any]:
    from vdsm.hooks.runner import HookRunner
    from vdsm.system.libvirt import Libvirt
    from vdsm.virt import devices
    from vdsm.virt.manager import VmManager

    events: list[tuple[str, dict[str, Any]]] = []
    preparer = FilePreparer(spec["paths"], set(spec["fail"]))
    libvirt = Libvirt(spec["uri"], 30.0)
    run_dir = Path(spec["run_dir"])
    manager = VmManager(
        libvirt,
        HookRunner(run_dir / "hooks"),
        lambda method, params: events.append((method, params)),
        run_dir,
        preparer=preparer,
    )
    manager.attach(libvirt)
    await libvirt.connect()
    out: dict[str, Any] = {"vms": {}}
    try:
        for vm_id, xml in spec["vms"].items():
            await manager.create(vm_id, {"xml": xml})
        for vm_id in spec["vms"]:
            for _ in range(300):
                if manager.vms[vm_id].status in ("Up", "Down"):
                    break
                await asyncio.sleep(0.05)
            vm = manager.vms[vm_id]
            entry: dict[str, Any] = {"status": vm.status}
            if vm.exit is not None:
                entry["exit"] = vm.exit.fields()
            if vm.status == "Up" and vm_id in spec.get("hotplug", {}):
                await devices.hotplug_disk(manager.backends, vm, {"xml": spec["hotplug"][vm_id]})
            if vm.status == "Up":
                entry["live_xml"] = await libvirt.domain_xml(vm_id)
            out["vms"][vm_id] = entry
        if spec.get("recover"):
            # A second manager on the same libvirt: what a restarted daemon rebuilds.
            manager = VmManager(libvirt, HookRunner(run_dir / "hooks"), print, run_dir)
            manager.backends.preparer = preparer
            manager.attach(libvirt)  # the lifecycle events now go to it alone
            await manager.recover()
            out["recovered"] = {
                vm_id: sorted(str(m.values["volumeID"]) for m in vm.prepared_drives)
                for vm_id, vm in manager.vms.items()
                if vm_id in spec["vms"]
            }
        for vm_id in spec["vms"]:
            if vm_id in manager.vms:
                await manager.destroy(vm_id)
    finally:
        await libvirt.close()
    out["calls"] = preparer.calls
    return out


def run_scenario(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.virt.test_vm_storage"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_prepared_path_is_used_and_torn_down(
    libvirt_uri: str, shared_tmp_path: Path, tmp_path: Path, domains: list[str]
) -> None:
    from xml.etree import ElementTree

    from tests.lab.fixtures import require_kvm
    from tests.lab.resources import unique_name

    require_kvm()
    good, bad = new_ref(), new_ref()
    disk = make_disk(shared_tmp_path, "prepared")
    ok_id, bad_id = str(uuid.uuid4()), str(uuid.uuid4())
    domains += [ok_id, bad_id]
    spec = {
        "uri": libvirt_uri,
        "run_dir": str(tmp_path),
        "paths": {good["volumeID"]: str(disk)},
        "fail": [bad["volumeID"]],
        "vms": {
            ok_id: storage_xml(ok_id, unique_name(), good),
            bad_id: storage_xml(bad_id, unique_name(), bad),
        },
    }
    result = run_scenario(spec)
    ok = result["vms"][ok_id]
    assert ok["status"] == "Up"
    source = ElementTree.fromstring(ok["live_xml"]).find("devices/disk/source")
    assert source.get("file") == str(disk)
    failed = result["vms"][bad_id]
    assert failed["status"] == "Down"
    assert failed["exit"]["exitCode"] == 1
    assert "cannot prepare drive vda" in failed["exit"]["exitMessage"]
    assert "is not on any connected domain" in failed["exit"]["exitMessage"]
    calls = [tuple(c) for c in result["calls"]]
    assert calls.count(("prepare", good["volumeID"])) == 1
    assert calls.count(("teardown", good["volumeID"])) == 1  # on destroy
    # The failed prepare is not torn down (it was never prepared).
    assert ("teardown", bad["volumeID"]) not in calls


def test_recovery_knows_the_prepared_drives_including_hotplugged_ones(
    libvirt_uri: str, shared_tmp_path: Path, tmp_path: Path, domains: list[str]
) -> None:
    from tests.lab.fixtures import require_kvm
    from tests.lab.resources import unique_name

    require_kvm()
    boot, extra = new_ref(), new_ref()
    vm_id = str(uuid.uuid4())
    domains.append(vm_id)
    meta = "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in extra.items())
    hotplug = (
        "<hotplug xmlns:ovirt-vm='http://ovirt.org/vm/1.0'><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/placeholder'/><target dev='sdb' bus='usb'/></disk></devices>"
        f"<metadata><ovirt-vm:vm><ovirt-vm:device devtype='disk' name='sdb'>{meta}"
        "</ovirt-vm:device></ovirt-vm:vm></metadata></hotplug>"
    )
    spec = {
        "uri": libvirt_uri,
        "run_dir": str(tmp_path),
        "paths": {
            boot["volumeID"]: str(make_disk(shared_tmp_path, "boot")),
            extra["volumeID"]: str(make_disk(shared_tmp_path, "extra")),
        },
        "fail": [],
        "vms": {vm_id: storage_xml(vm_id, unique_name(), boot)},
        "hotplug": {vm_id: hotplug},
        "recover": True,
    }
    result = run_scenario(spec)
    assert result["vms"][vm_id]["status"] == "Up"
    assert str(spec["paths"][extra["volumeID"]]) in result["vms"][vm_id]["live_xml"]
    # The hot-plugged drive's metadata reached libvirt: the recovered VM knows both.
    assert result["recovered"][vm_id] == sorted([boot["volumeID"], extra["volumeID"]])
    calls = [tuple(c) for c in result["calls"]]
    for ref in (boot, extra):
        assert calls.count(("prepare", ref["volumeID"])) == 1
        assert calls.count(("teardown", ref["volumeID"])) == 1


def test_a_vm_runs_on_a_volume_prepared_by_the_storage_side(
    vdsmd: Any, sanlock: Any, libvirt_uri: str, shared_tmp_path: Path, domains: list[str]
) -> None:
    """The daemon as shipped: a drive naming a real volume of a real file domain goes
    through Image.prepare (the chain linked under the run dir), the VM runs on it, and
    its destroy tears the image down; a drive naming a volume that does not exist turns
    its VM Down with the storage error."""
    from xml.etree import ElementTree

    from tests.integration.virt.conftest import VIRT_CONFIG
    from tests.lab.fixtures import require_kvm
    from tests.lab.resources import unique_name
    from tests.support.storage import BLANK, Site

    require_kvm()
    # The run dir (where prepared images are linked) must be traversable by qemu.
    run_dir = shared_tmp_path / "run"
    site = Site(
        vdsmd,
        shared_tmp_path,
        extra={"libvirt": {"uri": libvirt_uri}, "paths": {"run_dir": str(run_dir)}, **VIRT_CONFIG},
    )
    master, _ = site.new_domain("master")
    site.new_pool(master)
    site.start_spm()
    img, vol = str(uuid.uuid4()), str(uuid.uuid4())
    task = site.vdsm.call(
        "Volume.create",
        volumeID=vol,
        storagepoolID=site.sp,
        storagedomainID=master,
        imageID=img,
        size=str(64 * 1024 * 1024),
        volFormat=4,
        preallocate=2,
        diskType="DATA",
        desc="",
        srcImgUUID=BLANK,
        srcVolUUID=BLANK,
    )
    assert site.vdsm.wait_task(task)["taskResult"] == "success"
    client = VdsmClient(site.daemon)
    try:
        ref = {"poolID": site.sp, "domainID": master, "imageID": img, "volumeID": vol}
        vm_id = str(uuid.uuid4())
        domains.append(vm_id)
        client.result(
            "VM.create",
            {"vmID": vm_id, "vmParams": {"xml": storage_xml(vm_id, unique_name(), ref)}},
        )
        client.wait_status(vm_id, "Up", timeout=60)
        live = client.result("Host.dumpxmls", {"vmList": [vm_id]})[vm_id]
        source = ElementTree.fromstring(live).find("devices/disk/source")
        link = run_dir / "storage" / master / img
        assert source.get("file") == str(link / vol)
        assert link.is_symlink()
        client.result("VM.destroy", {"vmID": vm_id})
        assert not link.exists()

        missing = dict(ref, volumeID=str(uuid.uuid4()))
        bad_id = str(uuid.uuid4())
        domains.append(bad_id)
        client.result(
            "VM.create",
            {"vmID": bad_id, "vmParams": {"xml": storage_xml(bad_id, unique_name(), missing)}},
        )
        down = client.wait_status(bad_id, "Down")
        assert down["exitCode"] == 1
        assert "Volume does not exist" in down["exitMessage"], down
        client.result("VM.destroy", {"vmID": bad_id})
    finally:
        client.close()
    site.teardown()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(scenario(json.loads(sys.stdin.read())))))

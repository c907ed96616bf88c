"""The VM lifecycle through JSON-RPC alone, on real libvirtd + qemu (issue "Done when").

Small `type='kvm'` VMs (64 MiB, SeaBIOS, no guest OS) named vdsmlab-<pid>-<n>; every
test destroys what it started, also when it fails (the `domains` fixture).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.integration.conftest import wait_until_ready
from tests.support.virt import VdsmClient, engine_xml, install_hook, make_disk

pytestmark = pytest.mark.integration

EDIT_HOOK = """#!/usr/bin/python3
import os
import hooking

doc = hooking.read_domxml()
domain = doc.documentElement
description = doc.createElement('description')
description.appendChild(doc.createTextNode('edited-by-hook:' + os.environ['hook_marker']))
domain.appendChild(description)
hooking.write_domxml(doc)
"""


def live_xml(libvirt_conn: Any, vm_id: str) -> ElementTree.Element:
    return ElementTree.fromstring(libvirt_conn.lookupByUUIDString(vm_id).XMLDesc(0))


def test_done_when_flow(
    vdsmd: Callable[..., Any],
    virt_daemon: Any,
    client: VdsmClient,
    domains: list[str],
    libvirt_conn: Any,
    shared_tmp_path: Path,
) -> None:
    import libvirt

    install_hook(virt_daemon.hooks_dir, "before_vm_start", "50_edit", EDIT_HOOK)
    disk = make_disk(shared_tmp_path, "root")
    vm_id, name, xml = engine_xml(disk=disk, custom={"hook_marker": "m42"})
    domains.append(vm_id)

    created = client.result("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
    assert created["vmId"] == vm_id
    assert created["status"] == "WaitForLaunch"
    assert isinstance(created["statusTime"], str)
    assert created["xml"]

    up = client.wait_status(vm_id, "Up")
    assert "statusTime" in up
    # The hook's edit (using the custom property) is in libvirt's live XML.
    assert live_xml(libvirt_conn, vm_id).findtext("description") == "edited-by-hook:m42"
    dumped = client.result("Host.dumpxmls", {"vmList": [vm_id]})
    assert "edited-by-hook:m42" in dumped[vm_id]
    assert libvirt_conn.lookupByUUIDString(vm_id).name() == name

    # Stats from the bulk sampler (1 s period): wire types are strings.
    deadline = time.monotonic() + 20
    while True:
        stats = client.result("VM.getStats", {"vmID": vm_id})[0]
        vda = stats["disks"].get("vda", {})
        # SeaBIOS reads the (blank) boot disk a moment after the start.
        if int(vda.get("readBytes", 0)) > 0 and stats["cpuUsage"] != "0":
            break
        assert time.monotonic() < deadline, stats
        time.sleep(0.5)
    assert stats["vmId"] == vm_id
    assert stats["vmName"] == name
    assert stats["status"] == "Powering up"  # no guest agent: the first 60 s
    for key in ("cpuUser", "cpuSys", "cpuUsage", "elapsedTime", "vcpuCount", "memUsage"):
        assert isinstance(stats[key], str), key
    assert stats["vcpuCount"] == "1"
    assert float(stats["cpuUser"]) >= 0.0
    vda = stats["disks"]["vda"]
    for key in ("readRate", "writeRate", "readBytes", "writtenBytes", "readOps", "apparentsize"):
        assert isinstance(vda[key], str), key
    assert stats["displayInfo"][0]["type"] == "vnc"
    assert int(stats["displayInfo"][0]["port"]) >= 5900
    all_stats = client.result("Host.getAllVmStats")
    assert vm_id in [s["vmId"] for s in all_stats]
    host_stats = client.result("Host.getStats")
    # (Other VMs with ovirt metadata on this libvirtd would be adopted and counted too.)
    assert host_stats["vmCount"] == len(client.result("Host.getVMList")) >= 1
    assert host_stats["vmActive"] >= 1

    # pause / cont
    assert client.result("VM.pause", {"vmID": vm_id}) == {"vmList": {}}
    paused = client.wait_status(vm_id, "Paused")
    assert paused["pauseCode"] == "NOERR"
    assert libvirt_conn.lookupByUUIDString(vm_id).state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert client.result("VM.cont", {"vmID": vm_id}) == {"vmList": {}}
    client.wait_status(vm_id, "Up")
    assert libvirt_conn.lookupByUUIDString(vm_id).state()[0] == libvirt.VIR_DOMAIN_RUNNING

    # hotplug a NIC and a disk
    mac = "52:54:00:7a:11:01"
    nic = (
        f"<hotplug><devices><interface type='user'><mac address='{mac}'/>"
        "<model type='virtio'/></interface></devices></hotplug>"
    )
    answer = client.result("VM.hotplugNic", {"vmID": vm_id, "params": {"vmId": vm_id, "xml": nic}})
    assert answer["vmId"] == vm_id
    macs = [m.get("address") for m in live_xml(libvirt_conn, vm_id).iter("mac")]
    assert mac in macs
    extra = make_disk(shared_tmp_path, "extra")
    disk_xml = (
        "<hotplug><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{extra}'/><target dev='vdb' bus='virtio'/></disk></devices></hotplug>"
    )
    client.result("VM.hotplugDisk", {"vmID": vm_id, "params": {"vmId": vm_id, "xml": disk_xml}})
    targets = [t.get("dev") for t in live_xml(libvirt_conn, vm_id).iter("target")]
    assert "vdb" in targets

    # kill -9 of the daemon, then a restart adopts the running VM.
    qemu_pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    virt_daemon.kill()
    virt_daemon.start()
    wait_until_ready(virt_daemon)
    client.close()
    after = VdsmClient(virt_daemon)
    try:
        assert after.vm_status(vm_id) == "Up"
        assert int(Path(f"/run/libvirt/qemu/{name}.pid").read_text()) == qemu_pid
        dumped = after.result("Host.dumpxmls", {"vmList": [vm_id]})[vm_id]
        assert mac in dumped and "vdb" in dumped and "edited-by-hook:m42" in dumped
        stats = after.result("VM.getStats", {"vmID": vm_id})[0]
        assert stats["status"] == "Up"  # recovered: not starting any more
        assert int(stats["elapsedTime"]) >= 1

        # destroy: Down event, then gone from libvirt and from the list.
        assert after.result("VM.destroy", {"vmID": vm_id}) is True
        down = after.wait_status(vm_id, "Down")
        assert down["exitCode"] == 0
        assert down["exitReason"] == 6
        assert after.vm_status(vm_id) is None
        with pytest.raises(libvirt.libvirtError):
            libvirt_conn.lookupByUUIDString(vm_id)
        assert after.error("VM.destroy", {"vmID": vm_id})["code"] == 1
    finally:
        after.close()


def test_failing_hook_turns_the_vm_down_with_its_message(
    virt_daemon: Any, client: VdsmClient, domains: list[str], libvirt_conn: Any
) -> None:
    import libvirt

    install_hook(
        virt_daemon.hooks_dir,
        "before_vm_start",
        "10_refuse",
        "#!/usr/bin/python3\nimport hooking\nhooking.exit_hook('not on this host')\n",
    )
    vm_id, _, xml = engine_xml()
    domains.append(vm_id)
    assert client.result("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})["status"] == (
        "WaitForLaunch"
    )
    down = client.wait_status(vm_id, "Down")
    assert down["exitCode"] == 1
    assert down["exitReason"] == 1
    assert down["exitMessage"] == "Hook Error: (b'not on this host\\n',)"
    with pytest.raises(libvirt.libvirtError):
        libvirt_conn.lookupByUUIDString(vm_id)
    # A Down VM stays listed with its exit data until VM.destroy.
    stats = client.result("VM.getStats", {"vmID": vm_id})[0]
    assert stats["status"] == "Down"
    assert stats["exitMessage"] == "Hook Error: (b'not on this host\\n',)"
    assert client.vm_status(vm_id) == "Down"
    assert client.result("VM.destroy", {"vmID": vm_id}) is True
    assert client.vm_status(vm_id) is None


def test_vm_status_events_reach_websocket_clients(
    virt_daemon: Any, client: VdsmClient, domains: list[str]
) -> None:
    import asyncio
    import json

    import aiohttp

    vm_id, _, xml = engine_xml()
    domains.append(vm_id)

    async def follow() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session:
            url = f"http://{virt_daemon.host}:{virt_daemon.port}/events"
            async with session.ws_connect(url) as ws:
                await asyncio.sleep(0.2)  # subscribed before the VM starts
                await asyncio.to_thread(
                    client.result, "VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}}
                )
                while not seen or seen[-1][vm_id]["status"] != "Up":
                    message = json.loads((await ws.receive(timeout=30)).data)
                    if message["method"] == f"|virt|VM_status|{vm_id}":
                        seen.append(message["params"])
                await asyncio.to_thread(client.result, "VM.destroy", {"vmID": vm_id})
                while seen[-1][vm_id]["status"] != "Down":
                    message = json.loads((await ws.receive(timeout=30)).data)
                    if message["method"] == f"|virt|VM_status|{vm_id}":
                        seen.append(message["params"])
        return seen

    seen = asyncio.run(follow())
    assert isinstance(seen[-1]["notify_time"], int)
    assert seen[-1][vm_id]["exitReason"] == 6

"""The other VM verbs and their hook points, on one real qemu VM per test."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.support.virt import VdsmClient, engine_xml, install_hook, make_disk

pytestmark = pytest.mark.integration


def start_vm(client: VdsmClient, domains: list[str], **kwargs: Any) -> tuple[str, str]:
    vm_id, name, xml = engine_xml(**kwargs)
    domains.append(vm_id)
    client.result("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
    client.wait_status(vm_id, "Up")
    return vm_id, name


def live(libvirt_conn: Any, vm_id: str, flags: int = 0) -> ElementTree.Element:
    return ElementTree.fromstring(libvirt_conn.lookupByUUIDString(vm_id).XMLDesc(flags))


def test_set_ticket_update_device_cpus_balloon_reset_and_migration_status(
    virt_daemon: Any, client: VdsmClient, domains: list[str], libvirt_conn: Any, tmp_path: Path
) -> None:
    import libvirt

    env_dump = tmp_path / "ticket-env"
    install_hook(
        virt_daemon.hooks_dir,
        "after_vm_set_ticket",
        "50_env",
        f'#!/bin/sh\necho "$vmId $userName" > {env_dump}\n',
    )
    mac = "52:54:00:7a:33:01"
    nic = f"<interface type='user'><mac address='{mac}'/><model type='virtio'/></interface>"
    vm_id, _ = start_vm(client, domains, devices=nic)
    # The engine_xml default has <memballoon model='none'/>: setBalloonTarget fails (53).
    error = client.error("VM.setBalloonTarget", {"vmID": vm_id, "target": 32768})
    assert error["code"] == 53
    assert vm_id in error["message"]
    # (a VM with a virtio balloon: test_balloon_target_on_a_virtio_balloon)

    # setTicket: VNC password with a validity, the hook sees the params as env.
    assert (
        client.result(
            "VM.setTicket",
            {
                "vmID": vm_id,
                "password": "s3cret",
                "ttl": 120,
                "existingConnAction": "disconnect",
                "params": {"userName": "admin"},
            },
        )
        is True
    )
    graphics = live(libvirt_conn, vm_id, libvirt.VIR_DOMAIN_XML_SECURE).find("devices/graphics")
    assert graphics.get("passwd") == "s3cret"
    assert graphics.get("passwdValidTo")
    assert env_dump.read_text().split() == [vm_id, "admin"]

    # updateDevice: link down, then up again.
    params = {"deviceType": "interface", "macAddr": mac, "linkActive": False}
    client.result("VM.updateDevice", {"vmID": vm_id, "params": params})
    iface = live(libvirt_conn, vm_id).find("devices/interface")
    assert iface.find("link").get("state") == "down"
    params["linkActive"] = True
    client.result("VM.updateDevice", {"vmID": vm_id, "params": params})
    assert live(libvirt_conn, vm_id).find("devices/interface/link").get("state") == "up"
    bad = client.error("VM.updateDevice", {"vmID": vm_id, "params": {"deviceType": "graphics"}})
    assert bad["code"] == 56

    # setNumberOfCpus: 1 -> 2 online vCPUs.
    client.result("VM.setNumberOfCpus", {"vmID": vm_id, "numberOfCpus": 2})
    vcpu = live(libvirt_conn, vm_id).find("vcpu")
    assert (vcpu.get("current") or vcpu.text) == "2"  # libvirt drops current == max
    assert client.error("VM.setNumberOfCpus", {"vmID": vm_id, "numberOfCpus": 8})["code"] == 60

    assert client.result("VM.reset", {"vmID": vm_id}) is True
    assert client.result("VM.getMigrationStatus", {"vmID": vm_id})["progress"] == 0
    info = client.result("VM.getInfo", {"vmID": vm_id})
    assert info["vmId"] == vm_id and info["status"] == "Up" and mac in info["xml"]
    client.result("VM.destroy", {"vmID": vm_id})


def test_balloon_target_on_a_virtio_balloon(
    client: VdsmClient, domains: list[str], libvirt_conn: Any
) -> None:
    vm_id, _, xml = engine_xml()
    xml = xml.replace("<memballoon model='none'/>", "<memballoon model='virtio'/>")
    domains.append(vm_id)
    client.result("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
    client.wait_status(vm_id, "Up")
    assert client.result("VM.setBalloonTarget", {"vmID": vm_id, "target": 49152}) is True
    client.result("VM.destroy", {"vmID": vm_id})


def test_shutdown_with_force_destroys_after_the_timeout(
    client: VdsmClient, domains: list[str], libvirt_conn: Any
) -> None:
    import libvirt

    vm_id, _ = start_vm(client, domains)
    # SeaBIOS ignores the ACPI power button: only the forced path can stop it.
    assert (
        client.result(
            "VM.shutdown",
            {"vmID": vm_id, "delay": 0, "message": "bye", "timeout": 2, "force": True},
        )
        is True
    )
    client.wait_status(vm_id, "Powering down", timeout=10)
    down = client.wait_status(vm_id, "Down", timeout=30)
    assert (down["exitCode"], down["exitReason"]) == (0, 6)
    with pytest.raises(libvirt.libvirtError):
        libvirt_conn.lookupByUUIDString(vm_id)
    client.result("VM.destroy", {"vmID": vm_id})


def test_hotunplug_disk(
    client: VdsmClient, domains: list[str], libvirt_conn: Any, shared_tmp_path: Path
) -> None:
    vm_id, _ = start_vm(client, domains)
    extra = make_disk(shared_tmp_path, "unplug")
    # USB: unplugged without the guest's cooperation (there is no guest OS here).
    disk = (
        "<hotplug><devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{extra}'/><target dev='sdc' bus='usb'/></disk></devices></hotplug>"
    )
    params = {"vmID": vm_id, "params": {"vmId": vm_id, "xml": disk}}
    client.result("VM.hotplugDisk", params)
    assert "sdc" in [t.get("dev") for t in live(libvirt_conn, vm_id).iter("target")]
    client.result("VM.hotunplugDisk", params)
    deadline = time.monotonic() + 30
    while "sdc" in [t.get("dev") for t in live(libvirt_conn, vm_id).iter("target")]:
        assert time.monotonic() < deadline, "sdc still attached"
        time.sleep(0.2)
    error = client.error("VM.hotunplugDisk", params)
    assert error["code"] == 46 and "no disk sdc" in error["message"]
    bad = client.error(
        "VM.hotplugDisk", {"vmID": vm_id, "params": {"vmId": vm_id, "xml": "<hotplug/>"}}
    )
    assert bad["code"] == 91
    client.result("VM.destroy", {"vmID": vm_id})


def test_hook_failures_surface_per_point(
    virt_daemon: Any, client: VdsmClient, domains: list[str], libvirt_conn: Any
) -> None:
    import libvirt

    vm_id, _ = start_vm(client, domains)
    hooks = virt_daemon.hooks_dir
    fail = "#!/bin/sh\necho {} >&2\nexit 2\n"
    install_hook(hooks, "before_vm_pause", "10_no", fail.format("no pause"))
    error = client.error("VM.pause", {"vmID": vm_id})
    assert (error["code"], error["message"]) == (1500, "Hook Error: (b'no pause\\n',)")
    assert libvirt_conn.lookupByUUIDString(vm_id).state()[0] == libvirt.VIR_DOMAIN_RUNNING

    install_hook(hooks, "before_nic_hotplug", "10_no", fail.format("no nic"))
    nic = "<hotplug><devices><interface type='user'/></devices></hotplug>"
    error = client.error("VM.hotplugNic", {"vmID": vm_id, "params": {"vmId": vm_id, "xml": nic}})
    assert error["code"] == 1500

    install_hook(hooks, "before_get_vm_stats", "10_no", fail.format("no stats"))
    error = client.error("VM.getStats", {"vmID": vm_id})
    assert error["code"] == 78 and "no stats" in error["message"]

    install_hook(
        hooks,
        "after_get_all_vm_stats",
        "10_tag",
        "#!/usr/bin/python3\nimport hooking\nstats = hooking.read_json()\n"
        "for s in stats: s['tagged'] = 'yes'\nhooking.write_json(stats)\n",
    )
    assert all(s["tagged"] == "yes" for s in client.result("Host.getAllVmStats"))

    install_hook(
        hooks,
        "after_get_caps",
        "10_tag",
        "#!/usr/bin/python3\nimport hooking\ncaps = hooking.read_json()\n"
        "caps['hookTag'] = 'seen'\nhooking.write_json(caps)\n",
    )
    caps = client.result("Host.getCapabilities")
    assert caps["hookTag"] == "seen"
    assert "10_tag" in caps["hooks"]["after_get_caps"]
    install_hook(hooks, "before_get_caps", "10_no", fail.format("no caps"))
    assert client.error("Host.getCapabilities")["code"] == 1500
    client.result("VM.destroy", {"vmID": vm_id})

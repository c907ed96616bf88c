"""The project's own hooks (top-level hooks/) installed in a daemon, on real VMs."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.lab.resources import unique_name
from tests.support.virt import VdsmClient, engine_xml

pytestmark = pytest.mark.integration

SHIPPED = Path(__file__).resolve().parents[3] / "hooks"


def install_shipped(hooks_dir: Path, point: str, name: str) -> None:
    (hooks_dir / point).mkdir(parents=True, exist_ok=True)
    shutil.copy2(SHIPPED / point / name, hooks_dir / point / name)


@pytest.fixture
def libvirt_network(libvirt_conn: Any) -> Iterator[str]:
    """A transient isolated libvirt network named vdsmlab-<pid>-<n>."""
    import libvirt

    name = unique_name()
    net = libvirt_conn.networkCreateXML(f"<network><name>{name}</name></network>")
    yield name
    with contextlib.suppress(libvirt.libvirtError):
        net.destroy()


def test_qemu_cmdline_reaches_the_qemu_process(
    virt_daemon: Any, client: VdsmClient, domains: list[str]
) -> None:
    install_shipped(virt_daemon.hooks_dir, "before_vm_start", "50_qemu_cmdline")
    product = "vdsmlab-product"
    vm_id, name, xml = engine_xml(
        custom={"qemu_cmdline": f'["-smbios", "type=1,product={product}"]'}
    )
    domains.append(vm_id)
    client.result("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
    client.wait_status(vm_id, "Up")
    pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert f"type=1,product={product}".encode() in argv
    client.result("VM.destroy", {"vmID": vm_id})


def test_qemu_cmdline_with_bad_json_keeps_the_vm_down(
    virt_daemon: Any, client: VdsmClient, domains: list[str]
) -> None:
    install_shipped(virt_daemon.hooks_dir, "before_vm_start", "50_qemu_cmdline")
    vm_id, _, xml = engine_xml(custom={"qemu_cmdline": "[oops"})
    domains.append(vm_id)
    client.result("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
    down = client.wait_status(vm_id, "Down")
    assert down["exitMessage"].startswith("Hook Error: (b'qemu_cmdline: not JSON")
    client.result("VM.destroy", {"vmID": vm_id})


def _interfaces(libvirt_conn: Any, vm_id: str) -> dict[str, ElementTree.Element]:
    root = ElementTree.fromstring(libvirt_conn.lookupByUUIDString(vm_id).XMLDesc(0))
    return {i.find("mac").get("address"): i for i in root.iter("interface")}


def test_libvirt_network_at_start_and_on_hotplug(
    virt_daemon: Any,
    client: VdsmClient,
    domains: list[str],
    libvirt_conn: Any,
    libvirt_network: str,
) -> None:
    install_shipped(virt_daemon.hooks_dir, "before_device_create", "50_libvirt_network")
    install_shipped(virt_daemon.hooks_dir, "before_nic_hotplug", "50_libvirt_network")
    boot_mac, hot_mac = "52:54:00:7a:22:01", "52:54:00:7a:22:02"
    # The bridge does not exist: the VM starts only if the hook moved the NIC.
    nic = (
        f"<interface type='bridge'><mac address='{boot_mac}'/>"
        "<source bridge='vdsmlab-nobridge'/><model type='virtio'/></interface>"
    )
    device_meta = (
        f"<ovirt-vm:device mac_address='{boot_mac}'><ovirt-vm:custom>"
        f"<ovirt-vm:libvirt_network>{libvirt_network}</ovirt-vm:libvirt_network>"
        "</ovirt-vm:custom></ovirt-vm:device>"
    )
    vm_id, _, xml = engine_xml(devices=nic, metadata_extra=device_meta)
    domains.append(vm_id)
    client.result("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
    client.wait_status(vm_id, "Up")
    boot = _interfaces(libvirt_conn, vm_id)[boot_mac]
    assert boot.get("type") == "network"
    assert boot.find("source").get("network") == libvirt_network

    hotplug = (
        "<hotplug xmlns:ovirt-vm='http://ovirt.org/vm/1.0'><devices>"
        f"<interface type='bridge'><mac address='{hot_mac}'/>"
        "<source bridge='vdsmlab-nobridge'/><model type='virtio'/></interface></devices>"
        f"<metadata><ovirt-vm:vm><ovirt-vm:device mac_address='{hot_mac}'><ovirt-vm:custom>"
        f"<ovirt-vm:libvirt_network>{libvirt_network}</ovirt-vm:libvirt_network>"
        "</ovirt-vm:custom></ovirt-vm:device></ovirt-vm:vm></metadata></hotplug>"
    )
    client.result("VM.hotplugNic", {"vmID": vm_id, "params": {"vmId": vm_id, "xml": hotplug}})
    hot = _interfaces(libvirt_conn, vm_id)[hot_mac]
    assert hot.get("type") == "network"
    assert hot.find("source").get("network") == libvirt_network

    # Unplug by MAC: libvirt accepts the request (the removal itself needs a guest OS
    # to eject the PCI device, which these VMs do not have); an unknown MAC is 50.
    answer = client.result(
        "VM.hotunplugNic", {"vmID": vm_id, "params": {"vmId": vm_id, "xml": hotplug}}
    )
    assert answer["vmId"] == vm_id
    unknown = hotplug.replace(hot_mac, "52:54:00:7a:22:99")
    error = client.error(
        "VM.hotunplugNic", {"vmID": vm_id, "params": {"vmId": vm_id, "xml": unknown}}
    )
    assert error["code"] == 50
    client.result("VM.destroy", {"vmID": vm_id})

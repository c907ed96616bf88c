"""The hooks the project ships (top-level hooks/), run by the real runner from their
installed layout, as the daemon would."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from xml.dom import minidom

import pytest

from vdsm.hooks.runner import HookResult, HookRunner, HookScriptError

HOOKS = Path(__file__).resolve().parents[3] / "hooks"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
DOMAIN = "<domain type='kvm'><name>x</name><uuid>u</uuid><devices/></domain>"
NIC = (
    "<interface type='bridge'><mac address='52:54:00:00:00:01'/>"
    "<source bridge='ovirtmgmt'/><target dev='vnet9'/><model type='virtio'/></interface>"
)


def run(point: str, domxml: str, env: dict[str, str]) -> HookResult:
    return asyncio.run(HookRunner(HOOKS).run(point, domxml=domxml, env=env, vm_id="vm"))


def test_the_shipped_hooks_are_installed_executable() -> None:
    runner = HookRunner(HOOKS)
    for point in ("before_vm_start", "before_device_create", "before_nic_hotplug"):
        assert runner.has_scripts(point), point


def test_qemu_cmdline_adds_the_arguments_in_order() -> None:
    args = ["-smbios", "type=1,product=lab"]
    result = run("before_vm_start", DOMAIN, {"qemu_cmdline": json.dumps(args)})
    assert result.errors == []
    doc = minidom.parseString(result.domxml or "")
    domain = doc.documentElement
    assert domain.getAttribute("xmlns:qemu") == QEMU_NS
    values = [a.getAttribute("value") for a in doc.getElementsByTagName("qemu:arg")]
    assert values == args


def test_qemu_cmdline_appends_to_an_existing_commandline_with_its_prefix() -> None:
    domxml = (
        f"<domain type='kvm' xmlns:q='{QEMU_NS}'><name>x</name>"
        "<q:commandline><q:arg value='-first'/></q:commandline></domain>"
    )
    result = run("before_vm_start", domxml, {"qemu_cmdline": '["-second"]'})
    doc = minidom.parseString(result.domxml or "")
    assert len(doc.getElementsByTagName("q:commandline")) == 1
    values = [a.getAttribute("value") for a in doc.getElementsByTagName("q:arg")]
    assert values == ["-first", "-second"]


def test_qemu_cmdline_without_the_property_changes_nothing() -> None:
    assert run("before_vm_start", DOMAIN, {}).domxml == DOMAIN


@pytest.mark.parametrize(
    ("value", "message"),
    [("not json", "qemu_cmdline: not JSON"), ('{"a": 1}', "expected a JSON list of strings")],
)
def test_qemu_cmdline_refuses_bad_values(value: str, message: str) -> None:
    with pytest.raises(HookScriptError) as info:
        run("before_vm_start", DOMAIN, {"qemu_cmdline": value})
    assert message in str(info.value)
    assert info.value.code == 1500


@pytest.mark.parametrize("point", ["before_device_create", "before_nic_hotplug"])
def test_libvirt_network_moves_the_nic(point: str) -> None:
    result = run(point, NIC, {"libvirt_network": "lab-net"})
    assert result.errors == []
    iface = minidom.parseString(result.domxml or "").documentElement
    assert iface.getAttribute("type") == "network"
    sources = iface.getElementsByTagName("source")
    assert [s.getAttribute("network") for s in sources] == ["lab-net"]
    assert iface.getElementsByTagName("target") == []
    assert iface.getElementsByTagName("mac")[0].getAttribute("address") == "52:54:00:00:00:01"
    assert iface.getElementsByTagName("model")[0].getAttribute("type") == "virtio"


def test_libvirt_network_without_the_property_changes_nothing() -> None:
    assert run("before_device_create", NIC, {}).domxml == NIC


def test_libvirt_network_refuses_a_non_interface() -> None:
    with pytest.raises(HookScriptError) as info:
        run("before_device_create", "<disk/>", {"libvirt_network": "n"})
    assert "expected an <interface>, got <disk>" in str(info.value)


def _guide_example(tmp_path: Path) -> Path:
    """The worked example of hooks/README.md, installed as its comment says."""
    text = (HOOKS / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "before_vm_start/50_note" in code
    point = tmp_path / "before_vm_start"
    point.mkdir()
    script = point / "50_note"
    script.write_text(code)
    script.chmod(0o755)
    return tmp_path


def test_the_guides_worked_example_runs_as_documented(tmp_path: Path) -> None:
    hooks = _guide_example(tmp_path)
    runner = HookRunner(hooks)
    result = asyncio.run(
        runner.run("before_vm_start", domxml=DOMAIN, env={"note": "web tier"}, vm_id="x")
    )
    assert result.errors == []
    doc = minidom.parseString(result.domxml or "")
    assert doc.getElementsByTagName("description")[0].firstChild.data == "web tier"
    with pytest.raises(HookScriptError) as info:
        asyncio.run(
            runner.run("before_vm_start", domxml=DOMAIN, env={"forbidden": "true"}, vm_id="x")
        )
    assert str(info.value) == "Hook Error: (b'this VM may not start here\\n',)"

"""Engine domain XML: ids, ovirt-vm metadata, custom properties, devices."""

from __future__ import annotations

import uuid

import pytest

from vdsm.virt import domainxml
from vdsm.virt.domainxml import InvalidDomainXml

VM_ID = "5b0b1e6c-0f1f-4a0e-9d3c-3b7c1c0b8a11"
XML = f"""<domain type='kvm' xmlns:ovirt-vm='http://ovirt.org/vm/1.0'>
  <name>vm1</name><uuid>{VM_ID.upper()}</uuid>
  <metadata>
    <ovirt-vm:vm>
      <ovirt-vm:launchPaused type='bool'>true</ovirt-vm:launchPaused>
      <ovirt-vm:startTime type='float'>1700000000.5</ovirt-vm:startTime>
      <ovirt-vm:memGuaranteedSize type='int'>64</ovirt-vm:memGuaranteedSize>
      <ovirt-vm:custom><ovirt-vm:qemu_cmdline>["-a"]</ovirt-vm:qemu_cmdline></ovirt-vm:custom>
      <ovirt-vm:device devtype='disk' name='vda'>
        <ovirt-vm:poolID>p</ovirt-vm:poolID><ovirt-vm:domainID>d</ovirt-vm:domainID>
        <ovirt-vm:imageID>i</ovirt-vm:imageID><ovirt-vm:volumeID>v</ovirt-vm:volumeID>
      </ovirt-vm:device>
      <ovirt-vm:device mac_address='52:54:00:00:00:AA'>
        <ovirt-vm:custom><ovirt-vm:net>blue</ovirt-vm:net></ovirt-vm:custom>
      </ovirt-vm:device>
    </ovirt-vm:vm>
  </metadata>
  <devices>
    <disk type='block' device='disk'><source dev='/dev/x'/><target dev='vda'/></disk>
    <interface type='bridge'><mac address='52:54:00:00:00:aa'/></interface>
    <graphics type='vnc' port='5901' listen='127.0.0.1'/>
  </devices>
</domain>"""


def test_metadata_values_custom_properties_and_devices() -> None:
    spec = domainxml.parse(XML, expected_id=VM_ID)
    assert spec.vm_id == VM_ID  # normalised to lower case
    assert spec.name == "vm1"
    assert spec.has_metadata
    assert spec.launch_paused is True
    assert spec.values["startTime"] == 1700000000.5
    assert spec.values["memGuaranteedSize"] == 64
    assert spec.custom == {"qemu_cmdline": '["-a"]'}
    disk, nic = spec.devices
    assert disk.storage_ref == ("p", "d", "i", "v")
    assert nic.storage_ref is None
    assert nic.custom == {"net": "blue"}
    assert domainxml.device_element(spec.root, nic).tag == "interface"
    assert domainxml.device_element(spec.root, disk).find("target").get("dev") == "vda"
    assert domainxml.graphics(spec.root) == [
        {"type": "vnc", "port": "5901", "tlsPort": "-1", "ipAddress": "127.0.0.1"}
    ]


def test_storage_drive_gets_the_prepared_file() -> None:
    spec = domainxml.parse(XML)
    [(_, dev)] = domainxml.storage_drives(spec)
    disk = domainxml.disk_by_target(spec.root, dev)
    domainxml.set_disk_source(disk, "/rhev/data-center/p/d/images/i/v")
    again = domainxml.parse(spec.to_xml())
    disk = domainxml.disk_by_target(again.root, "vda")
    assert disk.get("type") == "file"
    assert dict(disk.find("source").attrib) == {"file": "/rhev/data-center/p/d/images/i/v"}


def test_metadata_value_is_added_and_survives_a_round_trip() -> None:
    xml = f"<domain><name>n</name><uuid>{VM_ID}</uuid></domain>"
    spec = domainxml.parse(xml)
    assert not spec.has_metadata
    domainxml.set_metadata_value(spec.root, "startTime", "12.5", "float")
    again = domainxml.parse(spec.to_xml())
    assert again.has_metadata
    assert again.values["startTime"] == 12.5


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<domain", "not well-formed XML"),
        ("<vm/>", "not <domain>"),
        ("<domain><name>n</name></domain>", "no <uuid>"),
        ("<domain><name>n</name><uuid>nope</uuid></domain>", "is not a UUID"),
        (f"<domain><uuid>{VM_ID}</uuid></domain>", "no <name>"),
    ],
)
def test_bad_xml_says_why(xml: str, message: str) -> None:
    with pytest.raises(InvalidDomainXml, match=message):
        domainxml.parse(xml)


def test_uuid_must_match_the_vm_id() -> None:
    with pytest.raises(InvalidDomainXml, match="differs from vmID"):
        domainxml.parse(XML, expected_id=str(uuid.uuid4()))


def test_entities_are_not_expanded() -> None:
    xml = (
        '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        f"<domain><name>&x;</name><uuid>{VM_ID}</uuid></domain>"
    )
    try:
        spec = domainxml.parse(xml)
    except InvalidDomainXml:
        return
    assert "root:" not in spec.name


def test_hotplug_device_and_its_metadata() -> None:
    spec = domainxml.parse_hotplug(
        "<hotplug xmlns:ovirt-vm='http://ovirt.org/vm/1.0'><devices>"
        "<interface type='bridge'><mac address='52:54:00:00:00:01'/></interface></devices>"
        "<metadata><ovirt-vm:vm><ovirt-vm:device mac_address='52:54:00:00:00:01'>"
        "<ovirt-vm:custom><ovirt-vm:a>b</ovirt-vm:a></ovirt-vm:custom>"
        "</ovirt-vm:device></ovirt-vm:vm></metadata></hotplug>"
    )
    assert spec.kind == "interface"
    assert spec.device_meta is not None and spec.device_meta.custom == {"a": "b"}
    with pytest.raises(InvalidDomainXml, match="one device"):
        domainxml.parse_hotplug("<hotplug><devices><disk/><disk/></devices></hotplug>")


def test_storage_image_preparer_maps_to_image_prepare_and_teardown() -> None:
    import asyncio
    from typing import Any

    from vdsm.virt.storage import StorageImagePreparer

    calls: list[tuple[Any, ...]] = []

    class Images:
        async def prepare(
            self, sp_uuid: str, sd_uuid: str, img: str, vol: str, allow_illegal: bool
        ) -> dict[str, Any]:
            calls.append(("prepare", sp_uuid, sd_uuid, img, vol, allow_illegal))
            return {"path": f"/run/vdsm/storage/{sd_uuid}/{img}/{vol}", "info": {}}

        async def teardown(self, sd_uuid: str, img: str, vol: str | None) -> None:
            calls.append(("teardown", sd_uuid, img, vol))

    preparer = StorageImagePreparer(Images())
    path = asyncio.run(preparer.prepare("sp", "sd", "img", "vol"))
    asyncio.run(preparer.teardown("sp", "sd", "img", "vol"))
    assert path == "/run/vdsm/storage/sd/img/vol"
    assert calls == [
        ("prepare", "sp", "sd", "img", "vol", False),
        ("teardown", "sd", "img", "vol"),
    ]

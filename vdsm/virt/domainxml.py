"""Domain XML as the engine sends it: the libvirt `<domain>` plus `ovirt-vm` metadata
(contract §7.1).

Parsing is strict where a mistake would leave a half-made VM behind (no uuid, a uuid
other than the one asked for, not XML at all) and lenient elsewhere: unknown metadata
is carried along untouched, since libvirt keeps it in the live XML, and that is what
recovery reads back after a restart.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from typing import Any

OVIRT_VM_NS = "http://ovirt.org/vm/1.0"
OVIRT_TUNE_NS = "http://ovirt.org/vm/tune/1.0"
_VM = f"{{{OVIRT_VM_NS}}}"

# The keys of an ovirt-vm:device block naming an image on a storage domain.
STORAGE_KEYS = ("poolID", "domainID", "imageID", "volumeID")


@functools.cache
def _etree() -> Any:
    """lxml, imported on first use: ~6 MB the daemon does not pay while no VM exists."""
    from lxml import etree  # type: ignore[import-untyped]

    return etree


@functools.cache
def _parser() -> Any:
    # Hardened: no network, no entity expansion.
    return _etree().XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)


def sub_element(parent: Any, tag: str, **kwargs: Any) -> Any:
    return _etree().SubElement(parent, tag, **kwargs)


class InvalidDomainXml(ValueError):
    """The XML cannot describe a VM; the text says why."""


@dataclass
class DeviceMeta:
    """One `<ovirt-vm:device>` block: its attributes plus its simple children."""

    attrs: dict[str, str]
    values: dict[str, Any]
    custom: dict[str, str] = field(default_factory=dict)

    @property
    def storage_ref(self) -> tuple[str, str, str, str] | None:
        if all(isinstance(self.values.get(k), str) and self.values.get(k) for k in STORAGE_KEYS):
            pool, domain, image, volume = (str(self.values[k]) for k in STORAGE_KEYS)
            return pool, domain, image, volume
        return None


@dataclass
class DomainSpec:
    vm_id: str
    name: str
    root: Any  # the lxml element tree of <domain>
    values: dict[str, Any]  # ovirt-vm:vm simple children (launchPaused, startTime...)
    custom: dict[str, str]  # VM custom properties: the hook env
    devices: list[DeviceMeta]
    has_metadata: bool

    @property
    def launch_paused(self) -> bool:
        return bool(self.values.get("launchPaused", False))

    def to_xml(self) -> str:
        return to_string(self.root)


def to_string(element: Any) -> str:
    text: str = _etree().tostring(element, encoding="unicode")
    return text


def parse_element(xml: str | bytes) -> Any:
    if isinstance(xml, str):
        xml = xml.encode("utf-8")
    try:
        return _etree().fromstring(xml, _parser())
    except _etree().XMLSyntaxError as e:
        raise InvalidDomainXml(f"not well-formed XML: {e}") from None


def parse(xml: str | bytes, expected_id: str | None = None) -> DomainSpec:
    root = parse_element(xml)
    if root.tag != "domain":
        raise InvalidDomainXml(f"the root element is <{root.tag}>, not <domain>")
    uuid_text = (root.findtext("uuid") or "").strip()
    if not uuid_text:
        raise InvalidDomainXml("the domain has no <uuid>")
    try:
        vm_id = str(uuid.UUID(uuid_text))
    except ValueError:
        raise InvalidDomainXml(f"<uuid> {uuid_text!r} is not a UUID") from None
    if expected_id is not None and vm_id != expected_id.lower():
        raise InvalidDomainXml(f"<uuid> {vm_id} differs from vmID {expected_id}")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise InvalidDomainXml("the domain has no <name>")
    vm_meta = root.find(f"metadata/{_VM}vm")
    values: dict[str, Any] = {}
    custom: dict[str, str] = {}
    devices: list[DeviceMeta] = []
    if vm_meta is not None:
        values, custom, devices = _read_vm_meta(vm_meta)
    return DomainSpec(vm_id, name, root, values, custom, devices, vm_meta is not None)


def _read_vm_meta(vm_meta: Any) -> tuple[dict[str, Any], dict[str, str], list[DeviceMeta]]:
    values: dict[str, Any] = {}
    custom: dict[str, str] = {}
    devices: list[DeviceMeta] = []
    for child in vm_meta:
        if not isinstance(child.tag, str) or not child.tag.startswith(_VM):
            continue
        key = child.tag[len(_VM) :]
        if key == "custom":
            custom = _custom(child)
        elif key == "device":
            devices.append(read_device_meta(child))
        elif len(child) == 0:
            values[key] = _typed(child)
    return values, custom, devices


def read_device_meta(element: Any) -> DeviceMeta:
    meta = DeviceMeta(attrs=dict(element.attrib), values={})
    for child in element:
        if not isinstance(child.tag, str) or not child.tag.startswith(_VM):
            continue
        key = child.tag[len(_VM) :]
        if key == "custom":
            meta.custom = _custom(child)
        elif len(child) == 0:
            meta.values[key] = _typed(child)
    return meta


def _custom(element: Any) -> dict[str, str]:
    result: dict[str, str] = {}
    for child in element:
        if isinstance(child.tag, str):
            result[_etree().QName(child).localname] = (child.text or "").strip()
    return result


def _typed(element: Any) -> Any:
    text = (element.text or "").strip()
    kind = element.get("type", "str")
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            return text.lower() in ("true", "1")
    except ValueError:
        return text
    return text


# -- devices --------------------------------------------------------------------------


def disk_by_target(root: Any, dev: str) -> Any:
    for disk in root.iterfind("devices/disk"):
        target = disk.find("target")
        if target is not None and target.get("dev") == dev:
            return disk
    return None


def set_disk_source(disk: Any, path: str) -> None:
    """Points a disk at a prepared volume path (a file)."""
    disk.set("type", "file")
    source = disk.find("source")
    if source is None:
        source = sub_element(disk, "source")
    for attr in list(source.attrib):
        source.attrib.pop(attr)
    source.set("file", path)


def storage_drives(spec: DomainSpec) -> list[tuple[DeviceMeta, str]]:
    """(metadata, target dev) of the disks that reference an image on a storage domain."""
    drives = []
    for meta in spec.devices:
        if meta.storage_ref is not None and meta.attrs.get("devtype", "disk") == "disk":
            dev = meta.attrs.get("name", "")
            drives.append((meta, dev))
    return drives


@dataclass
class HotplugSpec:
    device: Any  # the one device element
    device_meta: DeviceMeta | None

    @property
    def kind(self) -> str:
        return str(self.device.tag)

    def device_xml(self) -> str:
        return to_string(self.device)


def parse_hotplug(xml: str) -> HotplugSpec:
    """`<hotplug><devices>ONE device</devices><metadata>…</metadata></hotplug>`."""
    root = parse_element(xml)
    devices = root.find("devices")
    if devices is None:
        raise InvalidDomainXml("no <devices> element")
    elements = [e for e in devices if isinstance(e.tag, str)]
    if len(elements) != 1:
        raise InvalidDomainXml(f"<devices> must hold one device, it holds {len(elements)}")
    meta_element = root.find(f"metadata//{_VM}device")
    meta = read_device_meta(meta_element) if meta_element is not None else None
    return HotplugSpec(elements[0], meta)


def interface_mac(element: Any) -> str | None:
    mac = element.find("mac")
    return mac.get("address").lower() if mac is not None and mac.get("address") else None


def find_interface(root: Any, mac: str) -> Any:
    for iface in root.iterfind("devices/interface"):
        if interface_mac(iface) == mac.lower():
            return iface
    return None


def graphics(root: Any) -> list[dict[str, str]]:
    shown = []
    for g in root.iterfind("devices/graphics"):
        shown.append(
            {
                "type": g.get("type", ""),
                "port": g.get("port", "-1"),
                "tlsPort": g.get("tlsPort", "-1"),
                "ipAddress": g.get("listen", ""),
            }
        )
    return shown


def vm_metadata(root: Any, create: bool = True) -> Any:
    """The `<ovirt-vm:vm>` element of a domain, created when missing."""
    element = root.find(f"metadata/{_VM}vm")
    if element is None and create:
        metadata = root.find("metadata")
        if metadata is None:
            metadata = sub_element(root, "metadata")
        element = sub_element(metadata, f"{_VM}vm", nsmap={"ovirt-vm": OVIRT_VM_NS})
    return element


def set_metadata_value(root: Any, key: str, value: str, kind: str = "str") -> None:
    """Sets one `<ovirt-vm:KEY type=KIND>` value (kept by libvirt across our restarts)."""
    vm = vm_metadata(root)
    element = vm.find(f"{_VM}{key}")
    if element is None:
        element = sub_element(vm, f"{_VM}{key}")
    if kind != "str":
        element.set("type", kind)
    element.text = value


def metadata_value(root: Any, key: str) -> str | None:
    element = root.find(f"metadata/{_VM}vm/{_VM}{key}")
    return None if element is None else (element.text or "")


def vcpu_count(root: Any) -> int:
    vcpu = root.find("vcpu")
    if vcpu is None:
        return 1
    try:
        return int(vcpu.get("current") or vcpu.text or 1)
    except ValueError:
        return 1


def device_element(root: Any, meta: DeviceMeta) -> Any:
    """The device element an ovirt-vm:device block describes: NICs by `mac_address`,
    disks by `name` (the target dev)."""
    mac = meta.attrs.get("mac_address")
    if mac:
        return find_interface(root, mac)
    name = meta.attrs.get("name")
    if name:
        return disk_by_target(root, name)
    return None


def replace_element(old: Any, new_xml: str) -> Any:
    new = parse_element(new_xml)
    old.getparent().replace(old, new)
    return new


def to_string_without_namespace(element: Any) -> str:
    """The element with every tag in no namespace: what virDomainSetMetadata wants (it
    puts the element in the namespace it is given, and refuses one already there)."""
    import copy

    etree = _etree()
    clone = copy.deepcopy(element)
    for node in clone.iter():
        if isinstance(node.tag, str):
            node.tag = etree.QName(node).localname
    etree.cleanup_namespaces(clone)
    return to_string(clone)

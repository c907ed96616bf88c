"""Device hot(un)plug and updateDevice on a running VM (contract §7.3).

The engine sends one device: `{"vmId", "xml": "<hotplug><devices>DEVICE</devices>
<metadata>ovirt-vm:device…</metadata></hotplug>"}`.  The device's hook points get only
the device element in `_hook_domxml` and the device's custom properties in the env;
their edits are what gets attached.  When libvirt refuses, the `after_*_fail` point
runs and the verb answers its error code; storage prepared for a disk is torn down.

The device metadata is written back into the live domain's ovirt-vm metadata, so a
recovery after a restart knows the hot-plugged disks too.
"""

from __future__ import annotations

import logging
from typing import Any

from vdsm import errors
from vdsm.system.libvirt import LibvirtError
from vdsm.virt import domainxml, storage
from vdsm.virt.backends import Backends
from vdsm.virt.domainxml import OVIRT_VM_NS, DeviceMeta, InvalidDomainXml
from vdsm.virt.operations import require_running
from vdsm.virt.vm import Vm

log = logging.getLogger("vdsm.virt.devices")


def _parse(vm: Vm, params: dict[str, Any], kind: str) -> domainxml.HotplugSpec:
    xml = params.get("xml") if isinstance(params, dict) else None
    if not isinstance(xml, str):
        raise errors.MissingParameter(vmId=vm.vm_id, param="params.xml")
    try:
        spec = domainxml.parse_hotplug(xml)
    except InvalidDomainXml as e:
        raise errors.InvalidParameter(vmId=vm.vm_id, param="params.xml", reason=str(e)) from None
    if spec.kind != kind:
        raise errors.InvalidParameter(
            vmId=vm.vm_id, param="params.xml", reason=f"expected a <{kind}>, got <{spec.kind}>"
        )
    return spec


def _device_env(spec: domainxml.HotplugSpec) -> dict[str, str]:
    return dict(spec.device_meta.custom) if spec.device_meta else {}


async def _edited_device(b: Backends, vm: Vm, point: str, spec: domainxml.HotplugSpec) -> str:
    result = await b.run_hooks(point, vm, domxml=spec.device_xml(), extra_env=_device_env(spec))
    return result.domxml or spec.device_xml()


async def _refresh(b: Backends, vm: Vm) -> None:
    try:
        vm.update_live_xml(await b.libvirt.domain_xml(vm.vm_id))
    except LibvirtError as e:
        log.warning("cannot refresh the live XML of VM %s: %s", vm.vm_id, e)


async def _persist_device_meta(b: Backends, vm: Vm, meta: DeviceMeta | None, add: bool) -> None:
    """Keeps libvirt's copy of ovirt-vm:vm in step with the devices (for recovery)."""
    if meta is None:
        return
    if add:
        vm.spec.devices.append(meta)
    else:
        vm.spec.devices = [m for m in vm.spec.devices if m is not meta]
    root = vm.spec.root
    vm_meta = domainxml.vm_metadata(root)
    for element in vm_meta.findall(f"{{{OVIRT_VM_NS}}}device"):
        vm_meta.remove(element)
    for device in vm.spec.devices:
        element = domainxml.sub_element(vm_meta, f"{{{OVIRT_VM_NS}}}device", attrib=device.attrs)
        for key, value in device.values.items():
            child = domainxml.sub_element(element, f"{{{OVIRT_VM_NS}}}{key}")
            child.text = str(value)
        if device.custom:
            custom = domainxml.sub_element(element, f"{{{OVIRT_VM_NS}}}custom")
            for key, value in device.custom.items():
                domainxml.sub_element(custom, f"{{{OVIRT_VM_NS}}}{key}").text = value
    try:
        await b.libvirt.set_metadata(
            vm.vm_id, domainxml.to_string_without_namespace(vm_meta), "ovirt-vm", OVIRT_VM_NS
        )
    except LibvirtError as e:
        log.warning("cannot update the metadata of VM %s: %s", vm.vm_id, e)


# -- NICs --------------------------------------------------------------------------------


async def hotplug_nic(b: Backends, vm: Vm, params: dict[str, Any]) -> dict[str, Any]:
    require_running(vm)
    spec = _parse(vm, params, "interface")
    async with vm.lock:
        device_xml = await _edited_device(b, vm, "before_nic_hotplug", spec)
        try:
            await b.libvirt.attach_device(vm.vm_id, device_xml)
        except LibvirtError as e:
            await b.run_hooks(
                "after_nic_hotplug_fail",
                vm,
                domxml=device_xml,
                extra_env=_device_env(spec),
                raise_on_error=False,
            )
            raise errors.HotplugNicFailed(vmId=vm.vm_id, reason=str(e)) from None
        await _persist_device_meta(b, vm, spec.device_meta, add=True)
        await _refresh(b, vm)
        await b.run_hooks(
            "after_nic_hotplug",
            vm,
            domxml=device_xml,
            extra_env=_device_env(spec),
            raise_on_error=False,
        )
    return vm.definition()


async def hotunplug_nic(b: Backends, vm: Vm, params: dict[str, Any]) -> dict[str, Any]:
    require_running(vm)
    spec = _parse(vm, params, "interface")
    mac = domainxml.interface_mac(spec.device)
    async with vm.lock:
        await _refresh(b, vm)
        live = domainxml.find_interface(vm.live_root, mac) if mac else None
        if live is None:
            raise errors.HotunplugNicFailed(vmId=vm.vm_id, reason=f"no NIC with MAC {mac}")
        device_xml = await _edited_device(b, vm, "before_nic_hotunplug", spec)
        try:
            await b.libvirt.detach_device(vm.vm_id, domainxml.to_string(live))
        except LibvirtError as e:
            await b.run_hooks(
                "after_nic_hotunplug_fail", vm, domxml=device_xml, raise_on_error=False
            )
            raise errors.HotunplugNicFailed(vmId=vm.vm_id, reason=str(e)) from None
        meta = _find_meta(vm, mac_address=mac)
        await _persist_device_meta(b, vm, meta, add=False)
        await _refresh(b, vm)
        await b.run_hooks("after_nic_hotunplug", vm, domxml=device_xml, raise_on_error=False)
    return vm.definition()


def _find_meta(vm: Vm, **attrs: str | None) -> DeviceMeta | None:
    for meta in vm.spec.devices:
        if all((meta.attrs.get(k) or "").lower() == (v or "").lower() for k, v in attrs.items()):
            return meta
    return None


# -- disks -------------------------------------------------------------------------------


def _target(vm: Vm, spec: domainxml.HotplugSpec) -> str:
    target = spec.device.find("target")
    dev = target.get("dev") if target is not None else None
    if not dev:
        raise errors.InvalidParameter(
            vmId=vm.vm_id, param="params.xml", reason="the disk has no <target dev=…>"
        )
    return str(dev)


async def hotplug_disk(b: Backends, vm: Vm, params: dict[str, Any]) -> dict[str, Any]:
    require_running(vm)
    spec = _parse(vm, params, "disk")
    dev = _target(vm, spec)
    meta = spec.device_meta
    if meta is not None and "name" not in meta.attrs:
        meta.attrs["name"] = dev
    async with vm.lock:
        prepared: list[DeviceMeta] = []
        if meta is not None and meta.storage_ref is not None:
            if b.preparer is None:
                raise errors.HotplugDiskFailed(
                    vmId=vm.vm_id, reason="no image preparer (storage) is configured"
                )
            try:
                path = await b.preparer.prepare(*meta.storage_ref)
            except Exception as e:
                raise errors.HotplugDiskFailed(vmId=vm.vm_id, reason=str(e)) from None
            prepared.append(meta)
            domainxml.set_disk_source(spec.device, path)
        try:
            device_xml = await _edited_device(b, vm, "before_disk_hotplug", spec)
            await b.libvirt.attach_device(vm.vm_id, device_xml)
        except errors.HookError:
            await storage.teardown_drives(prepared, b.preparer)
            raise
        except LibvirtError as e:
            await storage.teardown_drives(prepared, b.preparer)
            raise errors.HotplugDiskFailed(vmId=vm.vm_id, reason=str(e)) from None
        vm.prepared_drives.extend(prepared)
        await _persist_device_meta(b, vm, meta, add=True)
        await _refresh(b, vm)
        await b.run_hooks(
            "after_disk_hotplug",
            vm,
            domxml=device_xml,
            extra_env=_device_env(spec),
            raise_on_error=False,
        )
    return vm.definition()


async def hotunplug_disk(b: Backends, vm: Vm, params: dict[str, Any]) -> dict[str, Any]:
    require_running(vm)
    spec = _parse(vm, params, "disk")
    dev = _target(vm, spec)
    async with vm.lock:
        await _refresh(b, vm)
        live = domainxml.disk_by_target(vm.live_root, dev)
        if live is None:
            raise errors.HotunplugDiskFailed(vmId=vm.vm_id, reason=f"no disk {dev}")
        device_xml = await _edited_device(b, vm, "before_disk_hotunplug", spec)
        try:
            await b.libvirt.detach_device(vm.vm_id, domainxml.to_string(live))
        except LibvirtError as e:
            raise errors.HotunplugDiskFailed(vmId=vm.vm_id, reason=str(e)) from None
        meta = _find_meta(vm, name=dev)
        if meta is not None and meta in vm.prepared_drives:
            vm.prepared_drives.remove(meta)
            await storage.teardown_drives([meta], b.preparer)
        await _persist_device_meta(b, vm, meta, add=False)
        await _refresh(b, vm)
        await b.run_hooks("after_disk_hotunplug", vm, domxml=device_xml, raise_on_error=False)
    return vm.definition()


# -- updateDevice ------------------------------------------------------------------------


async def update_device(b: Backends, vm: Vm, params: dict[str, Any]) -> dict[str, Any]:
    """Only NIC link state (and network) changes: `{deviceType: "interface", alias or
    macAddr, linkActive: bool, network?}`."""
    require_running(vm)
    if params.get("deviceType") != "interface":
        raise errors.UpdateDeviceFailed(
            vmId=vm.vm_id, reason=f"unsupported deviceType {params.get('deviceType')!r}"
        )
    async with vm.lock:
        await _refresh(b, vm)
        iface = _find_interface(vm, params)
        if iface is None:
            raise errors.UpdateDeviceFailed(vmId=vm.vm_id, reason="no such interface")
        if "linkActive" in params:
            link = iface.find("link")
            if link is None:
                link = domainxml.sub_element(iface, "link")
            link.set("state", "up" if _truthy(params["linkActive"]) else "down")
        device_xml = domainxml.to_string(iface)
        result = await b.run_hooks("before_update_device", vm, domxml=device_xml)
        device_xml = result.domxml or device_xml
        try:
            await b.libvirt.update_device(vm.vm_id, device_xml)
        except LibvirtError as e:
            await b.run_hooks(
                "after_update_device_fail", vm, domxml=device_xml, raise_on_error=False
            )
            raise errors.UpdateDeviceFailed(vmId=vm.vm_id, reason=str(e)) from None
        await _refresh(b, vm)
        await b.run_hooks("after_update_device", vm, domxml=device_xml, raise_on_error=False)
    return vm.definition()


def _find_interface(vm: Vm, params: dict[str, Any]) -> Any:
    alias = params.get("alias")
    mac = params.get("macAddr")
    for iface in vm.live_root.iterfind("devices/interface"):
        found_alias = iface.find("alias")
        if alias and found_alias is not None and found_alias.get("name") == alias:
            return iface
        if mac and domainxml.interface_mac(iface) == str(mac).lower():
            return iface
    return None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)

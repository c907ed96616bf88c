"""Block devices and LVM volume groups on the wire: Host.getDeviceList,
Host.getDevicesVisibility, Host.getLVMVolumeGroups and the LVMVolumeGroup namespace.

Upstream's wire shapes: sizes and block sizes as decimal strings (pvsize "" when the
LUN is no PV), discard_max_bytes an int, discard_zeroes_data always 0; a VG's type
is the storage domain type (2 FCP, 3 ISCSI; mixed counts as ISCSI).
"""

from __future__ import annotations

import logging
from typing import Any

from vdsm import errors
from vdsm.storage.devices import Device, Discovery
from vdsm.storage.volumegroups import VolumeGroup, VolumeGroups
from vdsm.system.lvm import PV
from vdsm.system.udev import FCP, ISCSI, MIXED, DeviceFacts

log = logging.getLogger("vdsm.api.devices")

FCP_DOMAIN = 2
ISCSI_DOMAIN = 3
# VG_ATTR bits of `vgs -o vg_attr`, in order, as upstream names them
VG_ATTR_BITS = ("permission", "resizeable", "exported", "partial", "allocation", "clustered")


def block_type(value: Any) -> str | None:
    """storageType as sent: a BlockDeviceType name or a storage domain type."""
    if value is None or value == "":
        return None
    text = str(value).upper()
    if text in ("ISCSI", str(ISCSI_DOMAIN)):
        return ISCSI
    if text in ("FCP", str(FCP_DOMAIN)):
        return FCP
    if text == "MIXED":
        return MIXED
    raise errors.InvalidParameterException("storageType", value)


def _type_matches(devtype: str, wanted: str | None) -> bool:
    # upstream: a mixed device is both an iSCSI and an FC device
    return wanted is None or devtype in (wanted, MIXED)


def _paths(facts: DeviceFacts) -> list[dict[str, Any]]:
    return [
        {
            "physdev": p.name,
            "state": p.state,
            "capacity": str(p.size),
            "lun": p.lun,
            "type": p.transport,
        }
        for p in facts.paths
    ]


def device_info(device: Device) -> dict[str, Any]:
    facts, pv = device.facts, device.pv
    return {
        "GUID": device.guid,
        "capacity": str(facts.size),
        "devtype": facts.devtype,
        "fwrev": facts.fwrev,
        "logicalblocksize": str(facts.logical_block_size),
        "pathlist": [],  # iSCSI sessions: none without iSCSI connections
        "pathstatus": _paths(facts),
        "physicalblocksize": str(facts.physical_block_size),
        "productID": facts.model,
        "pvUUID": pv.uuid if pv else "",
        "pvsize": str(pv.size) if pv else "",
        "serial": facts.serial,
        "vendorID": facts.vendor,
        "vgUUID": pv.vg_uuid if pv else "",
        "discard_max_bytes": facts.discard_max_bytes,
        "discard_zeroes_data": 0,
        "status": device.status,
    }


def _domain_type(devtype: str) -> int:
    return FCP_DOMAIN if devtype == FCP else ISCSI_DOMAIN


def _pv_info(pv: PV, facts: DeviceFacts | None, devtype: str) -> dict[str, Any]:
    return {
        "vendorID": facts.vendor if facts else "",
        "productID": facts.model if facts else "",
        "serial": facts.serial if facts else "",
        "pathstatus": _paths(facts) if facts else [],
        "pathlist": [],
        "fwrev": "0000",  # upstream's constant here
        "devtype": devtype,
        "capacity": str(pv.size),
        "devcapacity": str(pv.dev_size),
        "vgUUID": pv.vg_uuid,
        "pvUUID": pv.uuid,
        "pe_count": str(pv.pe_count),
        "pe_alloc_count": str(pv.pe_alloc_count),
        "GUID": pv.guid,
        "discard_max_bytes": facts.discard_max_bytes if facts else 0,
        "discard_zeroes_data": 0,
    }


def vg_info(group: VolumeGroup, *, with_pvs: bool) -> dict[str, Any]:
    vg = group.vg
    attr = vg.attr.ljust(len(VG_ATTR_BITS), "-")
    info: dict[str, Any] = {
        "name": vg.name,
        "vgUUID": vg.uuid,
        "vgsize": str(vg.size),
        "vgfree": str(vg.free),
        "type": _domain_type(group.devtype),
        "attr": dict(zip(VG_ATTR_BITS, attr, strict=False)),
        "state": "PARTIAL" if vg.partial else "OK",
    }
    if with_pvs:
        info["pvlist"] = [_pv_info(pv, facts, group.devtype) for pv, facts in group.pvs]
    return info


class DeviceHostAPI:
    """The Host verbs about LUNs and VGs (the rest of Host is vdsm.api.host)."""

    NAMESPACE = "Host"

    def __init__(self, *, discovery: Discovery, volume_groups: VolumeGroups) -> None:
        self.discovery = discovery
        self.volume_groups = volume_groups

    async def getDeviceList(
        self, storageType: Any, guids: list[str], checkStatus: bool, refresh: bool
    ) -> list[dict[str, Any]]:
        # `refresh` asked upstream for a SCSI/multipath rescan; here udev events and
        # a changed device set refresh the cache, so it has nothing left to do.
        wanted = block_type(storageType)
        devices = await self.discovery.listing(
            guids, check_status=checkStatus, fresh=checkStatus and bool(guids)
        )
        return [device_info(d) for d in devices if _type_matches(d.facts.devtype, wanted)]

    async def getDevicesVisibility(self, guidList: list[str]) -> dict[str, bool]:
        return await self.discovery.visible(guidList)

    async def getLVMVolumeGroups(self, storageType: Any) -> list[dict[str, Any]]:
        wanted = block_type(storageType)
        groups = await self.volume_groups.all()
        return [
            vg_info(g, with_pvs=False)
            for g in groups
            if wanted is None or _domain_type(g.devtype) == _domain_type(wanted)
        ]


class LVMVolumeGroupAPI:
    NAMESPACE = "LVMVolumeGroup"

    def __init__(self, *, volume_groups: VolumeGroups) -> None:
        self.volume_groups = volume_groups

    async def create(
        self, lvmvolumegroupID: str | None, name: str, devlist: list[str], force: bool
    ) -> str:
        return await self.volume_groups.create(name, devlist, force=force)

    async def getInfo(self, lvmvolumegroupID: str) -> dict[str, Any]:
        return vg_info(await self.volume_groups.info(lvmvolumegroupID), with_pvs=True)

    async def remove(self, lvmvolumegroupID: str) -> None:
        await self.volume_groups.remove(lvmvolumegroupID)

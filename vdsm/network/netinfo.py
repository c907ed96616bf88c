"""The `networks` entries of the capabilities: the running configuration's networks as
the kernel shows them (contract §6.3).

A bridged network is reported under its bridge (`iface`, `ports`, `stp`); a bridgeless
one under its top device (`interface`).  Address fields, `mtu` (a string) and the DHCP
flags come from that device's entry of the device sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IP_FIELDS = (
    "addr",
    "netmask",
    "ipv4addrs",
    "ipv6addrs",
    "gateway",
    "ipv6gateway",
    "ipv4defaultroute",
    "mtu",
    "dhcpv4",
    "dhcpv6",
    "ipv6autoconf",
)
SECTIONS = ("bridges", "vlans", "bondings", "nics")


def network_entries(
    networks: Mapping[str, Mapping[str, Any]], devices: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for name, net in sorted(networks.items()):
        base = net.get("nic") or net.get("bonding") or ""
        southbound = f"{base}.{net['vlan']}" if base and "vlan" in net else base
        top = name if net.get("bridged", True) else southbound
        found = _device(devices, top)
        entry: dict[str, Any] = {
            "iface": top,
            "bridged": bool(net.get("bridged", True)),
            "switch": net.get("switch", "legacy"),
            "southbound": southbound,
        }
        for key in IP_FIELDS:
            if key in found:
                entry[key] = found[key]
        entry.setdefault("mtu", str(net.get("mtu", 1500)))
        if "vlan" in net:
            entry["vlanid"] = net["vlan"]
        if entry["bridged"]:
            entry["ports"] = list(found.get("ports", []))
            entry["stp"] = found.get("stp", "off")
        else:
            entry["interface"] = top
        entries[name] = entry
    return entries


def _device(devices: Mapping[str, Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    for section in SECTIONS:
        found = devices.get(section, {}).get(name)
        if found is not None:
            return found
    return {}

"""The desired network configuration: what setupNetworks asks for, in canonical form.

A `NetConfig` holds `networks` {name: attrs} and `bonds` {name: attrs} with every
attribute explicit and normalised the way upstream persists them (contract §6.1):
`bridged` true, `mtu` 1500, `bootproto` "none", `stp` false, `defaultRoute` false,
`switch` "legacy", `vlan` an int, `netmask` rather than `prefix`...  That form is what
the staging/persistence files hold, so two configs compare with `==`.

`merge()` applies a request to the running configuration, and `validate()` checks the
result against the host's links before anything is touched, raising the contract's
codes (21 bad params, 22 bad address, 23 bad nic, 24 used nic, 25 bad bonding, 26 bad
vlan, 27 bad bridge, 31 used bond) with a text naming the culprit.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from vdsm.errors.network import (
    NetworkAddressError,
    NetworkBondingError,
    NetworkBridgeError,
    NetworkNicError,
    NetworkParamsError,
    NetworkUsedBond,
    NetworkUsedNic,
    NetworkVlanError,
)

LEGACY = "legacy"
DEFAULT_MTU = 1500
MAX_NAME = 15  # IFNAMSIZ - 1
BOND_NAME = re.compile(r"^bond\w+$")

BOND_MODES = {
    "balance-rr": "0",
    "active-backup": "1",
    "balance-xor": "2",
    "broadcast": "3",
    "802.3ad": "4",
    "balance-tlb": "5",
    "balance-alb": "6",
}
BOND_MODE_NAMES = {number: name for name, number in BOND_MODES.items()}
# Options the bonding driver takes through sysfs (besides `mode`).
BOND_OPTIONS = frozenset(
    {
        "ad_actor_sys_prio",
        "ad_actor_system",
        "ad_select",
        "ad_user_port_key",
        "all_slaves_active",
        "arp_all_targets",
        "arp_interval",
        "arp_ip_target",
        "arp_validate",
        "downdelay",
        "fail_over_mac",
        "lacp_rate",
        "lp_interval",
        "miimon",
        "min_links",
        "num_grat_arp",
        "num_unsol_na",
        "packets_per_slave",
        "peer_notif_delay",
        "primary",
        "primary_reselect",
        "resend_igmp",
        "tlb_dynamic_lb",
        "updelay",
        "use_carrier",
        "xmit_hash_policy",
    }
)


@dataclass
class NetConfig:
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    bonds: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per-device settings outside setupNetworks: upstream keeps a physical function's
    # SR-IOV VF count there ({"sriov": {"numvfs": N}}, written by hostdevChangeNumvfs).
    # Carried through as found: no verb here writes them (see vdsm/network/persistence.py).
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def copy(self) -> NetConfig:
        return NetConfig(
            copy.deepcopy(self.networks), copy.deepcopy(self.bonds), copy.deepcopy(self.devices)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "networks": copy.deepcopy(self.networks),
            "bonds": copy.deepcopy(self.bonds),
            "devices": copy.deepcopy(self.devices),
        }


@dataclass
class Request:
    """A canonical setupNetworks request: removals apart from the new definitions."""

    networks: dict[str, dict[str, Any]]
    bonds: dict[str, dict[str, Any]]
    removed_networks: set[str]
    removed_bonds: set[str]
    options: dict[str, Any]
    # Networks whose DHCP lease the call waits for (`blockingdhcp`, never persisted).
    blocking_dhcp: set[str] = field(default_factory=set)


@dataclass
class HostLinks:
    """What validation needs to know of the kernel: link names and their kinds."""

    nics: Set[str]  # links that can carry a network: NICs, veths, dummies
    others: Mapping[str, str]  # any other link: name -> kind ("bridge", "bond", ...)


# -- canonicalisation -----------------------------------------------------------------


def _bool(value: Any, name: str, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise NetworkParamsError(f"{what}: {name} must be a boolean, not {value!r}")


def _int(value: Any, name: str, what: str, error: type[NetworkParamsError] | Any) -> int:
    if isinstance(value, bool):
        raise error(f"{what}: {name} must be a number, not {value!r}")
    try:
        return int(str(value).strip())
    except ValueError:
        raise error(f"{what}: {name} must be a number, not {value!r}") from None


def canonical_network(
    name: str, attrs: Mapping[str, Any], default_nameservers: list[str] | None = None
) -> dict[str, Any]:
    """`default_nameservers`: the host's resolvers, which a static default-route
    network without `nameservers` gets (as upstream does)."""
    what = f"network {name}"
    if not isinstance(attrs, Mapping):
        raise NetworkParamsError(f"{what}: attributes must be an object")
    net: dict[str, Any] = {}
    switch = attrs.get("switch", LEGACY)
    if switch != LEGACY:
        raise NetworkParamsError(f"{what}: switch {switch!r} is not supported (only legacy)")
    if attrs.get("hostQos"):
        raise NetworkParamsError(f"{what}: hostQos is not supported by this host")
    if "nic" in attrs and "bonding" in attrs:
        raise NetworkParamsError(f"{what}: nic and bonding are exclusive")
    for key in ("nic", "bonding"):
        if attrs.get(key):
            if not isinstance(attrs[key], str):
                raise NetworkParamsError(f"{what}: {key} must be a device name")
            net[key] = attrs[key]
    vlan = attrs.get("vlan", "")
    if vlan != "" and vlan is not None:
        vid = _int(vlan, "vlan", what, NetworkVlanError)
        if not 0 <= vid <= 4094:
            raise NetworkVlanError(f"{what}: vlan id {vid} out of range 0-4094")
        net["vlan"] = vid
    net["bridged"] = _bool(attrs.get("bridged", True), "bridged", what)
    net["stp"] = _bool(attrs.get("stp", False), "stp", what)
    if net["stp"] and not net["bridged"]:
        raise NetworkParamsError(f"{what}: stp needs a bridged network")
    mtu = _int(attrs.get("mtu", DEFAULT_MTU), "mtu", what, NetworkParamsError)
    if not 68 <= mtu <= 65535:
        raise NetworkParamsError(f"{what}: mtu {mtu} out of range 68-65535")
    net["mtu"] = mtu
    bootproto = attrs.get("bootproto", "none") or "none"
    if bootproto not in ("none", "dhcp"):
        raise NetworkParamsError(f"{what}: bootproto must be none or dhcp, not {bootproto!r}")
    net["bootproto"] = bootproto
    _canonical_ipv4(net, attrs, what)
    _canonical_ipv6(net, attrs, what)
    net["defaultRoute"] = _bool(attrs.get("defaultRoute", False), "defaultRoute", what)
    nameservers = attrs.get("nameservers")
    if nameservers is None:
        static_default = net["defaultRoute"] and net["bootproto"] == "none"
        nameservers = list(default_nameservers or []) if static_default else []
    if not isinstance(nameservers, list):
        raise NetworkParamsError(f"{what}: nameservers must be a list")
    for server in nameservers:
        _address(server, "nameserver", what)
    net["nameservers"] = list(nameservers)
    net["switch"] = LEGACY
    if attrs.get("custom"):
        if not isinstance(attrs["custom"], Mapping):
            raise NetworkParamsError(f"{what}: custom must be an object")
        net["custom"] = copy.deepcopy(dict(attrs["custom"]))
        if "bridge_opts" in net["custom"]:
            if not net["bridged"]:
                raise NetworkParamsError(f"{what}: bridge_opts needs a bridged network")
            parse_bridge_opts(net["custom"]["bridge_opts"], what)
    if net["bridged"] and not valid_name(name):
        raise NetworkBridgeError(f"{what}: {name!r} is not a valid bridge name")
    if not net["bridged"] and "nic" not in net and "bonding" not in net:
        raise NetworkParamsError(f"{what}: a bridgeless network needs a nic or a bonding")
    if "vlan" in net and "nic" not in net and "bonding" not in net:
        raise NetworkVlanError(f"{what}: a vlan needs a nic or a bonding")
    return net


def _address(value: Any, field_name: str, what: str, version: int = 0) -> str:
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        raise NetworkAddressError(f"{what}: bad {field_name} {value!r}") from None
    if version and ip.version != version:
        raise NetworkAddressError(f"{what}: {field_name} {value!r} is not IPv{version}")
    return str(ip)


def _canonical_ipv4(net: dict[str, Any], attrs: Mapping[str, Any], what: str) -> None:
    ipaddr = attrs.get("ipaddr", "")
    netmask = attrs.get("netmask", "")
    prefix = attrs.get("prefix", "")
    gateway = attrs.get("gateway", "")
    if netmask and prefix not in ("", None):
        raise NetworkParamsError(f"{what}: netmask and prefix are exclusive")
    if not ipaddr:
        if netmask or prefix not in ("", None):
            raise NetworkAddressError(f"{what}: a netmask or prefix without ipaddr")
        if gateway and net["bootproto"] != "dhcp":
            raise NetworkAddressError(f"{what}: a gateway without ipaddr")
        return
    if net["bootproto"] == "dhcp":
        raise NetworkParamsError(f"{what}: ipaddr with bootproto dhcp")
    net["ipaddr"] = _address(ipaddr, "ipaddr", what, 4)
    if prefix not in ("", None):
        length = _int(prefix, "prefix", what, NetworkAddressError)
        if not 0 <= length <= 32:
            raise NetworkAddressError(f"{what}: bad prefix {prefix!r}")
    elif netmask:
        try:
            length = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
        except ValueError:
            raise NetworkAddressError(f"{what}: bad netmask {netmask!r}") from None
    else:
        raise NetworkAddressError(f"{what}: ipaddr {ipaddr} without netmask or prefix")
    net["netmask"] = str(ipaddress.IPv4Network(f"0.0.0.0/{length}").netmask)
    if gateway:
        gw = _address(gateway, "gateway", what, 4)
        subnet = ipaddress.IPv4Interface(f"{net['ipaddr']}/{length}").network
        if ipaddress.IPv4Address(gw) not in subnet:
            raise NetworkAddressError(f"{what}: gateway {gw} is not in {subnet}")
        net["gateway"] = gw


def _canonical_ipv6(net: dict[str, Any], attrs: Mapping[str, Any], what: str) -> None:
    net["ipv6autoconf"] = _bool(attrs.get("ipv6autoconf", False), "ipv6autoconf", what)
    net["dhcpv6"] = _bool(attrs.get("dhcpv6", False), "dhcpv6", what)
    if net["dhcpv6"]:
        raise NetworkParamsError(f"{what}: dhcpv6 is not supported (no DHCPv6 client here)")
    ipv6addr = attrs.get("ipv6addr", "")
    if ipv6addr:
        try:
            iface = ipaddress.IPv6Interface(str(ipv6addr))
        except ValueError:
            raise NetworkAddressError(f"{what}: bad ipv6addr {ipv6addr!r}") from None
        if "/" not in str(ipv6addr):
            raise NetworkAddressError(f"{what}: ipv6addr {ipv6addr!r} needs a /prefix")
        net["ipv6addr"] = str(iface)
    gateway6 = attrs.get("ipv6gateway", "")
    if gateway6 and gateway6 != "::":
        net["ipv6gateway"] = _address(gateway6, "ipv6gateway", what, 6)


def parse_bond_options(text: str, what: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise NetworkBondingError(f"{what}: bad bonding option {item!r} (want key=value)")
        if key == "mode":
            if value in BOND_MODES:
                value = BOND_MODES[value]
            elif value not in BOND_MODE_NAMES:
                raise NetworkBondingError(f"{what}: unknown bonding mode {value!r}")
        elif key not in BOND_OPTIONS:
            raise NetworkBondingError(f"{what}: unknown bonding option {key!r}")
        elif key in ("miimon", "updelay", "downdelay", "arp_interval") and not value.isdigit():
            raise NetworkBondingError(f"{what}: {key} must be a number, not {value!r}")
        options[key] = value
    return options


def parse_bridge_opts(text: Any, what: str) -> dict[str, str]:
    """custom.bridge_opts "key=value key=value": sysfs bridge attributes."""
    if not isinstance(text, str):
        raise NetworkBridgeError(f"{what}: bridge_opts must be a string like 'key=value'")
    options = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-z_]+", key) or not value:
            raise NetworkBridgeError(f"{what}: bad bridge option {item!r} (want key=value)")
        options[key] = value
    return options


def format_bond_options(options: Mapping[str, str]) -> str:
    items = [f"mode={options['mode']}"] if "mode" in options else []
    items += [f"{k}={v}" for k, v in sorted(options.items()) if k != "mode"]
    return " ".join(items)


def canonical_bond(name: str, attrs: Mapping[str, Any]) -> dict[str, Any]:
    what = f"bond {name}"
    if not isinstance(attrs, Mapping):
        raise NetworkBondingError(f"{what}: attributes must be an object")
    if not BOND_NAME.match(name) or len(name) > MAX_NAME:
        raise NetworkBondingError(f"{what}: a bond name is bond<word> of at most 15 characters")
    if attrs.get("switch", LEGACY) != LEGACY:
        raise NetworkParamsError(f"{what}: switch {attrs['switch']!r} is not supported")
    nics = attrs.get("nics", [])
    if not isinstance(nics, list) or not nics or not all(isinstance(n, str) for n in nics):
        raise NetworkBondingError(f"{what}: nics must be a non-empty list of nic names")
    if len(set(nics)) != len(nics):
        raise NetworkBondingError(f"{what}: a nic is listed twice")
    options = attrs.get("options", "") or ""
    if not isinstance(options, str):
        raise NetworkBondingError(f"{what}: options must be a string like 'mode=4 miimon=100'")
    parsed = parse_bond_options(options, what)
    parsed.setdefault("mode", "0")
    bond: dict[str, Any] = {
        "nics": sorted(nics),
        "options": format_bond_options(parsed),
        "switch": LEGACY,
    }
    if attrs.get("hwaddr"):
        bond["hwaddr"] = str(attrs["hwaddr"]).lower()
        if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", bond["hwaddr"]):
            raise NetworkBondingError(f"{what}: bad hwaddr {attrs['hwaddr']!r}")
    return bond


def canonical_request(
    networks: Mapping[str, Any],
    bondings: Mapping[str, Any],
    options: Mapping[str, Any],
    default_nameservers: list[str] | None = None,
) -> Request:
    if not isinstance(networks, Mapping) or not isinstance(bondings, Mapping):
        raise NetworkParamsError("networks and bondings must be objects")
    request = Request({}, {}, set(), set(), canonical_options(options))
    names = set(networks)
    if len(names) != len(networks):  # pragma: no cover - JSON objects have unique keys
        raise NetworkParamsError("a network is listed twice")
    defaults = []
    for name, attrs in networks.items():
        _check_name(name, "network")
        if isinstance(attrs, Mapping) and _bool(attrs.get("remove", False), "remove", name):
            request.removed_networks.add(name)
            continue
        net = canonical_network(name, attrs, default_nameservers)
        if net["bootproto"] == "dhcp" and _bool(
            attrs.get("blockingdhcp", False), "blockingdhcp", name
        ):
            request.blocking_dhcp.add(name)
        if net["defaultRoute"]:
            defaults.append(name)
        request.networks[name] = net
    if len(defaults) > 1:
        raise NetworkParamsError(f"only one network may have defaultRoute, not {sorted(defaults)}")
    for name, attrs in bondings.items():
        _check_name(name, "bond")
        if isinstance(attrs, Mapping) and _bool(attrs.get("remove", False), "remove", name):
            request.removed_bonds.add(name)
            continue
        request.bonds[name] = canonical_bond(name, attrs)
    return request


def canonical_options(options: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise NetworkParamsError("options must be an object")
    timeout = options.get("connectivityTimeout", 4)
    result = {
        "connectivityCheck": _bool(options.get("connectivityCheck", True), "check", "options"),
        "connectivityTimeout": _int(timeout, "connectivityTimeout", "options", NetworkParamsError),
        "commitOnSuccess": _bool(options.get("commitOnSuccess", False), "commit", "options"),
        "dryRun": _bool(options.get("dryRun", False), "dryRun", "options"),
        "_inRollback": _bool(options.get("_inRollback", False), "_inRollback", "options"),
    }
    if result["connectivityTimeout"] < 0:
        raise NetworkParamsError("options: connectivityTimeout must not be negative")
    return result


def valid_name(name: str) -> bool:
    return 0 < len(name) <= MAX_NAME and not re.search(r"[\s:/]", name) and name not in (".", "..")


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not valid_name(name):
        raise NetworkParamsError(f"bad {what} name {name!r}")


# -- merging and validation -----------------------------------------------------------


def merge(running: NetConfig, request: Request) -> NetConfig:
    """The configuration the host should have once the request is applied."""
    for name in sorted(request.removed_networks):
        if name not in running.networks:
            raise NetworkBridgeError(f"cannot remove network {name}: it does not exist")
    for name in sorted(request.removed_bonds):
        if name not in running.bonds:
            raise NetworkBondingError(f"cannot remove bond {name}: it does not exist")
    new = running.copy()
    for name in request.removed_networks:
        del new.networks[name]
    for name in request.removed_bonds:
        del new.bonds[name]
    if any(net["defaultRoute"] for net in request.networks.values()):
        # Setting the default route on one network moves it off the previous one.
        for net in new.networks.values():
            net["defaultRoute"] = False
    new.networks.update(copy.deepcopy(request.networks))
    new.bonds.update(copy.deepcopy(request.bonds))
    return new


def validate(config: NetConfig, host: HostLinks, request: Request) -> None:
    """Refuses a configuration the host cannot carry, naming the first problem."""
    bond_of_nic: dict[str, str] = {}
    for name, bond in sorted(config.bonds.items()):
        if name in host.nics or host.others.get(name, "bond") != "bond":
            raise NetworkBondingError(f"bond {name}: a {host.others.get(name, 'nic')} has its name")
        for nic in bond["nics"]:
            if nic not in host.nics:
                raise NetworkNicError(f"bond {name}: unknown nic {nic}")
            if nic in bond_of_nic:
                raise NetworkUsedNic(f"nic {nic} is already a slave of bond {bond_of_nic[nic]}")
            bond_of_nic[nic] = name
    untagged: dict[str, str] = {}
    vlans: dict[tuple[str, int], str] = {}
    defaults = [n for n, net in config.networks.items() if net["defaultRoute"]]
    if len(defaults) > 1:
        raise NetworkParamsError(f"only one network may have defaultRoute, not {sorted(defaults)}")
    for name, net in sorted(config.networks.items()):
        base = net.get("nic") or net.get("bonding")
        if net["bridged"]:
            kind = host.others.get(name)
            if name in host.nics or (kind is not None and kind != "bridge"):
                raise NetworkBridgeError(f"network {name}: a device with that name exists")
        if base is None:
            continue
        if "nic" in net:
            if base not in host.nics:
                raise NetworkNicError(f"network {name}: unknown nic {base}")
            if base in bond_of_nic:
                raise NetworkUsedNic(
                    f"network {name}: nic {base} is a slave of bond {bond_of_nic[base]}"
                )
        elif base not in config.bonds:
            if base in request.removed_bonds:
                raise NetworkUsedBond(f"network {name} uses bond {base}, which is being removed")
            raise NetworkBondingError(f"network {name}: unknown bond {base}")
        if "vlan" in net:
            key = (base, net["vlan"])
            if key in vlans:
                raise NetworkVlanError(
                    f"network {name}: vlan {net['vlan']} on {base} is used by network {vlans[key]}"
                )
            vlans[key] = name
            if len(f"{base}.{net['vlan']}") > MAX_NAME:
                raise NetworkVlanError(f"network {name}: {base}.{net['vlan']} is too long a name")
        else:
            if base in untagged:
                raise NetworkUsedNic(
                    f"network {name}: {base} already carries the untagged network {untagged[base]}"
                )
            untagged[base] = name

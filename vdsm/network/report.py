"""The network part of getCapabilities (contract §6.3) and of getStats.

`NetworkReport` turns a netlink snapshot plus a few sysfs/procfs files into the
`networks`, `bridges`, `nics`, `bondings`, `vlans`, `nameservers` and `supportsIPv6`
keys, with upstream's field names and wire types (every `mtu` a string, `speed` an
int, `stp` "on"/"off", `ipv6gateway` "::" when there is none).  The report is cached
until `invalidate()` (the NetworkChangeMonitor calls it on every netlink change) or
until it is `max_age` seconds old, whichever comes first.

Which devices are reported follows upstream's defaults: physical NICs (links without a
kind), dummy/veth/macvlan links whose names match `fake_nics` (`dummy_*`, `veth_*`),
bridges, bonds and VLANs; `hidden_nics` (`w*`, `usb*`), `hidden_bonds` and
`hidden_vlans` patterns drop devices.  `networks` lists the running configuration's
networks (the `networks` callable, see vdsm/network/netinfo.py).

DHCP and IPv6 autoconfiguration flags come from the kernel, not from NetworkManager:
`dhcpv4` = the device has a dynamic (non-permanent) global IPv4 address, `dhcpv6` = a
dynamic global IPv6 /128, `ipv6autoconf` = the autoconf/accept_ra sysctls are on.
"""

from __future__ import annotations

import asyncio
import copy
import fnmatch
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from vdsm.network.netinfo import network_entries
from vdsm.system.netlink import Link, Netlink, Route, Snapshot
from vdsm.system.procfs import read_text

log = logging.getLogger("vdsm.network.report")

SYS_CLASS_NET = Path("/sys/class/net")
PROC_SYS_NET = Path("/proc/sys/net")
PROC_NET_BONDING = Path("/proc/net/bonding")
RESOLV_CONF = Path("/etc/resolv.conf")

RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
ARPHRD_INFINIBAND = 32
IFF_LOOPBACK = 0x8
IFF_UP = 0x1

# A hidden helper bridge upstream creates; never reported.
DUMMY_BRIDGE = ";vdsmdummy;"
FAKE_NIC_KINDS = ("dummy", "veth", "macvlan")
BRIDGE_OPTS_MAX_AGE = 30.0  # seconds
LEGACY_SWITCH = "legacy"

# Kernel defaults of the bonding options this report compares against; upstream
# reports `mode` always and every other option only when it differs from its default.
BOND_DEFAULTS = {
    "ad_actor_sys_prio": "65535",
    "ad_actor_system": "00:00:00:00:00:00",
    "ad_select": "0",
    "ad_user_port_key": "0",
    "all_slaves_active": "0",
    "arp_all_targets": "0",
    "arp_interval": "0",
    "arp_ip_target": "",
    "arp_validate": "0",
    "downdelay": "0",
    "fail_over_mac": "0",
    "lacp_rate": "0",
    "lp_interval": "1",
    "miimon": "100",
    "min_links": "0",
    "num_grat_arp": "1",
    "num_unsol_na": "1",
    "packets_per_slave": "1",
    "peer_notif_delay": "0",
    "primary": "",
    "primary_reselect": "0",
    "resend_igmp": "1",
    "tlb_dynamic_lb": "1",
    "updelay": "0",
    "use_carrier": "1",
    "xmit_hash_policy": "0",
}


class NetworkReport:
    def __init__(
        self,
        netlink: Netlink,
        *,
        fake_nics: Iterable[str] = ("dummy_*", "veth_*"),
        hidden_nics: Iterable[str] = ("w*", "usb*"),
        hidden_bonds: Iterable[str] = (),
        hidden_vlans: Iterable[str] = (),
        max_age: float = 60.0,
        sys_class_net: Path = SYS_CLASS_NET,
        proc_sys_net: Path = PROC_SYS_NET,
        resolv_conf: Path = RESOLV_CONF,
        proc_net_bonding: Path = PROC_NET_BONDING,
        networks: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
    ) -> None:
        self._netlink = netlink
        self.networks = networks  # the running configuration's networks
        self._rules = _Rules(
            tuple(fake_nics), tuple(hidden_nics), tuple(hidden_bonds), tuple(hidden_vlans)
        )
        self._paths = _Paths(sys_class_net, proc_sys_net, resolv_conf, proc_net_bonding)
        self._max_age = max_age
        self._lock = asyncio.Lock()
        self._generation = 0
        self._cached: tuple[float, Snapshot, dict[str, Any]] | None = None
        self.builds = 0  # how many times the report was computed (for tests and metrics)

    def invalidate(self) -> None:
        self._generation += 1
        self._cached = None

    async def report(self) -> dict[str, Any]:
        """The caps network keys; a private copy the caller may change."""
        _, report = await self._current()
        return copy.deepcopy(report)

    async def shared_report(self) -> dict[str, Any]:
        """The caps network keys, shared with the cache: for callers that only read it
        (serialising it for the wire), sparing a deep copy of a large report."""
        _, report = await self._current()
        return report

    async def device_by_address(self, address: str) -> str:
        """The device owning a local address ("" when none): getCapabilities' lastClientIface.

        Accepts "1.2.3.4", "1.2.3.4:54321", "[::1]:54321" and IPv4-mapped IPv6.
        """
        ip = _parse_host(address)
        if ip is None:
            return ""
        snapshot, _ = await self._current()
        links = snapshot.link_by_index()
        for addr in snapshot.addresses:
            if ipaddress.ip_address(addr.address) == ip:
                if addr.label:
                    return addr.label
                link = links.get(addr.index)
                return link.name if link else ""
        return ""

    async def _current(self) -> tuple[Snapshot, dict[str, Any]]:
        async with self._lock:
            cached = self._cached
            if cached is not None and time.monotonic() - cached[0] < self._max_age:
                return cached[1], cached[2]
            generation = self._generation
            snapshot = await self._netlink.snapshot()
            nets = self.networks() if self.networks is not None else {}
            report = await asyncio.to_thread(build_report, snapshot, self._rules, self._paths, nets)
            self.builds += 1
            # A change seen while building makes this result stale: use it for this
            # call, but do not keep it.
            if generation == self._generation:
                self._cached = (time.monotonic(), snapshot, report)
            return snapshot, report


class _Rules:
    def __init__(
        self,
        fake_nics: tuple[str, ...],
        hidden_nics: tuple[str, ...],
        hidden_bonds: tuple[str, ...],
        hidden_vlans: tuple[str, ...],
    ) -> None:
        self.fake_nics = fake_nics
        self.hidden_nics = hidden_nics
        self.hidden_bonds = hidden_bonds
        self.hidden_vlans = hidden_vlans


class _Paths:
    def __init__(
        self,
        sys_class_net: Path,
        proc_sys_net: Path,
        resolv_conf: Path,
        proc_net_bonding: Path = PROC_NET_BONDING,
    ) -> None:
        self.sys_class_net = sys_class_net
        self.proc_sys_net = proc_sys_net
        self.resolv_conf = resolv_conf
        self.proc_net_bonding = proc_net_bonding
        # (bridge, ifindex, stp) -> (read at, opts): ~40 sysfs files a bridge, the bulk
        # of a rebuild on a host with many bridges; the values rarely change, but the
        # kernel's timers among them do, hence the age limit.
        self.bridge_opts: dict[tuple[str, int, int], tuple[float, dict[str, str]]] = {}


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(p and fnmatch.fnmatchcase(name, p) for p in patterns)


def classify(link: Link, links: dict[int, Link], rules: _Rules) -> str | None:
    """ "nics", "bondings", "bridges", "vlans", or None for links not reported."""
    if link.kind == "bridge":
        return None if link.name == DUMMY_BRIDGE else "bridges"
    if link.kind == "bond":
        return None if _matches(link.name, rules.hidden_bonds) else "bondings"
    if link.kind == "vlan":
        return None if _matches(link.name, rules.hidden_vlans) else "vlans"
    nic_like = (
        (link.kind is None and not link.flags & IFF_LOOPBACK)
        or link.arptype == ARPHRD_INFINIBAND
        or (link.kind in FAKE_NIC_KINDS and _matches(link.name, rules.fake_nics))
    )
    if not nic_like:
        return None
    if _matches(link.name, rules.hidden_nics):
        return None
    master = links.get(link.master) if link.master else None
    if master is not None and master.kind == "bond" and _matches(master.name, rules.hidden_bonds):
        return None
    return "nics"


def build_report(
    snapshot: Snapshot,
    rules: _Rules,
    paths: _Paths,
    networks: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    links = snapshot.link_by_index()
    permanent = bond_permanent_addresses(paths.proc_net_bonding)
    devices: dict[str, dict[str, Any]] = {"bondings": {}, "bridges": {}, "nics": {}, "vlans": {}}
    defaults = [r for r in snapshot.routes if r.is_default]
    for link in sorted(snapshot.links, key=lambda lnk: lnk.name):
        section = classify(link, links, rules)
        if section is None:
            continue
        info = _ip_info(link, snapshot, paths, defaults)
        if section == "nics":
            info.update(_nic_info(link, paths, permanent))
        elif section == "bondings":
            info.update(_bond_info(link, snapshot, links, paths))
        elif section == "bridges":
            info.update(_bridge_info(link, snapshot, paths))
        else:
            parent = links.get(link.parent) if link.parent else None
            info.update({"iface": parent.name if parent else "", "vlanid": link.vlan_id})
        devices[section][link.name] = info
    report: dict[str, Any] = {"networks": network_entries(networks or {}, devices)}
    report.update(devices)
    report["nameservers"] = read_nameservers(paths.resolv_conf)
    report["supportsIPv6"] = ipv6_supported()
    return report


def _gateway(routes: list[Route], index: int, family: int) -> str:
    # Like upstream: any table (source routing puts per-device tables beside main),
    # global scope, one unambiguous gateway or none.
    gateways = {
        r.gateway
        for r in routes
        if r.is_default
        and r.oif == index
        and r.family == family
        and r.scope == RT_SCOPE_UNIVERSE
        and r.gateway
    }
    if len(gateways) == 1:
        return gateways.pop() or ""
    if len(gateways) > 1:
        log.warning("several IPv%d gateways on ifindex %d: %s", family, index, sorted(gateways))
    return "::" if family == 6 else ""


def _is_default_route(gateway: str, routes: list[Route]) -> bool:
    if not gateway:
        return False
    return any(
        r.is_default
        and r.family == 4
        and r.table == RT_TABLE_MAIN
        and r.scope == RT_SCOPE_UNIVERSE
        and r.gateway == gateway
        for r in routes
    )


def _ip_info(
    link: Link, snapshot: Snapshot, paths: _Paths, defaults: list[Route] | None = None
) -> dict[str, Any]:
    # `defaults`: the snapshot's default routes, filtered once for all links.
    routes = snapshot.routes if defaults is None else defaults
    addresses = [
        a for a in snapshot.addresses if a.index == link.index and a.scope != RT_SCOPE_LINK
    ]
    gateway = _gateway(routes, link.index, 4)
    ipv4 = [a for a in addresses if a.family == 4]
    ipv6 = [a for a in addresses if a.family == 6]
    addr = netmask = ""
    # With several addresses, prefer the primary one in the gateway's subnet.
    if gateway:
        for a in ipv4:
            network = ipaddress.ip_interface(a.cidr).network
            if a.primary and ipaddress.ip_address(gateway) in network:
                addr, netmask = a.address, str(network.netmask)
                break
    if ipv4 and not addr:
        addr, netmask = ipv4[0].address, str(ipaddress.ip_interface(ipv4[0].cidr).network.netmask)
    return {
        "addr": addr,
        "netmask": netmask,
        "ipv4addrs": [a.cidr for a in ipv4],
        "ipv6addrs": [a.cidr for a in ipv6],
        "gateway": gateway,
        "ipv6gateway": _gateway(routes, link.index, 6),
        "ipv4defaultroute": _is_default_route(gateway, routes),
        "mtu": str(link.mtu),
        "dhcpv4": any(not a.permanent for a in ipv4),
        "dhcpv6": any(not a.permanent and a.prefixlen == 128 for a in ipv6),
        "ipv6autoconf": ipv6_local_auto(link.name, paths.proc_sys_net),
    }


def _nic_info(link: Link, paths: _Paths, permanent: dict[str, str]) -> dict[str, Any]:
    info: dict[str, Any] = {"hwaddr": link.mac, "speed": link.speed or 0}
    if link.slave_kind == "bond":
        # The bonding driver's record of the address the slave had before enslaving
        # (what upstream reports); the driver's permanent address otherwise.
        perm = permanent.get(link.name) or link.perm_mac
        if perm:
            info["permhwaddr"] = perm
        agg = _sysfs_value(paths.sys_class_net / link.name / "bonding_slave" / "ad_aggregator_id")
        if agg:
            info["ad_aggregator_id"] = agg
    return info


def _bond_info(
    link: Link, snapshot: Snapshot, links: dict[int, Link], paths: _Paths
) -> dict[str, Any]:
    bonding = paths.sys_class_net / link.name / "bonding"
    slaves_text = _sysfs_value(bonding / "slaves")
    if slaves_text is not None:
        slaves = slaves_text.split()
    else:
        slaves = sorted(lnk.name for lnk in snapshot.links if lnk.master == link.index)
    active = links.get(link.bond_active_slave) if link.bond_active_slave else None
    info: dict[str, Any] = {
        "hwaddr": link.mac,
        "slaves": slaves,
        "active_slave": active.name if active else (_sysfs_value(bonding / "active_slave") or ""),
        "opts": bond_options(bonding, link.bond_mode),
        "speed": link.speed or 0,
        "switch": LEGACY_SWITCH,
    }
    agg = _sysfs_value(bonding / "ad_aggregator")
    partner = _sysfs_value(bonding / "ad_partner_mac")
    if agg and partner:
        info["ad_aggregator_id"] = agg
        info["ad_partner_mac"] = partner
    return info


def bond_permanent_addresses(proc_net_bonding: Path = PROC_NET_BONDING) -> dict[str, str]:
    """Slave name -> "Permanent HW addr" from /proc/net/bonding/* (this namespace's)."""
    addresses: dict[str, str] = {}
    try:
        bonds = sorted(proc_net_bonding.iterdir())
    except OSError:
        return addresses
    for bond in bonds:
        slave = None
        for line in read_text(bond, "").splitlines():
            if line.startswith("Slave Interface: "):
                slave = line.split(": ", 1)[1].strip()
            elif line.startswith("Permanent HW addr: ") and slave:
                addresses[slave] = line.split(": ", 1)[1].strip()
    return addresses


def bond_options(bonding_dir: Path, mode: int | None = None) -> dict[str, str]:
    """`mode` (numeric) and the options that differ from the kernel defaults."""
    opts: dict[str, str] = {}
    mode_text = _sysfs_value(bonding_dir / "mode")
    if mode_text:
        opts["mode"] = mode_text.split()[-1]
    elif mode is not None:
        opts["mode"] = str(mode)
    for name, default in BOND_DEFAULTS.items():
        value = _sysfs_value(bonding_dir / name)
        if not value:  # missing, or not applicable to this mode (read as empty)
            continue
        # Symbolic options read "name number" ("layer2 0"); the number is reported.
        value = value.split()[-1] if value and name != "arp_ip_target" else value
        if name == "arp_ip_target":
            value = ",".join(value.split())
        if value != default:
            opts[name] = value
    return opts


def _bridge_info(link: Link, snapshot: Snapshot, paths: _Paths) -> dict[str, Any]:
    ports = sorted(lnk.name for lnk in snapshot.links if lnk.master == link.index)
    stp = link.bridge_stp
    if stp is None:
        stp_text = _sysfs_value(paths.sys_class_net / link.name / "bridge" / "stp_state")
        stp = int(stp_text) if stp_text and stp_text.isdigit() else 0
    key = (link.name, link.index, stp)
    now = time.monotonic()
    cached = paths.bridge_opts.get(key)
    if cached is None or now - cached[0] > BRIDGE_OPTS_MAX_AGE:
        cached = (now, bridge_options(paths.sys_class_net / link.name / "bridge"))
        paths.bridge_opts[key] = cached
    return {"ports": ports, "stp": "on" if stp else "off", "opts": cached[1]}


def bridge_options(bridge_dir: Path) -> dict[str, str]:
    opts: dict[str, str] = {}
    try:
        entries = sorted(bridge_dir.iterdir())
    except OSError:
        return opts
    for entry in entries:
        if entry.name == "flush":  # write-only trigger
            continue
        value = _sysfs_value(entry)
        if value is not None:
            opts[entry.name] = value
    return opts


def _sysfs_value(path: Path) -> str | None:
    try:
        return path.read_text().replace("N/A", "").strip()
    except OSError:
        return None


def ipv6_local_auto(name: str, proc_sys_net: Path = PROC_SYS_NET) -> bool:
    conf = proc_sys_net / "ipv6" / "conf" / name

    def flag(key: str) -> int:
        try:
            return int((conf / key).read_text().strip())
        except (OSError, ValueError):
            return -1

    if flag("disable_ipv6") != 0:
        return False
    return flag("autoconf") > 0 and flag("accept_ra") > 0 and flag("accept_redirects") > 0


def read_nameservers(path: Path = RESOLV_CONF) -> list[str]:
    servers = []
    for line in read_text(path, "").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1])
    return servers


def ipv6_supported() -> bool:
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        return False
    return True


def _parse_host(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = address.strip()
    if not text:
        return None
    if text.startswith("["):  # [v6]:port
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    text = text.split("%", 1)[0]  # zone index of link-local addresses
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# -- getStats: per-interface counters -------------------------------------------------

_COUNTERS = {
    "rx": "rx_bytes",
    "tx": "tx_bytes",
    "rxDropped": "rx_dropped",
    "txDropped": "tx_dropped",
    "rxErrors": "rx_errors",
    "txErrors": "tx_errors",
}
# Upstream reports a speed for these kinds only; the rest get the 1000 default.
_SPEED_KINDS = ("nic", "bond", "vlan")


def link_statistics(sys_class_net: Path = SYS_CLASS_NET) -> dict[str, dict[str, Any]]:
    """getStats' `network`: cumulative counters of every link, as upstream reports them.

    Counters are totals since the link appeared, not rates: the engine computes rates
    from two reports and their `sampleTime`.  Numbers are strings; `speed` is "1000"
    when unknown, as upstream's normalisation does.
    """
    stats: dict[str, dict[str, Any]] = {}
    now = time.time()
    try:
        names = sorted(p.name for p in sys_class_net.iterdir())
    except OSError:
        return stats
    for name in names:
        base = sys_class_net / name
        entry: dict[str, Any] = {"name": name}
        for key, counter in _COUNTERS.items():
            entry[key] = str(_counter(base / "statistics" / counter))
        running = _oper_up(base)
        entry["state"] = "up" if running else "down"
        speed = 0
        if running and _sysfs_kind(base) in _SPEED_KINDS:
            speed = _speed(base)
        entry["speed"] = str(speed or 1000)
        entry["duplex"] = _sysfs_value(base / "duplex") or "unknown"
        entry["sampleTime"] = now
        stats[name] = entry
    return stats


def _counter(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _oper_up(base: Path) -> bool:
    try:
        flags = int((base / "flags").read_text().strip(), 16)
        # Reading carrier of a link that is down fails with EINVAL.
        carrier = (base / "carrier").read_text().strip()
    except (OSError, ValueError):
        return False
    return bool(flags & IFF_UP) and carrier == "1"


def _speed(base: Path) -> int:
    try:
        value = int((base / "speed").read_text().strip())
    except (OSError, ValueError):
        return 0
    return 0 if value <= 0 or value in (0xFFFF, 0xFFFFFFFF) else value


def _sysfs_kind(base: Path) -> str:
    uevent = _sysfs_value(base / "uevent") or ""
    for line in uevent.splitlines():
        if line.startswith("DEVTYPE="):
            devtype = line.split("=", 1)[1]
            if devtype in ("bond", "vlan", "bridge"):
                return devtype
    if (base / "device").exists():
        return "nic"
    return "other"

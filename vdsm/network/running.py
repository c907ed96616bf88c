"""The running state of the kernel, as the planner compares it: read from netlink.

`KernelState` is a netlink snapshot reduced to what setupNetworks manages: each link's
kind, master, lower device, VLAN id, MTU, MAC, up flag and bond options, the static
global addresses on each link, the default routes of the main table, and the source
routing state (vdsm/network/sourceroute.py): the IPv4 routes of every other table and
the IPv4 rules at the source-routing priority.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vdsm.network import report
from vdsm.network.sourceroute import RESERVED_TABLES, RULE_PRIORITY, RuleSpec, TableRoute
from vdsm.system.netlink import Snapshot

PROC_SYS_NET = report.PROC_SYS_NET
# The IPv6 sysctls ipv6autoconf sets (router advertisements and SLAAC).
IPV6_AUTOCONF_KEYS = ("accept_ra", "autoconf")
RT_TABLE_MAIN = 254
RT_SCOPE_LINK = 253
# Links a network may sit on: NICs (no kind) and the virtual ones tests and labs use.
NIC_KINDS = (None, "veth", "dummy", "macvlan")


@dataclass(frozen=True)
class LinkState:
    name: str
    kind: str | None
    master: str | None
    parent: str | None
    vlan_id: int | None
    mtu: int
    mac: str
    up: bool
    stp: bool = False
    bond_options: dict[str, str] = field(default_factory=dict)

    @property
    def is_nic(self) -> bool:
        return self.kind in NIC_KINDS


@dataclass
class KernelState:
    links: dict[str, LinkState]
    addresses: dict[str, set[str]]  # link -> {"a.b.c.d/p", "x::y/p"}
    routes: dict[str, set[str]]  # link -> default gateways {"10.0.0.1", "fe80::1"}
    # link -> {accept_ra, autoconf}; "default": what a new link gets
    ipv6conf: dict[str, dict[str, str]] = field(default_factory=dict)
    dynamic: dict[str, set[str]] = field(default_factory=dict)  # link -> DHCP leases (IPv4)
    # bridge -> {sysfs option: value}, only the custom bridge_opts keys (read_bridge_opts)
    bridge_opts: dict[str, dict[str, str]] = field(default_factory=dict)
    # (link, table) -> IPv4 routes through that link in a table other than the kernel's
    table_routes: dict[tuple[str, int], set[TableRoute]] = field(default_factory=dict)
    # table -> IPv4 rules at the source-routing priority that look it up, in the
    # kernel's order (rules of one priority are tried in the order they were added)
    rules: dict[int, list[RuleSpec]] = field(default_factory=dict)

    def nics(self) -> set[str]:
        return {name for name, link in self.links.items() if link.is_nic and name != "lo"}

    def others(self) -> dict[str, str]:
        return {name: link.kind or "" for name, link in self.links.items() if not link.is_nic}


def kernel_state(
    snapshot: Snapshot,
    sys_class_net: Path = report.SYS_CLASS_NET,
    proc_sys_net: Path = PROC_SYS_NET,
) -> KernelState:
    """Blocking (reads bond options and IPv6 sysctls): call it in a worker thread."""
    by_index = snapshot.link_by_index()
    links: dict[str, LinkState] = {}
    for link in snapshot.links:
        master = by_index.get(link.master) if link.master else None
        parent = by_index.get(link.parent) if link.parent and link.kind == "vlan" else None
        options: dict[str, str] = {}
        if link.kind == "bond":
            options = report.bond_options(sys_class_net / link.name / "bonding", link.bond_mode)
        links[link.name] = LinkState(
            name=link.name,
            kind=link.kind,
            master=master.name if master else None,
            parent=parent.name if parent else None,
            vlan_id=link.vlan_id,
            mtu=link.mtu,
            mac=link.mac,
            up=link.is_up,
            stp=bool(link.bridge_stp),
            bond_options=options,
        )
    names = {link.index: link.name for link in snapshot.links}
    addresses: dict[str, set[str]] = {}
    dynamic: dict[str, set[str]] = {}
    for addr in snapshot.addresses:
        if addr.scope == RT_SCOPE_LINK or addr.index not in names:
            continue
        if not addr.permanent:
            # A lease (DHCP) or SLAAC: the client's business, never planned.
            if addr.family == 4:
                dynamic.setdefault(names[addr.index], set()).add(addr.cidr)
            continue
        addresses.setdefault(names[addr.index], set()).add(addr.cidr)
    routes: dict[str, set[str]] = {}
    for route in snapshot.routes:
        if (
            route.is_default
            and route.table == RT_TABLE_MAIN
            and route.gateway
            and route.oif in names
        ):
            routes.setdefault(names[route.oif], set()).add(route.gateway)
    table_routes: dict[tuple[str, int], set[TableRoute]] = {}
    for route in snapshot.routes:
        if route.family != 4 or route.table in RESERVED_TABLES or route.oif not in names:
            continue
        dst = f"{route.dst or '0.0.0.0'}/{route.dst_len}"
        key = (names[route.oif], route.table)
        table_routes.setdefault(key, set()).add(TableRoute(dst, route.gateway))
    rules: dict[int, list[RuleSpec]] = {}
    for rule in snapshot.rules:
        if rule.family == 4 and rule.priority == RULE_PRIORITY and rule.iif is None:
            rules.setdefault(rule.table, []).append(RuleSpec(rule.src, rule.dst))
    ipv6conf = {
        name: _ipv6_conf(proc_sys_net / "ipv6" / "conf" / name) for name in [*links, "default"]
    }
    state = KernelState(links, addresses, routes, ipv6conf, dynamic)
    state.table_routes = table_routes
    state.rules = rules
    return state


def _ipv6_conf(directory: Path) -> dict[str, str]:
    values = {}
    for key in IPV6_AUTOCONF_KEYS:
        try:
            values[key] = (directory / key).read_text().strip()
        except OSError:
            continue  # IPv6 not available on this link
    return values


def read_bridge_opts(
    keys: dict[str, set[str]], sys_class_net: Path = report.SYS_CLASS_NET
) -> dict[str, dict[str, str]]:
    """Blocking: the current values of the given sysfs options of existing bridges."""
    values: dict[str, dict[str, str]] = {}
    for bridge, names in keys.items():
        for name in names:
            try:
                text = (sys_class_net / bridge / "bridge" / name).read_text().strip()
            except OSError:
                continue
            values.setdefault(bridge, {})[name] = text
    return values

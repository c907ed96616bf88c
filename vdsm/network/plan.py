"""From two configurations and the kernel's state to an ordered list of kernel changes.

`layout(config)` says which devices, addresses and default routes a configuration
needs: a bond per bond, `<base>.<vid>` per VLAN, a bridge named after each bridged
network with the lower device as its port, the IP configuration on the top device, and
on each NIC/bond the largest MTU of the networks above it (a parent's MTU covers its
VLANs).

`plan(old, new, kernel)` compares the layout of the running configuration (`old`),
the wanted one (`new`) and what the kernel really has, and returns `Step`s in
dependency order: first tear down from the top (rules, routes, addresses, ports, then
bridges, VLANs and bonds), then build from the bottom (links, bond options, MTUs, ports,
up, addresses, routes, then each network's source routing table and rules).  Only what
differs is touched; devices the old configuration did not own are never deleted.
Every step carries its `undo`, computed from the state before it, so that a transaction
can restore exactly what was there.  `describe()` of each step is what
`options: {"dryRun": true}` answers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vdsm.network import report
from vdsm.network.model import DEFAULT_MTU, NetConfig, parse_bond_options, parse_bridge_opts
from vdsm.network.running import KernelState, LinkState
from vdsm.network.sourceroute import RULE_PRIORITY, RuleSpec, SourceRoute, TableRoute, table_id

VIRTUAL_KINDS = ("bond", "vlan", "bridge")
# Build order (bottom-up); teardown uses the reverse.
KIND_ORDER = ("nic", "bond", "vlan", "bridge")


@dataclass
class Device:
    name: str
    kind: str  # nic, bond, vlan, bridge
    mtu: int | None = None  # None: not ours to set (a bond slave follows its bond)
    master: str | None = None
    parent: str | None = None
    vlan_id: int | None = None
    stp: bool = False
    bond_options: dict[str, str] = field(default_factory=dict)
    hwaddr: str | None = None
    bridge_opts: dict[str, str] = field(default_factory=dict)  # custom.bridge_opts


@dataclass
class Layout:
    devices: dict[str, Device] = field(default_factory=dict)
    addresses: dict[str, set[str]] = field(default_factory=dict)  # top device -> cidrs
    routes: dict[str, set[str]] = field(default_factory=dict)  # top device -> gateways
    ipv6autoconf: dict[str, bool] = field(default_factory=dict)  # top device -> wanted
    source_routes: dict[str, SourceRoute] = field(default_factory=dict)  # top device -> its
    # top device -> table of a DHCP network without the default route: its DHCP client
    # fills the table and the rules (vdsm/network/dhcp.py); the plan only clears them
    # when the network goes or stops being such a network.
    dhcp_tables: dict[str, int] = field(default_factory=dict)

    def owned(self) -> set[str]:
        return {n for n, d in self.devices.items() if d.kind in VIRTUAL_KINDS}


@dataclass
class Step:
    action: str  # a method of the kernel adapter (vdsm.system.iproute.KernelChanger)
    device: str
    args: dict[str, Any] = field(default_factory=dict)
    undo: list[Step] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"action": self.action, "device": self.device, **self.args}


def layout(config: NetConfig) -> Layout:
    out = Layout()
    devices = out.devices
    carried: dict[str, list[int]] = {}  # base device -> MTUs of the networks above it
    for name, bond in config.bonds.items():
        options = parse_bond_options(bond["options"], f"bond {name}")
        devices[name] = Device(name, "bond", bond_options=options, hwaddr=bond.get("hwaddr"))
        carried[name] = []
        for nic in bond["nics"]:
            devices[nic] = Device(nic, "nic", mtu=None, master=name)
    for name, net in config.networks.items():
        base = net.get("nic") or net.get("bonding")
        mtu = net["mtu"]
        if base is not None:
            devices.setdefault(base, Device(base, "nic"))
            carried.setdefault(base, []).append(mtu)
        lower = base
        if base is not None and "vlan" in net:
            lower = f"{base}.{net['vlan']}"
            devices[lower] = Device(lower, "vlan", mtu=mtu, parent=base, vlan_id=net["vlan"])
        top = lower
        if net["bridged"]:
            opts = parse_bridge_opts(net.get("custom", {}).get("bridge_opts", ""), name)
            devices[name] = Device(name, "bridge", mtu=mtu, stp=net["stp"], bridge_opts=opts)
            if lower is not None:
                devices[lower].master = name
            top = name
        assert top is not None  # validation refuses bridgeless nic-less networks
        addresses = out.addresses.setdefault(top, set())
        if "ipaddr" in net:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{net['netmask']}").prefixlen
            addresses.add(f"{net['ipaddr']}/{prefix}")
        if "ipv6addr" in net:
            addresses.add(net["ipv6addr"])
        out.ipv6autoconf[top] = net["ipv6autoconf"]
        routes = out.routes.setdefault(top, set())
        if net.get("gateway") and net["defaultRoute"]:
            routes.add(net["gateway"])
        if net.get("ipv6gateway"):
            routes.add(net["ipv6gateway"])
        if net["bootproto"] == "dhcp" and not net["defaultRoute"]:
            out.dhcp_tables[top] = table_id(top)
        if "ipaddr" in net and net.get("gateway"):
            out.source_routes[top] = SourceRoute.of(
                top, net["ipaddr"], net["netmask"], net["gateway"]
            )
    # Bond slaves are never bases (validation refuses it): they follow their bond's MTU.
    for base, mtus in carried.items():
        devices[base].mtu = max(mtus, default=DEFAULT_MTU)
    return out


def plan(old: Layout, new: Layout, kernel: KernelState) -> list[Step]:
    return _Planner(old, new, kernel).steps()


def bridge_opt_keys(layout: Layout) -> dict[str, set[str]]:
    """Bridge -> the custom bridge_opts keys a layout sets: the planner compares them
    with the kernel's (KernelState.bridge_opts, read for these keys only)."""
    return {n: set(d.bridge_opts) for n, d in layout.devices.items() if d.bridge_opts}


class _Planner:
    def __init__(self, old: Layout, new: Layout, kernel: KernelState) -> None:
        self.old = old
        self.new = new
        self.kernel = kernel
        self.links = kernel.links
        self.out: list[Step] = []
        self.deleted: set[str] = set()
        self.created: set[str] = set()
        self.created_down: set[str] = set()  # created, brought up by a later step
        self.masters: dict[str, str | None] = {n: lnk.master for n, lnk in self.links.items()}
        self.dropped_routes: dict[str, set[str]] = {}
        self.dropped_table_routes: dict[tuple[str, int], set[TableRoute]] = {}
        self.doomed = self._doomed()

    def steps(self) -> list[Step]:
        self._teardown_rules()
        self._teardown_ip()
        self._detach()
        self._delete()
        self._create()
        self._bonds()
        self._bridge_opts()
        self._mtu()
        self._attach()
        self._up()
        self._ipv6autoconf()
        self._addresses()
        self._routes()
        self._source_routes()
        return self.out

    def add(self, action: str, device: str, undo: Iterable[Step] = (), **args: Any) -> None:
        self.out.append(Step(action, device, args, list(undo)))

    # -- teardown (top-down) ------------------------------------------------------------

    def _ip_devices(self) -> set[str]:
        names = set(self.old.addresses) | set(self.old.routes)
        names |= set(self.new.addresses) | set(self.new.routes)
        names |= self.doomed
        return {n for n in names if n in self.links}

    def _teardown_ip(self) -> None:
        for dev in sorted(self._ip_devices()):
            doomed = dev in self.doomed
            have = self.kernel.addresses.get(dev, set())
            want = set() if doomed else self.new.addresses.get(dev, set())
            drop_addrs = have - want
            addresses_change = bool(drop_addrs) or bool(want - have)
            wanted_routes = set() if doomed else self.new.routes.get(dev, set())
            self._teardown_table_routes(dev, doomed, addresses_change)
            for gw in sorted(self.kernel.routes.get(dev, set())):
                if gw not in wanted_routes or addresses_change:
                    self.dropped_routes.setdefault(dev, set()).add(gw)
                    self.add(
                        "del_route", dev, [Step("add_route", dev, {"gateway": gw})], gateway=gw
                    )
            for cidr in sorted(drop_addrs):
                self.add("del_addr", dev, [Step("add_addr", dev, {"cidr": cidr})], cidr=cidr)

    def _source_route(self, dev: str) -> SourceRoute | None:
        """The source routing `dev` should have once the plan is done."""
        return None if dev in self.doomed else self.new.source_routes.get(dev)

    def _source_routed(self) -> set[str]:
        """Top devices whose source routing the plan manages: those with a static one
        before or after, and former DHCP ones whose client's state should go."""
        devices = set(self.old.source_routes) | set(self.new.source_routes)
        devices |= set(self.old.dhcp_tables)
        # A DHCP network staying one: its client's business.
        return devices - set(self.new.dhcp_tables)

    def _teardown_rules(self) -> None:
        """Rules to the tables of the networks that had or get source routing and should
        not have them (now or after an address or gateway change)."""
        for dev in sorted(self._source_routed()):
            wanted = self.new.source_routes.get(dev)
            table = table_id(dev)
            keep = wanted.rules() if wanted else set()
            # Last first: undone in reverse, they come back in the kernel's order.
            have = self.kernel.rules.get(table, [])
            for rule in reversed([r for r in have if r not in keep]):
                args = {"table": table, "priority": RULE_PRIORITY, "src": rule.src, "dst": rule.dst}
                self.add("del_rule", dev, [Step("add_rule", dev, dict(args))], **args)

    def _teardown_table_routes(self, dev: str, doomed: bool, addresses_change: bool) -> None:
        """Routes of `dev`'s own table that should go, or that go with its addresses
        (the kernel drops a link's routes with its last address): put back on undo."""
        if dev not in self._source_routed():
            return
        table = table_id(dev)
        wanted = self._source_route(dev)
        keep = set() if wanted is None or addresses_change else wanted.routes()
        key = (dev, table)
        gone = self.kernel.table_routes.get(key, set()) - keep
        # Gateway routes first: undone in reverse, the link route comes back before them.
        for route in sorted(gone, key=_route_key, reverse=True):
            self.dropped_table_routes.setdefault(key, set()).add(route)
            args = {"table": table, "dst": route.dst, "gateway": route.gateway}
            self.add("del_table_route", dev, [Step("add_table_route", dev, dict(args))], **args)

    def _desired_master(self, name: str) -> str | None:
        device = self.new.devices.get(name)
        return device.master if device else None

    def _detach(self) -> None:
        """Ports leave a master they should not have, or one about to be deleted.  Ports
        the configuration does not know (a VM's tap on a network's bridge) stay, unless
        their bridge goes."""
        owned = self.old.owned() | self.new.owned()
        for name, link in sorted(self.links.items()):
            if link.master is None:
                continue
            going = link.master in self.doomed or name in self.doomed
            if name in self.new.devices:
                if link.master == self._desired_master(name) and not going:
                    continue
            elif link.master not in owned or not going:
                continue
            back: dict[str, Any] = {"master": link.master}
            master_link = self.links.get(link.master)
            if master_link is not None and master_link.kind == "bond":
                back["bond"] = True
            self.add("set_master", name, [Step("set_master", name, back)], master=None)
            self.masters[name] = None

    def _doomed(self) -> set[str]:
        doomed = set()
        for name in self.old.owned() | self.new.owned():
            link = self.links.get(name)
            if link is None:
                continue
            want = self.new.devices.get(name)
            if want is None:
                if name in self.old.owned():
                    doomed.add(name)
            elif not _compatible(link, want):
                doomed.add(name)
        # A VLAN goes with its lower device: deleted explicitly, so that undo and the
        # build phase know to make it again.
        for name, link in self.links.items():
            if link.kind == "vlan" and link.parent in doomed and name in self.new.devices:
                doomed.add(name)
        return doomed

    def _delete(self) -> None:
        doomed = self.doomed
        for kind in reversed(VIRTUAL_KINDS):
            for name in sorted(n for n in doomed if self.links[n].kind == kind):
                link = self.links[name]
                recreate = [Step("add_link", name, _link_args(link))]
                if link.up:
                    recreate.append(Step("set_up", name))
                # A new link gets the default IPv6 sysctls: those it had are put back.
                default = self.kernel.ipv6conf.get("default", {})
                for key, value in sorted(self.kernel.ipv6conf.get(name, {}).items()):
                    if default.get(key, value) != value:
                        recreate.append(Step("set_ipv6_sysctl", name, {"key": key, "value": value}))
                self.add("del_link", name, recreate)
                self.deleted.add(name)

    # -- build (bottom-up) --------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        return name in self.links and name not in self.deleted

    def _can_start_up(self, dev: Device) -> bool:
        """Up from the start, in the creating message?  A bond only when its mode (in
        that message) is all it needs: other options are set through sysfs while it is
        down (some are refused on a bond that is up).  A VLAN only on a lower device
        that is up by then: the kernel refuses it otherwise (ENETDOWN).  Each saves a
        round trip, and a VLAN created up on a bond created up saves one per VLAN."""
        if dev.kind == "bridge":
            return True
        if dev.kind == "bond":
            return set(dev.bond_options) <= {"mode"} and not dev.hwaddr
        if dev.kind == "vlan" and dev.parent is not None:
            if dev.parent in self.created:
                return dev.parent not in self.created_down
            if self._exists(dev.parent):
                return self.links[dev.parent].up
        return False

    def _create(self) -> None:
        for kind in VIRTUAL_KINDS:
            for name, dev in sorted(self.new.devices.items()):
                if dev.kind != kind or self._exists(name):
                    continue
                args: dict[str, Any] = {"kind": kind, "mtu": dev.mtu}
                if self._can_start_up(dev):
                    args["up"] = True
                else:
                    self.created_down.add(name)
                if kind == "bridge":
                    args["stp"] = dev.stp
                elif kind == "vlan":
                    args.update(parent=dev.parent, vlan_id=dev.vlan_id)
                else:
                    args["bond_options"] = dict(dev.bond_options)
                    if dev.hwaddr:
                        args["hwaddr"] = dev.hwaddr
                self.add("add_link", name, [Step("del_link", name)], **args)
                self.created.add(name)

    def _bonds(self) -> None:
        for name, dev in sorted(self.new.devices.items()):
            if dev.kind == "bridge" and name not in self.created:
                link = self.links[name]
                if link.stp != dev.stp:
                    self.add(
                        "set_stp", name, [Step("set_stp", name, {"stp": link.stp})], stp=dev.stp
                    )
            if dev.kind != "bond" or name in self.created:
                continue
            link = self.links[name]
            current = {**report.BOND_DEFAULTS, **link.bond_options}
            wanted = {**report.BOND_DEFAULTS, **dev.bond_options}
            for key in sorted(set(dev.bond_options) | set(link.bond_options)):
                if key == "mode" or current.get(key) == wanted.get(key):
                    continue
                self.add(
                    "set_bond_option",
                    name,
                    [Step("set_bond_option", name, {"option": key, "value": current.get(key, "")})],
                    option=key,
                    value=wanted.get(key, ""),
                )
            if dev.hwaddr and link.mac != dev.hwaddr:
                self.add(
                    "set_hwaddr",
                    name,
                    [Step("set_hwaddr", name, {"hwaddr": link.mac})],
                    hwaddr=dev.hwaddr,
                )

    def _bridge_opts(self) -> None:
        for name, dev in sorted(self.new.devices.items()):
            created = name in self.created
            current = {} if created else self.kernel.bridge_opts.get(name, {})
            for key, value in sorted(dev.bridge_opts.items()):
                old = current.get(key)
                if old == value:
                    continue
                undo = []
                if old is not None:
                    undo = [Step("set_bridge_opt", name, {"key": key, "value": old})]
                self.add("set_bridge_opt", name, undo, key=key, value=value)

    def _mtu(self) -> None:
        for kind in KIND_ORDER:
            for name, dev in sorted(self.new.devices.items()):
                if dev.kind != kind or dev.mtu is None or name in self.created:
                    continue
                link = self.links.get(name)
                if link is None or link.mtu == dev.mtu:
                    continue
                self.add("set_mtu", name, [Step("set_mtu", name, {"mtu": link.mtu})], mtu=dev.mtu)
        # A NIC no network uses any more goes back to the default MTU (a bond's former
        # slaves get theirs back from the bonding driver).
        for name, dev in sorted(self.old.devices.items()):
            if name in self.new.devices or dev.kind != "nic" or dev.mtu is None:
                continue
            link = self.links.get(name)
            if link is None or link.mtu == DEFAULT_MTU:
                continue
            self.add("set_mtu", name, [Step("set_mtu", name, {"mtu": link.mtu})], mtu=DEFAULT_MTU)

    def _attach(self) -> None:
        for kind in KIND_ORDER:
            for name, dev in sorted(self.new.devices.items()):
                if dev.kind != kind or dev.master is None:
                    continue
                if self.masters.get(name) == dev.master and name not in self.created:
                    continue
                args: dict[str, Any] = {"master": dev.master}
                if self.new.devices[dev.master].kind == "bond":
                    args["bond"] = True  # the slave must be down while enslaved
                    # Known for a free NIC (no earlier step touched it): spares the
                    # adapter a query.  A released slave may have been closed by its
                    # former bond's driver: asked then.
                    link = self.links.get(name)
                    if link is not None and link.master is None and name not in self.deleted:
                        args["up"] = link.up
                self.add("set_master", name, [Step("set_master", name, {"master": None})], **args)

    def _up(self) -> None:
        for kind in KIND_ORDER:
            for name, dev in sorted(self.new.devices.items()):
                if dev.kind != kind:
                    continue
                link = self.links.get(name)
                if name in self.created:
                    if name in self.created_down:
                        self.add("set_up", name)
                elif link is None:
                    self.add("set_up", name)
                elif not link.up:
                    self.add("set_up", name, [Step("set_down", name)])

    def _ipv6autoconf(self) -> None:
        """Router advertisements and SLAAC on (ipv6autoconf) or off, on each top device."""
        for dev, wanted in sorted(self.new.ipv6autoconf.items()):
            created = not self._exists(dev)
            current = self.kernel.ipv6conf.get("default" if created else dev, {})
            value = "1" if wanted else "0"
            for key, now in sorted(current.items()):
                if now == value:
                    continue
                undo = [] if created else [Step("set_ipv6_sysctl", dev, {"key": key, "value": now})]
                self.add("set_ipv6_sysctl", dev, undo, key=key, value=value)
        # A device no network tops any more (a bridgeless network's NIC) gets the values
        # the kernel gives a new link, which it had before a network claimed it.
        default = self.kernel.ipv6conf.get("default", {})
        for dev in sorted(set(self.old.ipv6autoconf) - set(self.new.ipv6autoconf)):
            if not self._exists(dev):
                continue  # deleted, its sysctls with it
            for key, now in sorted(self.kernel.ipv6conf.get(dev, {}).items()):
                value = default.get(key, now)
                if value == now:
                    continue
                undo = [Step("set_ipv6_sysctl", dev, {"key": key, "value": now})]
                self.add("set_ipv6_sysctl", dev, undo, key=key, value=value)

    def _addresses(self) -> None:
        for dev, cidrs in sorted(self.new.addresses.items()):
            have = self.kernel.addresses.get(dev, set()) if self._exists(dev) else set()
            for cidr in sorted(cidrs - have):
                self.add("add_addr", dev, [Step("del_addr", dev, {"cidr": cidr})], cidr=cidr)

    def _routes(self) -> None:
        for dev, gateways in sorted(self.new.routes.items()):
            have = set()
            if self._exists(dev):
                have = self.kernel.routes.get(dev, set()) - self.dropped_routes.get(dev, set())
            for gw in sorted(gateways - have):
                self._displace_default(dev, gw)
                self.add("add_route", dev, [Step("del_route", dev, {"gateway": gw})], gateway=gw)

    def _source_routes(self) -> None:
        """Each network's own table: the subnet's link route before the default route
        via the gateway (which must be reachable), then the rules leading to it."""
        for dev, source in sorted(self.new.source_routes.items()):
            key = (dev, source.table)
            have = set()
            if self._exists(dev):
                have = self.kernel.table_routes.get(key, set())
                have = have - self.dropped_table_routes.get(key, set())
            for route in sorted(source.routes() - have, key=_route_key):
                args = {"table": source.table, "dst": route.dst, "gateway": route.gateway}
                self.add("add_table_route", dev, [Step("del_table_route", dev, dict(args))], **args)
            have_rules = set(self.kernel.rules.get(source.table, []))
            for rule in sorted(source.rules() - have_rules, key=_rule_key):
                args = {
                    "table": source.table,
                    "priority": RULE_PRIORITY,
                    "src": rule.src,
                    "dst": rule.dst,
                }
                self.add("add_rule", dev, [Step("del_rule", dev, dict(args))], **args)

    def _displace_default(self, dev: str, gateway: str) -> None:
        """The main table holds one default route per family: the one there moves."""
        family = ipaddress.ip_address(gateway).version
        for other, gateways in sorted(self.kernel.routes.items()):
            dropped = self.dropped_routes.setdefault(other, set())
            for gw in sorted(gateways - dropped):
                if (other, gw) == (dev, gateway) or ipaddress.ip_address(gw).version != family:
                    continue
                dropped.add(gw)
                self.add(
                    "del_route", other, [Step("add_route", other, {"gateway": gw})], gateway=gw
                )


def _route_key(route: TableRoute) -> tuple[bool, str, str]:
    # Link routes first: a gateway must be reachable when its route is added.
    return (route.gateway is not None, route.dst, route.gateway or "")


def _rule_key(rule: RuleSpec) -> tuple[str, str]:
    return (rule.src or "", rule.dst or "")


def _compatible(link: LinkState, want: Device) -> bool:
    if link.kind != want.kind:
        return False
    if want.kind == "vlan":
        return link.parent == want.parent and link.vlan_id == want.vlan_id
    if want.kind == "bond":
        return link.bond_options.get("mode", "0") == want.bond_options.get("mode", "0")
    return True


def _link_args(link: LinkState) -> dict[str, Any]:
    args: dict[str, Any] = {"kind": link.kind, "mtu": link.mtu}
    if link.kind == "bridge":
        args["stp"] = link.stp
    elif link.kind == "vlan":
        args.update(parent=link.parent, vlan_id=link.vlan_id)
    elif link.kind == "bond":
        args["bond_options"] = dict(link.bond_options)
        args["hwaddr"] = link.mac
    return args

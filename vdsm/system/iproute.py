"""Changing the kernel's network through pyroute2 (netlink), plus sysfs for bond options.

Blocking: a `KernelChanger` is opened, used and closed in one worker thread (pyroute2's
IPRoute socket is not meant to be shared between threads).  Each method is one small
change named after the setupNetworks plan's step actions; every failure is raised as
`KernelChangeError` naming the change and carrying the kernel's errno.

Deleting what is already gone and adding what is already there are not errors: undoing
a half-done transaction must be able to run over a state the kernel changed on its own
(a link deletion takes its addresses and routes with it).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger("vdsm.system.iproute")

SYS_CLASS_NET = Path("/sys/class/net")
PROC_SYS_NET = Path("/proc/sys/net")
# Options the bonding driver takes only while the bond is down and has no slaves.
BOND_MODE_OPTION = "mode"
AF_INET = 2
RT_SCOPE_LINK = 253


class KernelChangeError(OSError):
    def __init__(self, what: str, code: int, text: str) -> None:
        super().__init__(code, f"{what}: {text}")
        self.what = what


class KernelChanger:
    def __init__(
        self, sys_class_net: Path = SYS_CLASS_NET, proc_sys_net: Path = PROC_SYS_NET
    ) -> None:
        # Imported here: pyroute2 is heavy (~20 MB, ~100 ms) and only setupNetworks needs it.
        from pyroute2 import IPRoute

        # pyroute2 logs every netlink message at DEBUG (megabytes per setupNetworks),
        # and resets its logger's level when imported: quieted after the import.
        logging.getLogger("pyroute2").setLevel(logging.WARNING)
        self._ipr = IPRoute()
        self._sys = sys_class_net
        self._proc_sys_net = proc_sys_net
        self._indexes: dict[str, int] = {}

    def close(self) -> None:
        self._ipr.close()

    def __enter__(self) -> KernelChanger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, ignore: tuple[int, ...] = (), **kw: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            return fn(*args, **kw)
        except NetlinkError as e:
            if e.code in ignore:
                log.debug("%s: %s (ignored)", what, e)
                return None
            raise KernelChangeError(what, e.code, str(e.args[1] if len(e.args) > 1 else e)) from e

    def index(self, name: str) -> int | None:
        """The link's index; None when there is no such link."""
        if name in self._indexes:
            return self._indexes[name]
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            index = int(self._ipr.link("get", ifname=name)[0]["index"])
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise KernelChangeError(f"find {name}", e.code, str(e)) from e
        self._indexes[name] = index
        return index

    def _need(self, name: str, what: str) -> int:
        index = self.index(name)
        if index is None:
            raise KernelChangeError(what, errno.ENODEV, f"no device {name}")
        return index

    # -- links -------------------------------------------------------------------------
    # Links are named by ifname in requests (the kernel resolves it): one round trip per
    # change, no lookup.

    def add_link(
        self,
        name: str,
        kind: str,
        mtu: int | None = None,
        stp: bool = False,
        parent: str | None = None,
        vlan_id: int | None = None,
        bond_options: dict[str, str] | None = None,
        hwaddr: str | None = None,
        up: bool = False,
    ) -> None:
        """One RTM_NEWLINK carrying the MTU, the kind's data and the up flag; a bond's
        options besides its mode go through sysfs afterwards, while it is still down."""
        what = f"add {kind} {name}"
        attrs: dict[str, Any] = {"ifname": name, "kind": kind}
        if mtu:
            attrs["mtu"] = mtu
        if up:
            attrs["state"] = "up"
        options = dict(bond_options or {})
        if kind == "bridge":
            attrs["br_stp_state"] = 1 if stp else 0
        elif kind == "vlan":
            attrs["link"] = self._need(parent or "", what)
            attrs["vlan_id"] = vlan_id
        elif kind == "bond" and options.get(BOND_MODE_OPTION, "").isdigit():
            attrs["bond_mode"] = int(options.pop(BOND_MODE_OPTION))
        self._indexes.pop(name, None)
        self._call(what, self._ipr.link, "add", **attrs)
        if kind == "bond":
            if BOND_MODE_OPTION in options:  # a symbolic mode (from an older record)
                self.set_bond_option(name, BOND_MODE_OPTION, options.pop(BOND_MODE_OPTION))
            for key, value in options.items():
                self.set_bond_option(name, key, value)
            if hwaddr:
                self.set_hwaddr(name, hwaddr)

    def del_link(self, name: str) -> None:
        self._indexes.pop(name, None)
        self._call(f"delete {name}", self._ipr.link, "del", ifname=name, ignore=(errno.ENODEV,))

    def set_master(
        self, name: str, master: str | None, bond: bool = False, up: bool | None = None
    ) -> None:
        """`bond`: the master is a bond, whose driver only takes slaves that are down;
        `up`: whether the slave is up now, when the caller knows (else it is asked)."""
        what = f"set {name} master {master or 'none'}"
        if master is None:
            self._call(what, self._ipr.link, "set", ifname=name, master=0)
            return
        master_index = self._need(master, what)
        was_up = bond and (self._is_up(name) if up is None else up)
        if was_up:
            self._call(what, self._ipr.link, "set", ifname=name, state="down")
        self._call(what, self._ipr.link, "set", ifname=name, master=master_index)
        if was_up:
            self._call(what, self._ipr.link, "set", ifname=name, state="up")

    def set_mtu(self, name: str, mtu: int) -> None:
        self._call(f"set {name} mtu {mtu}", self._ipr.link, "set", ifname=name, mtu=mtu)

    def set_up(self, name: str) -> None:
        self._call(f"set {name} up", self._ipr.link, "set", ifname=name, state="up")

    def set_down(self, name: str) -> None:
        self._call(f"set {name} down", self._ipr.link, "set", ifname=name, state="down")

    def set_hwaddr(self, name: str, hwaddr: str) -> None:
        what = f"set {name} address {hwaddr}"
        self._call(what, self._ipr.link, "set", ifname=name, address=hwaddr)

    def set_stp(self, name: str, stp: bool) -> None:
        what = f"set {name} stp {'on' if stp else 'off'}"
        state = 1 if stp else 0
        self._call(what, self._ipr.link, "set", ifname=name, kind="bridge", br_stp_state=state)

    def set_bond_option(self, name: str, option: str, value: str) -> None:
        what = f"set bond {name} {option}={value}"
        path = self._sys / name / "bonding" / option
        try:
            path.write_text(f"{value}\n" if value else "\n")
        except OSError as e:
            raise KernelChangeError(what, e.errno or errno.EIO, e.strerror or str(e)) from e

    def set_bridge_opt(self, name: str, key: str, value: str) -> None:
        what = f"set bridge {name} {key}={value}"
        try:
            (self._sys / name / "bridge" / key).write_text(f"{value}\n")
        except OSError as e:
            raise KernelChangeError(what, e.errno or errno.EIO, e.strerror or str(e)) from e

    def set_ipv6_sysctl(self, name: str, key: str, value: str) -> None:
        what = f"set net.ipv6.conf.{name}.{key}={value}"
        try:
            (self._proc_sys_net / "ipv6" / "conf" / name / key).write_text(f"{value}\n")
        except OSError as e:
            raise KernelChangeError(what, e.errno or errno.EIO, e.strerror or str(e)) from e

    def _is_up(self, name: str) -> bool:
        return bool(self._ipr.link("get", ifname=name)[0]["flags"] & 1)

    # -- addresses and routes -----------------------------------------------------------

    def add_addr(self, name: str, cidr: str) -> None:
        what = f"add address {cidr} to {name}"
        iface = ipaddress.ip_interface(cidr)
        self._call(
            what,
            self._ipr.addr,
            "add",
            index=self._need(name, what),
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
            ignore=(errno.EEXIST,),
        )

    def del_addr(self, name: str, cidr: str) -> None:
        index = self.index(name)
        if index is None:
            return
        iface = ipaddress.ip_interface(cidr)
        self._call(
            f"delete address {cidr} from {name}",
            self._ipr.addr,
            "del",
            index=index,
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
            ignore=(errno.EADDRNOTAVAIL, errno.ENODEV),
        )

    def add_route(self, name: str, gateway: str) -> None:
        what = f"add default route via {gateway} dev {name}"
        family_dst = "::/0" if ":" in gateway else "0.0.0.0/0"
        self._call(
            what,
            self._ipr.route,
            "add",
            dst=family_dst,
            gateway=gateway,
            oif=self._need(name, what),
            ignore=(errno.EEXIST,),
        )

    def del_route(self, name: str, gateway: str) -> None:
        index = self.index(name)
        if index is None:
            return
        family_dst = "::/0" if ":" in gateway else "0.0.0.0/0"
        self._call(
            f"delete default route via {gateway} dev {name}",
            self._ipr.route,
            "del",
            dst=family_dst,
            gateway=gateway,
            oif=index,
            ignore=(errno.ESRCH, errno.ENOENT),
        )

    # -- source routing: routes in a network's own table, and the rules to it -----------

    def add_table_route(self, name: str, table: int, dst: str, gateway: str | None = None) -> None:
        what = f"add route {dst} via {gateway or 'link'} dev {name} table {table}"
        attrs: dict[str, Any] = {"dst": dst, "oif": self._need(name, what), "table": table}
        if gateway:
            attrs["gateway"] = gateway
        else:
            attrs["scope"] = RT_SCOPE_LINK
        self._call(what, self._ipr.route, "add", **attrs, ignore=(errno.EEXIST,))

    def del_table_route(self, name: str, table: int, dst: str, gateway: str | None = None) -> None:
        index = self.index(name)
        if index is None:
            return  # the link went, and its routes with it
        attrs: dict[str, Any] = {"dst": dst, "oif": index, "table": table}
        if gateway:
            attrs["gateway"] = gateway
        self._call(
            f"delete route {dst} via {gateway or 'link'} dev {name} table {table}",
            self._ipr.route,
            "del",
            **attrs,
            ignore=(errno.ESRCH, errno.ENOENT),
        )

    def add_rule(
        self, name: str, table: int, priority: int, src: str | None = None, dst: str | None = None
    ) -> None:
        """`name`: the network's top device, for the messages only (the rule names none)."""
        what = f"add rule from {src or 'all'} to {dst or 'all'} table {table} for {name}"
        self._call(
            what,
            self._ipr.rule,
            "add",
            **_rule_attrs(table, priority, src, dst),
            ignore=(errno.EEXIST,),
        )

    def del_rule(
        self, name: str, table: int, priority: int, src: str | None = None, dst: str | None = None
    ) -> None:
        what = f"delete rule from {src or 'all'} to {dst or 'all'} table {table} for {name}"
        self._call(
            what,
            self._ipr.rule,
            "del",
            **_rule_attrs(table, priority, src, dst),
            ignore=(errno.ENOENT,),
        )


def _rule_attrs(table: int, priority: int, src: str | None, dst: str | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"family": AF_INET, "table": table, "priority": priority}
    for key, prefix in (("src", src), ("dst", dst)):
        if prefix:
            network = ipaddress.ip_network(prefix)
            attrs[key] = str(network.network_address)
            attrs[f"{key}_len"] = network.prefixlen
    return attrs

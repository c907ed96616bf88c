"""Read-only rtnetlink: a snapshot of links, addresses and routes, and a change stream.

Written on the standard library (socket + struct) rather than pyroute2: the host report
needs a handful of attributes, and importing pyroute2 0.9 costs ~23 MB of RSS and
~130 ms, a third of the daemon's memory budget.  Changing the network (setupNetworks)
is another module's business and may use pyroute2.

`Netlink.snapshot()` dumps links, addresses and routes in one worker thread with a
timeout.  `Netlink.watch()` binds a socket to the link/address/route multicast groups
and yields one `NetlinkEvent` per kernel notification on the event loop; a receive
buffer overflow (the kernel dropped notifications) is reported as kind "overflow",
after which a consumer should assume anything may have changed.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from vdsm.system.blocking import Bulkhead

log = logging.getLogger("vdsm.system.netlink")

NETLINK_ROUTE = 0

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_GETRULE = 34

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = {
    "link": RTMGRP_LINK,
    "addr": RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
    "route": RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE,
}

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_RTNEXTHOP = struct.Struct("=HBBi")
_NLA_TYPE_MASK = 0x3FFF

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_MASTER, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_PERM_ADDRESS = 10, 16, 18, 54
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND = 1, 2, 4
IFLA_VLAN_ID = 1
IFLA_BR_STP_STATE = 5
IFLA_BOND_MODE, IFLA_BOND_ACTIVE_SLAVE = 1, 2

IFA_ADDRESS, IFA_LOCAL, IFA_LABEL, IFA_FLAGS = 1, 2, 3, 8
IFA_F_SECONDARY = 0x01
IFA_F_PERMANENT = 0x80

RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY = 1, 4, 5, 6
RTA_MULTIPATH, RTA_TABLE = 9, 15
RTN_UNICAST = 1

FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_TABLE = 1, 2, 3, 6, 15
FR_ACT_TO_TBL = 1

IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40

OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
SCOPES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}

SYS_CLASS_NET = Path("/sys/class/net")


class NetlinkError(OSError):
    pass


# -- the snapshot ----------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    flags: int
    arptype: int  # ARPHRD_*: 1 ethernet, 772 loopback, 32 infiniband
    mtu: int
    mac: str
    kind: str | None = None  # IFLA_INFO_KIND: bridge, bond, vlan, veth, dummy, ...
    slave_kind: str | None = None  # bond/bridge when enslaved
    master: int | None = None
    parent: int | None = None  # IFLA_LINK: a VLAN's lower device
    perm_mac: str | None = None
    operstate: str = "unknown"
    vlan_id: int | None = None
    bridge_stp: int | None = None
    bond_mode: int | None = None
    bond_active_slave: int | None = None
    speed: int | None = None  # Mb/s, from sysfs, only for running links that know it

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def is_running(self) -> bool:
        """Administratively up and with carrier (upstream's "oper up")."""
        return bool(self.flags & IFF_UP) and bool(self.flags & IFF_RUNNING)


@dataclass(frozen=True)
class Address:
    index: int
    family: int  # 4 or 6
    address: str
    prefixlen: int
    scope: int
    label: str
    flags: int

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"

    @property
    def scope_name(self) -> str:
        return SCOPES.get(self.scope, str(self.scope))

    @property
    def permanent(self) -> bool:
        return bool(self.flags & IFA_F_PERMANENT)

    @property
    def primary(self) -> bool:
        return not self.flags & IFA_F_SECONDARY


@dataclass(frozen=True)
class Route:
    family: int
    dst: str | None  # None for a default route
    dst_len: int
    gateway: str | None
    oif: int | None
    table: int
    scope: int
    type: int
    priority: int | None = None

    @property
    def is_default(self) -> bool:
        return self.dst_len == 0 and self.type == RTN_UNICAST


@dataclass(frozen=True)
class Rule:
    """A policy routing rule that looks a table up (`ip rule`), IPv4 or IPv6."""

    family: int
    priority: int
    table: int
    src: str | None  # "a.b.c.d/p", None for any
    dst: str | None
    iif: str | None = None


@dataclass(frozen=True)
class Snapshot:
    links: list[Link]
    addresses: list[Address]
    routes: list[Route]
    rules: list[Rule] = field(default_factory=list)  # only when asked for (dump(rules=True))
    taken_at: float = field(default_factory=time.time)

    def link_by_index(self) -> dict[int, Link]:
        return {link.index: link for link in self.links}

    def link_by_name(self) -> dict[str, Link]:
        return {link.name: link for link in self.links}


# -- message parsing -------------------------------------------------------------------


def align(length: int) -> int:
    return (length + 3) & ~3


def iter_attrs(data: bytes | memoryview, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > end:
            break
        yield kind & _NLA_TYPE_MASK, bytes(data[offset + _RTATTR.size : offset + length])
        offset += align(length)


def _attrs(payload: bytes) -> dict[int, bytes]:
    return dict(iter_attrs(payload, 0, len(payload)))


def _cstr(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("utf-8", "replace")


def _u32(value: bytes) -> int:
    return int(struct.unpack_from("=I", value)[0])


def _mac(value: bytes) -> str:
    return ":".join(f"{b:02x}" for b in value)


def _ip(family: int, value: bytes) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(value[:4]))
    return str(ipaddress.IPv6Address(value[:16]))


def iter_messages(data: bytes | memoryview) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) for each netlink message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        yield kind, flags, seq, bytes(data[offset + _NLMSGHDR.size : offset + length])
        offset += align(length)


def parse_link(payload: bytes) -> Link:
    _family, arptype, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = _attrs(payload[_IFINFOMSG.size :])
    info = _attrs(attrs.get(IFLA_LINKINFO, b""))
    kind = _cstr(info[IFLA_INFO_KIND]) if IFLA_INFO_KIND in info else None
    data = _attrs(info.get(IFLA_INFO_DATA, b""))
    vlan_id = bridge_stp = bond_mode = bond_active = None
    if kind == "vlan" and IFLA_VLAN_ID in data:
        vlan_id = int(struct.unpack_from("=H", data[IFLA_VLAN_ID])[0])
    elif kind == "bridge" and IFLA_BR_STP_STATE in data:
        bridge_stp = _u32(data[IFLA_BR_STP_STATE])
    elif kind == "bond":
        if IFLA_BOND_MODE in data:
            bond_mode = data[IFLA_BOND_MODE][0]
        if IFLA_BOND_ACTIVE_SLAVE in data:
            bond_active = _u32(data[IFLA_BOND_ACTIVE_SLAVE])
    operstate = attrs.get(IFLA_OPERSTATE, b"\0")[0]
    perm = attrs.get(IFLA_PERM_ADDRESS)
    return Link(
        index=index,
        name=_cstr(attrs.get(IFLA_IFNAME, b"")),
        flags=flags,
        arptype=arptype,
        mtu=_u32(attrs[IFLA_MTU]) if IFLA_MTU in attrs else 0,
        mac=_mac(attrs.get(IFLA_ADDRESS, b"")),
        kind=kind,
        slave_kind=_cstr(info[IFLA_INFO_SLAVE_KIND]) if IFLA_INFO_SLAVE_KIND in info else None,
        master=_u32(attrs[IFLA_MASTER]) if IFLA_MASTER in attrs else None,
        parent=_u32(attrs[IFLA_LINK]) if IFLA_LINK in attrs else None,
        perm_mac=_mac(perm) if perm else None,
        operstate=OPERSTATES[operstate] if operstate < len(OPERSTATES) else str(operstate),
        vlan_id=vlan_id,
        bridge_stp=bridge_stp,
        bond_mode=bond_mode,
        bond_active_slave=bond_active or None,
    )


def parse_address(payload: bytes) -> Address | None:
    family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    attrs = _attrs(payload[_IFADDRMSG.size :])
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    # point-to-point links and the same as IFA_LOCAL otherwise.
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None:
        return None
    if IFA_FLAGS in attrs:  # the 32-bit flags supersede the 8-bit header field
        flags = _u32(attrs[IFA_FLAGS])
    return Address(
        index=index,
        family=4 if family == socket.AF_INET else 6,
        address=_ip(family, raw),
        prefixlen=prefixlen,
        scope=scope,
        label=_cstr(attrs[IFA_LABEL]) if IFA_LABEL in attrs else "",
        flags=flags,
    )


def parse_routes(payload: bytes) -> list[Route]:
    """One route, or one per next hop of a multipath route."""
    family, dst_len, _src_len, _tos, table, _proto, scope, rtype, _flags = _RTMSG.unpack_from(
        payload
    )
    if family not in (socket.AF_INET, socket.AF_INET6):
        return []
    attrs = _attrs(payload[_RTMSG.size :])
    if RTA_TABLE in attrs:
        table = _u32(attrs[RTA_TABLE])
    dst = _ip(family, attrs[RTA_DST]) if RTA_DST in attrs else None
    priority = _u32(attrs[RTA_PRIORITY]) if RTA_PRIORITY in attrs else None
    fam = 4 if family == socket.AF_INET else 6

    def route(gateway: bytes | None, oif: int | None) -> Route:
        return Route(
            family=fam,
            dst=dst,
            dst_len=dst_len,
            gateway=_ip(family, gateway) if gateway else None,
            oif=oif,
            table=table,
            scope=scope,
            type=rtype,
            priority=priority,
        )

    if RTA_MULTIPATH in attrs:
        hops = attrs[RTA_MULTIPATH]
        routes = []
        offset = 0
        while offset + _RTNEXTHOP.size <= len(hops):
            length, _hflags, _hops, ifindex = _RTNEXTHOP.unpack_from(hops, offset)
            if length < _RTNEXTHOP.size:
                break
            hop_attrs = dict(iter_attrs(hops, offset + _RTNEXTHOP.size, offset + length))
            routes.append(route(hop_attrs.get(RTA_GATEWAY), ifindex))
            offset += align(length)
        return routes
    oif = _u32(attrs[RTA_OIF]) if RTA_OIF in attrs else None
    return [route(attrs.get(RTA_GATEWAY), oif)]


def parse_rule(payload: bytes) -> Rule | None:
    """A rule looking up a table; None for other actions (blackhole, goto...)."""
    family, dst_len, src_len, _tos, table, _r1, _r2, action, _flags = _RTMSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6) or action != FR_ACT_TO_TBL:
        return None
    attrs = _attrs(payload[_RTMSG.size :])
    if FRA_TABLE in attrs:
        table = _u32(attrs[FRA_TABLE])

    def prefix(key: int, length: int) -> str | None:
        return f"{_ip(family, attrs[key])}/{length}" if key in attrs else None

    return Rule(
        family=4 if family == socket.AF_INET else 6,
        priority=_u32(attrs[FRA_PRIORITY]) if FRA_PRIORITY in attrs else 0,
        table=table,
        src=prefix(FRA_SRC, src_len),
        dst=prefix(FRA_DST, dst_len),
        iif=_cstr(attrs[FRA_IIFNAME]) if FRA_IIFNAME in attrs else None,
    )


# -- dumps -----------------------------------------------------------------------------


def _open_socket(groups: int = 0, nonblocking: bool = False) -> socket.socket:
    kind = socket.SOCK_RAW | socket.SOCK_CLOEXEC
    if nonblocking:
        kind |= socket.SOCK_NONBLOCK
    sock = socket.socket(socket.AF_NETLINK, kind, NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, groups))
    except BaseException:
        sock.close()
        raise
    return sock


def _dump(
    sock: socket.socket, msg_type: int, body: bytes, seq: int, deadline: float
) -> list[bytes]:
    flags = NLM_F_REQUEST | NLM_F_DUMP
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0)
    sock.send(header + body)
    payloads: list[bytes] = []
    buffer = bytearray(1 << 18)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"netlink dump {msg_type} timed out")
        sock.settimeout(remaining)
        size = sock.recv_into(buffer)
        for kind, _flags, mseq, payload in iter_messages(memoryview(buffer)[:size]):
            if mseq != seq:
                continue  # a late answer to an earlier, abandoned request
            if kind == NLMSG_DONE:
                return payloads
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code:
                    raise NetlinkError(code, f"netlink dump {msg_type}: {os.strerror(code)}")
                continue
            if kind == NLMSG_OVERRUN:
                raise NetlinkError(errno.EOVERFLOW, "netlink dump overrun")
            payloads.append(payload)


def dump(timeout: float, sys_class_net: Path = SYS_CLASS_NET, rules: bool = False) -> Snapshot:
    """A blocking dump of the current network namespace (use `Netlink.snapshot`);
    `rules`: the policy routing rules too (source routing), which the report needs not."""
    deadline = time.monotonic() + timeout
    with _open_socket() as sock:
        seq = int(time.monotonic() * 1000) & 0xFFFFFF
        unspec = socket.AF_UNSPEC
        link_msgs = _dump(sock, RTM_GETLINK, _IFINFOMSG.pack(unspec, 0, 0, 0, 0), seq, deadline)
        addr_msgs = _dump(sock, RTM_GETADDR, _IFADDRMSG.pack(unspec, 0, 0, 0, 0), seq + 1, deadline)
        route_msgs = _dump(
            sock, RTM_GETROUTE, _RTMSG.pack(unspec, 0, 0, 0, 0, 0, 0, 0, 0), seq + 2, deadline
        )
        links = [parse_link(p) for p in link_msgs]
        addresses = [a for p in addr_msgs if (a := parse_address(p)) is not None]
        routes = [r for p in route_msgs for r in parse_routes(p)]
        rule_list: list[Rule] = []
        if rules:
            rule_msgs = _dump(
                sock, RTM_GETRULE, _RTMSG.pack(unspec, 0, 0, 0, 0, 0, 0, 0, 0), seq + 3, deadline
            )
            rule_list = [r for p in rule_msgs if (r := parse_rule(p)) is not None]
    links = [_with_speed(link, sys_class_net) for link in links]
    return Snapshot(links, addresses, routes, rule_list)


def read_speed(name: str, sys_class_net: Path = SYS_CLASS_NET) -> int | None:
    """Link speed in Mb/s, None when the driver does not know (or the link is down)."""
    try:
        value = int((sys_class_net / name / "speed").read_text().strip())
    except (OSError, ValueError):
        return None
    # Drivers report -1 (or the unsigned forms of it) for "unknown".
    if value <= 0 or value in (0xFFFF, 0xFFFFFFFF):
        return None
    return value


def _with_speed(link: Link, sys_class_net: Path) -> Link:
    if not link.is_running:
        return link
    speed = read_speed(link.name, sys_class_net)
    if speed is None:
        return link
    return Link(**{**link.__dict__, "speed": speed})


# -- the change stream -----------------------------------------------------------------


@dataclass(frozen=True)
class NetlinkEvent:
    kind: str  # "link", "addr", "route" or "overflow"
    action: str  # "new", "del" ("" for overflow)
    index: int  # the link's ifindex (0 when not known)
    name: str = ""  # the link name, for link events
    address: str = ""  # "address/prefixlen", for address events


def parse_events(data: bytes | memoryview) -> list[NetlinkEvent]:
    events = []
    for kind, _flags, _seq, payload in iter_messages(data):
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            link = parse_link(payload)
            events.append(
                NetlinkEvent("link", "new" if kind == RTM_NEWLINK else "del", link.index, link.name)
            )
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            addr = parse_address(payload)
            index = addr.index if addr else _IFADDRMSG.unpack_from(payload)[4]
            action = "new" if kind == RTM_NEWADDR else "del"
            events.append(NetlinkEvent("addr", action, index, address=addr.cidr if addr else ""))
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
            routes = parse_routes(payload)
            index = routes[0].oif or 0 if routes else 0
            events.append(NetlinkEvent("route", "new" if kind == RTM_NEWROUTE else "del", index))
    return events


class NetlinkWatch:
    """A bound multicast subscription: iterate it for events, close it when done.

    The socket is bound when the watch is created, so changes made after
    `Netlink.watch()` returns are seen.
    """

    def __init__(self, groups: int) -> None:
        self._sock = _open_socket(groups, nonblocking=True)
        self._pending: list[NetlinkEvent] = []

    def __aiter__(self) -> NetlinkWatch:
        return self

    async def __anext__(self) -> NetlinkEvent:
        loop = asyncio.get_running_loop()
        while not self._pending:
            if self._sock.fileno() < 0:
                raise StopAsyncIteration
            try:
                data = await loop.sock_recv(self._sock, 1 << 16)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    # The kernel dropped notifications: we no longer know what changed.
                    return NetlinkEvent("overflow", "", 0)
                raise
            self._pending.extend(parse_events(data))
        return self._pending.pop(0)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> NetlinkWatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Netlink:
    def __init__(self, timeout: float = 10.0, sys_class_net: Path = SYS_CLASS_NET) -> None:
        self.timeout = timeout
        self._sys_class_net = sys_class_net
        self._bulkhead = Bulkhead("netlink", 2, timeout)

    async def snapshot(self, rules: bool = False) -> Snapshot:
        return await self._bulkhead.run(dump, self.timeout, self._sys_class_net, rules)

    def watch(self, kinds: tuple[str, ...] = ("link", "addr")) -> NetlinkWatch:
        groups = 0
        for kind in kinds:
            groups |= GROUPS[kind]
        return NetlinkWatch(groups)

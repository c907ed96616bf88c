"""rtnetlink parsing on messages built here byte by byte (the kernel's layout)."""

import socket
import struct

from vdsm.system import netlink as nl


def attr(kind: int, payload: bytes) -> bytes:
    data = struct.pack("=HH", 4 + len(payload), kind) + payload
    return data + b"\0" * (nl.align(len(data)) - len(data))


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | 0x8000, b"".join(attrs))


def message(kind: int, payload: bytes, seq: int = 1) -> bytes:
    data = struct.pack("=IHHII", 16 + len(payload), kind, 2, seq, 0) + payload
    return data + b"\0" * (nl.align(len(data)) - len(data))


def ifinfo(index: int, flags: int, *attrs: bytes, arptype: int = 1) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, arptype, index, flags, 0) + b"".join(attrs)


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def test_vlan_link():
    payload = ifinfo(
        7,
        nl.IFF_UP | nl.IFF_RUNNING,
        attr(nl.IFLA_IFNAME, b"eth0.100\0"),
        attr(nl.IFLA_MTU, u32(1500)),
        attr(nl.IFLA_ADDRESS, bytes.fromhex("525400aabbcc")),
        attr(nl.IFLA_LINK, u32(2)),
        attr(nl.IFLA_OPERSTATE, b"\x06"),
        nested(
            nl.IFLA_LINKINFO,
            attr(nl.IFLA_INFO_KIND, b"vlan\0"),
            nested(nl.IFLA_INFO_DATA, attr(nl.IFLA_VLAN_ID, struct.pack("=H", 100))),
        ),
    )
    link = nl.parse_link(payload)
    assert link.name == "eth0.100" and link.index == 7 and link.mtu == 1500
    assert link.mac == "52:54:00:aa:bb:cc"
    assert (link.kind, link.vlan_id, link.parent) == ("vlan", 100, 2)
    assert link.operstate == "up" and link.is_running


def test_bond_slave_and_bridge():
    bond = nl.parse_link(
        ifinfo(
            5,
            nl.IFF_UP,
            attr(nl.IFLA_IFNAME, b"bond0\0"),
            nested(
                nl.IFLA_LINKINFO,
                attr(nl.IFLA_INFO_KIND, b"bond\0"),
                nested(
                    nl.IFLA_INFO_DATA,
                    attr(nl.IFLA_BOND_MODE, b"\x01"),
                    attr(nl.IFLA_BOND_ACTIVE_SLAVE, u32(3)),
                ),
            ),
        )
    )
    assert (bond.kind, bond.bond_mode, bond.bond_active_slave) == ("bond", 1, 3)
    assert not bond.is_running

    slave = nl.parse_link(
        ifinfo(
            3,
            nl.IFF_UP,
            attr(nl.IFLA_IFNAME, b"eth1\0"),
            attr(nl.IFLA_MASTER, u32(5)),
            attr(nl.IFLA_ADDRESS, bytes.fromhex("020000000005")),
            attr(nl.IFLA_PERM_ADDRESS, bytes.fromhex("525400000001")),
            nested(nl.IFLA_LINKINFO, attr(nl.IFLA_INFO_SLAVE_KIND, b"bond\0")),
        )
    )
    assert (slave.master, slave.slave_kind, slave.kind) == (5, "bond", None)
    assert slave.perm_mac == "52:54:00:00:00:01"

    bridge = nl.parse_link(
        ifinfo(
            9,
            0,
            attr(nl.IFLA_IFNAME, b"ovirtmgmt\0"),
            nested(
                nl.IFLA_LINKINFO,
                attr(nl.IFLA_INFO_KIND, b"bridge\0"),
                nested(nl.IFLA_INFO_DATA, attr(nl.IFLA_BR_STP_STATE, u32(1))),
            ),
        )
    )
    assert (bridge.kind, bridge.bridge_stp) == ("bridge", 1)


def ifaddr(family, prefix, flags, scope, index, *attrs):
    return struct.pack("=BBBBI", family, prefix, flags, scope, index) + b"".join(attrs)


def test_addresses():
    v4 = nl.parse_address(
        ifaddr(
            socket.AF_INET,
            24,
            0,
            0,
            2,
            attr(nl.IFA_ADDRESS, socket.inet_aton("10.0.0.9")),  # peer on p2p links
            attr(nl.IFA_LOCAL, socket.inet_aton("10.0.0.1")),
            attr(nl.IFA_LABEL, b"eth0:1\0"),
            attr(nl.IFA_FLAGS, u32(nl.IFA_F_SECONDARY)),
        )
    )
    assert v4 is not None
    assert (v4.cidr, v4.label, v4.family) == ("10.0.0.1/24", "eth0:1", 4)
    assert not v4.primary and not v4.permanent

    v6 = nl.parse_address(
        ifaddr(
            socket.AF_INET6,
            64,
            0x80,
            253,
            2,
            attr(nl.IFA_ADDRESS, socket.inet_pton(socket.AF_INET6, "fe80::1")),
        )
    )
    assert v6 is not None
    assert (v6.cidr, v6.scope_name, v6.permanent) == ("fe80::1/64", "link", True)
    assert nl.parse_address(ifaddr(socket.AF_PACKET, 0, 0, 0, 1)) is None


def rtmsg(family, dst_len, table, scope, rtype, *attrs):
    return struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, 3, scope, rtype, 0) + b"".join(
        attrs
    )


def test_routes_default_and_multipath():
    (default,) = nl.parse_routes(
        rtmsg(
            socket.AF_INET,
            0,
            254,
            0,
            1,
            attr(nl.RTA_GATEWAY, socket.inet_aton("192.0.2.1")),
            attr(nl.RTA_OIF, u32(4)),
            attr(nl.RTA_TABLE, u32(254)),
        )
    )
    assert default.is_default and default.gateway == "192.0.2.1" and default.oif == 4
    assert default.dst is None and default.family == 4

    hops = b""
    for ifindex, gw in ((2, "10.0.0.1"), (3, "10.0.1.1")):
        hop_attrs = attr(nl.RTA_GATEWAY, socket.inet_aton(gw))
        hops += struct.pack("=HBBi", 8 + len(hop_attrs), 0, 0, ifindex) + hop_attrs
    routes = nl.parse_routes(rtmsg(socket.AF_INET, 0, 254, 0, 1, attr(nl.RTA_MULTIPATH, hops)))
    assert [(r.oif, r.gateway) for r in routes] == [(2, "10.0.0.1"), (3, "10.0.1.1")]

    (subnet,) = nl.parse_routes(
        rtmsg(
            socket.AF_INET6,
            64,
            254,
            0,
            1,
            attr(nl.RTA_DST, socket.inet_pton(socket.AF_INET6, "fd00::")),
        )
    )
    assert subnet.dst == "fd00::" and not subnet.is_default


def test_events_from_one_datagram():
    data = (
        message(nl.RTM_NEWLINK, ifinfo(4, 0, attr(nl.IFLA_IFNAME, b"veth_a\0")))
        + message(
            nl.RTM_DELADDR,
            ifaddr(
                socket.AF_INET, 24, 0x80, 0, 4, attr(nl.IFA_LOCAL, socket.inet_aton("10.1.1.1"))
            ),
        )
        + message(nl.RTM_NEWROUTE, rtmsg(socket.AF_INET, 0, 254, 0, 1, attr(nl.RTA_OIF, u32(4))))
        + message(99, b"\0" * 4)
    )
    assert nl.parse_events(data) == [
        nl.NetlinkEvent("link", "new", 4, "veth_a"),
        nl.NetlinkEvent("addr", "del", 4, address="10.1.1.1/24"),
        nl.NetlinkEvent("route", "new", 4),
    ]


def test_truncated_input_is_ignored():
    data = message(nl.RTM_NEWLINK, ifinfo(4, 0, attr(nl.IFLA_IFNAME, b"x\0")))
    assert nl.parse_events(data[:10]) == []
    assert list(nl.iter_attrs(b"\xff\x00\x01\x00", 0, 4)) == []

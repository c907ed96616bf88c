import asyncio
import time

from vdsm.network import report as netreport
from vdsm.network.report import NetworkReport, _Paths, _Rules, build_report
from vdsm.system.netlink import IFF_LOOPBACK, IFF_RUNNING, IFF_UP, Address, Link, Route, Snapshot

UP = IFF_UP | IFF_RUNNING
PERMANENT = 0x80


def link(index, name, **kw):
    kw.setdefault("flags", UP)
    kw.setdefault("arptype", 1)
    kw.setdefault("mtu", 1500)
    kw.setdefault("mac", f"52:54:00:00:00:{index:02x}")
    return Link(index=index, name=name, **kw)


def addr(index, cidr, scope=0, flags=PERMANENT, label=""):
    address, prefix = cidr.split("/")
    family = 6 if ":" in address else 4
    return Address(index, family, address, int(prefix), scope, label, flags)


def default_route(oif, gateway, table=254, family=4):
    return Route(family, None, 0, gateway, oif, table, 0, 1)


def snapshot():
    links = [
        link(1, "lo", flags=UP | IFF_LOOPBACK, arptype=772, mtu=65536),
        link(2, "eth0", speed=10000),
        link(3, "eth1", master=5, slave_kind="bond"),
        link(4, "eth2", master=5, slave_kind="bond", flags=0, perm_mac="52:54:00:cc:cc:cc"),
        link(5, "bond0", kind="bond", bond_mode=1, bond_active_slave=3, mtu=9000),
        link(6, "bond0.100", kind="vlan", vlan_id=100, parent=5),
        link(7, "br0", kind="bridge", bridge_stp=1),
        link(8, "vnet0", kind="tun", master=7),
        link(9, "veth_a", kind="veth", master=7),
        link(10, "vethX", kind="veth"),
        link(11, "wlan0"),
        link(12, ";vdsmdummy;", kind="bridge"),
        link(13, "dummy_1", kind="dummy"),
    ]
    addresses = [
        addr(1, "127.0.0.1/8", scope=254, label="lo"),
        addr(2, "10.0.0.5/24", label="eth0"),
        addr(2, "192.168.1.5/24", label="eth0"),
        addr(2, "fe80::1/64", scope=253),
        addr(2, "2001:db8::5/64"),
        addr(7, "172.16.0.2/16", flags=0, label="br0"),  # dynamic: DHCP
        addr(6, "2001:db8:1::9/128", flags=0),  # dynamic /128: DHCPv6
    ]
    routes = [
        default_route(2, "192.168.1.1"),
        default_route(2, "2001:db8::1", family=6),
        default_route(7, "172.16.0.1", table=100),  # source routing table, not main
        Route(4, "10.0.0.0", 24, None, 2, 254, 253, 1),
    ]
    return Snapshot(links, addresses, routes)


def paths(tmp_path):
    sys_net = tmp_path / "net"
    bonding = sys_net / "bond0" / "bonding"
    bonding.mkdir(parents=True)
    values = {
        "mode": "active-backup 1",
        "miimon": "100",
        "xmit_hash_policy": "layer3+4 1",
        "arp_ip_target": "10.0.0.1 10.0.0.2",
        "updelay": "0",
        "slaves": "eth1 eth2",
        "ad_aggregator": "",
        "ad_actor_system": "",  # not applicable outside 802.3ad: reads empty
    }
    for key, value in values.items():
        (bonding / key).write_text(value + "\n")
    bridge = sys_net / "br0" / "bridge"
    bridge.mkdir(parents=True)
    (bridge / "forward_delay").write_text("1500\n")
    (bridge / "flush").write_text("")
    conf = tmp_path / "proc_sys_net" / "ipv6" / "conf" / "eth0"
    conf.mkdir(parents=True)
    sysctls = {"disable_ipv6": 0, "autoconf": 1, "accept_ra": 1, "accept_redirects": 1}
    for key, value in sysctls.items():
        (conf / key).write_text(f"{value}\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search example.com\nnameserver 10.0.0.53\nnameserver 2001:db8::53\n")
    bonding = tmp_path / "proc_net_bonding"
    bonding.mkdir()
    (bonding / "bond0").write_text(
        "Bonding Mode: fault-tolerance (active-backup)\n\n"
        "Slave Interface: eth1\nMII Status: up\nPermanent HW addr: 52:54:00:aa:aa:aa\n\n"
        "Slave Interface: eth2\nMII Status: down\nPermanent HW addr: 52:54:00:bb:bb:bb\n"
    )
    return _Paths(sys_net, tmp_path / "proc_sys_net", resolv, bonding)


RULES = _Rules(("dummy_*", "veth_*"), ("w*", "usb*"), (), ())


def test_which_devices_are_reported(tmp_path):
    report = build_report(snapshot(), RULES, paths(tmp_path))
    assert set(report["nics"]) == {"eth0", "eth1", "eth2", "veth_a", "dummy_1"}
    assert set(report["bondings"]) == {"bond0"}
    assert set(report["vlans"]) == {"bond0.100"}
    assert set(report["bridges"]) == {"br0"}
    assert report["networks"] == {}
    assert report["nameservers"] == ["10.0.0.53", "2001:db8::53"]
    assert isinstance(report["supportsIPv6"], bool)


def test_every_mtu_is_a_string(tmp_path):
    report = build_report(snapshot(), RULES, paths(tmp_path))
    for section in ("nics", "bondings", "bridges", "vlans"):
        for info in report[section].values():
            assert isinstance(info["mtu"], str)
    assert report["bondings"]["bond0"]["mtu"] == "9000"


def test_ip_fields(tmp_path):
    report = build_report(snapshot(), RULES, paths(tmp_path))
    eth0 = report["nics"]["eth0"]
    # The primary address in the gateway's subnet wins over the first one.
    assert (eth0["addr"], eth0["netmask"]) == ("192.168.1.5", "255.255.255.0")
    assert eth0["ipv4addrs"] == ["10.0.0.5/24", "192.168.1.5/24"]
    assert eth0["ipv6addrs"] == ["2001:db8::5/64"]  # link-local left out
    assert eth0["gateway"] == "192.168.1.1"
    assert eth0["ipv6gateway"] == "2001:db8::1"
    assert eth0["ipv4defaultroute"] is True
    assert eth0["ipv6autoconf"] is True
    assert (eth0["dhcpv4"], eth0["dhcpv6"]) == (False, False)
    assert eth0["speed"] == 10000 and eth0["hwaddr"] == "52:54:00:00:00:02"

    br0 = report["bridges"]["br0"]
    assert br0["gateway"] == "172.16.0.1"  # found in any table
    assert br0["ipv4defaultroute"] is False  # but not the main table's default
    assert br0["dhcpv4"] is True
    assert br0["ipv6gateway"] == "::"
    assert report["vlans"]["bond0.100"]["dhcpv6"] is True
    assert report["nics"]["eth1"]["addr"] == "" and report["nics"]["eth1"]["gateway"] == ""


def test_bond_bridge_vlan_details(tmp_path):
    report = build_report(snapshot(), RULES, paths(tmp_path))
    bond = report["bondings"]["bond0"]
    assert bond["slaves"] == ["eth1", "eth2"]
    assert bond["active_slave"] == "eth1"
    assert bond["opts"] == {
        "mode": "1",
        "xmit_hash_policy": "1",
        "arp_ip_target": "10.0.0.1,10.0.0.2",
    }
    assert bond["switch"] == "legacy" and bond["speed"] == 0
    assert report["nics"]["eth1"]["permhwaddr"] == "52:54:00:aa:aa:aa"
    # The bonding driver's record wins over the link's own permanent address.
    assert report["nics"]["eth2"]["permhwaddr"] == "52:54:00:bb:bb:bb"
    assert "permhwaddr" not in report["nics"]["eth0"]

    bridge = report["bridges"]["br0"]
    assert bridge["ports"] == ["veth_a", "vnet0"]
    assert bridge["stp"] == "on"
    assert bridge["opts"] == {"forward_delay": "1500"}

    assert report["vlans"]["bond0.100"]["iface"] == "bond0"
    assert report["vlans"]["bond0.100"]["vlanid"] == 100


def test_hidden_bond_hides_its_slaves(tmp_path):
    rules = _Rules(("dummy_*", "veth_*"), ("w*",), ("bond*",), ("*.100",))
    report = build_report(snapshot(), rules, paths(tmp_path))
    assert report["bondings"] == {} and report["vlans"] == {}
    assert set(report["nics"]) == {"eth0", "veth_a", "dummy_1"}


class FakeNetlink:
    def __init__(self, snap):
        self.snap = snap
        self.calls = 0

    async def snapshot(self):
        self.calls += 1
        return self.snap


def test_cache_copy_invalidate_and_address_lookup(tmp_path):
    p = paths(tmp_path)

    async def run():
        fake = FakeNetlink(snapshot())
        report = NetworkReport(
            fake,
            sys_class_net=p.sys_class_net,
            proc_sys_net=p.proc_sys_net,
            resolv_conf=p.resolv_conf,
        )
        first = await report.report()
        first["nics"].clear()
        second = await report.report()
        assert "eth0" in second["nics"]  # callers get copies
        assert fake.calls == 1
        report.invalidate()
        await report.report()
        assert fake.calls == 2 and report.builds == 2
        lookups = [
            await report.device_by_address(a)
            for a in (
                "192.168.1.5",
                "192.168.1.5:54321",
                "::ffff:192.168.1.5",
                "[2001:db8::5]:54321",
                "127.0.0.1",
                "10.9.9.9",
                "",
                "garbage",
            )
        ]
        return lookups

    assert asyncio.run(run()) == ["eth0", "eth0", "eth0", "eth0", "lo", "", "", ""]


def test_report_expires(tmp_path):
    async def run():
        fake = FakeNetlink(snapshot())
        report = NetworkReport(fake, max_age=0.0, resolv_conf=tmp_path / "none")
        await report.report()
        await report.report()
        return fake.calls

    assert asyncio.run(run()) == 2


def make_link_dir(
    root, name, flags="0x1003", carrier="1", devtype=None, physical=False, speed="1000", **counters
):
    base = root / name
    (base / "statistics").mkdir(parents=True)
    (base / "flags").write_text(flags + "\n")
    if carrier is not None:
        (base / "carrier").write_text(carrier + "\n")
    (base / "speed").write_text(speed + "\n")
    uevent = f"INTERFACE={name}\n" + (f"DEVTYPE={devtype}\n" if devtype else "")
    (base / "uevent").write_text(uevent)
    if physical:
        (base / "device").mkdir()
    for key in ("rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped", "rx_errors", "tx_errors"):
        (base / "statistics" / key).write_text(str(counters.get(key, 0)) + "\n")


def test_link_statistics(tmp_path):
    make_link_dir(tmp_path, "eth0", physical=True, speed="25000", rx_bytes=123, tx_dropped=4)
    make_link_dir(tmp_path, "eth1", physical=True, flags="0x1002", carrier=None)  # down
    make_link_dir(tmp_path, "bond0", devtype="bond", speed="2000")
    make_link_dir(tmp_path, "veth_a", speed="10000")  # not a kind that reports speed
    before = time.time()
    stats = netreport.link_statistics(tmp_path)
    assert set(stats) == {"eth0", "eth1", "bond0", "veth_a"}
    eth0 = stats["eth0"]
    assert eth0["name"] == "eth0" and eth0["state"] == "up"
    assert (eth0["rx"], eth0["tx"], eth0["txDropped"]) == ("123", "0", "4")
    assert eth0["speed"] == "25000"
    assert stats["eth1"]["state"] == "down" and stats["eth1"]["speed"] == "1000"
    assert stats["bond0"]["speed"] == "2000"
    assert stats["veth_a"]["speed"] == "1000"
    assert all(isinstance(v, str) for k, v in eth0.items() if k != "sampleTime")
    assert before <= eth0["sampleTime"] <= time.time()

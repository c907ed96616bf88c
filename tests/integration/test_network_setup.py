"""setupNetworks on real netlink: the daemon runs inside its own network namespace, with
a veth "NIC" whose peer sits in an "engine" namespace; the engine side reaches the host
over that link only, as the engine reaches a host's management network."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.network import (
    ENGINE_ADDR,
    HOST_ADDR,
    NIC,
    EnginePinger,
    closing,
    host_client,
    kernel_view,
    reachable,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

OVIRTMGMT = {
    "nic": NIC,
    "bridged": True,
    "ipaddr": HOST_ADDR,
    "netmask": "255.255.255.0",
    "gateway": ENGINE_ADDR,
    "defaultRoute": True,
}


@pytest.fixture
def lab(netns_factory, vdsmd):
    """(host namespace, engine namespace, daemon in the host namespace)."""
    host = netns_factory(veth=None)
    engine = netns_factory(veth=None)
    host.add_veth(NIC, "veth_0p", peer_ns=engine)
    engine.ip("addr", "add", f"{ENGINE_ADDR}/24", "dev", "veth_0p")
    daemon = vdsmd({"addresses": {"management_ip": "0.0.0.0"}}, netns=host.name)
    return host, engine, daemon


def test_management_network_rollback_persistence_and_restore(lab) -> None:
    host, engine, daemon = lab
    with closing(host_client(daemon)) as client:
        caps = client.result("Host.getCapabilities")
        assert NIC in caps["nics"] and caps["networks"] == {}
        assert caps["netConfigDirty"] == "False"

        # 1. ovirtmgmt bridged on the NIC, static address, default route; the engine
        #    confirms connectivity over the new address.
        with EnginePinger(engine, HOST_ADDR, daemon.port) as pinger:
            answer = client.setup(
                {"ovirtmgmt": OVIRTMGMT}, connectivityCheck=True, connectivityTimeout=10
            )
        assert answer.get("result") == {"code": 0, "message": "Done"}, answer
        assert pinger.confirmed > 0
        configured = kernel_view(host)
        assert configured["links"]["ovirtmgmt"]["kind"] == "bridge"
        assert configured["links"][NIC]["master"] == "ovirtmgmt"
        assert configured["addresses"]["ovirtmgmt"] == [f"{HOST_ADDR}/24"]
        assert f"default via {ENGINE_ADDR} dev ovirtmgmt" in configured["routes"]

        caps = client.result("Host.getCapabilities")
        net = caps["networks"]["ovirtmgmt"]
        assert net["bridged"] is True and net["iface"] == "ovirtmgmt"
        assert net["ports"] == [NIC] and net["stp"] == "off"
        assert net["addr"] == HOST_ADDR and net["netmask"] == "255.255.255.0"
        assert net["gateway"] == ENGINE_ADDR and net["ipv4defaultroute"] is True
        assert net["mtu"] == "1500" and net["southbound"] == NIC
        assert caps["bridges"]["ovirtmgmt"]["ports"] == [NIC]
        assert all(isinstance(d["mtu"], str) for s in ("nics", "bridges") for d in caps[s].values())
        assert caps["netConfigDirty"] == "True"
        netcaps = client.result("Host.getNetworkCapabilities")
        assert netcaps["networks"]["ovirtmgmt"]["addr"] == HOST_ADDR

        # 2. Lose connectivity on purpose: a new address the engine cannot reach.
        lost = dict(OVIRTMGMT, ipaddr="10.88.0.2", gateway="10.88.0.1")
        with EnginePinger(engine, HOST_ADDR, daemon.port) as pinger:
            started = time.monotonic()
            error = client.setup(
                {"ovirtmgmt": lost}, connectivityCheck=True, connectivityTimeout=2
            )["error"]
            elapsed = time.monotonic() - started
        assert error == {"code": 10, "message": "connectivity check failed"}
        assert 2 <= elapsed < 10
        assert kernel_view(host) == configured
        assert client.result("Host.getNetworkCapabilities")["networks"]["ovirtmgmt"]["addr"] == (
            HOST_ADDR
        )
        assert reachable(engine, HOST_ADDR, daemon.port)

        # 3. Make it safe.
        assert client.result("Host.setSafeNetworkConfig") is True
        assert client.result("Host.getCapabilities")["netConfigDirty"] == "False"
        assert client.result("Host.getNetworkStatistics")["netConfigDirty"] == "False"
        safe = daemon.state_dir / "persistence" / "netconf"
        assert safe.is_symlink()
        saved = json.loads((safe / "nets" / "ovirtmgmt").read_text())
        assert saved["nic"] == NIC and saved["ipaddr"] == HOST_ADDR and saved["bridged"] is True
        assert (safe / "nets" / "ovirtmgmt").read_text().startswith('{\n    "')

    # 4. Wipe the namespace's configuration; the next boot (no marker) restores it.
    daemon.stop()
    host.ip("link", "del", "ovirtmgmt")
    assert "ovirtmgmt" not in kernel_view(host)["links"]
    (daemon.run_dir / "nets_restored").unlink()
    daemon.start()
    with closing(host_client(daemon)) as client:
        deadline = time.monotonic() + 30
        while "error" in client.call("Host.getNetworkCapabilities"):
            assert time.monotonic() < deadline, "daemon never ready"
            time.sleep(0.1)
    assert kernel_view(host) == configured
    assert reachable(engine, HOST_ADDR, daemon.port)

    # 5. Same through the command-line tool.
    host.ip("link", "del", "ovirtmgmt")
    tool = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            host.name,
            sys.executable,
            "-m",
            "vdsm.network.restore",
            "--config",
            str(daemon.config_path),
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert tool.returncode == 0, tool.stderr
    assert kernel_view(host) == configured


def test_unsafe_changes_are_lost_at_restore(lab) -> None:
    host, _engine, daemon = lab
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": OVIRTMGMT})["result"]["code"] == 0
        assert client.result("Host.setSafeNetworkConfig") is True
        safe_view = kernel_view(host)
        answer = client.setup({"ovirtmgmt": dict(OVIRTMGMT, mtu=1400, defaultRoute=False)})
        assert answer["result"]["code"] == 0
        view = kernel_view(host)
        assert view["links"]["ovirtmgmt"]["mtu"] == 1400
        assert view["links"][NIC]["mtu"] == 1400
        assert not any(r.startswith("default") for r in view["routes"])
    # A daemon restart is not a boot (the marker in the run dir says the safe
    # configuration was restored already): the unsafe change stays.
    daemon.restart()
    with closing(host_client(daemon)) as client:
        deadline = time.monotonic() + 30
        while client.call("Host.getCapabilities").get("result", {}).get("netConfigDirty") != (
            "True"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert kernel_view(host) == view
    daemon.stop()
    (daemon.run_dir / "nets_restored").unlink()
    daemon.start()
    with closing(host_client(daemon)) as client:
        deadline = time.monotonic() + 30
        while client.call("Host.getCapabilities").get("result", {}).get("netConfigDirty") != (
            "False"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert kernel_view(host) == safe_view


@pytest.fixture
def resolv_conf(netns_factory, vdsmd):
    """A daemon whose /etc/resolv.conf is its namespace's own (ip netns exec bind-mounts
    /etc/netns/<ns>/resolv.conf over it), so the host's file is never touched."""
    host = netns_factory(veth=None)
    host.add_veth(NIC, "veth_0p")
    own = Path("/etc/netns") / host.name / "resolv.conf"
    own.parent.mkdir(parents=True)
    own.write_text("search example.test\nnameserver 192.0.2.53\n")
    try:
        yield host, vdsmd(netns=host.name), own
    finally:
        own.unlink(missing_ok=True)
        own.parent.rmdir()


def test_nameservers_of_the_default_route_network(resolv_conf) -> None:
    host, daemon, own = resolv_conf
    net = dict(OVIRTMGMT, nameservers=["192.0.2.1", "192.0.2.2"])
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": net})["result"]["code"] == 0
        text = own.read_text()
        assert "nameserver 192.0.2.1\nnameserver 192.0.2.2\n" in text
        assert "search example.test" in text and "192.0.2.53" not in text
        assert client.result("Host.getNetworkCapabilities")["nameservers"] == [
            "192.0.2.1",
            "192.0.2.2",
        ]
        # Rolled back with the rest when no client confirms.
        lost = dict(net, nameservers=["192.0.2.9"])
        error = client.setup({"ovirtmgmt": lost}, connectivityCheck=True, connectivityTimeout=1)
        assert error["error"]["code"] == 10
        assert "nameserver 192.0.2.1\nnameserver 192.0.2.2\n" in own.read_text()
        assert "192.0.2.9" not in own.read_text()
    assert "ovirtmgmt" in kernel_view(host)["links"]


def test_custom_bridge_opts(lab) -> None:
    host, _engine, daemon = lab

    def sysfs(option: str) -> str:
        return host.run("cat", f"/sys/class/net/ovirtmgmt/bridge/{option}").stdout.strip()

    net = dict(OVIRTMGMT, custom={"bridge_opts": "multicast_snooping=0 multicast_querier=1"})
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": net})["result"]["code"] == 0
        assert (sysfs("multicast_snooping"), sysfs("multicast_querier")) == ("0", "1")
        assert client.setup({"ovirtmgmt": net}, dryRun=True)["result"] == []
        other = dict(net, custom={"bridge_opts": "multicast_snooping=1"})
        error = client.setup({"ovirtmgmt": other}, connectivityCheck=True, connectivityTimeout=1)
        assert error["error"]["code"] == 10
        assert sysfs("multicast_snooping") == "0"
        bad = dict(net, custom={"bridge_opts": "no_such_option=1"})
        error = client.setup({"ovirtmgmt": bad})["error"]
        assert error["code"] == 29 and "no_such_option" in error["message"]
        assert (
            client.setup({"ovirtmgmt": dict(net, custom={"bridge_opts": "x"})})["error"]["code"]
            == 27
        )


def test_ipv6_static_address_gateway_and_autoconf(lab) -> None:
    host, engine, daemon = lab
    engine.ip("addr", "add", "fd00:77::1/64", "dev", "veth_0p", "nodad")
    with closing(host_client(daemon)) as client:
        net = {"nic": NIC, "ipv6addr": "fd00:77::2/64", "ipv6gateway": "fd00:77::1"}
        assert client.setup({"v6": net})["result"]["code"] == 0
        caps = client.result("Host.getNetworkCapabilities")["networks"]["v6"]
        assert "fd00:77::2/64" in caps["ipv6addrs"]
        assert caps["ipv6gateway"] == "fd00:77::1"
        assert caps["ipv6autoconf"] is False
        assert host.run("sysctl", "-n", "net.ipv6.conf.v6.accept_ra").stdout.strip() == "0"
        assert client.setup({"v6": dict(net, ipv6autoconf=True)})["result"]["code"] == 0
        caps = client.result("Host.getNetworkCapabilities")["networks"]["v6"]
        assert caps["ipv6autoconf"] is True
        error = client.setup({"v6": dict(net, dhcpv6=True)})["error"]
        assert error["code"] == 21 and "dhcpv6" in error["message"]


def test_commit_on_success_makes_the_change_safe_at_once(lab) -> None:
    _host, _engine, daemon = lab
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": OVIRTMGMT}, commitOnSuccess=True)["result"]["code"] == 0
        assert client.result("Host.getCapabilities")["netConfigDirty"] == "False"
    saved = daemon.state_dir / "persistence" / "netconf" / "nets" / "ovirtmgmt"
    assert json.loads(saved.read_text())["ipaddr"] == HOST_ADDR


def test_network_removal_and_default_route_move(lab) -> None:
    host, _engine, daemon = lab
    host.add_veth("veth_1", "veth_1p")
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": OVIRTMGMT})["result"]["code"] == 0
        other = {
            "nic": "veth_1",
            "bridged": False,
            "ipaddr": "10.99.0.2",
            "prefix": "24",
            "gateway": "10.99.0.1",
            "defaultRoute": True,
            "mtu": 9000,
        }
        # A VM's tap on the management bridge (a veth here) is not the daemon's to move.
        host.add_veth("vnet0", "vnet0p")
        host.ip("link", "set", "vnet0", "master", "ovirtmgmt")
        assert client.setup({"data": other})["result"]["code"] == 0
        view = kernel_view(host)
        assert view["links"]["vnet0"]["master"] == "ovirtmgmt"
        assert "default via 10.99.0.1 dev veth_1" in view["routes"]
        assert not any("default via 10.77" in r for r in view["routes"])
        assert view["links"]["veth_1"]["mtu"] == 9000
        caps = client.result("Host.getNetworkCapabilities")
        assert caps["networks"]["data"]["bridged"] is False
        assert caps["networks"]["data"]["interface"] == "veth_1"
        assert caps["networks"]["data"]["mtu"] == "9000"
        assert caps["networks"]["ovirtmgmt"]["ipv4defaultroute"] is False

        assert client.setup({"ovirtmgmt": {"remove": True}})["result"]["code"] == 0
        view = kernel_view(host)
        assert "ovirtmgmt" not in view["links"]
        assert view["links"][NIC]["master"] is None
        assert "ovirtmgmt" not in client.result("Host.getNetworkCapabilities")["networks"]


def test_failure_mid_transaction_restores_the_exact_previous_state(lab) -> None:
    """A real kernel refusal: IPv6 is disabled for new devices in this namespace, so
    adding the IPv6 address of the last network fails after the bridges, ports, MTUs
    and the IPv4 changes were made."""
    host, _engine, daemon = lab
    host.add_veth("veth_1", "veth_1p")
    host.add_veth("veth_2", "veth_2p")
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": OVIRTMGMT})["result"]["code"] == 0
        host.run("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        before = kernel_view(host)
        caps_before = client.result("Host.getNetworkCapabilities")["networks"]
        error = client.setup(
            {
                "ovirtmgmt": dict(OVIRTMGMT, mtu=1400, ipaddr="10.77.0.3"),
                "net1": {"nic": "veth_1", "ipaddr": "10.1.0.1", "prefix": 24},
                "zeta": {"nic": "veth_2", "ipv6addr": "fd00::1/64"},
            }
        )["error"]
        assert error["code"] == 29, error
        assert "fd00::1/64" in error["message"]
        assert kernel_view(host) == before
        assert client.result("Host.getNetworkCapabilities")["networks"] == caps_before
        assert client.result("Host.ping2") is True


def test_concurrent_setup_answers_resource_unavailable(lab) -> None:
    host, _engine, daemon = lab
    with closing(host_client(daemon)) as first, closing(host_client(daemon)) as second:
        first.c.subscribe("reply-first", "sub-first")
        first.c.request(
            "Host.setupNetworks",
            {
                "networks": {"ovirtmgmt": OVIRTMGMT},
                "bondings": {},
                "options": {"connectivityCheck": True, "connectivityTimeout": 3},
            },
            reply_to="reply-first",
        )
        time.sleep(0.5)  # the first call is now waiting for a confirmation
        busy = second.setup({"other": {"nic": NIC, "bridged": False}})["error"]
        assert busy["code"] == 40, busy
        # Nobody confirmed: the first is rolled back.
        assert first.c.answer(timeout=20)["error"]["code"] == 10
        assert "ovirtmgmt" not in kernel_view(host)["links"]
        assert second.setup({"ovirtmgmt": OVIRTMGMT})["result"]["code"] == 0


def test_dry_run_lists_the_changes_and_makes_none(lab) -> None:
    host, _engine, daemon = lab
    before = kernel_view(host)
    with closing(host_client(daemon)) as client:
        changes = client.setup({"ovirtmgmt": OVIRTMGMT}, dryRun=True)["result"]
        assert kernel_view(host) == before
        assert client.result("Host.getCapabilities")["netConfigDirty"] == "False"
    actions = [(c["action"], c["device"]) for c in changes]
    assert actions == [
        ("add_link", "ovirtmgmt"),
        ("set_master", NIC),
        ("set_ipv6_sysctl", "ovirtmgmt"),
        ("set_ipv6_sysctl", "ovirtmgmt"),
        ("add_addr", "ovirtmgmt"),
        ("add_route", "ovirtmgmt"),
        # Its own table and rules (source routing), as upstream gives every network
        # with a static address and a gateway.
        ("add_table_route", "ovirtmgmt"),
        ("add_table_route", "ovirtmgmt"),
        ("add_rule", "ovirtmgmt"),
        ("add_rule", "ovirtmgmt"),
    ]
    assert {(c["key"], c["value"]) for c in changes[2:4]} == {("accept_ra", "0"), ("autoconf", "0")}
    assert changes[0]["kind"] == "bridge" and changes[0]["mtu"] == 1500 and changes[0]["up"]
    assert changes[4]["cidr"] == f"{HOST_ADDR}/24"
    assert changes[5]["gateway"] == ENGINE_ADDR
    assert changes[7]["dst"] == "0.0.0.0/0" and changes[7]["gateway"] == ENGINE_ADDR
    assert {(c["src"], c["dst"]) for c in changes[8:]} == {
        ("10.77.0.0/24", None),
        (None, "10.77.0.0/24"),
    }


BAD_REQUESTS = [
    # (networks, bondings, code, text in the message)
    (
        {"n1": {"nic": NIC, "ipaddr": "10.0.0.1", "netmask": "255.0.0.0", "prefix": 8}},
        {},
        21,
        "exclusive",
    ),
    (
        {
            "n1": {"nic": NIC, "bridged": False, "defaultRoute": True},
            "n2": {"nic": "veth_1", "defaultRoute": True},
        },
        {},
        21,
        "defaultRoute",
    ),
    ({"n1": {"nic": NIC, "switch": "ovs"}}, {}, 21, "ovs"),
    ({"n1": {"nic": NIC, "hostQos": {"out": {"ls": {"m2": 10}}}}}, {}, 21, "hostQos"),
    ({"n1": {"nic": NIC, "bootproto": "static"}}, {}, 21, "bootproto"),
    ({"n1": {"nic": NIC, "mtu": 20}}, {}, 21, "mtu"),
    ({"n1": {"nic": NIC, "bonding": "bond0"}}, {}, 21, "exclusive"),
    ({"n1": {"nic": NIC, "ipaddr": "10.0.0.300", "prefix": 24}}, {}, 22, "10.0.0.300"),
    ({"n1": {"nic": NIC, "ipaddr": "10.0.0.1", "netmask": "255.0.255.0"}}, {}, 22, "netmask"),
    (
        {"n1": {"nic": NIC, "ipaddr": "10.0.0.1", "prefix": 24, "gateway": "10.9.0.1"}},
        {},
        22,
        "gateway",
    ),
    ({"n1": {"nic": NIC, "ipv6addr": "fd00::zz/64"}}, {}, 22, "ipv6addr"),
    ({"n1": {"nic": "nosuchnic"}}, {}, 23, "nosuchnic"),
    ({}, {"bond0": {"nics": [NIC, "nosuchnic"]}}, 23, "nosuchnic"),
    ({"n1": {"nic": NIC}, "n2": {"nic": NIC, "bridged": False}}, {}, 24, NIC),
    (
        {"n1": {"nic": NIC}},
        {"bond0": {"nics": [NIC, "veth_1"], "options": "mode=1"}},
        24,
        "slave",
    ),
    ({}, {"bond0": {"nics": [NIC], "options": "mode=9"}}, 25, "mode"),
    ({}, {"bond0": {"nics": [NIC], "options": "nosuchopt=1"}}, 25, "nosuchopt"),
    ({}, {"bond0": {"nics": []}}, 25, "nics"),
    ({}, {"mybond": {"nics": [NIC]}}, 25, "bond"),
    ({"n1": {"bonding": "bond7"}}, {}, 25, "bond7"),
    ({}, {"bond3": {"remove": True}}, 25, "bond3"),
    ({"n1": {"nic": NIC, "vlan": 5000}}, {}, 26, "5000"),
    ({"n1": {"nic": NIC, "vlan": "abc"}}, {}, 26, "vlan"),
    ({"n1": {"bridged": True, "vlan": 10}}, {}, 26, "vlan"),
    ({"n1": {"nic": NIC, "vlan": 10}, "n2": {"nic": NIC, "vlan": "10"}}, {}, 26, "vlan 10"),
    ({"nosuchnet": {"remove": True}}, {}, 27, "nosuchnet"),
    ({"veth_1": {"nic": NIC}}, {}, 27, "veth_1"),
]


def test_bad_requests_get_their_codes_and_change_nothing(lab) -> None:
    host, _engine, daemon = lab
    host.add_veth("veth_1", "veth_1p")
    before = kernel_view(host)
    problems = []
    with closing(host_client(daemon)) as client:
        for networks, bondings, code, text in BAD_REQUESTS:
            answer = client.setup(networks, bondings)
            error = answer.get("error", {})
            if error.get("code") != code or text not in error.get("message", ""):
                problems.append(f"{networks} {bondings}: want {code} '{text}', got {answer}")
        assert client.result("Host.ping2") is True
    assert kernel_view(host) == before
    assert not problems, "\n".join(problems)


def test_bond_in_use_cannot_be_removed(lab) -> None:
    """31 needs a running bond; bonds exist only in the kernel lab, so the running
    configuration is written as a previous setupNetworks would have left it."""
    _host, _engine, daemon = lab
    daemon.stop()
    staging = daemon.state_dir / "staging" / "netconf"
    for directory, name, attrs in (
        ("bonds", "bond0", {"nics": [NIC], "options": "mode=1", "switch": "legacy"}),
        ("nets", "n1", {"bonding": "bond0", "bridged": False, "mtu": 1500}),
    ):
        (staging / directory).mkdir(parents=True, exist_ok=True)
        (staging / directory / name).write_text(json.dumps(attrs, indent=4))
    daemon.start()
    with closing(host_client(daemon)) as client:
        deadline = time.monotonic() + 30
        while True:
            error = client.setup({}, {"bond0": {"remove": True}}).get("error", {})
            if error.get("code") != 99 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert error["code"] == 31 and "bond0" in error["message"], error


def test_statistics_report_counters_and_rates(lab) -> None:
    _host, engine, daemon = lab
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": OVIRTMGMT})["result"]["code"] == 0
        client.result("Host.getNetworkStatistics")
        assert reachable(engine, HOST_ADDR, daemon.port)
        stats = client.result("Host.getNetworkStatistics")
    nic = stats["network"][NIC]
    assert int(nic["rx"]) > 0 and int(nic["tx"]) > 0
    assert {"rxRate", "txRate", "rxDropped", "txDropped", "speed", "sampleTime"} <= set(nic)
    assert float(nic["rxRate"]) >= 0.0
    assert stats["netConfigDirty"] == "True"
    assert isinstance(stats["rxDropped"], str)

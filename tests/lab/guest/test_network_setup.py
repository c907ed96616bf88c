"""Kernel lab: setupNetworks through a real daemon on bonds (802.3ad, active-backup) over
dummy NICs, VLAN networks on the bond (bridged and bridgeless), a mode change, the
connectivity rollback and the removal of everything."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pytest

from tests.lab.resources import NetNS, run
from tests.lab.vdsmd import VdsmdProcess
from tests.support.network import Client, kernel_view

pytestmark = pytest.mark.lab


def ready_client(daemon: VdsmdProcess, timeout: float = 600) -> Client:
    client = Client(daemon.connect(timeout=30), timeout=300)
    deadline = time.monotonic() + timeout
    while "error" in client.call("Host.getNetworkCapabilities"):  # 99 while recovering
        assert time.monotonic() < deadline, "the daemon never finished recovery"
        time.sleep(0.5)
    return client


def test_vlan_networks_on_a_bond(
    netns_factory: Callable[..., NetNS], vdsmd: Callable[..., VdsmdProcess]
) -> None:
    run(["modprobe", "-a", "bonding", "dummy", "8021q", "bridge"])
    ns = netns_factory(veth=None)
    for nic in ("dummy_1", "dummy_2", "dummy_3"):
        ns.ip("link", "add", nic, "type", "dummy")
        ns.ip("link", "set", nic, "up")
    daemon = vdsmd(netns=ns.name, start_timeout=600)
    client = ready_client(daemon)
    try:
        answer = client.setup(
            {
                "ovirtmgmt": {
                    "bonding": "bond0",
                    "vlan": 100,
                    "ipaddr": "10.100.0.2",
                    "prefix": 24,
                    "gateway": "10.100.0.1",
                    "defaultRoute": True,
                },
                "storage": {"bonding": "bond0", "vlan": "200", "bridged": False, "mtu": 9000},
            },
            {"bond0": {"nics": ["dummy_1", "dummy_2"], "options": "mode=802.3ad miimon=150"}},
        )
        assert answer.get("result") == {"code": 0, "message": "Done"}, answer
        view = kernel_view(ns)
        assert view["links"]["bond0"]["kind"] == "bond"
        assert view["links"]["dummy_1"]["master"] == view["links"]["dummy_2"]["master"] == "bond0"
        assert view["links"]["bond0.100"]["master"] == "ovirtmgmt"
        assert view["links"]["bond0.200"]["mtu"] == 9000
        assert view["links"]["bond0"]["mtu"] == 9000  # the parent covers its VLANs
        assert view["links"]["bond0.100"]["mtu"] == 1500
        assert "default via 10.100.0.1 dev ovirtmgmt" in view["routes"]

        caps = client.result("Host.getNetworkCapabilities")
        bond = caps["bondings"]["bond0"]
        assert bond["slaves"] == ["dummy_1", "dummy_2"]
        assert bond["opts"]["mode"] == "4" and bond["opts"]["miimon"] == "150"
        assert bond["mtu"] == "9000"
        assert caps["vlans"]["bond0.100"]["vlanid"] == 100
        assert caps["vlans"]["bond0.100"]["iface"] == "bond0"
        mgmt = caps["networks"]["ovirtmgmt"]
        assert mgmt["vlanid"] == 100 and mgmt["southbound"] == "bond0.100"
        assert mgmt["ports"] == ["bond0.100"] and mgmt["addr"] == "10.100.0.2"
        storage = caps["networks"]["storage"]
        assert storage["bridged"] is False and storage["interface"] == "bond0.200"
        assert storage["mtu"] == "9000"

        # Nobody confirms: the mode change and the removal are rolled back.
        before = kernel_view(ns)
        error = client.setup(
            {"storage": {"remove": True}},
            {"bond0": {"nics": ["dummy_1", "dummy_2"], "options": "mode=active-backup"}},
            connectivityCheck=True,
            connectivityTimeout=1,
        )["error"]
        assert error["code"] == 10
        after = kernel_view(ns)
        for key in before:
            assert after[key] == before[key], key
        assert (
            client.result("Host.getNetworkCapabilities")["bondings"]["bond0"]["opts"]["mode"] == "4"
        )

        # The mode change for real: the bond is rebuilt, its VLANs and bridge with it.
        answer = client.setup(
            {},
            {"bond0": {"nics": ["dummy_1", "dummy_2"], "options": "mode=active-backup"}},
        )
        assert answer.get("result", {}).get("code") == 0, answer
        caps = client.result("Host.getNetworkCapabilities")
        assert caps["bondings"]["bond0"]["opts"]["mode"] == "1"
        assert caps["networks"]["ovirtmgmt"]["ports"] == ["bond0.100"]
        assert "default via 10.100.0.1 dev ovirtmgmt" in kernel_view(ns)["routes"]

        # Done-when, on bonds: a management network on a NIC next to the VLAN networks on
        # the bond, both in caps; made safe; the namespace wiped; restored.
        answer = client.setup(
            {
                "mgmt": {"nic": "dummy_3", "ipaddr": "10.50.0.2", "prefix": 24},
                "tagged": {"nic": "dummy_3", "vlan": 300, "bridged": False, "mtu": 1400},
            }
        )
        assert answer.get("result", {}).get("code") == 0, answer
        caps = client.result("Host.getNetworkCapabilities")
        assert {"ovirtmgmt", "storage", "mgmt", "tagged"} <= set(caps["networks"])
        assert caps["networks"]["tagged"]["interface"] == "dummy_3.300"
        assert client.result("Host.setSafeNetworkConfig") is True
        safe = kernel_view(ns)
        for device in ("bond0", "ovirtmgmt", "mgmt", "dummy_3.300"):
            ns.ip("link", "del", device)
        tool = ns.run(
            sys.executable,
            "-m",
            "vdsm.network.restore",
            "--config",
            str(daemon.config_path),
            "--force",
            timeout=600,
        )
        assert tool.returncode == 0, tool.stderr
        assert kernel_view(ns) == safe

        answer = client.setup(
            {
                "ovirtmgmt": {"remove": True},
                "storage": {"remove": True},
                "mgmt": {"remove": True},
                "tagged": {"remove": True},
            },
            {"bond0": {"remove": True}},
        )
        assert answer.get("result", {}).get("code") == 0, answer
        links = kernel_view(ns)["links"]
        assert not {"bond0", "bond0.100", "bond0.200", "ovirtmgmt"} & set(links)
        assert links["dummy_1"]["master"] is None
    finally:
        client.close()

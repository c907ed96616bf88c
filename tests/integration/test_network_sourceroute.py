"""Source routing on real netlink: a network with a static address and a gateway but
without the default route gets its own routing table and rules, so that what leaves
from its subnet goes through its own gateway; removed with the network, and restored
exactly by a rollback."""

from __future__ import annotations

import json
import time
import zlib

import pytest

from tests.integration.test_network_setup import OVIRTMGMT, lab  # noqa: F401 (fixture)
from tests.support.network import ENGINE_ADDR, NIC, closing, host_client, kernel_view

pytestmark = pytest.mark.integration

DATA = {
    "nic": "veth_1",
    "bridged": False,
    "ipaddr": "10.99.0.2",
    "prefix": "24",
    "gateway": "10.99.0.1",
}
# Upstream's table id: the Adler-32 checksum of the network's top device name.
DATA_TABLE = zlib.adler32(b"veth_1")
MGMT_TABLE = zlib.adler32(b"ovirtmgmt")


def route_to(host, destination: str, source: str | None = None) -> dict:
    args = ["-j", "route", "get", destination]
    if source:
        args += ["from", source]
    return json.loads(host.ip(*args))[0]  # type: ignore[no-any-return]


def test_gateway_without_default_route_routes_its_subnet_through_its_own_table(
    lab,  # noqa: F811
) -> None:
    host, _engine, daemon = lab
    host.add_veth("veth_1", "veth_1p")
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": OVIRTMGMT})["result"]["code"] == 0
        before = kernel_view(host)
        # The default-route network has its own table too, as upstream gives it.
        assert f"3200: from 10.77.0.0/24 to all lookup {MGMT_TABLE}" in before["rules"]
        assert f"default via {ENGINE_ADDR} dev ovirtmgmt table {MGMT_TABLE}" in before["tables"]

        assert client.setup({"data": DATA})["result"]["code"] == 0
        view = kernel_view(host)
        assert f"3200: from 10.99.0.0/24 to all lookup {DATA_TABLE}" in view["rules"]
        assert f"3200: from all to 10.99.0.0/24 lookup {DATA_TABLE}" in view["rules"]
        assert f"default via 10.99.0.1 dev veth_1 table {DATA_TABLE}" in view["tables"]
        assert f"10.99.0.0/24 via - dev veth_1 table {DATA_TABLE}" in view["tables"]
        # The main table keeps its one default route, on the management network.
        assert [r for r in view["routes"] if r.startswith("default")] == [
            f"default via {ENGINE_ADDR} dev ovirtmgmt"
        ]
        # The kernel's own routing decisions: from the data address through its gateway,
        # anything else through the default route.
        sourced = route_to(host, "192.0.2.7", "10.99.0.2")
        assert (sourced["gateway"], sourced["dev"]) == ("10.99.0.1", "veth_1")
        plain = route_to(host, "192.0.2.7")
        assert (plain["gateway"], plain["dev"]) == (ENGINE_ADDR, "ovirtmgmt")

        caps = client.result("Host.getNetworkCapabilities")["networks"]
        assert caps["data"]["gateway"] == "10.99.0.1"
        assert caps["data"]["ipv4defaultroute"] is False
        assert caps["ovirtmgmt"]["gateway"] == ENGINE_ADDR
        assert caps["ovirtmgmt"]["ipv4defaultroute"] is True

        # A gateway change replaces the table's default route, nothing else.
        moved = dict(DATA, gateway="10.99.0.254")
        assert client.setup({"data": moved})["result"]["code"] == 0
        view2 = kernel_view(host)
        assert f"default via 10.99.0.254 dev veth_1 table {DATA_TABLE}" in view2["tables"]
        assert f"default via 10.99.0.1 dev veth_1 table {DATA_TABLE}" not in view2["tables"]
        assert view2["rules"] == view["rules"]
        assert client.result("Host.getNetworkCapabilities")["networks"]["data"]["gateway"] == (
            "10.99.0.254"
        )

        # Removal takes the rules and the table with it (the NIC stays).
        assert client.setup({"data": {"remove": True}})["result"]["code"] == 0
        after = kernel_view(host)
        assert after["rules"] == before["rules"]
        assert after["tables"] == before["tables"]
        assert after["addresses"] == before["addresses"]


def test_connectivity_rollback_restores_the_previous_rules_and_tables(lab) -> None:  # noqa: F811
    host, _engine, daemon = lab
    host.add_veth("veth_1", "veth_1p")
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": OVIRTMGMT, "data": DATA})["result"]["code"] == 0
        before = kernel_view(host)
        caps_before = client.result("Host.getNetworkCapabilities")["networks"]
        # Nobody confirms: a new subnet and gateway for data, and the management
        # network's address moved, are all rolled back.
        answer = client.setup(
            {
                "ovirtmgmt": dict(OVIRTMGMT, ipaddr="10.77.0.3"),
                "data": dict(DATA, ipaddr="10.98.0.2", gateway="10.98.0.1"),
            },
            connectivityCheck=True,
            connectivityTimeout=1,
        )
        assert answer["error"]["code"] == 10, answer
        assert kernel_view(host) == before
        assert client.result("Host.getNetworkCapabilities")["networks"] == caps_before

        # A removal rolled back brings the rules and the table back too.
        answer = client.setup(
            {"data": {"remove": True}}, connectivityCheck=True, connectivityTimeout=1
        )
        assert answer["error"]["code"] == 10, answer
        assert kernel_view(host) == before


def test_source_routing_survives_a_wipe_and_restore(lab) -> None:  # noqa: F811
    host, _engine, daemon = lab
    host.add_veth("veth_1", "veth_1p")
    with closing(host_client(daemon)) as client:
        assert client.setup({"ovirtmgmt": OVIRTMGMT, "data": DATA})["result"]["code"] == 0
        assert client.result("Host.setSafeNetworkConfig") is True
    configured = kernel_view(host)
    daemon.stop()
    # The rules are not the links': they outlive a wipe of the links' configuration.
    host.ip("link", "del", "ovirtmgmt")
    host.ip("addr", "flush", "dev", "veth_1")
    host.ip("rule", "del", "prio", "3200", "table", str(DATA_TABLE), "from", "10.99.0.0/24")
    assert kernel_view(host) != configured
    (daemon.run_dir / "nets_restored").unlink()
    daemon.start()
    with closing(host_client(daemon)) as client:
        deadline = time.monotonic() + 30
        while "error" in (answer := client.call("Host.getNetworkCapabilities")):
            assert time.monotonic() < deadline, "daemon never ready"
            time.sleep(0.1)
        assert answer["result"]["networks"]["data"]["gateway"] == "10.99.0.1"
    assert kernel_view(host) == configured
    assert NIC in configured["links"]

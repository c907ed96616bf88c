"""Network namespaces for real: a bridge with a veth port, made with pyroute2."""

from __future__ import annotations

import json

import pytest

from tests.lab.resources import NetNS, run

pytestmark = pytest.mark.integration


def test_bridge_with_veth_port_in_a_namespace(netns: NetNS) -> None:
    from pyroute2 import NetNS as PyNetNS

    with PyNetNS(netns.name) as ns:
        ns.link("add", ifname="br0", kind="bridge")
        bridge = ns.link_lookup(ifname="br0")[0]
        port = ns.link_lookup(ifname=netns.veth[0])[0]
        ns.link("set", index=port, master=bridge)
        ns.link("set", index=bridge, state="up")
        ns.addr("add", index=bridge, address="192.0.2.1", prefixlen=24)

    links = netns.links()
    assert links["br0"]["linkinfo"]["info_kind"] == "bridge"
    assert links[netns.veth[0]]["master"] == "br0"
    assert links[netns.veth[1]].get("master") is None
    addrs = json.loads(netns.ip("-j", "addr", "show", "br0"))
    info = addrs[0]["addr_info"][0]
    assert (info["local"], info["prefixlen"]) == ("192.0.2.1", 24)
    # the host does not see any of it
    host = {link["ifname"] for link in json.loads(run(["ip", "-j", "link", "show"]).stdout)}
    assert not host & {"br0", *netns.veth}

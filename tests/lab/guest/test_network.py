"""Kernel lab: bonds over dummy links, an 802.1Q VLAN on the bond, a bridge on the VLAN."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.lab.resources import NetNS, run

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("mode", ["active-backup", "802.3ad"])
def test_bond_vlan_bridge(netns_factory: Callable[..., NetNS], mode: str) -> None:
    run(["modprobe", "-a", "bonding", "dummy", "8021q", "bridge"])
    ns = netns_factory(veth=None)
    for dummy in ("dummy0", "dummy1"):
        ns.ip("link", "add", dummy, "type", "dummy")
    ns.ip("link", "add", "bond0", "type", "bond", "mode", mode, "miimon", "100")
    for dummy in ("dummy0", "dummy1"):
        ns.ip("link", "set", dummy, "master", "bond0")
    ns.ip("link", "set", "bond0", "up")
    ns.ip("link", "add", "link", "bond0", "name", "bond0.100", "type", "vlan", "id", "100")
    ns.ip("link", "add", "br100", "type", "bridge")
    ns.ip("link", "set", "bond0.100", "master", "br100")
    ns.ip("link", "set", "bond0.100", "up")
    ns.ip("link", "set", "br100", "up")

    links = ns.links()
    bond = links["bond0"]["linkinfo"]
    assert bond["info_kind"] == "bond"
    assert bond["info_data"]["mode"] == mode
    assert links["dummy0"]["master"] == links["dummy1"]["master"] == "bond0"
    vlan = links["bond0.100"]
    assert vlan["linkinfo"]["info_kind"] == "vlan"
    assert vlan["linkinfo"]["info_data"]["id"] == 100
    assert vlan["link"] == "bond0"
    assert vlan["master"] == "br100"
    assert links["br100"]["linkinfo"]["info_kind"] == "bridge"
    # the bonding driver's own view, from inside the namespace
    status = ns.run("cat", "/proc/net/bonding/bond0").stdout
    assert "Slave Interface: dummy0" in status and "Slave Interface: dummy1" in status

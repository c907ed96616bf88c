"""Canonical setupNetworks requests, merging into the running configuration, validation."""

from __future__ import annotations

import pytest

from vdsm.errors.network import (
    NetworkBondingError,
    NetworkNicError,
    NetworkParamsError,
    NetworkUsedBond,
    NetworkUsedNic,
)
from vdsm.network import model

HOST = model.HostLinks(nics={"eth0", "eth1", "eth2"}, others={"lo": "", "virbr0": "bridge"})


def request(networks=None, bondings=None, options=None) -> model.Request:
    return model.canonical_request(networks or {}, bondings or {}, options or {})


def test_defaults_are_explicit_as_upstream_persists_them() -> None:
    net = request({"n": {"nic": "eth0", "ipaddr": "10.0.0.2", "prefix": "24"}}).networks["n"]
    assert net == {
        "nic": "eth0",
        "bridged": True,
        "stp": False,
        "mtu": 1500,
        "bootproto": "none",
        "ipaddr": "10.0.0.2",
        "netmask": "255.255.255.0",
        "ipv6autoconf": False,
        "dhcpv6": False,
        "defaultRoute": False,
        "nameservers": [],
        "switch": "legacy",
    }


def test_vlan_strings_booleans_as_strings_and_empty_vlan() -> None:
    nets = request(
        {
            "a": {"nic": "eth0", "vlan": "100", "bridged": "false", "mtu": "9000"},
            "b": {"nic": "eth1", "vlan": ""},
        }
    ).networks
    assert nets["a"]["vlan"] == 100 and nets["a"]["bridged"] is False and nets["a"]["mtu"] == 9000
    assert "vlan" not in nets["b"]


def test_options_defaults() -> None:
    assert request().options == {
        "connectivityCheck": True,
        "connectivityTimeout": 4,
        "commitOnSuccess": False,
        "dryRun": False,
        "_inRollback": False,
    }


def test_bond_options_are_canonical() -> None:
    bond = request(
        bondings={"bond0": {"nics": ["eth1", "eth0"], "options": "miimon=100 mode=802.3ad"}}
    )
    assert bond.bonds["bond0"] == {
        "nics": ["eth0", "eth1"],
        "options": "mode=4 miimon=100",
        "switch": "legacy",
    }
    assert request(bondings={"bond1": {"nics": ["eth0"]}}).bonds["bond1"]["options"] == "mode=0"


def test_default_route_moves_to_the_new_network() -> None:
    running = model.NetConfig(
        networks=request({"a": {"nic": "eth0", "defaultRoute": True}}).networks
    )
    new = model.merge(running, request({"b": {"nic": "eth1", "defaultRoute": True}}))
    assert new.networks["a"]["defaultRoute"] is False
    assert new.networks["b"]["defaultRoute"] is True


def test_removing_a_bond_a_network_uses_is_31() -> None:
    running = model.NetConfig(
        networks=request({"n": {"bonding": "bond0"}}).networks,
        bonds=request(bondings={"bond0": {"nics": ["eth0", "eth1"]}}).bonds,
    )
    req = request(bondings={"bond0": {"remove": True}})
    with pytest.raises(NetworkUsedBond, match="bond0"):
        model.validate(model.merge(running, req), HOST, req)


@pytest.mark.parametrize(
    "networks, bondings, error",
    [
        ({"n": {"nic": "eth9"}}, {}, NetworkNicError),
        ({"n": {"nic": "eth0"}}, {"bond0": {"nics": ["eth0", "eth1"]}}, NetworkUsedNic),
        ({}, {"bond0": {"nics": ["eth0"]}, "bond1": {"nics": ["eth0"]}}, NetworkUsedNic),
        ({"n": {"bonding": "bond5"}}, {}, NetworkBondingError),
    ],
)
def test_validation_against_the_host(networks, bondings, error) -> None:
    req = request(networks, bondings)
    with pytest.raises(error):
        model.validate(model.merge(model.NetConfig(), req), HOST, req)


def test_a_bond_slave_cannot_carry_a_network_of_the_running_config() -> None:
    running = model.NetConfig(networks=request({"n": {"nic": "eth0"}}).networks)
    req = request(bondings={"bond0": {"nics": ["eth0", "eth1"]}})
    with pytest.raises(NetworkUsedNic, match="eth0"):
        model.validate(model.merge(running, req), HOST, req)


def test_ipaddr_with_dhcp_is_refused() -> None:
    with pytest.raises(NetworkParamsError, match="dhcp"):
        request({"n": {"nic": "eth0", "bootproto": "dhcp", "ipaddr": "1.2.3.4", "prefix": 8}})


def test_static_default_route_network_gets_the_host_resolvers() -> None:
    nets = model.canonical_request(
        {
            "mgmt": {"nic": "eth0", "ipaddr": "10.0.0.2", "prefix": 24, "defaultRoute": True},
            "other": {"nic": "eth1"},
            "own": {"nic": "eth2", "defaultRoute": False, "nameservers": ["192.0.2.7"]},
        },
        {},
        {},
        default_nameservers=["192.0.2.1"],
    ).networks
    assert nets["mgmt"]["nameservers"] == ["192.0.2.1"]
    assert nets["other"]["nameservers"] == []
    assert nets["own"]["nameservers"] == ["192.0.2.7"]

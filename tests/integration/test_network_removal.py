"""Removing a network gives back what it claimed, on real netlink: the NIC's default MTU
and the IPv6 sysctls it had; and a removal rolled back (no connectivity confirmation)
brings back exactly the previous state, the deleted bridge's IPv6 sysctls included."""

from __future__ import annotations

import pytest

from tests.integration.test_network_setup import lab  # noqa: F401 (fixture)
from tests.support.network import closing, host_client, kernel_view

pytestmark = pytest.mark.integration

KEYS = ("accept_ra", "autoconf")


def sysctls(host, device: str) -> dict[str, str]:
    return {
        key: host.run("sysctl", "-n", f"net.ipv6.conf.{device}.{key}").stdout.strip()
        for key in KEYS
    }


def test_removal_restores_the_nic_mtu_and_ipv6_sysctls_and_its_undo_is_exact(
    lab,  # noqa: F811
) -> None:
    host, _engine, daemon = lab
    host.add_veth("veth_1", "veth_1p")
    host.add_veth("veth_2", "veth_2p")
    unclaimed = {"veth_1": sysctls(host, "veth_1"), "veth_2": sysctls(host, "veth_2")}
    assert kernel_view(host)["links"]["veth_1"]["mtu"] == 1500
    networks = {
        "flat": {
            "nic": "veth_1",
            "bridged": False,
            "mtu": 9000,
            "ipaddr": "10.66.0.2",
            "prefix": 24,
        },
        "br": {"nic": "veth_2", "mtu": 4000},
    }
    with closing(host_client(daemon)) as client:
        assert client.setup(networks)["result"]["code"] == 0
        claimed = kernel_view(host)
        assert claimed["links"]["veth_1"]["mtu"] == 9000
        assert claimed["links"]["veth_2"]["mtu"] == 4000
        assert sysctls(host, "veth_1") == {"accept_ra": "0", "autoconf": "0"}
        assert sysctls(host, "br") == {"accept_ra": "0", "autoconf": "0"}

        # Rolled back for want of a confirmation: the bridge comes back with its
        # sysctls, the NICs with their MTUs.
        removal = {"flat": {"remove": True}, "br": {"remove": True}}
        answer = client.setup(removal, connectivityCheck=True, connectivityTimeout=1)
        assert answer["error"]["code"] == 10, answer
        assert kernel_view(host) == claimed
        assert sysctls(host, "veth_1") == {"accept_ra": "0", "autoconf": "0"}
        assert sysctls(host, "br") == {"accept_ra": "0", "autoconf": "0"}

        assert client.setup(removal)["result"]["code"] == 0
        released = kernel_view(host)
        assert released["links"]["veth_1"]["mtu"] == 1500
        assert released["links"]["veth_2"]["mtu"] == 1500
        assert "br" not in released["links"]
        assert sysctls(host, "veth_1") == unclaimed["veth_1"]
        assert sysctls(host, "veth_2") == unclaimed["veth_2"]

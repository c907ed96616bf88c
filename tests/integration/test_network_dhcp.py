"""bootproto dhcp against a real DHCP server (busybox udhcpd) in the engine namespace."""

from __future__ import annotations

import shutil
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from tests.support.network import ENGINE_ADDR, NIC, closing, host_client, kernel_view

pytestmark = pytest.mark.integration


def udhcpc_pids(device: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"udhcpc" in argv and device.encode() in argv:
            found.append(int(proc.name))
    return found


@pytest.fixture
def lab(netns_factory, vdsmd, tmp_path: Path):
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox missing: apt-get install busybox-static")
    host = netns_factory(veth=None)
    engine = netns_factory(veth=None)
    host.add_veth(NIC, "veth_0p", peer_ns=engine)
    engine.ip("addr", "add", f"{ENGINE_ADDR}/24", "dev", "veth_0p")
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(
        "start 10.77.0.100\nend 10.77.0.110\ninterface veth_0p\n"
        f"lease_file {tmp_path / 'leases'}\npidfile {tmp_path / 'udhcpd.pid'}\n"
        f"option subnet 255.255.255.0\noption router {ENGINE_ADDR}\noption lease 600\n"
    )
    (tmp_path / "leases").touch()
    server = subprocess.Popen(
        ["ip", "netns", "exec", engine.name, busybox, "udhcpd", "-f", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield host, vdsmd(netns=host.name)
    finally:
        server.terminate()
        server.wait(10)


def test_dhcp_network_gets_a_lease_and_its_client_ends_with_it(lab) -> None:
    host, daemon = lab
    with closing(host_client(daemon)) as client:
        net = {"nic": NIC, "bootproto": "dhcp", "defaultRoute": True, "blockingdhcp": True}
        answer = client.setup({"ovirtmgmt": net})
        assert answer.get("result") == {"code": 0, "message": "Done"}, answer
        caps = client.result("Host.getNetworkCapabilities")["networks"]["ovirtmgmt"]
        assert caps["dhcpv4"] is True
        assert caps["addr"].startswith("10.77.0.1") and caps["netmask"] == "255.255.255.0"
        assert caps["gateway"] == ENGINE_ADDR and caps["ipv4defaultroute"] is True
        assert len(udhcpc_pids("ovirtmgmt")) == 1
        saved = (daemon.state_dir / "staging" / "netconf" / "nets" / "ovirtmgmt").read_text()
        assert '"bootproto": "dhcp"' in saved and "blockingdhcp" not in saved

        assert client.setup({"ovirtmgmt": {"remove": True}})["result"]["code"] == 0
        deadline = time.monotonic() + 5
        while udhcpc_pids("ovirtmgmt") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert udhcpc_pids("ovirtmgmt") == []
        assert "ovirtmgmt" not in kernel_view(host)["links"]

        assert client.setup({"ovirtmgmt": net})["result"]["code"] == 0
        assert len(udhcpc_pids("ovirtmgmt")) == 1
    # The clients are the daemon's children: they end with it, and come back with it.
    daemon.stop()
    assert udhcpc_pids("ovirtmgmt") == []
    daemon.start()
    deadline = time.monotonic() + 10
    while not udhcpc_pids("ovirtmgmt"):
        assert time.monotonic() < deadline, "the DHCP client was not started again"
        time.sleep(0.05)


def test_dhcp_network_without_default_route_gets_source_routing(lab) -> None:
    """As upstream: the lease's subnet and router go in the network's own table, with
    the rules to it; the network's removal takes them away."""
    host, daemon = lab
    table = str(zlib.adler32(b"dhcpnet"))
    with closing(host_client(daemon)) as client:
        net = {"nic": NIC, "bootproto": "dhcp", "blockingdhcp": True}
        answer = client.setup({"dhcpnet": net})
        assert answer.get("result") == {"code": 0, "message": "Done"}, answer
        deadline = time.monotonic() + 10
        while len(kernel_view(host)["rules"]) < 5:  # local, 2 of ours, main, default
            assert time.monotonic() < deadline, kernel_view(host)
            time.sleep(0.05)
        view = kernel_view(host)
        assert f"3200: from 10.77.0.0/24 to all lookup {table}" in view["rules"]
        assert f"3200: from all to 10.77.0.0/24 lookup {table}" in view["rules"]
        assert f"default via {ENGINE_ADDR} dev dhcpnet table {table}" in view["tables"]
        assert f"10.77.0.0/24 via - dev dhcpnet table {table}" in view["tables"]
        assert not any(r.startswith("default") for r in view["routes"])
        caps = client.result("Host.getNetworkCapabilities")["networks"]["dhcpnet"]
        assert caps["gateway"] == ENGINE_ADDR and caps["ipv4defaultroute"] is False

        assert client.setup({"dhcpnet": {"remove": True}})["result"]["code"] == 0
        view = kernel_view(host)
        assert not any(table in r for r in view["rules"]), view["rules"]
        assert view["tables"] == []

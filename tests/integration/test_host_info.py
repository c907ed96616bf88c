"""Host information against the real host: /proc, /sys, netlink, libvirt, namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from vdsm.errors import CannotRetrieveHWInfo
from vdsm.events import EventBus, Notification
from vdsm.host.capabilities import HostInfo
from vdsm.host.hardware import read_hardware_info
from vdsm.host.packages import PackageVersions
from vdsm.network.monitor import NetworkChangeMonitor
from vdsm.network.report import NetworkReport
from vdsm.system.libvirt import Libvirt, LibvirtCallError, LibvirtUnavailable
from vdsm.system.netlink import Netlink
from vdsm.system.procfs import parse_cpu_list

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE_URI = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"

STRING_KEYS = (
    "kvmEnabled",
    "cpuCores",
    "cpuThreads",
    "cpuSockets",
    "onlineCpus",
    "cpuSpeed",
    "cpuModel",
    "cpuFlags",
    "memSize",
    "reservedMem",
    "guestOverhead",
    "uuid",
    "kernelArgs",
    "ISCSIInitiatorName",
    "software_version",
    "software_revision",
    "version_name",
    "hostdevPassthrough",
    "liveSnapshot",
    "liveMerge",
    "netConfigDirty",
    "lastClientIface",
    "tscFrequency",
)
LIST_KEYS = (
    "emulatedMachines",
    "vmTypes",
    "rngSources",
    "supportedENGINEs",
    "clusterLevels",
    "cpuTopology",
    "domain_versions",
    "nameservers",
    "hugepages",
    "additionalFeatures",
    "vdsmToCpusAffinity",
)
DICT_KEYS = (
    "numaNodes",
    "numaNodeDistance",
    "packages2",
    "operatingSystem",
    "selinux",
    "HBAInventory",
    "hooks",
    "networks",
    "bridges",
    "nics",
    "bondings",
    "vlans",
    "supported_block_size",
    "kernelFeatures",
)
BOOL_KEYS = (
    "supportsIPv6",
    "fipsEnabled",
    "backupEnabled",
    "realtimeKernel",
    "nestedVirtualization",
    "hostedEngineDeployed",
    "vncEncrypted",
    "tscScaling",
)
INT_KEYS = ("kdumpStatus", "autoNumaBalancing")


def meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        values[key] = int(rest.split()[0])
    return values


def host_info(tmp_path: Path, uri: str = "test:///default", **kw) -> HostInfo:
    return HostInfo(
        libvirt=Libvirt(uri, 20.0),
        hooks_dir=tmp_path / "hooks",
        host_id_file=tmp_path / "vdsm.id",
        network=NetworkReport(Netlink()),
        run_dir=tmp_path / "run",
        **kw,
    )


# -- getCapabilities -------------------------------------------------------------------


def test_capabilities_of_the_real_host(tmp_path):
    hook = tmp_path / "hooks" / "before_vm_start" / "50_test"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    info = host_info(tmp_path)

    async def run():
        try:
            return await info.capabilities("127.0.0.1:54321"), await info.capabilities()
        finally:
            await info.libvirt.close()

    caps, again = asyncio.run(run())

    for key in STRING_KEYS:
        assert isinstance(caps[key], str), key
    for key in LIST_KEYS:
        assert isinstance(caps[key], list), key
    for key in DICT_KEYS:
        assert isinstance(caps[key], dict), key
    for key in BOOL_KEYS:
        assert isinstance(caps[key], bool), key
    for key in INT_KEYS:
        assert isinstance(caps[key], int), key

    assert caps["cpuThreads"] == str(os.cpu_count())
    assert caps["onlineCpus"].split(",") == [str(c["cpu_id"]) for c in caps["cpuTopology"]]
    assert 1 <= int(caps["cpuSockets"]) <= int(caps["cpuCores"]) <= int(caps["cpuThreads"])
    assert caps["memSize"] == str(meminfo()["MemTotal"] // 1024)
    assert caps["kvmEnabled"] == ("true" if os.path.exists("/dev/kvm") else "false")
    assert sum(len(n["cpus"]) for n in caps["numaNodes"].values()) >= os.cpu_count()
    assert caps["vdsmToCpusAffinity"] == sorted(os.sched_getaffinity(0))
    assert caps["kernelArgs"] == Path("/proc/cmdline").read_text().strip()
    assert "random" in caps["rngSources"]
    assert caps["packages2"]["kernel"]["version"] == os.uname().release.split("-")[0]
    assert caps["selinux"]["mode"] in ("-1", "0", "1")
    assert caps["software_version"] == "4.50.0"
    assert caps["clusterLevels"][:5] == ["4.2", "4.3", "4.4", "4.5", "4.6"]
    digest = hashlib.sha256(b"#!/bin/sh\nexit 0\n").hexdigest()
    assert caps["hooks"] == {"before_vm_start": {"50_test": {"checksum": digest}}}

    # The network part agrees with the kernel.
    real_links = set(os.listdir("/sys/class/net"))
    assert "lo" not in caps["nics"]
    for section in ("nics", "bondings", "bridges", "vlans"):
        assert set(caps[section]) <= real_links
        for name, dev in caps[section].items():
            assert isinstance(dev["mtu"], str), name
            assert dev["mtu"] == Path(f"/sys/class/net/{name}/mtu").read_text().strip()
    for name in real_links:
        if Path(f"/sys/class/net/{name}/device").exists() and not name.startswith(("w", "usb")):
            assert name in caps["nics"], name
    assert caps["lastClientIface"] == "lo"
    assert again["lastClientIface"] == ""
    assert caps["netConfigDirty"] == "False"

    # The host id is resolved once and persisted when generated.
    assert again["uuid"] == caps["uuid"]
    if not Path("/sys/class/dmi/id/product_uuid").exists():
        assert (tmp_path / "vdsm.id").read_text().strip() == caps["uuid"]
        uuid.UUID(caps["uuid"])


def test_capabilities_without_libvirt(tmp_path):
    info = host_info(tmp_path, UNREACHABLE_URI)

    async def run():
        start = time.monotonic()
        caps = await info.capabilities()
        return caps, time.monotonic() - start

    caps, elapsed = asyncio.run(run())
    assert elapsed < 10
    assert caps["emulatedMachines"] == []
    assert "model_" not in caps["cpuFlags"]
    assert caps["cpuFlags"]  # the kernel's flags are still there
    assert caps["clusterLevels"][:5] == ["4.2", "4.3", "4.4", "4.5", "4.6"]
    assert "tscFrequency" not in caps
    assert caps["memSize"] == str(meminfo()["MemTotal"] // 1024)


def test_capabilities_with_libvirtd(tmp_path, libvirt_uri):
    info = host_info(tmp_path, libvirt_uri)

    async def run():
        try:
            versions = await info.libvirt.versions()
            caps = await info.capabilities()
            start = time.monotonic()
            await info.capabilities()
            return versions, caps, time.monotonic() - start
        finally:
            await info.libvirt.close()

    versions, caps, warm = asyncio.run(run())
    assert versions.driver == "QEMU" and versions.hypervisor is not None
    assert versions.library >= (8, 0, 0)
    assert "4.7" in caps["clusterLevels"]
    assert caps["emulatedMachines"]
    assert any(m.startswith("pc-") or m.startswith("virt") for m in caps["emulatedMachines"])
    assert ",model_" in caps["cpuFlags"]
    assert caps["tscFrequency"] == "" or caps["tscFrequency"].isdigit()
    assert warm < 2.0


# -- getStats --------------------------------------------------------------------------


def test_stats_after_two_samples(tmp_path):
    started = time.monotonic()
    info = host_info(tmp_path, uptime=lambda: time.monotonic() - started)

    async def run():
        early = await info.stats()  # no sample yet: averages since boot
        sampler = asyncio.create_task(info.sample_forever(0.2))
        await asyncio.sleep(0.7)
        stats = await info.stats()
        sampler.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sampler
        return early, stats

    early, stats = asyncio.run(run())
    for result in (early, stats):
        user, system, idle = (float(result[k]) for k in ("cpuUser", "cpuSys", "cpuIdle"))
        for value in (user, system, idle):
            assert 0.0 <= value <= 100.0
        assert abs(user + system + idle - 100.0) <= 0.02
        online = parse_cpu_list(Path("/sys/devices/system/cpu/online").read_text())
        assert set(result["cpuStatistics"]) == {str(c) for c in online}
        for cpu in result["cpuStatistics"].values():
            total = float(cpu["cpuUser"]) + float(cpu["cpuSys"]) + float(cpu["cpuIdle"])
            assert abs(total - 100.0) <= 0.02
            assert isinstance(cpu["nodeIndex"], int)

    mem = meminfo()
    assert 0 < stats["memFree"] <= mem["MemTotal"] // 1024
    assert 0 <= int(stats["memUsed"]) <= 100
    assert stats["swapTotal"] == mem["SwapTotal"] // 1024
    assert isinstance(stats["memShared"], int) and isinstance(stats["ksmState"], bool)
    btime = next(
        line.split()[1]
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime")
    )
    assert stats["bootTime"] == btime
    assert 0.0 < float(stats["elapsedTime"]) < 60
    assert stats["cpuLoad"] == Path("/proc/loadavg").read_text().split()[1]
    assert "lo" in stats["network"]
    lo = stats["network"]["lo"]
    assert int(lo["rx"]) >= 0 and lo["state"] == "up" and isinstance(lo["sampleTime"], float)
    assert set(stats["diskStats"]) == {"/tmp", "/var/log", f"{tmp_path / 'run'}/"}
    assert stats["diskStats"]["/tmp"]["free"].isdigit()
    assert stats["vmCount"] == 0 and stats["storageDomains"] == {}
    assert stats["haStats"]["configured"] is False and "haScore" not in stats
    assert stats["momStatus"] == "inactive"
    assert stats["thpState"] in ("always", "madvise", "never")
    assert time.strftime("%Y-%m-%dT", time.gmtime()) in stats["dateTime"]
    assert stats["dateTime"].endswith(" GMT")
    assert set(stats["numaNodeMemFree"]) == set(early["numaNodeMemFree"])


def test_stats_are_pluggable(tmp_path):
    from vdsm.host.capabilities import VmCounts

    info = host_info(
        tmp_path,
        vm_counts=lambda: VmCounts(total=3, active=1, incoming=1, outgoing=1),
        storage_domains=lambda: {"sd": {"code": 0}},
        net_config_dirty=lambda: True,
    )
    stats = asyncio.run(info.stats())
    assert (stats["vmCount"], stats["vmActive"], stats["vmMigrating"]) == (3, 1, 2)
    assert (stats["incomingVmMigrations"], stats["outgoingVmMigrations"]) == (1, 1)
    assert stats["storageDomains"] == {"sd": {"code": 0}}
    assert stats["netConfigDirty"] == "True"


# -- getHardwareInfo, packages ---------------------------------------------------------


def test_hardware_info_of_the_real_host(tmp_path):
    dmi = Path("/sys/class/dmi/id")
    if not dmi.is_dir():
        with pytest.raises(CannotRetrieveHWInfo) as err:
            asyncio.run(host_info(tmp_path).hardware_info())
        assert err.value.code == 57
        return
    info = read_hardware_info(dmi)
    assert set(info) <= {
        "systemManufacturer",
        "systemProductName",
        "systemVersion",
        "systemSerialNumber",
        "systemUUID",
        "systemFamily",
    }
    if "systemManufacturer" in info:
        assert info["systemManufacturer"] == (dmi / "sys_vendor").read_text().strip()


def test_package_query_is_cached():
    async def run():
        versions = PackageVersions(timeout=30)
        first = await versions.get()
        first["kernel"]["version"] = "changed by the caller"
        return first, await versions.get()

    first, second = asyncio.run(run())
    assert second["kernel"]["version"] != "changed by the caller"
    assert set(first) == set(second)
    if Path("/usr/bin/dpkg-query").exists():
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "lvm2"], capture_output=True, text=True
        )
        if out.returncode == 0 and out.stdout:
            assert out.stdout.split(":")[-1].startswith(second["lvm2"]["version"])


# -- libvirt adapter -------------------------------------------------------------------


def test_libvirt_test_driver():
    async def run():
        lv = Libvirt("test:///default", 10.0)
        caps = await lv.capabilities_xml()
        versions = await lv.versions()
        with pytest.raises(LibvirtCallError):
            await lv.domain_capabilities_xml()
        await lv.close()
        assert not lv.connected
        again = await lv.capabilities_xml()  # reconnects on demand
        await lv.close()
        return caps, versions, again

    caps, versions, again = asyncio.run(run())
    assert caps.lstrip().startswith("<capabilities>") and again == caps
    assert versions.driver == "TEST" and versions.library >= (5, 0, 0)
    assert versions.hypervisor is None


def test_libvirt_unreachable():
    async def run():
        lv = Libvirt(UNREACHABLE_URI, 10.0)
        with pytest.raises(LibvirtUnavailable) as err:
            await lv.connect()
        with pytest.raises(LibvirtUnavailable):
            await lv.capabilities_xml()
        return err.value

    error = asyncio.run(run())
    assert error.uri == UNREACHABLE_URI and "cannot connect" in str(error)


def test_libvirt_domain_capabilities(libvirt_uri):
    async def run():
        lv = Libvirt(libvirt_uri, 60.0)
        try:
            return await lv.domain_capabilities_xml(os.uname().machine)
        finally:
            await lv.close()

    xml = asyncio.run(run())
    assert "<domainCapabilities>" in xml and "<mode name='custom'" in xml


# -- netlink ---------------------------------------------------------------------------

SNAPSHOT_IN_NETNS = """
import asyncio, json, sys
sys.path.insert(0, {repo!r})
from vdsm.system import netlink
from vdsm.network.report import NetworkReport
snap = netlink.dump(10)
report = asyncio.run(NetworkReport(netlink.Netlink()).report())
print(json.dumps({{
    "links": {{l.name: {{"index": l.index, "kind": l.kind, "mtu": l.mtu, "mac": l.mac,
                        "up": l.is_running, "parent": l.parent, "speed": l.speed}}
              for l in snap.links}},
    "addresses": sorted(a.cidr for a in snap.addresses if a.family == 4),
    "defaults": [(r.gateway, r.oif) for r in snap.routes if r.is_default],
    "report": report,
}}))
"""


def test_netlink_snapshot_in_a_fresh_namespace(netns_factory):
    ns = netns_factory(veth=("veth_a", "veth_b"))
    ns.ip("addr", "add", "10.77.0.2/24", "dev", "veth_a")
    ns.ip("link", "set", "veth_a", "mtu", "1400")
    ns.ip("route", "add", "default", "via", "10.77.0.1")
    out = ns.run(sys.executable, "-c", SNAPSHOT_IN_NETNS.format(repo=str(REPO))).stdout
    seen = json.loads(out)
    kernel = {link["ifname"]: link for link in json.loads(ns.ip("-j", "-d", "link", "show"))}

    links = seen["links"]
    assert set(links) == set(kernel) == {"lo", "veth_a", "veth_b"}
    for name, link in links.items():
        assert link["index"] == kernel[name]["ifindex"]
        assert link["mtu"] == kernel[name]["mtu"]
        assert link["mac"] == kernel[name]["address"]
    assert links["veth_a"]["kind"] == "veth" and links["lo"]["kind"] is None
    assert links["veth_a"]["parent"] == links["veth_b"]["index"]
    assert links["veth_a"]["up"] and links["veth_a"]["speed"] == 10000
    assert seen["addresses"] == ["10.77.0.2/24", "127.0.0.1/8"]
    assert seen["defaults"] == [["10.77.0.1", links["veth_a"]["index"]]]

    report = seen["report"]
    assert set(report["nics"]) == {"veth_a", "veth_b"}  # fake_nics pattern veth_*
    nic = report["nics"]["veth_a"]
    assert nic["ipv4addrs"] == ["10.77.0.2/24"] and nic["addr"] == "10.77.0.2"
    assert nic["netmask"] == "255.255.255.0" and nic["gateway"] == "10.77.0.1"
    assert nic["ipv4defaultroute"] is True and nic["mtu"] == "1400"
    assert nic["hwaddr"] == kernel["veth_a"]["address"] and nic["speed"] == 10000
    assert report["nics"]["veth_b"]["gateway"] == ""


def test_netlink_snapshot_timing():
    start = time.monotonic()
    snapshot = asyncio.run(Netlink(timeout=5).snapshot())
    assert time.monotonic() - start < 5
    assert "lo" in snapshot.link_by_name()


class Collector:
    def __init__(self) -> None:
        self.events: list[Notification] = []

    def __call__(self, notification: Notification) -> bool:
        self.events.append(notification)
        return True


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)


async def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def test_monitor_publishes_once_per_burst(require_veth_cleanup):
    name = require_veth_cleanup("veth_" + uuid.uuid4().hex[:8])

    async def run():
        bus = EventBus()
        bus.enabled = True
        collector = Collector()
        bus.subscribe(collector)
        netlink = Netlink()
        report = NetworkReport(netlink)
        monitor = NetworkChangeMonitor(bus, netlink, report, debounce=0.3)
        task = asyncio.create_task(monitor.run())
        try:
            await asyncio.wait_for(monitor.ready.wait(), 5)
            before = await report.report()
            assert name not in before["nics"]
            # A burst: three changes spread over ~0.2 s, inside one debounce window,
            # made from a thread so the monitor sees them as they happen.
            await asyncio.to_thread(
                _ip, "link", "add", name, "type", "veth", "peer", "name", name + "p"
            )
            await asyncio.sleep(0.05)
            await asyncio.to_thread(_ip, "link", "set", name, "up")
            await asyncio.sleep(0.05)
            await asyncio.to_thread(_ip, "addr", "add", "10.78.0.1/24", "dev", name)
            assert await _wait_for(lambda: collector.events, 5)
            await asyncio.sleep(1.0)  # the rest of the burst must not publish again
            after = await report.report()
            return collector.events, after
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    events, after = asyncio.run(run())
    assert len(events) == 1
    assert events[0].method == "|net|host_conn|no_id"
    assert set(events[0].params) == {"notify_time"}
    assert after["nics"][name]["ipv4addrs"] == ["10.78.0.1/24"]  # cache was invalidated


def test_monitor_can_ignore_changes_the_report_does_not_show(require_veth_cleanup):
    hidden = require_veth_cleanup("vq" + uuid.uuid4().hex[:8])
    shown = require_veth_cleanup("veth_" + uuid.uuid4().hex[:8])

    async def run():
        bus = EventBus()
        bus.enabled = True
        collector = Collector()
        bus.subscribe(collector)
        netlink = Netlink()
        monitor = NetworkChangeMonitor(
            bus, netlink, NetworkReport(netlink), debounce=0.2, only_report_changes=True
        )
        task = asyncio.create_task(monitor.run())
        try:
            await asyncio.wait_for(monitor.ready.wait(), 5)
            await asyncio.sleep(0.3)  # let the baseline report be taken
            await asyncio.to_thread(
                _ip, "link", "add", hidden, "type", "veth", "peer", "name", hidden + "p"
            )
            await asyncio.sleep(1.0)
            quiet = list(collector.events)
            await asyncio.to_thread(
                _ip, "link", "add", shown, "type", "veth", "peer", "name", shown + "p"
            )
            assert await _wait_for(lambda: collector.events, 5)
            return quiet, collector.events
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    quiet, events = asyncio.run(run())
    assert quiet == []
    assert [e.method for e in events] == ["|net|host_conn|no_id"]


@pytest.fixture
def require_veth_cleanup():
    if os.geteuid() != 0:
        pytest.skip("not root")
    names: list[str] = []

    def track(name: str) -> str:
        names.append(name)
        return name

    yield track
    for name in names:
        subprocess.run(["ip", "link", "del", name], timeout=10, capture_output=True, check=False)


def test_libvirt_that_never_answers_times_out(tmp_path):
    # A socket that accepts and then stays silent: libvirt.open blocks in the
    # handshake, the adapter gives up after its timeout and the event loop carries on.
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    async def run():
        lv = Libvirt(f"qemu+unix:///system?socket={path}", 0.5)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.05)

        task = asyncio.create_task(ticker())
        start = time.monotonic()
        with pytest.raises(LibvirtUnavailable, match="timed out"):
            await lv.connect()
        elapsed = time.monotonic() - start
        task.cancel()
        return elapsed, ticks

    try:
        elapsed, ticks = asyncio.run(run())
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        for conn in accepted:
            conn.close()
    assert 0.4 < elapsed < 3
    assert ticks >= 5  # the loop was not blocked meanwhile


REPORT_IN_NETNS = """
import asyncio, json, sys
sys.path.insert(0, {repo!r})
from vdsm.network.report import NetworkReport
from vdsm.system.netlink import Netlink
print(json.dumps(asyncio.run(NetworkReport(Netlink()).report())))
"""


@pytest.mark.lab
@pytest.mark.parametrize(("mode", "number"), [("active-backup", "1"), ("802.3ad", "4")])
def test_report_of_a_bond_vlan_and_bridge(netns_factory, mode, number):
    # Bonds, VLANs and dummies need kernel modules: this runs in the kernel lab.
    subprocess.run(["modprobe", "-a", "bonding", "dummy", "8021q", "bridge"], check=True)
    ns = netns_factory(veth=None)
    for dummy in ("dummy_0", "dummy_1"):
        ns.ip("link", "add", dummy, "type", "dummy")
    ns.ip("link", "add", "bond0", "type", "bond", "mode", mode, "miimon", "200")
    for dummy in ("dummy_0", "dummy_1"):
        ns.ip("link", "set", dummy, "master", "bond0")
    ns.ip("link", "set", "bond0", "up")
    ns.ip("link", "add", "link", "bond0", "name", "bond0.100", "type", "vlan", "id", "100")
    ns.ip("link", "add", "br100", "type", "bridge", "stp_state", "1")
    ns.ip("link", "set", "bond0.100", "master", "br100")
    ns.ip("link", "set", "bond0.100", "up")
    ns.ip("link", "set", "br100", "up")
    ns.ip("addr", "add", "10.79.0.2/24", "dev", "br100")
    ns.ip("route", "add", "default", "via", "10.79.0.1", "dev", "br100")

    report = json.loads(ns.run(sys.executable, "-c", REPORT_IN_NETNS.format(repo=str(REPO))).stdout)
    kernel = ns.links()
    bonding = ns.run("cat", "/proc/net/bonding/bond0").stdout

    bond = report["bondings"]["bond0"]
    assert bond["slaves"] == ["dummy_0", "dummy_1"]
    assert bond["opts"] == {"mode": number, "miimon": "200"}
    assert bond["hwaddr"] == kernel["bond0"]["address"] and bond["mtu"] == "1500"
    assert bond["switch"] == "legacy"
    if mode == "active-backup":
        assert bond["active_slave"] in ("dummy_0", "dummy_1")
        assert f"Currently Active Slave: {bond['active_slave']}" in bonding
    else:
        assert bond["active_slave"] == ""
        assert "Aggregator ID: " + bond["ad_aggregator_id"] in bonding

    for dummy in ("dummy_0", "dummy_1"):
        nic = report["nics"][dummy]
        assert f"Permanent HW addr: {nic['permhwaddr']}" in bonding
        assert nic["hwaddr"] == kernel[dummy]["address"]

    vlan = report["vlans"]["bond0.100"]
    assert (vlan["iface"], vlan["vlanid"], vlan["mtu"]) == ("bond0", 100, "1500")

    bridge = report["bridges"]["br100"]
    assert bridge["ports"] == ["bond0.100"] and bridge["stp"] == "on"
    assert bridge["opts"]["stp_state"] == "1"
    assert bridge["ipv4addrs"] == ["10.79.0.2/24"] and bridge["gateway"] == "10.79.0.1"
    assert bridge["ipv4defaultroute"] is True

from pathlib import Path

from vdsm.host import cpu, numa

X86_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
cpu MHz\t\t: 2100.000
flags\t\t: fpu vme sse2 vmx

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
cpu MHz\t\t: 1200.000
flags\t\t: fpu
"""

AARCH64_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


def test_cpuinfo_first_processor_x86():
    info = cpu.parse_cpuinfo(X86_CPUINFO)
    assert info.model == "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz"
    assert info.speed == "2100.000"
    assert info.flags == ["fpu", "vme", "sse2", "vmx"]


def test_cpuinfo_aarch64_keys():
    info = cpu.parse_cpuinfo(AARCH64_CPUINFO)
    assert (info.model, info.speed, info.flags) == ("0xd0c", "50.00", ["fp", "asimd", "evtstrm"])


def test_cpuinfo_missing_fields():
    assert cpu.parse_cpuinfo("") == cpu.CpuInfo("unavailable", "unavailable", [])


def make_cpu(root: Path, cpu_id: int, socket: int, core: int, siblings: str, die: int = 0) -> None:
    topo = root / f"cpu{cpu_id}" / "topology"
    topo.mkdir(parents=True)
    (topo / "physical_package_id").write_text(f"{socket}\n")
    (topo / "core_id").write_text(f"{core}\n")
    (topo / "die_id").write_text(f"{die}\n")
    (topo / "thread_siblings_list").write_text(f"{siblings}\n")


def fake_two_socket_host(root: Path) -> Path:
    """2 sockets x 2 cores x 2 threads; cpu 7 offline."""
    sys_cpu = root / "cpu"
    layout = {  # cpu: (socket, core, siblings)
        0: (0, 0, "0,4"),
        4: (0, 0, "0,4"),
        1: (0, 1, "1,5"),
        5: (0, 1, "1,5"),
        2: (1, 0, "2,6"),
        6: (1, 0, "2,6"),
        3: (1, 1, "3,7"),
        7: (1, 1, "3,7"),
    }
    for cpu_id, (socket, core, siblings) in layout.items():
        make_cpu(sys_cpu, cpu_id, socket, core, siblings)
    (sys_cpu / "online").write_text("0-6\n")
    return sys_cpu


def test_topology_counts_sockets_cores_threads(tmp_path):
    sys_cpu = fake_two_socket_host(tmp_path)
    topology = cpu.read_topology(sys_cpu, cpu_to_node={0: 0, 1: 0, 4: 0, 5: 0, 2: 1, 3: 1, 6: 1})
    assert topology.online == [0, 1, 2, 3, 4, 5, 6]
    assert topology.sockets == 2
    assert topology.cores == 4
    assert topology.threads == 7
    by_id = {c.cpu_id: c for c in topology.cpus}
    assert by_id[6].socket_id == 1 and by_id[6].core_id == 0 and by_id[6].numa_cell_id == 1
    assert by_id[4].numa_cell_id == 0


def test_topology_negative_die_is_zero(tmp_path):
    make_cpu(tmp_path, 0, 0, 0, "0", die=-1)
    (tmp_path / "online").write_text("0\n")
    assert cpu.read_topology(tmp_path).cpus[0].die_id == 0


def make_node(
    root: Path,
    node_id: int,
    cpulist: str,
    total: int,
    free: int,
    distance: str,
    huge: dict[int, tuple[int, int]],
) -> None:
    node = root / f"node{node_id}"
    node.mkdir(parents=True)
    (node / "cpulist").write_text(cpulist + "\n")
    (node / "distance").write_text(distance + "\n")
    (node / "meminfo").write_text(
        f"Node {node_id} MemTotal: {total} kB\nNode {node_id} MemFree: {free} kB\n"
    )
    for size, (nr, nfree) in huge.items():
        pool = node / "hugepages" / f"hugepages-{size}kB"
        pool.mkdir(parents=True)
        (pool / "nr_hugepages").write_text(f"{nr}\n")
        (pool / "free_hugepages").write_text(f"{nfree}\n")


def test_two_nodes(tmp_path):
    sys_node = tmp_path / "node"
    make_node(sys_node, 0, "0-1,4-5", 8 * 1024 * 1024, 2 * 1024 * 1024, "10 21", {2048: (512, 100)})
    make_node(sys_node, 1, "2-3,6-7", 4 * 1024 * 1024, 1024 * 1024, "21 10", {2048: (0, 0)})
    (sys_node / "node1x").mkdir()  # not a node directory
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 12582912 kB\nMemFree: 3145728 kB\n")
    nodes = numa.read_nodes(sys_node, tmp_path / "cpu", meminfo)
    assert [n.node_id for n in nodes] == [0, 1]
    assert numa.cpu_to_node(nodes) == {0: 0, 1: 0, 4: 0, 5: 0, 2: 1, 3: 1, 6: 1, 7: 1}

    caps = numa.caps_numa_nodes(nodes)
    assert caps["0"]["cpus"] == [0, 1, 4, 5]
    assert caps["0"]["totalMemory"] == "8192"
    page = numa.PAGE_KIB
    hugepages = caps["0"]["hugepages"]
    assert hugepages[2048] == {"totalPages": "512"}
    # Base pages: the cell's memory not held by the 1 GiB of 2 MiB pages.
    assert hugepages[page] == {"totalPages": str((8 * 1024 * 1024 - 512 * 2048) // page)}
    assert numa.caps_distances(nodes) == {"0": [10, 21], "1": [21, 10]}

    stats = numa.stats_memory(nodes)
    assert stats["0"]["memFree"] == "2048"
    assert stats["0"]["memPercent"] == 75
    assert stats["0"]["hugepages"][2048] == {"freePages": 100}
    assert stats["1"]["memPercent"] == 75


def test_single_node_reports_host_memory(tmp_path):
    sys_node = tmp_path / "node"
    make_node(sys_node, 0, "0-1", 1000, 500, "10", {})
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 4194304 kB\nMemFree: 1048576 kB\n")
    (node,) = numa.read_nodes(sys_node, tmp_path / "cpu", meminfo)
    assert (node.total_kib, node.free_kib) == (4194304, 1048576)
    assert node.cpus == [0, 1]


def test_no_numa_in_kernel(tmp_path):
    sys_cpu = tmp_path / "cpu"
    sys_cpu.mkdir()
    (sys_cpu / "online").write_text("0-3\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 2097152 kB\nMemFree: 1048576 kB\n")
    (node,) = numa.read_nodes(tmp_path / "nonode", sys_cpu, meminfo, tmp_path / "nohuge")
    assert node.node_id == 0 and node.cpus == [0, 1, 2, 3] and node.distances == [10]
    assert numa.caps_numa_nodes([node])["0"]["totalMemory"] == "2048"


def test_autonuma(tmp_path):
    path = tmp_path / "numa_balancing"
    assert numa.autonuma_status(path) == numa.AUTONUMA_UNKNOWN
    path.write_text("0\n")
    assert numa.autonuma_status(path) == numa.AUTONUMA_DISABLED
    path.write_text("1\n")
    assert numa.autonuma_status(path) == numa.AUTONUMA_ENABLED

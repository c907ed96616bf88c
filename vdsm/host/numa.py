"""NUMA cells from sysfs: CPUs, memory, page pools and distances.

getCapabilities' `numaNodes` lists for each cell its CPUs, its memory in MiB (string)
and its page pools by page size in KiB, the base page size included (as libvirt
reports them); getStats' `numaNodeMemFree` gives free memory per cell.  A kernel
without NUMA has no node directory: the whole host is then cell 0.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from vdsm.system.procfs import parse_cpu_list, parse_meminfo, read_int, read_text

log = logging.getLogger("vdsm.host.numa")

SYS_NODE = Path("/sys/devices/system/node")
SYS_CPU = Path("/sys/devices/system/cpu")
PROC_MEMINFO = Path("/proc/meminfo")
NUMA_BALANCING = Path("/proc/sys/kernel/numa_balancing")

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

AUTONUMA_DISABLED = 0
AUTONUMA_ENABLED = 1
AUTONUMA_UNKNOWN = 2


@dataclass(frozen=True)
class HugePool:
    total: int
    free: int


@dataclass(frozen=True)
class Node:
    node_id: int
    cpus: list[int]
    total_kib: int
    free_kib: int
    distances: list[int]
    # page size in KiB -> pool, hugepages and the base page size
    pages: dict[int, HugePool] = field(default_factory=dict)


def _hugepage_pools(directory: Path) -> dict[int, HugePool]:
    pools: dict[int, HugePool] = {}
    try:
        entries = list(directory.iterdir())
    except OSError:
        return pools
    for entry in entries:
        # hugepages-2048kB
        size = entry.name.removeprefix("hugepages-").removesuffix("kB")
        if not size.isdigit():
            continue
        pools[int(size)] = HugePool(
            total=read_int(entry / "nr_hugepages", 0),
            free=read_int(entry / "free_hugepages", 0),
        )
    return pools


def _with_base_pages(
    pools: dict[int, HugePool], total_kib: int, free_kib: int
) -> dict[int, HugePool]:
    # Like libvirt: base pages are the cell's memory not held by hugepage pools.
    huge_kib = sum(size * pool.total for size, pool in pools.items())
    pages = {PAGE_KIB: HugePool(max(total_kib - huge_kib, 0) // PAGE_KIB, free_kib // PAGE_KIB)}
    pages.update(sorted(pools.items()))
    return pages


def read_nodes(
    sys_node: Path = SYS_NODE,
    sys_cpu: Path = SYS_CPU,
    meminfo: Path = PROC_MEMINFO,
    hugepages: Path = Path("/sys/kernel/mm/hugepages"),
) -> list[Node]:
    node_dirs = sorted(
        (p for p in sys_node.glob("node[0-9]*") if p.name[4:].isdigit()),
        key=lambda p: int(p.name[4:]),
    )
    nodes = []
    for directory in node_dirs:
        node_id = int(directory.name[4:])
        info = parse_meminfo(read_text(directory / "meminfo", ""))
        total, free = info.get("MemTotal", 0), info.get("MemFree", 0)
        cpus = parse_cpu_list(read_text(directory / "cpulist", ""))
        # Memory-only cells (CXL, PMEM) have no CPUs; libvirt still reports them.
        distances = [int(d) for d in read_text(directory / "distance", "").split()]
        pools = _hugepage_pools(directory / "hugepages")
        pages = _with_base_pages(pools, total, free)
        nodes.append(Node(node_id, cpus, total, free, distances, pages))
    info = parse_meminfo(read_text(meminfo))
    if len(nodes) == 1:
        # Like upstream (which asks libvirt for cell -1 then): a single cell reports
        # the host's memory, which can exceed what the node's meminfo shows (memory
        # not yet onlined to the node, e.g. lazily initialised guest memory).
        node = nodes[0]
        total, free = info.get("MemTotal", node.total_kib), info.get("MemFree", node.free_kib)
        return [Node(node.node_id, node.cpus, total, free, node.distances, node.pages)]
    if nodes:
        return nodes
    # No NUMA support in the kernel: one cell with everything.
    total, free = info.get("MemTotal", 0), info.get("MemFree", 0)
    online = parse_cpu_list(read_text(sys_cpu / "online", "0"))
    pools = _hugepage_pools(hugepages)
    return [Node(0, online, total, free, [10], _with_base_pages(pools, total, free))]


def cpu_to_node(nodes: list[Node]) -> dict[int, int]:
    return {cpu: node.node_id for node in nodes for cpu in node.cpus}


def caps_numa_nodes(nodes: list[Node]) -> dict[str, dict[str, object]]:
    return {
        str(node.node_id): {
            "cpus": list(node.cpus),
            "totalMemory": str(node.total_kib // 1024),
            "hugepages": {
                size: {"totalPages": str(pool.total)} for size, pool in node.pages.items()
            },
        }
        for node in nodes
    }


def caps_distances(nodes: list[Node]) -> dict[str, list[int]]:
    return {str(node.node_id): list(node.distances) for node in nodes}


def stats_memory(nodes: list[Node]) -> dict[str, dict[str, object]]:
    """getStats' numaNodeMemFree: free MiB (string), used percent, free pages."""
    stats: dict[str, dict[str, object]] = {}
    for node in nodes:
        percent = 100
        if node.total_kib:
            percent = 100 - int(100.0 * node.free_kib // node.total_kib)
        stats[str(node.node_id)] = {
            "memFree": str(node.free_kib // 1024),
            "memPercent": percent,
            "hugepages": {size: {"freePages": pool.free} for size, pool in node.pages.items()},
        }
    return stats


def autonuma_status(path: Path = NUMA_BALANCING) -> int:
    text = read_text(path, "").strip()
    if text == "0":
        return AUTONUMA_DISABLED
    if text == "1":  # 2 and 3 are memory-tiering modes, reported unknown like upstream
        return AUTONUMA_ENABLED
    return AUTONUMA_UNKNOWN

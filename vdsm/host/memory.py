"""Host memory facts: /proc/meminfo, hugepage pools, KSM and transparent hugepages.

Units follow upstream's wire format: memSize (caps) is MiB as a string; getStats has
memFree, swapTotal, swapFree and memShared as integer MiB, memUsed as a percentage
string and anonHugePages as a MiB string.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm.system.procfs import parse_meminfo, read_int, read_text

log = logging.getLogger("vdsm.host.memory")

PROC_MEMINFO = Path("/proc/meminfo")
HUGEPAGES = Path("/sys/kernel/mm/hugepages")
KSM = Path("/sys/kernel/mm/ksm")
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# Upstream's [vars] defaults: host_mem_reserve + extra_mem_reserve, guest_ram_overhead.
RESERVED_MEM_MIB = 256 + 65
GUEST_OVERHEAD_MIB = 65

_HUGEPAGE_KEYS = (
    "free_hugepages",
    "nr_hugepages",
    "nr_hugepages_mempolicy",
    "nr_overcommit_hugepages",
    "resv_hugepages",
    "surplus_hugepages",
)


def read_meminfo(path: Path = PROC_MEMINFO) -> dict[str, int]:
    # /proc/meminfo has been seen empty on rare reads (upstream retries too).
    for _ in range(3):
        info = parse_meminfo(read_text(path))
        if "MemTotal" in info:
            return info
    raise OSError(f"{path} has no MemTotal")


def reclaimable_kib(info: dict[str, int]) -> int:
    """Memory a VM could get: free plus page cache, buffers and reclaimable slab."""
    return (
        info.get("MemFree", 0)
        + info.get("Cached", 0)
        + info.get("Buffers", 0)
        + info.get("SReclaimable", 0)
    )


@dataclass(frozen=True)
class MemoryStats:
    mem_free: int  # MiB
    mem_used: str  # percent
    swap_total: int  # MiB
    swap_free: int  # MiB
    anon_huge_pages: str  # MiB


def memory_stats(info: dict[str, int]) -> MemoryStats:
    total = info.get("MemTotal", 0)
    available = reclaimable_kib(info)
    used = 100 - int(100.0 * available / total) if total else 0
    return MemoryStats(
        mem_free=available // 1024,
        mem_used=str(used),
        swap_total=info.get("SwapTotal", 0) // 1024,
        swap_free=info.get("SwapFree", 0) // 1024,
        anon_huge_pages=str(info.get("AnonHugePages", 0) // 1024),
    )


def hugepage_sizes(path: Path = HUGEPAGES) -> list[int]:
    """Supported hugepage sizes in KiB (getCapabilities' `hugepages`)."""
    return sorted(hugepage_state(path))


def hugepage_state(path: Path = HUGEPAGES) -> dict[int, dict[str, int]]:
    """getStats' `hugepages`: counters of each pool by page size in KiB.

    `vm.free_hugepages` is what VMs may use: free pages minus those reserved for the
    host (upstream's [performance] reservation, off by default, so all free pages).
    """
    state: dict[int, dict[str, int]] = {}
    try:
        entries = sorted(path.iterdir())
    except OSError:
        return state
    for entry in entries:
        size = entry.name.removeprefix("hugepages-").removesuffix("kB")
        if not size.isdigit():
            continue
        pool = {key: read_int(entry / key, 0) for key in _HUGEPAGE_KEYS}
        pool["vm.free_hugepages"] = max(pool["free_hugepages"], 0)
        state[int(size)] = pool
    return state


@dataclass(frozen=True)
class KsmState:
    running: bool
    pages_to_scan: int
    merge_across_nodes: bool
    shared_mib: int


def read_ksm(path: Path = KSM) -> KsmState:
    return KsmState(
        running=read_int(path / "run", 0) == 1,
        pages_to_scan=read_int(path / "pages_to_scan", 0),
        merge_across_nodes=read_int(path / "merge_across_nodes", 1) == 1,
        shared_mib=read_int(path / "pages_sharing", 0) * PAGE_SIZE // (1024 * 1024),
    )


def thp_state(path: Path = THP_ENABLED) -> str:
    """The bracketed choice of "always [madvise] never"; "never" when unknown."""
    text = read_text(path, "")
    start, end = text.find("["), text.find("]")
    if start < 0 or end < start:
        return "never"
    return text[start + 1 : end]


def ksm_stats(ksm: KsmState, cpu_percent: int) -> dict[str, Any]:
    return {
        "ksmState": ksm.running,
        "ksmPages": ksm.pages_to_scan,
        "ksmMergeAcrossNodes": ksm.merge_across_nodes,
        "memShared": ksm.shared_mib,
        "ksmCpu": cpu_percent,
    }

"""CPU facts: /proc/cpuinfo (model, speed, flags) and the topology in sysfs.

Upstream takes the topology from libvirt's capabilities; sysfs is where libvirt reads
it from, so reading it directly gives the same answer without needing libvirt.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from vdsm.system.procfs import parse_cpu_list, read_text

log = logging.getLogger("vdsm.host.cpu")

PROC_CPUINFO = Path("/proc/cpuinfo")
SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class CpuInfo:
    model: str = "unavailable"
    speed: str = "unavailable"  # MHz, as the kernel prints it
    flags: list[str] = field(default_factory=list)


def parse_cpuinfo(text: str) -> CpuInfo:
    """The first processor's model, frequency and flags.

    Knows the x86 keys and the aarch64/s390/ppc64 ones upstream also reads.
    """
    model = speed = None
    flags: list[str] | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        value = value.strip()
        if key in ("flags", "Features", "features") and flags is None:
            flags = value.split()
        elif key in ("cpu MHz", "BogoMIPS", "cpu MHz dynamic") and speed is None:
            speed = value
        elif key == "clock" and speed is None:  # ppc64: "3425.000000MHz"
            speed = value.removesuffix("MHz")
        elif key in ("model name", "CPU part", "cpu") and model is None:
            model = value
        if model is not None and speed is not None and flags is not None:
            break
    return CpuInfo(model or "unavailable", speed or "unavailable", flags or [])


def read_cpuinfo(path: Path = PROC_CPUINFO) -> CpuInfo:
    return parse_cpuinfo(read_text(path))


@dataclass(frozen=True)
class Cpu:
    cpu_id: int
    numa_cell_id: int
    socket_id: int
    die_id: int
    core_id: int
    siblings: str  # thread_siblings_list: identifies the physical core


@dataclass(frozen=True)
class Topology:
    cpus: list[Cpu]

    @property
    def online(self) -> list[int]:
        return [cpu.cpu_id for cpu in self.cpus]

    @property
    def sockets(self) -> int:
        return len({cpu.socket_id for cpu in self.cpus})

    @property
    def cores(self) -> int:
        return len({(cpu.socket_id, cpu.siblings) for cpu in self.cpus})

    @property
    def threads(self) -> int:
        return len(self.cpus)


def read_topology(sys_cpu: Path = SYS_CPU, cpu_to_node: dict[int, int] | None = None) -> Topology:
    """Online CPUs with their socket, die, core and NUMA cell.

    `cpu_to_node` maps CPU ids to NUMA cells (see numa.py); CPUs it lacks are put in
    cell 0, which is what a host without NUMA has.
    """
    online_text = read_text(sys_cpu / "online", "")
    if online_text.strip():
        online = parse_cpu_list(online_text)
    else:
        online = sorted(int(p.name[3:]) for p in sys_cpu.glob("cpu[0-9]*") if p.name[3:].isdigit())
    cpus = []
    for cpu_id in online:
        topo = sys_cpu / f"cpu{cpu_id}" / "topology"

        def number(name: str, default: int = 0, topo: Path = topo) -> int:
            try:
                return int(read_text(topo / name).strip())
            except (OSError, ValueError):
                return default

        siblings = read_text(topo / "thread_siblings_list", str(cpu_id)).strip()
        cpus.append(
            Cpu(
                cpu_id=cpu_id,
                numa_cell_id=(cpu_to_node or {}).get(cpu_id, 0),
                socket_id=number("physical_package_id"),
                # -1 on architectures without dies; libvirt reports 0 then.
                die_id=max(number("die_id"), 0),
                core_id=number("core_id", cpu_id),
                siblings=siblings,
            )
        )
    return Topology(cpus)


def affinity() -> list[int]:
    """The CPUs this process may run on (getCapabilities' vdsmToCpusAffinity)."""
    return sorted(os.sched_getaffinity(0))

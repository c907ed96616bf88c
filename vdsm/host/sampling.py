"""CPU samples and the rates getStats derives from two of them.

A `HostSample` holds cumulative tick counters: the whole host and each CPU from
/proc/stat, this process and the ksmd kernel thread from /proc/<pid>/stat.  Rates are
computed between two samples; percentages are shares of the ticks all CPUs spent in
the interval, so cpuUser + cpuSys + cpuIdle is 100 by construction (like upstream,
iowait, irq and steal time count as idle).  Against `BOOT`, an all-zero sample, the
same formulas give averages since boot: what getStats reports before the sampler has
taken two samples.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdsm.system.procfs import CpuTimes, ProcStat, parse_pid_cpu_ticks, parse_proc_stat, read_text

log = logging.getLogger("vdsm.host.sampling")

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class HostSample:
    monotonic: float
    stat: ProcStat
    own_ticks: tuple[int, int] = (0, 0)  # this process: user, system
    ksmd_ticks: int | None = None  # ksmd thread: user + system
    boot: bool = field(default=False, compare=False)


def boot_sample(now: float | None = None) -> HostSample:
    """All counters zero, placed at boot time on the monotonic clock."""
    current = time.monotonic() if now is None else now
    try:
        uptime = float(read_text(PROC / "uptime").split()[0])
    except (OSError, ValueError, IndexError):
        uptime = current
    return HostSample(current - uptime, ProcStat(CpuTimes(), {}, None), boot=True)


def find_ksmd(proc: Path = PROC) -> int | None:
    """The pid of the ksmd kernel thread (kernel threads have low pids: a short scan)."""
    try:
        entries = proc.iterdir()
        for entry in entries:
            if entry.name.isdigit() and read_text(entry / "comm", "").strip() == "ksmd":
                return int(entry.name)
    except OSError:
        pass
    return None


def take_sample(ksmd_pid: int | None, proc: Path = PROC) -> HostSample:
    now = time.monotonic()
    stat = parse_proc_stat(read_text(proc / "stat"))
    try:
        own = parse_pid_cpu_ticks(read_text(proc / "self" / "stat"))
    except (OSError, ValueError, IndexError):
        own = (0, 0)
    ksmd = None
    if ksmd_pid is not None:
        try:
            user, system = parse_pid_cpu_ticks(read_text(proc / str(ksmd_pid) / "stat"))
            ksmd = user + system
        except (OSError, ValueError, IndexError):
            ksmd = None
    return HostSample(now, stat, own, ksmd)


def cpu_percent(first: CpuTimes, last: CpuTimes) -> tuple[float, float, float]:
    """(user, system, idle) percentages of the ticks between two samples."""
    total = last.total - first.total
    if total <= 0:
        return 0.0, 0.0, 100.0
    user = min(100.0, max(0, (last.user + last.nice) - (first.user + first.nice)) * 100.0 / total)
    system = min(100.0 - user, max(0, last.system - first.system) * 100.0 / total)
    return user, system, max(0.0, 100.0 - user - system)


def _ticks_percent(ticks: int, seconds: float) -> float:
    """Share of one CPU used by a task that ran `ticks` in `seconds`."""
    if seconds <= 0:
        return 0.0
    return max(ticks, 0) * 100.0 / CLOCK_TICKS / seconds


@dataclass(frozen=True)
class CpuRates:
    user: float
    system: float
    idle: float
    per_cpu: dict[int, tuple[float, float, float]]
    own_user: float
    own_system: float
    ksmd: float


def rates(first: HostSample, last: HostSample) -> CpuRates:
    user, system, idle = cpu_percent(first.stat.total, last.stat.total)
    per_cpu = {}
    for cpu, times in last.stat.cpus.items():
        # Against the boot sample every CPU starts from zero.
        before = CpuTimes() if first.boot else first.stat.cpus.get(cpu)
        if before is not None:
            per_cpu[cpu] = cpu_percent(before, times)
    seconds = last.monotonic - first.monotonic
    own_user = own_system = ksmd = 0.0
    if not first.boot:
        own_user = _ticks_percent(last.own_ticks[0] - first.own_ticks[0], seconds)
        own_system = _ticks_percent(last.own_ticks[1] - first.own_ticks[1], seconds)
        if first.ksmd_ticks is not None and last.ksmd_ticks is not None:
            ksmd = _ticks_percent(last.ksmd_ticks - first.ksmd_ticks, seconds)
    return CpuRates(user, system, idle, per_cpu, own_user, own_system, ksmd)


def cpu_statistics(rates: CpuRates, cpu_to_node: dict[int, int]) -> dict[str, dict[str, Any]]:
    """getStats' cpuStatistics: {cpu id: {nodeIndex, cpuUser, cpuSys, cpuIdle}}."""
    return {
        str(cpu): {
            "nodeIndex": cpu_to_node.get(cpu, 0),
            "cpuUser": f"{user:.2f}",
            "cpuSys": f"{system:.2f}",
            "cpuIdle": f"{idle:.2f}",
        }
        for cpu, (user, system, idle) in sorted(rates.per_cpu.items())
    }


class SampleWindow:
    """The last two samples; rates are computed between them."""

    def __init__(self) -> None:
        self._samples: deque[HostSample] = deque(maxlen=2)

    def add(self, sample: HostSample) -> None:
        self._samples.append(sample)

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def last(self) -> HostSample | None:
        return self._samples[-1] if self._samples else None

    def pair(self) -> tuple[HostSample, HostSample] | None:
        if len(self._samples) < 2:
            return None
        return self._samples[0], self._samples[1]

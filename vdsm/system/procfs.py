"""Parsers for the small text files of /proc, /sys and /etc the host report reads.

Each parser takes text and returns plain data, so tests feed it strings; the `read_*`
helpers add the file access.  They are cheap (a few KiB each) and meant to run inside
the one worker thread a report uses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("vdsm.system.procfs")


def read_text(path: Path | str, default: str | None = None) -> str:
    """The file's text; `default` when it cannot be read (if given), else OSError."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        if default is None:
            raise
        return default


def read_int(path: Path | str, default: int) -> int:
    try:
        return int(read_text(path).strip())
    except (OSError, ValueError):
        return default


# -- /proc/meminfo ---------------------------------------------------------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """`Key: value [kB]` lines as integers (kB for sizes, counts for the rest).

    Also reads the per-node files of /sys/devices/system/node/nodeN/meminfo, whose
    lines carry a `Node N ` prefix.
    """
    info: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key.startswith("Node "):
            key = key.split(None, 2)[-1]
        fields = rest.split()
        if not fields:
            continue
        try:
            info[key] = int(fields[0])
        except ValueError:
            continue
    return info


# -- /proc/stat ------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuTimes:
    """Cumulative clock ticks of one CPU line of /proc/stat."""

    user: int = 0
    nice: int = 0
    system: int = 0
    idle: int = 0
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0

    @property
    def total(self) -> int:
        # guest/guest_nice are already counted in user/nice, so they are left out.
        return (
            self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
        )


@dataclass(frozen=True)
class ProcStat:
    total: CpuTimes
    cpus: dict[int, CpuTimes]
    boot_time: int | None


def parse_proc_stat(text: str) -> ProcStat:
    total = CpuTimes()
    cpus: dict[int, CpuTimes] = {}
    btime: int | None = None
    for line in text.splitlines():
        if line.startswith("cpu"):
            name, *values = line.split()
            ticks = [int(v) for v in values[:8]]
            ticks += [0] * (8 - len(ticks))
            times = CpuTimes(*ticks)
            if name == "cpu":
                total = times
            else:
                try:
                    cpus[int(name[3:])] = times
                except ValueError:
                    continue
        elif line.startswith("btime"):
            fields = line.split()
            if len(fields) > 1 and fields[1].isdigit():
                btime = int(fields[1])
    return ProcStat(total, cpus, btime)


def parse_pid_cpu_ticks(stat_text: str) -> tuple[int, int]:
    """(utime, stime) ticks from /proc/<pid>/stat.

    The command name (field 2) may hold spaces and parentheses, so the fields are
    counted from its closing parenthesis.
    """
    rest = stat_text[stat_text.rindex(")") + 2 :].split()
    # After the name: state is field 3, utime field 14, stime field 15.
    return int(rest[11]), int(rest[12])


# -- /proc/loadavg ---------------------------------------------------------------------


def parse_loadavg(text: str) -> tuple[str, str, str]:
    fields = text.split()
    if len(fields) < 3:
        raise ValueError(f"unexpected loadavg {text!r}")
    return fields[0], fields[1], fields[2]


# -- key=value files (os-release, initiatorname.iscsi, qemu.conf) ----------------------


def parse_key_values(text: str, unquote: bool = True) -> dict[str, str]:
    """`KEY=value` lines; comments and lines without `=` are skipped.

    With `unquote`, one level of matching single or double quotes is removed, which
    is what os-release values use.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if unquote and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


# -- CPU lists (/sys/devices/system/cpu/online, node cpulist) -------------------------


def parse_cpu_list(text: str) -> list[int]:
    """`0-3,8,10-11` -> [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        first, sep, last = part.partition("-")
        if sep:
            cpus.extend(range(int(first), int(last) + 1))
        else:
            cpus.append(int(first))
    return cpus


# -- /proc/self/mountinfo --------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    mount_point: str
    major: int
    minor: int
    fstype: str
    source: str


def _unescape_mount(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal \NNN.
    out = []
    i = 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts: list[Mount] = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields = pre.split()
        tail = post.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        major, _, minor = fields[2].partition(":")
        mounts.append(
            Mount(
                mount_point=_unescape_mount(fields[4]),
                major=int(major),
                minor=int(minor),
                fstype=tail[0],
                source=_unescape_mount(tail[1]),
            )
        )
    return mounts


def mount_containing(mounts: list[Mount], path: str) -> Mount | None:
    """The mount a path lives on: the longest mount point that is a prefix of it.

    Later entries win over earlier ones with the same mount point (over-mounts).
    """
    best: Mount | None = None
    best_length = -1
    for mount in mounts:
        point = mount.mount_point
        contains = point == "/" or path == point or path.startswith(point + "/")
        if contains and len(point) >= best_length:
            best, best_length = mount, len(point)
    return best

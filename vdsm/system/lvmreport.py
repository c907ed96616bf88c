"""What LVM's JSON reports say, as values: PVs, VGs and LVs.  vdsm.system.lvm runs
the commands; this module reads their output, and derives what a report would show
after one of the adapter's own changes (the in-place cache updates)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

MIB = 1024 * 1024
# The columns each report asks for (the parsers below read these).
PV_FIELDS = (
    "pv_name,pv_uuid,pv_size,pv_free,pe_start,pv_pe_count,pv_pe_alloc_count,"
    "pv_mda_count,pv_mda_size,pv_mda_free,dev_size,vg_name,vg_uuid"
)
VG_FIELDS = (
    "vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_extent_size,vg_extent_count,"
    "vg_free_count,vg_tags,vg_mda_size,vg_mda_free,lv_count,pv_count,pv_name"
)
# vg_extent_size: what LVM rounds a new or extended LV up to, for the in-place updates
LV_FIELDS = "vg_name,lv_name,lv_uuid,lv_attr,lv_size,lv_tags,seg_start_pe,devices,vg_extent_size"
_DEVICE_EXTENT = re.compile(r"^(?P<dev>.+)\((?P<extent>\d+)\)$")


@dataclass(frozen=True)
class PV:
    name: str
    uuid: str
    size: int
    free: int
    pe_start: int
    pe_count: int
    pe_alloc_count: int
    mda_count: int
    mda_size: int
    mda_free: int
    dev_size: int
    vg_name: str
    vg_uuid: str

    @property
    def guid(self) -> str:
        # upstream's name for a LUN: the last path component (/dev/mapper/<wwid>)
        return os.path.basename(self.name)


@dataclass(frozen=True)
class VG:
    name: str
    uuid: str
    attr: str
    size: int
    free: int
    extent_size: int
    extent_count: int
    free_count: int
    tags: tuple[str, ...]
    mda_size: int
    mda_free: int
    lv_count: int
    pv_names: tuple[str, ...]

    @property
    def writeable(self) -> bool:
        return self.attr[:1] == "w"

    @property
    def partial(self) -> bool:
        return len(self.attr) > 3 and self.attr[3] == "p"


@dataclass(frozen=True)
class LV:
    """An LV as a report shows it.  One the adapter added to its cache after its own
    lvcreate has no uuid ("") and no segments until the next report."""

    vg_name: str
    name: str
    uuid: str
    attr: str
    size: int
    tags: tuple[str, ...]
    # (device, first extent) of each segment, in LV order
    segments: tuple[tuple[str, int], ...] = field(default=())

    @property
    def active(self) -> bool:
        return len(self.attr) > 4 and self.attr[4] == "a"

    @property
    def opened(self) -> bool:
        """Held open by a process (a VM's qemu): LVM refuses to deactivate it."""
        return len(self.attr) > 5 and self.attr[5] == "o"

    @property
    def path(self) -> str:
        return lv_path(self.vg_name, self.name)


# lv_attr of an LV the adapter created, as its cache records it (linear, writeable,
# inherited allocation); the fifth character is "a" while the LV is active
ATTR_INACTIVE = "-wi-------"
ACTIVE_ATTR_INDEX = 4


def round_up_to_extent(size: int, extent: int) -> int:
    """The size LVM gives an LV asked for `size` bytes: whole MiB, then whole extents."""
    size = -(-size // MIB) * MIB
    return -(-size // extent) * extent


def with_active(lv: LV, active: bool) -> LV:
    attr = lv.attr.ljust(len(ATTR_INACTIVE), "-")
    flag = "a" if active else "-"
    return replace(lv, attr=attr[:ACTIVE_ATTR_INDEX] + flag + attr[ACTIVE_ATTR_INDEX + 1 :])


def with_tags(lv: LV, add: Iterable[str], remove: Iterable[str]) -> LV:
    gone = set(remove)
    tags = [t for t in lv.tags if t not in gone]
    tags += [t for t in add if t not in tags]
    return replace(lv, tags=tuple(tags))


def lv_path(vg_name: str, lv_name: str) -> str:
    return f"/dev/{vg_name}/{lv_name}"


def _int(value: str) -> int:
    return int(value) if value else 0


def _tags(value: str) -> tuple[str, ...]:
    return tuple(t for t in value.split(",") if t)


def parse_pvs(rows: list[dict[str, str]]) -> dict[str, PV]:
    return {
        r["pv_name"]: PV(
            name=r["pv_name"],
            uuid=r["pv_uuid"],
            size=_int(r["pv_size"]),
            free=_int(r["pv_free"]),
            pe_start=_int(r["pe_start"]),
            pe_count=_int(r["pv_pe_count"]),
            pe_alloc_count=_int(r["pv_pe_alloc_count"]),
            mda_count=_int(r["pv_mda_count"]),
            mda_size=_int(r["pv_mda_size"]),
            mda_free=_int(r["pv_mda_free"]),
            dev_size=_int(r["dev_size"]),
            vg_name=r["vg_name"],
            vg_uuid=r["vg_uuid"],
        )
        for r in rows
    }


def parse_vgs(rows: list[dict[str, str]]) -> tuple[dict[str, VG], set[str]]:
    """VGs by name (one row per PV in the report), and the names seen on two VGs."""
    by_uuid: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = by_uuid.setdefault(r["vg_uuid"], {"row": r, "pvs": []})
        if r.get("pv_name"):
            entry["pvs"].append(r["pv_name"])
    vgs: dict[str, VG] = {}
    duplicates: set[str] = set()
    for entry in by_uuid.values():
        r = entry["row"]
        vg = VG(
            name=r["vg_name"],
            uuid=r["vg_uuid"],
            attr=r["vg_attr"],
            size=_int(r["vg_size"]),
            free=_int(r["vg_free"]),
            extent_size=_int(r["vg_extent_size"]),
            extent_count=_int(r["vg_extent_count"]),
            free_count=_int(r["vg_free_count"]),
            tags=_tags(r["vg_tags"]),
            mda_size=_int(r["vg_mda_size"]),
            mda_free=_int(r["vg_mda_free"]),
            lv_count=_int(r["lv_count"]),
            pv_names=tuple(entry["pvs"]),
        )
        if vg.name in vgs:
            duplicates.add(vg.name)
        vgs[vg.name] = vg
    return vgs, duplicates


def parse_lvs(rows: list[dict[str, str]]) -> dict[str, LV]:
    """LVs by name; a report has one row per segment."""
    segments: dict[str, list[tuple[int, str, int]]] = {}
    first: dict[str, dict[str, str]] = {}
    for r in rows:
        name = r["lv_name"]
        first.setdefault(name, r)
        for dev in r.get("devices", "").split(","):
            m = _DEVICE_EXTENT.match(dev.strip())
            if m:
                segments.setdefault(name, []).append(
                    (_int(r.get("seg_start_pe", "0")), m["dev"], int(m["extent"]))
                )
    return {
        name: LV(
            vg_name=r["vg_name"],
            name=name,
            uuid=r["lv_uuid"],
            attr=r["lv_attr"],
            size=_int(r["lv_size"]),
            tags=_tags(r["lv_tags"]),
            segments=tuple((dev, ext) for _, dev, ext in sorted(segments.get(name, []))),
        )
        for name, r in first.items()
    }


def _report_rows(out: bytes, key: str) -> list[dict[str, str]]:
    data = json.loads(out or b"{}")
    rows: list[dict[str, str]] = []
    for report in data.get("report", []):
        rows.extend(report.get(key, []))
    return rows

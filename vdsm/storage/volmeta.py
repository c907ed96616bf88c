"""Volume metadata (contract §4.3): the `<vol>.meta` file of file domains, the 512-byte
slot of block domains.

    CTIME=1700000000          DESCRIPTION=...   DISKTYPE=DATA   DOMAIN=<sd>
    FORMAT=COW|RAW            GEN=0..999        IMAGE=<img>     LEGALITY=LEGAL|ILLEGAL|FAKE
    PUUID=<parent|blank>      TYPE=SPARSE|PREALLOCATED|UNKNOWN  VOLTYPE=LEAF|INTERNAL|SHARED
    V5:  CAP=<bytes> SEQ=<n>        V3/V4:  SIZE=<512-byte blocks> MTIME=0
    EOF

Keys are written sorted, one `KEY=VALUE\\n` per line, then `EOF\\n`; the whole must fit
512 bytes.  Reading stops at EOF, trims keys and values, tolerates what older writers
left (SIZE without CAP, no GEN or SEQ), and refuses metadata cleared with a `NONE` key.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from vdsm import errors

METADATA_SIZE = 512
DESCRIPTION_SIZE = 210
MAX_GENERATION = 999
MAX_SEQUENCE = 2**32 - 1
BLOCK = 512

CAP = "CAP"
CTIME = "CTIME"
DESCRIPTION = "DESCRIPTION"
DISKTYPE = "DISKTYPE"
DOMAIN = "DOMAIN"
FORMAT = "FORMAT"
GEN = "GEN"
IMAGE = "IMAGE"
LEGALITY = "LEGALITY"
MTIME = "MTIME"
PUUID = "PUUID"
SEQ = "SEQ"
SIZE = "SIZE"
TYPE = "TYPE"
VOLTYPE = "VOLTYPE"

# Wire ints (contract §2) <-> metadata words.
COW_FORMAT, RAW_FORMAT = 4, 5
PREALLOCATED_VOL, SPARSE_VOL = 1, 2
SHARED_VOL, INTERNAL_VOL, LEAF_VOL = 6, 7, 8
FORMATS = {COW_FORMAT: "COW", RAW_FORMAT: "RAW"}
ALLOCATIONS = {PREALLOCATED_VOL: "PREALLOCATED", SPARSE_VOL: "SPARSE"}
ROLES = {SHARED_VOL: "SHARED", INTERNAL_VOL: "INTERNAL", LEAF_VOL: "LEAF"}

LEGAL = "LEGAL"
ILLEGAL = "ILLEGAL"
FAKE = "FAKE"
LEGALITIES = frozenset({LEGAL, ILLEGAL, FAKE})

DISK_TYPES = frozenset(
    {"DATA", "ISOF", "MEMD", "MEMM", "OVFS", "HEVD", "HESD", "HEMD", "HECI", "SCRD", "2", "1"}
)


def word(table: dict[int, str], value: int | str, what: str) -> str:
    """The metadata word for a wire int (or the word itself)."""
    if isinstance(value, str) and value in table.values():
        return value
    try:
        return table[int(value)]
    except (KeyError, ValueError):
        raise errors.InvalidParameterException(what, value) from None


@dataclass
class VolumeMetadata:
    domain: str
    image: str
    parent: str
    capacity: int
    format: str
    type: str
    voltype: str
    disktype: str
    description: str = ""
    legality: str = ILLEGAL
    ctime: int = dataclasses.field(default_factory=lambda: int(time.time()))
    generation: int = 0
    sequence: int = 0

    def __post_init__(self) -> None:
        # Older engines send longer descriptions; upstream truncates, never refuses.
        self.description = str(self.description)[:DESCRIPTION_SIZE]

    def replace(self, **changes: Any) -> VolumeMetadata:
        return dataclasses.replace(self, **changes)

    def to_bytes(self, domain_version: int) -> bytes:
        values: dict[str, Any] = {
            CTIME: self.ctime,
            DESCRIPTION: self.description,
            DISKTYPE: self.disktype,
            DOMAIN: self.domain,
            FORMAT: self.format,
            GEN: self.generation,
            IMAGE: self.image,
            LEGALITY: self.legality,
            PUUID: self.parent,
            TYPE: self.type,
            VOLTYPE: self.voltype,
        }
        if domain_version >= 5:
            values[CAP] = self.capacity
            values[SEQ] = self.sequence
        else:
            values[SIZE] = self.capacity // BLOCK
            values[MTIME] = 0
        text = "".join(f"{key}={values[key]}\n" for key in sorted(values)) + "EOF\n"
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (JSON allows "\ud800"): not writable as UTF-8.
            raise errors.InvalidParameterException("description", self.description) from None
        if len(data) > METADATA_SIZE:
            raise errors.MetadataOverflowError(len(data))
        return data

    def info(self) -> dict[str, Any]:
        """The metadata part of Volume.getInfo, with upstream's wire types."""
        return {
            "domain": self.domain,
            "image": self.image,
            "parent": self.parent,
            "capacity": str(self.capacity),
            "format": self.format,
            "type": self.type,
            "voltype": self.voltype,
            "disktype": self.disktype,
            "description": self.description,
            "legality": self.legality,
            "ctime": str(self.ctime),
            "mtime": "0",
            "generation": self.generation,
            "sequence": self.sequence,
            "pool": "",
        }


def parse(data: bytes) -> VolumeMetadata:
    """Reads what upstream (any version) writes; InvalidMetadata (751) names what is
    missing or broken, MetadataCleared (757) a volume deleted half-way by old code."""
    values: dict[str, str] = {}
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\0").decode("utf-8", "replace")
        if line.startswith("EOF"):
            break
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    if "NONE" in values:
        raise errors.MetadataCleared()
    problems = []
    if CAP not in values and SIZE in values:
        try:
            values[CAP] = str(int(values[SIZE]) * BLOCK)
        except ValueError:
            problems.append(f"invalid SIZE {values[SIZE]!r}")
    values.setdefault(GEN, "0")
    values.setdefault(SEQ, "0")
    fields: dict[str, Any] = {}
    for key, name, convert in (
        (DOMAIN, "domain", str),
        (IMAGE, "image", str),
        (PUUID, "parent", str),
        (CAP, "capacity", int),
        (FORMAT, "format", str),
        (TYPE, "type", str),
        (VOLTYPE, "voltype", str),
        (DISKTYPE, "disktype", str),
        (DESCRIPTION, "description", str),
        (LEGALITY, "legality", str),
        (CTIME, "ctime", int),
        (GEN, "generation", int),
        (SEQ, "sequence", int),
    ):
        if key not in values:
            problems.append(f"missing {key}")
            continue
        try:
            fields[name] = convert(values[key])
        except ValueError:
            problems.append(f"invalid {key} {values[key]!r}")
    if problems:
        raise errors.InvalidMetadata(", ".join(problems))
    return VolumeMetadata(**fields)


def next_generation(generation: int) -> int:
    return 0 if generation >= MAX_GENERATION else generation + 1

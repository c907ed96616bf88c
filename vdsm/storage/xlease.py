"""The xleases volume (VM and other external leases), byte-compatible with upstream.

Contract §4.5.  The volume is cut in slots of `alignment` bytes:

    slot 0   sanlock lockspace area (unused: the domain's lockspace lives on `ids`)
    slot 1   the index: which lease id owns which lease slot
    slot 2   reserved for sanlock
    slot 3+  one sanlock resource per lease; record N of the index <-> slot 3 + N

The index is read and written as one 62 x 4 KiB area at offset 1 x alignment:

    512-byte header, big-endian
        int32 magic 0x12152016, NUL, "0001", NUL, lockspace (48 bytes, NUL padded), NUL,
        mtime (10 decimal digits), NUL, flag ("-" clean, "u" being rewritten),
        440 NULs, "\\n"
    3960 records of 64 bytes
        lease id (48 bytes, NUL padded; empty = free slot), NUL,
        offset (11 decimal digits, informational only), NUL, flag, "-", "\\n"

A lease's offset always comes from its record number, never from the offset field, so
two records can never claim one slot.  A record changes by rewriting the one block
(`block_size` bytes) that holds it, with direct I/O and fsync: the block reaches storage
whole or not at all.

The sanlock side (writing or clearing the resource of a slot) is the caller's: `add`
and `remove` take it as a callback so the upstream order holds - the resource is
written before the record that makes it visible, and cleared after the record that
hid it.  Everything here is synchronous; run it in the domain's bulkhead.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import directio

log = logging.getLogger("vdsm.storage.xlease")

RESERVED_SLOTS = 3
INDEX_SLOT = 1
METADATA_SIZE = 512
RECORD_BASE = METADATA_SIZE
RECORD_SIZE = 64
# Older upstream versions formatted 4000 records (256512 bytes), not a multiple of
# 4 KiB; the area read is rounded down to 62 pages, leaving room for 3960 records.
INDEX_SIZE = 62 * 4096
MAX_RECORDS = (INDEX_SIZE - METADATA_SIZE) // RECORD_SIZE
INDEX_VERSION = 1
INDEX_MAGIC = 0x12152016
MAX_LEASE_ID = 48

_META = struct.Struct(">i x 4s x 48s x 10s x c 440x c")
_RECORD = struct.Struct("48s x 11s x 3c")
FLAG_CLEAN = b"-"
FLAG_UPDATING = b"u"
_TERM = b"\n"


# -- errors (upstream reports these as general errors, code 100) -------------------------


class XleaseError(errors.GeneralException):
    pass


class LeaseExists(XleaseError, message="Lease exists", expected=True):
    pass


class NoSpace(XleaseError, message="No space to add lease"):
    pass


class InvalidRecord(XleaseError, message="Invalid xleases index record"):
    pass


class InvalidIndex(XleaseError, message="Invalid xleases index, it must be formatted or rebuilt"):
    pass


class IndexIsUpdating(
    InvalidIndex, message="xleases index is being updated or an update was aborted"
):
    pass


class TruncatedIndex(InvalidIndex, message="xleases index is truncated"):
    pass


# -- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    lease_id: str
    offset: int
    updating: bool = False

    @property
    def is_free(self) -> bool:
        return self.lease_id == ""

    def pack(self) -> bytes:
        return _RECORD.pack(
            self.lease_id.encode("ascii"),
            b"%011d" % self.offset,
            FLAG_UPDATING if self.updating else FLAG_CLEAN,
            FLAG_CLEAN,
            _TERM,
        )

    @classmethod
    def unpack(cls, data: bytes) -> Record:
        try:
            raw_id, raw_offset, flag, _reserved, _term = _RECORD.unpack(data)
            lease_id = raw_id.rstrip(b"\0").decode("ascii")
            offset = int(raw_offset)
        except (struct.error, UnicodeDecodeError, ValueError) as e:
            raise InvalidRecord(str(e), data) from None
        return cls(lease_id, offset, flag == FLAG_UPDATING)


EMPTY_RECORD = Record("", 0)
_EMPTY = EMPTY_RECORD.pack()


def lease_offset(recnum: int, alignment: int) -> int:
    """Where the sanlock resource of record `recnum` lives in the volume."""
    return (RESERVED_SLOTS + recnum) * alignment


def pack_header(lockspace: str, mtime: int, updating: bool = False) -> bytes:
    return _META.pack(
        INDEX_MAGIC,
        b"%04d" % INDEX_VERSION,
        lockspace.encode("ascii"),
        b"%010d" % mtime,
        FLAG_UPDATING if updating else FLAG_CLEAN,
        _TERM,
    )


# -- the index ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Index:
    """A snapshot of the index area as read from storage."""

    lockspace: str
    version: int
    mtime: int
    updating: bool
    alignment: int
    data: bytes

    @classmethod
    def parse(cls, data: bytes, alignment: int) -> Index:
        if len(data) < INDEX_SIZE:
            raise TruncatedIndex(f"expected {INDEX_SIZE} bytes, read {len(data)}")
        try:
            magic, version, lockspace, mtime, flag, _term = _META.unpack(data[:METADATA_SIZE])
        except struct.error as e:
            raise InvalidIndex(str(e)) from None
        if magic != INDEX_MAGIC:
            raise InvalidIndex(f"bad magic {magic:#x}")
        try:
            version_number = int(version)
            name = lockspace.rstrip(b"\0").decode("ascii")
            mtime_seconds = int(mtime)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidIndex(str(e), data[:METADATA_SIZE]) from None
        if version_number != INDEX_VERSION:
            raise InvalidIndex(f"unsupported index version {version_number}")
        return cls(name, version_number, mtime_seconds, flag == FLAG_UPDATING, alignment, data)

    @property
    def records(self) -> list[Record | None]:
        """Every record by number; None for one that cannot be parsed."""
        out: list[Record | None] = []
        for recnum in range(MAX_RECORDS):
            try:
                out.append(self.record(recnum))
            except InvalidRecord:
                out.append(None)
        return out

    def record(self, recnum: int) -> Record:
        start = _record_offset(recnum)
        return Record.unpack(self.data[start : start + RECORD_SIZE])

    def find(self, lease_id: str) -> int:
        """The record number holding `lease_id`, or -1."""
        # The id, NUL padded to its 48 bytes, and the NUL after it: no prefix matches.
        return _find_record(self.data, lease_id.encode("ascii").ljust(MAX_LEASE_ID, b"\0") + b"\0")

    def find_free(self) -> int:
        return _find_record(self.data, _EMPTY)

    def leases(self) -> dict[str, dict[str, Any]]:
        """{lease_id: {"offset", "updating"}} for the used records; a corrupted record
        is skipped with a warning, as upstream's dump does."""
        found: dict[str, dict[str, Any]] = {}
        for recnum in range(MAX_RECORDS):
            try:
                record = self.record(recnum)
            except InvalidRecord as e:
                log.warning("Skipping xleases record %d: %s", recnum, e)
                continue
            if not record.is_free:
                found[record.lease_id] = {
                    "offset": lease_offset(recnum, self.alignment),
                    "updating": record.updating,
                }
        return found


def format_index(
    path: Path,
    lockspace: str,
    alignment: int = sc.ALIGNMENT_1M,
    block_size: int = sc.BLOCK_SIZE_512,
    *,
    max_records: int = MAX_RECORDS,
) -> None:
    """Write an empty index, as a new V4+ domain gets it.  Destroys existing records.

    As upstream: the whole area is first written marked "updating", then the first
    block again, clean; a crash in between leaves an index that says it is unusable.
    The file may be empty (file domains create xleases as a 0-byte file): it grows
    sparsely to alignment + 248 KiB.
    """
    _check_geometry(alignment, block_size)
    if not 0 <= max_records <= MAX_RECORDS:
        raise ValueError(f"max_records must be 0..{MAX_RECORDS}")
    with directio.aligned(INDEX_SIZE) as buf:
        buf[:METADATA_SIZE] = pack_header(lockspace, int(time.time()), updating=True)
        for recnum in range(max_records):
            start = _record_offset(recnum)
            buf[start : start + RECORD_SIZE] = _EMPTY
        with directio.open_direct(path, write=True) as fd:
            directio.pwrite(fd, buf, INDEX_SLOT * alignment)
            buf[:METADATA_SIZE] = pack_header(lockspace, int(time.time()))
            head = memoryview(buf)[:block_size]
            try:
                directio.pwrite(fd, head, INDEX_SLOT * alignment)
            finally:
                head.release()


def read_index(
    path: Path, alignment: int = sc.ALIGNMENT_1M, block_size: int = sc.BLOCK_SIZE_512
) -> Index:
    _check_geometry(alignment, block_size)
    with directio.open_direct(path) as fd:
        return Index.parse(directio.pread(fd, INDEX_SIZE, INDEX_SLOT * alignment), alignment)


def lookup(
    path: Path, lease_id: str, alignment: int = sc.ALIGNMENT_1M, block_size: int = sc.BLOCK_SIZE_512
) -> int:
    """The offset of `lease_id`'s sanlock resource; NoSuchLease (936) when absent or
    left half-created by an old upstream version (record flagged updating)."""
    _check_lease_id(lease_id)
    index = _usable(read_index(path, alignment, block_size))
    recnum = index.find(lease_id)
    if recnum == -1 or index.record(recnum).updating:
        raise errors.NoSuchLease(lease_id)
    return lease_offset(recnum, alignment)


def add(
    path: Path,
    lease_id: str,
    alignment: int = sc.ALIGNMENT_1M,
    block_size: int = sc.BLOCK_SIZE_512,
    write_resource: Callable[[int], None] | None = None,
) -> int:
    """Give `lease_id` the first free slot and return its offset.

    `write_resource(offset)` creates the sanlock resource there; it runs before the
    record is written, so a failure leaves the index unchanged.  A record left
    "updating" by an old version is taken over.  Must run on the SPM only.
    """
    _check_lease_id(lease_id)
    index = _usable(read_index(path, alignment, block_size))
    recnum = index.find(lease_id)
    if recnum != -1:
        if not index.record(recnum).updating:
            raise LeaseExists(lease_id)
        log.warning("Taking over half-created lease %r (record %d)", lease_id, recnum)
    else:
        recnum = index.find_free()
        if recnum == -1:
            raise NoSpace(lease_id)
    offset = lease_offset(recnum, alignment)
    if write_resource is not None:
        write_resource(offset)
    _write_record(path, index, recnum, Record(lease_id, offset), block_size)
    return offset


def remove(
    path: Path,
    lease_id: str,
    alignment: int = sc.ALIGNMENT_1M,
    block_size: int = sc.BLOCK_SIZE_512,
    clear_resource: Callable[[int], None] | None = None,
) -> int:
    """Free `lease_id`'s record and return the offset it had.

    The record goes first (the lease stops existing), then `clear_resource(offset)`
    wipes the sanlock resource; its failure is only logged, the index being what
    counts.  Must run on the SPM only.
    """
    _check_lease_id(lease_id)
    index = _usable(read_index(path, alignment, block_size))
    recnum = index.find(lease_id)
    if recnum == -1:
        raise errors.NoSuchLease(lease_id)
    offset = lease_offset(recnum, alignment)
    _write_record(path, index, recnum, EMPTY_RECORD, block_size)
    if clear_resource is not None:
        try:
            clear_resource(offset)
        except Exception:
            log.warning(
                "Could not clear sanlock resource of %r at %d", lease_id, offset, exc_info=True
            )
    return offset


# -- I/O ---------------------------------------------------------------------------------


def _write_record(path: Path, index: Index, recnum: int, record: Record, block_size: int) -> None:
    start = _record_offset(recnum)
    block_start = start - start % block_size
    with directio.aligned(block_size) as buf:
        buf[:] = index.data[block_start : block_start + block_size]
        inner = start - block_start
        buf[inner : inner + RECORD_SIZE] = record.pack()
        with directio.open_direct(path, write=True) as fd:
            directio.pwrite(fd, buf, INDEX_SLOT * index.alignment + block_start)


def _find_record(data: bytes, pattern: bytes) -> int:
    """The first record (at a record boundary) starting with `pattern`, or -1."""
    pos = data.find(pattern, RECORD_BASE)
    while pos != -1:
        if (pos - RECORD_BASE) % RECORD_SIZE == 0:
            return (pos - RECORD_BASE) // RECORD_SIZE
        pos = data.find(pattern, pos + 1)
    return -1


def _record_offset(recnum: int) -> int:
    if not 0 <= recnum < MAX_RECORDS:
        raise IndexError(f"record {recnum} out of range")
    return RECORD_BASE + recnum * RECORD_SIZE


def _usable(index: Index) -> Index:
    if index.updating:
        raise IndexIsUpdating(index.lockspace, index.mtime)
    return index


def _check_lease_id(lease_id: str) -> None:
    if not lease_id or not lease_id.isascii() or len(lease_id) > MAX_LEASE_ID or "\0" in lease_id:
        raise errors.InvalidParameterException("lease_id", lease_id)


def _check_geometry(alignment: int, block_size: int) -> None:
    if alignment not in sc.ALIGNMENTS:
        raise errors.InvalidParameterException("alignment", alignment)
    if block_size not in (sc.BLOCK_SIZE_512, sc.BLOCK_SIZE_4K):
        raise errors.InvalidParameterException("block_size", block_size)

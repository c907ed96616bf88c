"""The xleases index format on real files, checked byte by byte against the layout of
contract §4.5 spelled out here."""

import os
import struct
import time

import pytest

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import xlease

SD = "8f7a4c1e-2b3d-4e5f-9a0b-1c2d3e4f5a6b"
L1 = "b5a8c1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
L2 = "c6b9d2e3-4f5a-4b6c-9d7e-8f9a0b1c2d3e"
MiB = 1024 * 1024
INDEX_SIZE = 62 * 4096

EMPTY_RECORD = b"\0" * 48 + b"\0" + b"00000000000" + b"\0" + b"--\n"


def record_bytes(lease_id, offset, flag=b"-"):
    return lease_id.encode().ljust(48, b"\0") + b"\0" + b"%011d" % offset + b"\0" + flag + b"-\n"


@pytest.fixture
def xleases(tmp_path):
    path = tmp_path / "xleases"
    path.touch()  # file domains create it empty
    return path


def read_area(path, alignment):
    with open(path, "rb") as f:
        f.seek(alignment)
        return f.read(INDEX_SIZE)


def test_format_writes_upstreams_empty_index(xleases):
    before = int(time.time())
    xlease.format_index(xleases, SD)
    after = int(time.time())
    assert xleases.stat().st_size == MiB + INDEX_SIZE
    assert xleases.read_bytes()[:MiB] == b"\0" * MiB  # the lockspace slot is untouched
    area = read_area(xleases, MiB)
    header = area[:512]
    assert header[:4] == b"\x12\x15\x20\x16"  # big-endian magic 0x12152016
    assert header[4:10] == b"\x000001\x00"
    assert header[10:58] == SD.encode() + b"\0" * 12
    assert header[58:59] == b"\0"
    mtime = int(header[59:69])
    assert before <= mtime <= after
    assert header[69:72] == b"\0-\0"
    assert header[72:511] == b"\0" * 439 and header[511:] == b"\n"
    records = area[512:]
    assert len(records) == 3960 * 64
    assert records == EMPTY_RECORD * 3960


def test_format_is_sparse_on_a_file_domain(xleases):
    xlease.format_index(xleases, SD)
    # Only the index area was written: far less than the 1 MiB slot before it.
    assert xleases.stat().st_blocks * 512 < MiB


@pytest.mark.parametrize("alignment", [2 * MiB, 8 * MiB])
def test_4k_geometry_puts_the_index_in_slot_one(xleases, alignment):
    xlease.format_index(xleases, SD, alignment, sc.BLOCK_SIZE_4K)
    assert xleases.stat().st_size == alignment + INDEX_SIZE
    index = xlease.read_index(xleases, alignment, sc.BLOCK_SIZE_4K)
    assert index.lockspace == SD and not index.updating and index.version == 1
    offset = xlease.add(xleases, L1, alignment, sc.BLOCK_SIZE_4K)
    assert offset == 3 * alignment
    assert read_area(xleases, alignment)[512:576] == record_bytes(L1, offset)


def test_add_lookup_remove(xleases):
    xlease.format_index(xleases, SD)
    assert xlease.add(xleases, L1) == 3 * MiB
    assert xlease.add(xleases, L2) == 4 * MiB
    area = read_area(xleases, MiB)
    assert area[512:576] == record_bytes(L1, 3 * MiB)
    assert area[576:640] == record_bytes(L2, 4 * MiB)
    assert xlease.lookup(xleases, L2) == 4 * MiB
    assert xlease.read_index(xleases).leases() == {
        L1: {"offset": 3 * MiB, "updating": False},
        L2: {"offset": 4 * MiB, "updating": False},
    }
    assert xlease.remove(xleases, L1) == 3 * MiB
    assert read_area(xleases, MiB)[512:576] == EMPTY_RECORD
    with pytest.raises(errors.NoSuchLease) as info:
        xlease.lookup(xleases, L1)
    assert info.value.code == 936
    # The freed slot is the first free one again.
    assert xlease.add(xleases, L1) == 3 * MiB


def test_errors(xleases):
    xlease.format_index(xleases, SD)
    xlease.add(xleases, L1)
    with pytest.raises(xlease.LeaseExists):
        xlease.add(xleases, L1)
    with pytest.raises(errors.NoSuchLease):
        xlease.remove(xleases, L2)
    with pytest.raises(errors.InvalidParameterException):
        xlease.add(xleases, "x" * 49)
    with pytest.raises(errors.InvalidParameterException):
        xlease.lookup(xleases, "")


def test_no_space(xleases):
    xlease.format_index(xleases, SD, max_records=2)
    xlease.add(xleases, L1)
    xlease.add(xleases, L2)
    with pytest.raises(xlease.NoSpace):
        xlease.add(xleases, "third")


def test_resource_is_written_before_the_record_and_cleared_after(xleases):
    xlease.format_index(xleases, SD)
    seen = []

    def write_resource(offset):
        # The lease must not be visible until its resource exists.
        with pytest.raises(errors.NoSuchLease):
            xlease.lookup(xleases, L1)
        seen.append(("write", offset))

    def clear_resource(offset):
        with pytest.raises(errors.NoSuchLease):
            xlease.lookup(xleases, L1)
        seen.append(("clear", offset))
        raise OSError("sanlock said no")  # only logged: the index is what counts

    xlease.add(xleases, L1, write_resource=write_resource)
    xlease.remove(xleases, L1, clear_resource=clear_resource)
    assert seen == [("write", 3 * MiB), ("clear", 3 * MiB)]


def test_failed_resource_write_leaves_the_index_alone(xleases):
    xlease.format_index(xleases, SD)
    before = read_area(xleases, MiB)

    def fail(offset):
        raise OSError("no")

    with pytest.raises(OSError):
        xlease.add(xleases, L1, write_resource=fail)
    assert read_area(xleases, MiB) == before


def test_an_index_left_updating_is_unusable(xleases):
    xlease.format_index(xleases, SD)
    with open(xleases, "r+b") as f:
        f.seek(MiB + 70)
        f.write(b"u")
    index = xlease.read_index(xleases)
    assert index.updating
    for op in (xlease.add, xlease.lookup, xlease.remove):
        with pytest.raises(xlease.IndexIsUpdating):
            op(xleases, L1)


def test_a_half_created_record_is_no_lease_and_is_taken_over(xleases):
    xlease.format_index(xleases, SD)
    with open(xleases, "r+b") as f:
        f.seek(MiB + 512 + 64)
        f.write(record_bytes(L1, 4 * MiB, flag=b"u"))
    with pytest.raises(errors.NoSuchLease):
        xlease.lookup(xleases, L1)
    assert xlease.add(xleases, L1) == 4 * MiB
    assert xlease.lookup(xleases, L1) == 4 * MiB


def test_offset_comes_from_the_record_number_not_the_field(xleases):
    xlease.format_index(xleases, SD)
    with open(xleases, "r+b") as f:
        f.seek(MiB + 512 + 5 * 64)
        f.write(record_bytes(L2, 99))
    assert xlease.lookup(xleases, L2) == 8 * MiB


def test_truncated_and_corrupted_indexes(tmp_path, xleases):
    xlease.format_index(xleases, SD)
    os.truncate(xleases, MiB + 4096)
    with pytest.raises(xlease.TruncatedIndex):
        xlease.read_index(xleases)
    xlease.format_index(xleases, SD)
    with open(xleases, "r+b") as f:
        f.seek(MiB)
        f.write(struct.pack(">i", 0x12345678))
    with pytest.raises(xlease.InvalidIndex):
        xlease.read_index(xleases)


def test_a_corrupted_record_is_skipped_in_the_dump(xleases):
    xlease.format_index(xleases, SD)
    xlease.add(xleases, L1)
    with open(xleases, "r+b") as f:
        f.seek(MiB + 512 + 2 * 64 + 49)
        f.write(b"notanumber!")
    index = xlease.read_index(xleases)
    assert index.leases() == {L1: {"offset": 3 * MiB, "updating": False}}
    assert index.records[2] is None
    assert index.records[0] == xlease.Record(L1, 3 * MiB)


def test_bad_geometry_is_refused(xleases):
    with pytest.raises(errors.InvalidParameterException):
        xlease.format_index(xleases, SD, alignment=3 * MiB)
    with pytest.raises(errors.InvalidParameterException):
        xlease.read_index(xleases, block_size=1024)

"""The pure rules of block volumes: LV tags, metadata slots, lease offsets, sizes."""

from __future__ import annotations

import pytest

from vdsm import errors
from vdsm.storage import blockvolumestore as bvs
from vdsm.storage.volmeta import VolumeMetadata

MiB = 1024 * 1024
BLANK = "00000000-0000-0000-0000-000000000000"


def test_tags_are_read_whatever_their_order_and_neighbours() -> None:
    tags = bvs.parse_tags(
        ["MD_17", "PU_" + BLANK, "someone_else", "IU_img", "OVIRT_VOL_INITIALIZING"]
    )
    assert tags == bvs.LvTags("img", BLANK, 17, True, None)
    assert bvs.parse_tags(["MD_x", "VDSM_CLAIM_t1"]) == bvs.LvTags(None, None, None, False, "t1")


def test_slot_offsets_follow_the_contract() -> None:
    # V5: 1 MiB + slot x 8 KiB; V4: slot x 512
    assert bvs.slot_offset(5, 1) == MiB + 8192
    assert bvs.slot_offset(5, 0) == MiB
    assert bvs.slot_offset(4, 4) == 2048
    assert bvs.lease_offset(1, MiB) == 101 * MiB
    assert bvs.lease_offset(3, 2 * MiB) == 206 * MiB


def test_free_slots_skip_reserved_and_taken_ones() -> None:
    assert bvs.free_slot(set(), 5, 100) == 1
    assert bvs.free_slot(set(), 4, 100) == 4
    assert bvs.free_slot({1, 2, 4}, 5, 100) == 3
    assert bvs.free_slot({1, 2, 3}, 5, 100) == 4
    # 128 MiB metadata LV: (128 - 1) MiB / 8 KiB slots
    assert bvs.slot_count(5, 128 * MiB) == 16256
    with pytest.raises(errors.NoFreeMetadataSlot):
        bvs.free_slot({1, 2, 3}, 5, 4)


def metadata(fmt: str, kind: str, capacity: int) -> VolumeMetadata:
    return VolumeMetadata("sd", "img", BLANK, capacity, fmt, kind, "LEAF", "DATA")


def test_allocation_as_upstream() -> None:
    chunk = 2560 * MiB
    assert bvs.allocation(metadata("COW", "SPARSE", 10 * 1024 * MiB), None, chunk) == chunk
    assert bvs.allocation(metadata("COW", "SPARSE", 1024 * MiB), None, chunk) == 1024 * MiB
    assert bvs.allocation(metadata("COW", "SPARSE", 1024 * MiB), 100 * MiB, chunk) == 110 * MiB
    assert bvs.allocation(metadata("RAW", "PREALLOCATED", 1024 * MiB), None, chunk) == 1024 * MiB
    assert bvs.allocation(metadata("COW", "PREALLOCATED", 64 * MiB), None, chunk) == 64 * MiB


def test_cleared_slot_fits_and_reads_as_cleared() -> None:
    from vdsm.storage import volmeta

    data = bvs.cleared_metadata()
    assert len(data) <= 512
    with pytest.raises(errors.MetadataCleared):
        volmeta.parse(data.ljust(512, b"\0"))

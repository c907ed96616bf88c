"""Volume metadata (contract §4.3) against literal bytes written from the contract, and
the reader's tolerance for what older upstream versions wrote."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vdsm import errors
from vdsm.storage import volmeta

SD = "8f7a4c1e-2b3d-4e5f-9a0b-1c2d3e4f5a6b"
IMG = "c0c1c2c3-0000-4000-8000-000000000001"
BLANK = "00000000-0000-0000-0000-000000000000"


def sample(**changes):
    md = volmeta.VolumeMetadata(
        domain=SD,
        image=IMG,
        parent=BLANK,
        capacity=1073741824,
        format="COW",
        type="SPARSE",
        voltype="LEAF",
        disktype="DATA",
        description="disk",
        legality="LEGAL",
        ctime=1700000000,
        generation=3,
        sequence=7,
    )
    return md.replace(**changes)


V5_BYTES = (
    "CAP=1073741824\n"
    "CTIME=1700000000\n"
    "DESCRIPTION=disk\n"
    "DISKTYPE=DATA\n"
    f"DOMAIN={SD}\n"
    "FORMAT=COW\n"
    "GEN=3\n"
    f"IMAGE={IMG}\n"
    "LEGALITY=LEGAL\n"
    f"PUUID={BLANK}\n"
    "SEQ=7\n"
    "TYPE=SPARSE\n"
    "VOLTYPE=LEAF\n"
    "EOF\n"
).encode()


def test_v5_bytes_are_upstreams():
    assert sample().to_bytes(5) == V5_BYTES


def test_v4_writes_size_in_blocks_and_mtime_instead_of_cap_and_seq():
    text = sample().to_bytes(4).decode()
    assert "SIZE=2097152\n" in text and "MTIME=0\n" in text
    assert "CAP=" not in text and "SEQ=" not in text
    keys = [line.split("=")[0] for line in text.splitlines()[:-1]]
    assert keys == sorted(keys)


def test_reading_old_metadata_fills_defaults():
    old = (
        b"CTIME=1\nDESCRIPTION=\nDISKTYPE=2\nDOMAIN=d\nFORMAT=RAW\nIMAGE=i\nLEGALITY=LEGAL\n"
        b"MTIME=0\nPOOL_UUID=\nPUUID=p\nSIZE=20\nTYPE=PREALLOCATED\nVOLTYPE=LEAF\nEOF\n"
        b"garbage after EOF=1\n"
    ) + b"\0" * 100
    md = volmeta.parse(old)
    assert md.capacity == 20 * 512 and md.generation == 0 and md.sequence == 0
    assert md.disktype == "2" and md.format == "RAW"


def test_round_trip_both_formats():
    for version in (3, 4, 5):
        md = sample(capacity=4096 * 512)
        back = volmeta.parse(md.to_bytes(version))
        expected = md if version == 5 else md.replace(sequence=0)
        assert back == expected


def test_cleared_and_broken_metadata_are_refused():
    with pytest.raises(errors.MetadataCleared):
        volmeta.parse(b"NONE=######\nEOF\n")
    with pytest.raises(errors.InvalidMetadata, match="missing FORMAT"):
        volmeta.parse(V5_BYTES.replace(b"FORMAT=COW\n", b""))
    with pytest.raises(errors.InvalidMetadata, match="invalid CAP"):
        volmeta.parse(V5_BYTES.replace(b"CAP=1073741824", b"CAP=big"))


def test_long_descriptions_are_truncated_and_overflow_is_refused():
    assert len(sample(description="x" * 300).description) == volmeta.DESCRIPTION_SIZE
    # 210 two-byte characters: 420 bytes of description cannot fit 512 bytes.
    with pytest.raises(errors.MetadataOverflowError):
        sample(description="é" * 210).to_bytes(5)


def test_generation_wraps():
    assert volmeta.next_generation(0) == 1
    assert volmeta.next_generation(999) == 0


def test_unencodable_descriptions_are_refused():
    with pytest.raises(errors.InvalidParameterException):
        sample(description="\ud800").to_bytes(5)


@given(
    st.text(
        alphabet=st.characters(blacklist_characters="\n\r\0", blacklist_categories=("Cs",)),
        max_size=60,
    )
)
def test_any_short_description_survives(description):
    md = sample(description=description.strip())
    assert volmeta.parse(md.to_bytes(5)).description == md.description

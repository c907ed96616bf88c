"""The domain metadata text format, checked against an independent implementation of
upstream's sealing rule in tests/support/storage.py (not the module's own checksum)."""

import hashlib
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.storage import upstream_checksum
from tests.unit.storage.samples import V5_NFS, V5_NFS_CKSUM
from vdsm import errors
from vdsm.storage import metadata


def upstream_file(values, cksum=None):
    lines = [f"{k}={values[k]}" for k in sorted(values)]
    lines.append(f"_SHA_CKSUM={cksum or upstream_checksum(values)}")
    return "".join(line + "\n" for line in lines).encode("utf-8")


def test_independent_seal_matches_the_contract_vector():
    assert upstream_checksum(V5_NFS) == V5_NFS_CKSUM


def test_serialize_is_byte_for_byte_upstreams_file():
    data = metadata.serialize(V5_NFS)
    expected = (
        b"ALIGNMENT=1048576\n"
        b"BLOCK_SIZE=512\n"
        b"CLASS=Data\n"
        b"DESCRIPTION=nfs-data\n"
        b"IOOPTIMEOUTSEC=10\n"
        b"LEASERETRIES=3\n"
        b"LEASETIMESEC=60\n"
        b"LOCKPOLICY=\n"
        b"LOCKRENEWALINTERVALSEC=5\n"
        b"POOL_UUID=\n"
        b"REMOTE_PATH=nfs.example.com:/export/data\n"
        b"ROLE=Regular\n"
        b"SDUUID=8f7a4c1e-2b3d-4e5f-9a0b-1c2d3e4f5a6b\n"
        b"TYPE=NFS\n"
        b"VERSION=5\n"
        b"_SHA_CKSUM=70d6a7349e428395162b02468816818729f93dfb\n"
    )
    assert data == expected
    assert metadata.checksum(V5_NFS) == V5_NFS_CKSUM


def test_unicode_description_is_utf8_on_disk_and_sealed_with_char_refs():
    values = dict(V5_NFS, DESCRIPTION="Données ✓ 😀")
    data = metadata.serialize(values)
    assert "DESCRIPTION=Données ✓ 😀\n".encode() in data
    seal = upstream_checksum(values)
    assert data.endswith(f"_SHA_CKSUM={seal}\n".encode())
    # The reference form is what is hashed: é is 233, ✓ 10003, 😀 128512.
    digest = hashlib.sha1()
    for key in sorted(values):
        text = f"{key}={values[key]}"
        if key == "DESCRIPTION":
            text = "DESCRIPTION=Donn&#233;es &#10003; &#128512;"
        digest.update(text.encode("ascii"))
    assert digest.hexdigest() == seal
    assert metadata.parse(data) == values


def test_reads_what_upstream_writes_with_trailing_nuls():
    data = upstream_file(V5_NFS) + b"\0" * 4000
    assert metadata.parse(data) == V5_NFS


def test_missing_checksum_is_trusted():
    data = b"".join(f"{k}={v}\n".encode() for k, v in V5_NFS.items())
    assert metadata.parse(data) == V5_NFS


def test_broken_checksum_is_752():
    data = upstream_file(V5_NFS).replace(b"DESCRIPTION=nfs-data", b"DESCRIPTION=nfs-dat4")
    with pytest.raises(errors.MetaDataSealIsBroken) as info:
        metadata.parse(data)
    assert info.value.code == 752


def test_a_wrong_seal_value_is_752():
    with pytest.raises(errors.MetaDataSealIsBroken):
        metadata.parse(upstream_file(V5_NFS, cksum="0" * 40))


def test_reader_tolerates_blank_lines_junk_and_keeps_values_verbatim():
    values = {"A": " spaced value ", "B": "x=y=z"}
    seal = upstream_checksum(values)
    data = f"\n  A= spaced value \ngarbage line\n\nB=x=y=z\n_SHA_CKSUM={seal}\n".encode()
    assert metadata.parse(data) == values


def test_empty_and_checksum_only_metadata_read_as_empty():
    assert metadata.parse(b"") == {}
    assert metadata.parse(b"\0" * 512) == {}
    assert metadata.parse(b"_SHA_CKSUM=deadbeef\n") == {}


def test_non_utf8_is_a_metadata_error():
    with pytest.raises(errors.MetaDataGeneralError):
        metadata.parse(b"DESCRIPTION=\xff\n")


@pytest.mark.parametrize(
    "values",
    [
        {"DESCRIPTION": "two\nlines"},
        {"DESCRIPTION": "cr\r"},
        {"DESCRIPTION": "nul\0"},
        {"DESCRIPTION": "ls\u2028"},
        {"BAD=KEY": "x"},
        {" KEY": "x"},
        {"": "x"},
        {"_SHA_CKSUM": "x"},
    ],
)
def test_serialize_refuses_what_would_not_read_back(values):
    with pytest.raises(ValueError):
        metadata.serialize(values)


def test_write_file_replaces_atomically_with_mode_0644(tmp_path):
    path = tmp_path / "metadata"
    path.write_bytes(b"OLD=1\n")
    # A leftover from a crash between write and rename must not leak into the result.
    (tmp_path / "metadata.new").write_bytes(b"X" * 10000)
    os.chmod(tmp_path / "metadata.new", 0o600)
    metadata.write_file(path, V5_NFS)
    assert path.read_bytes() == upstream_file(V5_NFS)
    assert not (tmp_path / "metadata.new").exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert metadata.read_file(path) == V5_NFS


def test_write_keeps_the_inode_change_to_one_rename(tmp_path):
    path = tmp_path / "metadata"
    metadata.write_file(path, V5_NFS)
    before = path.stat().st_ino
    metadata.write_file(path, dict(V5_NFS, DESCRIPTION="renamed"))
    assert path.stat().st_ino != before  # a new file was renamed over the old one
    assert metadata.read_file(path)["DESCRIPTION"] == "renamed"


def test_read_file_of_a_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        metadata.read_file(tmp_path / "nothing")


def test_read_file_larger_than_one_direct_chunk(tmp_path):
    values = {f"PV{i}": "pv:" + "x" * 200 for i in range(600)}  # ~130 KiB
    path = tmp_path / "metadata"
    metadata.write_file(path, values)
    assert metadata.read_file(path) == values


def test_vg_tags_escape_and_round_trip():
    values = {"DESCRIPTION": "my dom&in é", "SDUUID": "a-b", "VERSION": "5"}
    tags = metadata.to_vg_tags(values)
    seal = upstream_checksum(values)
    assert tags == [
        "MDT_DESCRIPTION=my&32&dom&38&in&32&&233&",
        "MDT_SDUUID=a-b",
        "MDT_VERSION=5",
        f"MDT__SHA_CKSUM={seal}",
    ]
    other = ["RHAT_storage_domain", "MDT_"[:3] + "X"]
    assert metadata.from_vg_tags(other + tags[::-1]) == values


def test_vg_tags_with_a_broken_seal_are_752():
    tags = metadata.to_vg_tags({"VERSION": "5"})
    tags[0] = "MDT_VERSION=4"
    with pytest.raises(errors.MetaDataSealIsBroken):
        metadata.from_vg_tags(tags)


def test_tag_encoding_keeps_the_allowed_characters():
    allowed = "azAZ09_+.-/=!:#"
    assert metadata.encode_tag(allowed) == allowed
    assert metadata.encode_tag(",&") == "&44&&38&"
    assert metadata.decode_tag("&44&&38&") == ",&"


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=30
).filter(lambda s: not metadata.has_line_break(s))
_key = _text.filter(lambda k: k and k == k.strip() and "=" not in k and k != "_SHA_CKSUM")


@given(st.dictionaries(_key, _text, max_size=12))
def test_round_trip_property(values):
    data = metadata.serialize(values)
    assert metadata.parse(data) == values
    assert data.endswith(f"_SHA_CKSUM={upstream_checksum(values)}\n".encode())
    assert metadata.from_vg_tags(metadata.to_vg_tags(values)) == values

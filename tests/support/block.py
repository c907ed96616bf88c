"""Block domain helpers for tests: VGs made the way LVMVolumeGroup.create makes them,
and an INDEPENDENT reader of block domain metadata (VG/LV tags, metadata slots),
written from the contract (§4.1-§4.3), sharing no code with vdsm."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from tests.lab.resources import LVM_ENV, lvm_config, run
from tests.support.storage import upstream_checksum

MiB = 1024 * 1024
DOMAIN_TAG = "RHAT_storage_domain"
UNREADY_TAG = "RHAT_storage_domain_UNREADY"
_ESCAPE = re.compile(r"&(\d+)&")
TAG_CHARS = re.compile(r"^[a-zA-Z0-9_+.\-/=!:#&]*$")


def lvm(devices: Sequence[str], command: str, *args: str, check: bool = True) -> str:
    argv = ["lvm", command, "--config", lvm_config(devices)]
    if not _device_mapper():
        argv += ["--driverloaded", "n"]
    return run([*argv, *args], env=LVM_ENV, check=check).stdout


def _device_mapper() -> bool:
    with open("/proc/misc") as f:
        return any(line.split()[-1:] == ["device-mapper"] for line in f)


def report(devices: Sequence[str], command: str, fields: str, *args: str) -> list[dict[str, str]]:
    out = lvm(
        devices,
        command,
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        fields,
        *args,
    )
    key = {"vgs": "vg", "lvs": "lv", "pvs": "pv"}[command]
    rows: list[dict[str, str]] = []
    for r in json.loads(out)["report"]:
        rows.extend(r[key])
    return rows


def make_vg(devices: Sequence[str], name: str, tags: Sequence[str] = (UNREADY_TAG,)) -> str:
    """A VG as LVMVolumeGroup.create makes it (128 MiB extents, 128 MiB PV metadata);
    answers its UUID."""
    lvm(devices, "pvcreate", "-y", "--metadatasize", "128m", *devices)
    tag_args = [a for t in tags for a in ("--addtag", t)]
    lvm(devices, "vgcreate", "-s", "128m", *tag_args, name, *devices)
    [row] = report(devices, "vgs", "vg_uuid", name)
    return row["vg_uuid"]


def vg_tags(devices: Sequence[str], name: str) -> list[str]:
    rows = report(devices, "vgs", "vg_tags", name)
    return [t for t in rows[0]["vg_tags"].split(",") if t]


def lvs(devices: Sequence[str], name: str) -> dict[str, dict[str, Any]]:
    rows = report(devices, "lvs", "lv_name,lv_size,lv_tags", name)
    return {
        r["lv_name"]: {"size": int(r["lv_size"]), "tags": [t for t in r["lv_tags"].split(",") if t]}
        for r in rows
    }


def decode_tag(tag: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1))), tag)


def domain_metadata(tags: Sequence[str]) -> dict[str, str]:
    """The metadata held in MDT_ VG tags, its seal checked; asserts the encoding."""
    values: dict[str, str] = {}
    checksum = None
    for tag in tags:
        if not tag.startswith("MDT_"):
            continue
        body = tag[4:]
        assert TAG_CHARS.match(body), f"unescaped character in {tag!r}"
        key, sep, value = decode_tag(body).partition("=")
        assert sep, tag
        if key == "_SHA_CKSUM":
            checksum = value
        else:
            values[key] = value
    assert checksum == upstream_checksum(values), "MDT__SHA_CKSUM seals the other lines"
    return values


def encode_tag(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_+.\-/=!:#]", lambda m: f"&{ord(m.group())}&", text)


BLANK = "00000000-0000-0000-0000-000000000000"


# -- the SPM mailbox, as a host running upstream VDSM writes and reads it --------------
# inbox: host requests, 4 KiB per host id; outbox: SPM replies, same places.  A mailbox:
# 63 messages of 64 bytes, then 60 bytes and a 4-byte little-endian byte sum of the rest.

MAILBOX = 4096
MESSAGE = 64


def extend_message(sd: str, vol: str, size_mib: int) -> bytes:
    """Version b"1", b"xtnd", the two UUIDs as little-endian 128-bit integers, the size
    in MiB as 16 hex digits, then b"0" up to 64 bytes."""

    def le(text: str) -> bytes:
        return bytes(reversed(uuid.UUID(text).bytes))

    body = b"1xtnd" + le(sd) + le(vol) + format(size_mib, "016x").encode()
    return body + b"0" * (MESSAGE - len(body))


def host_mailbox(messages: dict[int, bytes]) -> bytes:
    """A host's 4 KiB mailbox with `messages` (slot -> 64 bytes) and its checksum."""
    box = bytearray(MAILBOX)
    for slot, message in messages.items():
        assert 0 <= slot < 63 and len(message) == MESSAGE
        box[slot * MESSAGE : (slot + 1) * MESSAGE] = message
    total = sum(box[: MAILBOX - 4]) % 2**32
    box[MAILBOX - 4 :] = total.to_bytes(4, "little")
    return bytes(box)


def event_block() -> bytes:
    """What a host writes at offset 0 of inbox after a request: b"\\0evt", a random
    UUID, zeros."""
    return (b"\0evt" + uuid.uuid4().bytes).ljust(MAILBOX, b"\0")

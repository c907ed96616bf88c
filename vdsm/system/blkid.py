"""What a device's first bytes say it holds: `blkid --probe` (low-level probing, no
cache)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

BLKID = "blkid"


class BlkidError(Exception):
    pass


def parse_export(text: str) -> dict[str, dict[str, str]]:
    """`blkid -o export` output: blank-line separated KEY=VALUE groups, each naming
    its DEVNAME.  Answers the groups by device."""
    found: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if "DEVNAME" in current:
                found[current.pop("DEVNAME")] = current
            current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key.strip()] = value.strip()
    return found


def signature(probe: dict[str, str]) -> str:
    """The one word for what a device holds: its partition table type (gpt, dos), else
    its filesystem or other content type (ext4, LVM2_member, swap), else ''."""
    return probe.get("PTTYPE") or probe.get("TYPE", "")


async def probe(devices: Sequence[str], timeout: float) -> dict[str, str]:
    """The signature of each device (devices without one map to '').

    One blkid per device, run together: given several devices, blkid stops at the
    first one where it finds nothing."""
    found = await asyncio.gather(*(_probe_one(device, timeout) for device in devices))
    return dict(zip(devices, found, strict=True))


async def _probe_one(device: str, timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        BLKID,
        "--probe",
        "--output",
        "export",
        device,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    # 2: nothing found, an answer, not a failure
    if proc.returncode == 2:
        return ""
    if proc.returncode == 8:
        # ambivalent: several signatures; taken as "something is there"
        return "ambivalent"
    if proc.returncode != 0:
        raise BlkidError(
            f"blkid {device} failed (rc={proc.returncode}): {err.decode(errors='replace')}"
        )
    return signature(parse_export(out.decode(errors="replace")).get(device, {}))

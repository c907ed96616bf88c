"""New qcow2 images made once per capacity by the real qemu-img, then reused."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from vdsm.storage import blockvolumestore
from vdsm.storage.qcow2heads import Qcow2Heads
from vdsm.system import qemuimg

GiB = 1024**3


def test_heads_are_qemu_img_output_reused_per_capacity(tmp_path: Path) -> None:
    direct = tmp_path / "direct.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", str(direct), "1G"],
        check=True,
    )

    async def scenario() -> None:
        heads = Qcow2Heads(timeout=30, kept=2)
        first = await heads.get(GiB, "1.1")
        assert await heads.get(GiB, "1.1") == first and heads.made == 1
        assert first == direct.read_bytes()

        assert await heads.get(GiB, "0.10") != first  # compat is part of the key
        await heads.get(2 * GiB, "1.1")  # the oldest (1 GiB, 1.1) goes
        assert heads.made == 3
        await heads.get(GiB, "1.1")
        assert heads.made == 4

    asyncio.run(scenario())


def test_a_head_written_over_old_data_is_a_clean_image(tmp_path: Path) -> None:
    """What a recycled LV gets: the head written over leftovers of a former volume."""
    device = tmp_path / "lv"
    device.write_bytes(b"\xa5" * (8 * 1024 * 1024))
    head = asyncio.run(Qcow2Heads(timeout=30).get(GiB, "1.1"))
    blockvolumestore.write_head(str(device), head)  # O_DIRECT: not on tmpfs
    check = subprocess.run(
        ["qemu-img", "check", "--output", "json", "-f", "qcow2", str(device)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output", "json", str(device)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert info["format"] == qemuimg.QCOW2 and info["virtual-size"] == GiB


def test_qemu_img_failure_is_raised(tmp_path: Path) -> None:
    with pytest.raises(qemuimg.QemuImgError):
        asyncio.run(Qcow2Heads(timeout=30).get(-1, "1.1"))

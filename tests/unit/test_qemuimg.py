"""The qemu-img adapter against the real qemu-img: JSON answers, progress parsed from
its own output, errors with their stderr, and a cancelled convert leaves no process."""

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from vdsm.system import qemuimg

MiB = 1024 * 1024


def test_create_info_and_backing_chain(tmp_path):
    async def main():
        base, top = tmp_path / "base", tmp_path / "top"
        await qemuimg.create(str(base), fmt="qcow2", size=64 * MiB, compat="1.1")
        await qemuimg.create(
            str(top), fmt="qcow2", size=64 * MiB, backing="base", backing_fmt="qcow2"
        )
        chain = await qemuimg.info(str(top), backing_chain=True)
        assert [layer["filename"].rsplit("/", 1)[-1] for layer in chain] == ["top", "base"]
        assert chain[0]["backing-filename"] == "base"
        measured = await qemuimg.measure(str(top), fmt="qcow2", out_fmt="raw")
        assert measured["required"] == 64 * MiB

    asyncio.run(main())


def test_convert_reports_progress_up_to_100(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(src), "32M"], check=True)
    subprocess.run(
        ["qemu-io", "-f", "raw", "-c", "write -P 7 0 8M", str(src)], check=True, capture_output=True
    )
    seen = []

    async def main():
        await qemuimg.convert(
            str(src), str(dst), src_fmt="raw", dst_fmt="qcow2", create=True, progress=seen.append
        )

    asyncio.run(main())
    assert seen and seen[-1] == 100.0
    assert seen == sorted(seen)
    assert subprocess.run(["qemu-img", "compare", str(src), str(dst)]).returncode == 0


def test_failure_carries_stderr(tmp_path):
    async def main():
        await qemuimg.info(str(tmp_path / "missing"))

    with pytest.raises(qemuimg.QemuImgError) as info:
        asyncio.run(main())
    assert "missing" in info.value.err and info.value.rc == 1


def test_cancelled_convert_kills_qemu_img(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    # A large sparse source read through a throttled filter keeps qemu-img busy.
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(src), "4G"], check=True)

    async def main():
        started = asyncio.Event()
        task = asyncio.create_task(
            qemuimg.convert(
                str(src),
                str(dst),
                src_fmt="raw",
                dst_fmt="raw",
                create=True,
                progress=lambda _: started.set(),
                preallocation="full",
            )
        )
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    # No qemu-img left writing our file.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert str(dst).encode() not in cmdline

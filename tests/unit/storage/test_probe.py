"""Probes on local storage (hung storage: tests/integration/test_hung_storage.py)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from vdsm.storage import probe


def test_dd_timings_are_parsed_as_upstream_does():
    line = "1+0 records in\n1+0 records out\n4096 bytes (4.1 kB, 4.0 KiB) copied, {} s, 9 MB/s\n"
    assert probe._dd_seconds(Path("x"), 0, line.format("0.000349819")) == 0.000349819
    assert probe._dd_seconds(Path("x"), 0, line.format("3.9729e-05")) == 3.9729e-05
    assert probe._dd_seconds(Path("x"), 0, line.format("1")) == 1.0
    with pytest.raises(probe.ProbeError, match="no timing"):
        probe._dd_seconds(Path("x"), 0, "something else\n")
    with pytest.raises(probe.ProbeError, match="Input/output error"):
        probe._dd_seconds(Path("x"), 1, "dd: error reading 'x': Input/output error\n")


def test_read_delay_of_a_local_file(tmp_path: Path):
    path = tmp_path / "metadata"
    path.write_bytes(b"x" * 10000)
    delays = [asyncio.run(probe.read_delay(path, 5)) for _ in range(3)]
    assert all(0 < d < 1 for d in delays)


def test_read_delay_of_a_missing_file_is_a_storage_error(tmp_path: Path):
    with pytest.raises(probe.ProbeError) as info:
        asyncio.run(probe.read_delay(tmp_path / "missing", 5))
    assert info.value.code == 379
    assert "No such file or directory" in str(info.value)


def test_space_is_what_statvfs_says(tmp_path: Path):
    total, free = asyncio.run(probe.space(tmp_path, 5))
    st = os.statvfs(tmp_path)
    assert total == st.f_frsize * st.f_blocks
    assert abs(free - st.f_frsize * st.f_bavail) < 64 * 1024 * 1024  # others write too


def test_space_of_a_missing_path_is_a_storage_error(tmp_path: Path):
    with pytest.raises(probe.ProbeError, match="No such file or directory"):
        asyncio.run(probe.space(tmp_path / "missing", 5))


def test_a_read_that_blocks_times_out_and_its_child_is_reaped(tmp_path: Path):
    # Opening a FIFO nobody writes to blocks, for real, in the kernel.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def main() -> None:
        prober = probe.Prober()
        start = time.monotonic()
        with pytest.raises(probe.ProbeTimeout) as info:
            await prober.read_delay(fifo, 0.5)
        assert 0.5 <= time.monotonic() - start < 1.0
        # killable: it is gone at once, so the next probe of the path may start
        assert info.value.reaped is not None
        await asyncio.wait_for(info.value.reaped, 5)
        assert not prober.busy(fifo)
        with pytest.raises(probe.ProbeTimeout) as again:
            await prober.read_delay(fifo, 0.2)
        assert not isinstance(again.value, probe.ProbeBusy)
        assert again.value.reaped is not None
        await asyncio.wait_for(again.value.reaped, 5)

    asyncio.run(main())

"""Storage that really hangs (a frozen FUSE server): probes, mounts and checks on it
answer at their deadline, other storage and the event loop are not delayed, and
nothing is left behind."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.lab.hangfs import FreezableMount
from tests.lab.resources import unique_name
from vdsm.storage import probe
from vdsm.storage.connections import StorageConnections
from vdsm.system import mount

LOCALFS, POSIXFS = 4, 6
MakeMount = Callable[..., FreezableMount]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def children(*servers: FreezableMount) -> dict[int, str]:
    """pid -> state of this process's children, the FUSE servers left out."""
    skip = {fm.server.pid for fm in servers}
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found[int(entry)] = fields[0]
    return found


def wait_no_children(*servers: FreezableMount, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while children(*servers):
        assert time.monotonic() < deadline, f"children left: {children(*servers)}"
        time.sleep(0.02)


class LoopWatch:
    """Measures how late a 0.1 s sleep loop wakes up while something else runs."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.1)
            self.worst = max(self.worst, loop.time() - before - 0.1)

    def __enter__(self) -> LoopWatch:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
def hung(freezable_mount: MakeMount) -> FreezableMount:
    fm = freezable_mount()
    (fm.backing / "dom_md").mkdir()
    (fm.backing / "dom_md" / "metadata").write_bytes(b"VERSION=5\n" * 500)
    return fm


@pytest.fixture
def healthy(tmp_path: Path) -> Path:
    path = tmp_path / "healthy-metadata"
    path.write_bytes(b"x" * 8192)
    return path


def test_probes_through_the_fuse_mount(hung: FreezableMount):
    metadata = hung.path / "dom_md" / "metadata"
    assert 0 < run(probe.read_delay(metadata, 5)) < 1
    total, free = run(probe.space(hung.path, 5))
    st = os.statvfs(hung.backing)
    assert total == st.f_frsize * st.f_blocks and free > 0


def test_frozen_storage_times_out_without_delaying_anything_else(
    hung: FreezableMount, healthy: Path
):
    metadata = hung.path / "dom_md" / "metadata"
    timeout = 1.0

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with LoopWatch() as watch:

            async def timed(name: str, coro: Any) -> None:
                start = time.monotonic()
                try:
                    out[name] = await coro
                except Exception as e:
                    out[name] = e
                out[name + "_s"] = time.monotonic() - start

            async def healthy_meanwhile() -> None:
                await asyncio.sleep(0.3)  # while the hung probes are waiting
                await timed("healthy", probe.read_delay(healthy, timeout))
                await timed("healthy_space", probe.space(healthy.parent, timeout))

            await asyncio.gather(
                timed("read", probe.read_delay(metadata, timeout)),
                timed("space", probe.space(hung.path, timeout)),
                healthy_meanwhile(),
            )
        out["late"] = watch.worst
        # The killed children die at once (their requests were still queued).
        for name in ("read", "space"):
            if isinstance(out[name], probe.ProbeTimeout) and out[name].reaped is not None:
                await asyncio.wait_for(out[name].reaped, 5)
        return out

    with hung.hung():
        out = run(main())
    print(
        f"frozen read {out['read_s']:.3f} s, frozen space {out['space_s']:.3f} s, "
        f"healthy read {out['healthy_s'] * 1000:.1f} ms (dd says {out['healthy']}), "
        f"healthy space {out['healthy_space_s'] * 1000:.1f} ms, loop late {out['late']:.3f} s"
    )
    assert isinstance(out["read"], probe.ProbeTimeout)
    assert isinstance(out["space"], probe.ProbeTimeout)
    assert out["read"].code == out["space"].code == 379
    assert timeout <= out["read_s"] < timeout + 0.5
    assert timeout <= out["space_s"] < timeout + 0.5
    assert isinstance(out["healthy"], float) and out["healthy_s"] < 0.5
    assert isinstance(out["healthy_space"], tuple) and out["healthy_space_s"] < 0.5
    assert out["late"] < 0.2

    # thawed: the same probes succeed again, and no child is left, not even a zombie
    assert 0 < run(probe.read_delay(metadata, 5)) < 1
    assert run(probe.space(hung.path, 5))[0] > 0
    wait_no_children(hung)


def test_an_unkillable_probe_is_not_started_twice(hung: FreezableMount):
    metadata = hung.path / "dom_md" / "metadata"
    prober = probe.Prober()

    async def frozen() -> list[Any]:
        results: list[Any] = []
        start = time.monotonic()
        with pytest.raises(probe.ProbeTimeout) as first:
            await prober.read_delay(metadata, 0.5)
        results.append(time.monotonic() - start)
        assert first.value.reaped is not None and not first.value.reaped.done()
        assert prober.busy(metadata)
        spawned = len(children(hung))
        # killed, but asleep in the kernel until the server answers: busy
        await asyncio.sleep(0.3)
        assert not first.value.reaped.done() and prober.busy(metadata)
        start = time.monotonic()
        with pytest.raises(probe.ProbeBusy, match="still stuck"):
            await prober.read_delay(metadata, 0.5)
        results.append(time.monotonic() - start)
        assert len(children(hung)) == spawned  # nothing new was started
        results.append(first.value.reaped)
        return results

    async def after(reaped: asyncio.Future[None]) -> float:
        # The abandoned child exits as soon as the server answers.
        await asyncio.wait_for(reaped, 5)
        assert not prober.busy(metadata)
        return await prober.read_delay(metadata, 5)

    async def main() -> None:
        hung.freeze(killable=False)
        try:
            first_s, busy_s, reaped = await frozen()
            stuck = [pid for pid, state in children(hung).items() if state == "D"]
            assert stuck, "the abandoned dd should be in uninterruptible sleep"
        finally:
            hung.thaw()
        assert 0.5 <= first_s < 1.0 and busy_s < 0.05
        assert 0 < await after(reaped) < 1

    run(main())
    wait_no_children(hung)


def test_without_direct_io_the_read_is_buffered_and_said_once(
    freezable_mount: MakeMount, caplog: pytest.LogCaptureFixture
):
    fm = freezable_mount(direct_io=False)
    (fm.backing / "metadata").write_bytes(b"x" * 4096)
    metadata = fm.path / "metadata"
    with open(metadata, "rb") as f:  # a buffered read works there...
        assert f.read(1) == b"x"
    with pytest.raises(OSError, match="Invalid argument"):  # ...a direct one does not
        os.close(os.open(metadata, os.O_RDONLY | os.O_DIRECT))

    caplog.set_level(logging.WARNING, logger="vdsm.storage.probe")
    delays = [run(probe.read_delay(metadata, 5)) for _ in range(3)]
    assert all(0 < d < 1 for d in delays)
    warnings = [r for r in caplog.records if "direct I/O is not supported" in r.getMessage()]
    assert len(warnings) == 1


def test_a_mount_that_hangs_is_477_at_its_timeout(
    hung: FreezableMount, shared_tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    conns = StorageConnections(shared_tmp_path / "dc", mount_timeout=1, check_timeout=1)
    source = str(hung.path / "dom_md")
    params = [{"id": "bind", "connection": source, "mnt_options": "bind"}]
    target = conns.mount_point(POSIXFS, source)
    with hung.hung():
        start = time.monotonic()
        answer = run(conns.connect(POSIXFS, params))
        elapsed = time.monotonic() - start
    assert answer == [{"id": "bind", "status": 477}]
    assert 1.0 <= elapsed < 2.0
    assert f"mount -o bind {source} {target}: no answer after 1 s (killed)" in caplog.text
    assert mount.mounted_at(target) == [] and not target.exists()
    wait_no_children(hung)


def test_a_local_directory_that_hangs_is_451_at_its_timeout(
    hung: FreezableMount, shared_tmp_path: Path
):
    conns = StorageConnections(shared_tmp_path / "dc", check_timeout=1)
    params = [{"id": "local", "connection": str(hung.path)}]
    with hung.hung():
        start = time.monotonic()
        answer = run(conns.connect(LOCALFS, params))
        elapsed = time.monotonic() - start
    assert answer == [{"id": "local", "status": 451}]
    assert 1.0 <= elapsed < 2.0
    assert not os.path.lexists(conns.mount_point(LOCALFS, str(hung.path)))
    wait_no_children(hung)


def test_connected_storage_that_hangs_is_found_and_disconnected_promptly(
    freezable_mount: MakeMount, shared_tmp_path: Path
):
    conns = StorageConnections(shared_tmp_path / "dc", mount_timeout=5, check_timeout=5)
    source = f"{unique_name()}:/export"  # a server:/path, as an NFS or gluster mount shows
    target = conns.mount_point(POSIXFS, source)
    fm = freezable_mount(mountpoint=target, source=source)
    params = [{"id": "c", "connection": source, "vfs_type": "fuse.hangfs"}]
    with fm.hung():
        start = time.monotonic()
        # already mounted: known from the mount table, the mount is never touched
        assert run(conns.connect(POSIXFS, params)) == [{"id": "c", "status": 0}]
        # forced lazy umount: gone at once although the server does not answer
        assert run(conns.disconnect(POSIXFS, params)) == [{"id": "c", "status": 0}]
        elapsed = time.monotonic() - start
    assert elapsed < 0.5
    assert mount.mounted_at(target) == [] and not target.exists()
    wait_no_children(fm)


def test_teardown_unmounts_a_frozen_mount_with_stuck_processes(freezable_mount: MakeMount):
    fm = freezable_mount()
    (fm.backing / "f").write_text("x")
    fm.freeze(killable=False)
    reader = subprocess.Popen(["cat", str(fm.path / "f")], stdout=subprocess.DEVNULL)
    time.sleep(0.3)
    assert reader.poll() is None  # stuck
    forced = fm.unmount()  # what the fixture does at teardown
    assert reader.wait(5) == 0  # thawed first: it got its answer
    assert forced == []
    assert not mount.mounted_at(fm.path) and fm.server.poll() is not None

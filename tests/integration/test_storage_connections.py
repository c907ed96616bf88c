"""Storage connections against real mounts: ext4 on a loop device, tmpfs, local dirs.

NFS cannot be mounted here (no nfs kernel module): its test checks the exact command
line against a real mount(8) that fails for that reason.  Hanging storage is in
test_hung_storage.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.fixtures import require_command, require_root
from tests.lab.resources import LoopDevice, unique_name
from vdsm.storage.connections import RWX, AccessCheck, StorageConnections
from vdsm.system import mount

NFS, LOCALFS, POSIXFS = 1, 4, 6
NOBODY = AccessCheck(RWX, ("nobody",), ("nogroup",))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def repo(shared_tmp_path: Path) -> Iterator[Path]:
    """A repository others can traverse (the access checks run as qemu's user too);
    whatever a failed test left mounted under it is unmounted afterwards."""
    require_root()
    path = shared_tmp_path / "data-center"
    yield path
    for record in reversed(mount.read_mounts()):
        if record.target.startswith(str(path) + "/"):
            subprocess.run(["umount", "-l", record.target], check=False)


@pytest.fixture
def conns(repo: Path) -> StorageConnections:
    return StorageConnections(repo, mount_timeout=30, check_timeout=10)


@pytest.fixture
def ext4(loop_device: Callable[[int | str], LoopDevice]) -> Callable[[], str]:
    require_command("mkfs.ext4", "e2fsprogs")

    def create() -> str:
        dev = loop_device("32m")
        subprocess.run(["mkfs.ext4", "-q", "-F", dev.path], check=True, capture_output=True)
        return dev.path

    return create


def tmpfs(name: str | None = None, options: str = "size=8m", **more: Any) -> dict[str, Any]:
    return {
        "id": unique_name(),
        "connection": name or unique_name(),
        "vfs_type": "tmpfs",
        "mnt_options": options,
        **more,
    }


def statuses(answer: list[dict[str, Any]]) -> list[int]:
    return [a["status"] for a in answer]


# -- POSIXFS -------------------------------------------------------------------------------


def test_posixfs_ext4_on_a_loop_device(conns: StorageConnections, ext4: Callable[[], str]):
    device = ext4()
    params = [{"id": "c1", "connection": device, "vfs_type": "ext4", "mnt_options": ""}]
    target = conns.mount_point(POSIXFS, device)
    assert target == conns.repository / "mnt" / device.replace("/", "_")

    assert run(conns.connect(POSIXFS, params)) == [{"id": "c1", "status": 0}]
    (record,) = mount.mounted_at(target)
    assert (record.spec, record.vfstype) == (device, "ext4")
    assert (target / "lost+found").is_dir()

    # idempotent: mounted once, whatever the number of connects
    assert run(conns.connect(POSIXFS, params)) == [{"id": "c1", "status": 0}]
    assert len(mount.mounted_at(target)) == 1

    assert run(conns.disconnect(POSIXFS, params)) == [{"id": "c1", "status": 0}]
    assert mount.mounted_at(target) == []
    assert not target.exists()
    # idempotent too (upstream answers 477 here)
    assert run(conns.disconnect(POSIXFS, params)) == [{"id": "c1", "status": 0}]


def test_posixfs_tmpfs_with_options(conns: StorageConnections):
    params = [tmpfs(options="size=8m,mode=0755")]
    assert statuses(run(conns.connect(POSIXFS, params))) == [0]
    target = conns.mount_point(POSIXFS, params[0]["connection"])
    (record,) = mount.mounted_at(target)
    assert "size=8192k" in record.options
    assert statuses(run(conns.disconnect(POSIXFS, params))) == [0]
    assert not target.exists()


def test_a_mount_failure_is_477_and_leaves_nothing(
    conns: StorageConnections, loop_device: Callable[[int | str], LoopDevice]
):
    blank = loop_device("8m").path  # no file system on it
    params = [{"id": "c1", "connection": blank, "vfs_type": "ext4"}]
    assert run(conns.connect(POSIXFS, params)) == [{"id": "c1", "status": 477}]
    target = conns.mount_point(POSIXFS, blank)
    assert mount.mounted_at(target) == [] and not target.exists()


def test_nfs_mount_command_line(conns: StorageConnections, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="vdsm")
    params = [
        {"id": "v41", "connection": "srv.example.com:/exp/", "protocol_version": "4.1"},
        {"id": "v3", "connection": "srv.example.com:/other", "timeout": 600, "retrans": "6"},
        {
            "id": "auto",
            "connection": "[fe80::1]:/e",
            "protocol_version": "auto",
            "mnt_options": "sec=sys",
        },
    ]
    assert statuses(run(conns.connect(NFS, params))) == [477, 477, 477]
    mnt = conns.repository / "mnt"
    expected = [
        "mount -t nfs -o soft,nosharecache,timeo=100,retrans=3,nfsvers=4,minorversion=1 "
        f"srv.example.com:/exp {mnt}/srv.example.com:_exp",
        "mount -t nfs -o soft,nosharecache,timeo=600,retrans=6,nfsvers=3,nolock "
        f"srv.example.com:/other {mnt}/srv.example.com:_other",
        f"mount -t nfs -o soft,nosharecache,timeo=100,retrans=3,sec=sys,nolock "
        f"[fe80::1]:/e {mnt}/[fe80::1]:_e",
    ]
    for command in expected:
        failures = [r.getMessage() for r in caplog.records if command in r.getMessage()]
        assert any("unknown filesystem type 'nfs'" in text for text in failures), command
    # the mount points made for the attempts are gone again
    assert not mnt.exists() or os.listdir(mnt) == []


def test_each_entry_has_its_own_status_in_order(
    conns: StorageConnections, loop_device: Callable[[int | str], LoopDevice]
):
    good = tmpfs()
    bad = {"id": "bad", "connection": loop_device("8m").path, "vfs_type": "ext4"}
    twice = dict(good, id="twice")
    answer = run(conns.connect(POSIXFS, [good, bad, twice]))
    assert answer == [
        {"id": good["id"], "status": 0},
        {"id": "bad", "status": 477},
        {"id": "twice", "status": 0},
    ]
    # the same connection twice in one call: one mount
    assert len(mount.mounted_at(conns.mount_point(POSIXFS, good["connection"]))) == 1
    assert statuses(run(conns.disconnect(POSIXFS, [good]))) == [0]


def test_concurrent_connects_of_one_connection_mount_once(conns: StorageConnections):
    params = [tmpfs()]

    async def both() -> list[list[dict[str, Any]]]:
        return list(await asyncio.gather(*(conns.connect(POSIXFS, params) for _ in range(4))))

    assert [statuses(a) for a in run(both())] == [[0]] * 4
    target = conns.mount_point(POSIXFS, params[0]["connection"])
    assert len(mount.mounted_at(target)) == 1
    run(conns.disconnect(POSIXFS, params))


def test_another_file_system_on_the_mount_point_is_477(conns: StorageConnections):
    params = [tmpfs()]
    target = conns.mount_point(POSIXFS, params[0]["connection"])
    target.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "someone-else", str(target)], check=True)
    try:
        assert statuses(run(conns.connect(POSIXFS, params))) == [477]
        # not ours: left alone
        assert [r.spec for r in mount.mounted_at(target)] == ["someone-else"]
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_disconnect_removes_stacked_mounts(conns: StorageConnections):
    params = [tmpfs()]
    assert statuses(run(conns.connect(POSIXFS, params))) == [0]
    target = conns.mount_point(POSIXFS, params[0]["connection"])
    # a second mount of the same source on top (as a crash between two mounts leaves)
    subprocess.run(["mount", "-t", "tmpfs", params[0]["connection"], str(target)], check=True)
    assert len(mount.mounted_at(target)) == 2
    assert statuses(run(conns.disconnect(POSIXFS, params))) == [0]
    assert mount.mounted_at(target) == [] and not target.exists()


def test_a_mount_point_that_cannot_be_removed_is_452(conns: StorageConnections):
    params = [tmpfs()]
    target = conns.mount_point(POSIXFS, params[0]["connection"])
    target.mkdir(parents=True)
    (target / "hidden-under-the-mount").write_text("x")
    assert statuses(run(conns.connect(POSIXFS, params))) == [0]
    assert not (target / "hidden-under-the-mount").exists()  # the mount covers it
    assert statuses(run(conns.disconnect(POSIXFS, params))) == [452]
    assert mount.mounted_at(target) == []  # unmounted all the same
    (target / "hidden-under-the-mount").unlink()
    target.rmdir()


# -- access (469) ----------------------------------------------------------------------------


def test_a_mount_qemu_cannot_read_is_469_and_unmounted(conns: StorageConnections):
    # mode 0700 root: the daemon may, the user qemu runs as (libvirt-qemu) may not
    params = [tmpfs(options="size=8m,mode=0700")]
    assert statuses(run(conns.connect(POSIXFS, params))) == [469]
    target = conns.mount_point(POSIXFS, params[0]["connection"])
    assert mount.mounted_at(target) == [] and not target.exists()


def test_access_is_checked_for_the_configured_users(repo: Path):
    conns = StorageConnections(repo, check_timeout=10, access_checks=[NOBODY])
    root_owned = [tmpfs(options="size=8m,mode=0755")]
    assert statuses(run(conns.connect(POSIXFS, root_owned))) == [469]
    nobodys = [tmpfs(options="size=8m,mode=0755,uid=65534,gid=65534")]
    assert statuses(run(conns.connect(POSIXFS, nobodys))) == [0]
    assert statuses(run(conns.disconnect(POSIXFS, nobodys))) == [0]


# -- LOCALFS ---------------------------------------------------------------------------------


@pytest.fixture
def local_dir(shared_tmp_path: Path) -> Path:
    path = shared_tmp_path / "local_storage"
    path.mkdir()
    path.chmod(0o755)
    return path


def test_localfs_links_the_directory(conns: StorageConnections, local_dir: Path):
    params = [{"id": "l1", "connection": str(local_dir) + "/"}]
    link = conns.mount_point(LOCALFS, str(local_dir))
    assert link.name == str(local_dir).replace("_", "__").replace("/", "_")

    assert run(conns.connect(LOCALFS, params)) == [{"id": "l1", "status": 0}]
    assert os.readlink(link) == str(local_dir)
    assert run(conns.connect(LOCALFS, params)) == [{"id": "l1", "status": 0}]
    assert os.readlink(link) == str(local_dir)

    assert run(conns.disconnect(LOCALFS, params)) == [{"id": "l1", "status": 0}]
    assert not os.path.lexists(link)
    assert local_dir.is_dir()  # only the link goes
    assert run(conns.disconnect(LOCALFS, params)) == [{"id": "l1", "status": 0}]


def test_localfs_replaces_a_stale_link(conns: StorageConnections, local_dir: Path):
    link = conns.mount_point(LOCALFS, str(local_dir))
    link.parent.mkdir(parents=True)
    link.symlink_to("/somewhere/else")
    assert statuses(run(conns.connect(LOCALFS, [{"id": "l", "connection": str(local_dir)}]))) == [0]
    assert os.readlink(link) == str(local_dir)


def test_localfs_needs_an_existing_directory(conns: StorageConnections, local_dir: Path):
    (local_dir / "file").write_text("x")
    params = [
        {"id": "missing", "connection": str(local_dir / "missing")},
        {"id": "file", "connection": str(local_dir / "file")},
    ]
    assert statuses(run(conns.connect(LOCALFS, params))) == [1000, 1000]
    assert not (conns.repository / "mnt").exists() or os.listdir(conns.repository / "mnt") == []


def test_localfs_permissions_are_469(conns: StorageConnections, local_dir: Path, repo: Path):
    local_dir.chmod(0o700)  # qemu's user cannot enter
    params = [{"id": "l", "connection": str(local_dir)}]
    assert statuses(run(conns.connect(LOCALFS, params))) == [469]
    assert not os.path.lexists(conns.mount_point(LOCALFS, str(local_dir)))

    local_dir.chmod(0o755)
    strict = StorageConnections(repo, check_timeout=10, access_checks=[NOBODY])
    assert statuses(run(strict.connect(LOCALFS, params))) == [469]  # nobody cannot write
    os.chown(local_dir, 65534, 65534)
    assert statuses(run(strict.connect(LOCALFS, params))) == [0]
    with contextlib.suppress(Exception):
        run(strict.disconnect(LOCALFS, params))

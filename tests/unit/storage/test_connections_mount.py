"""The mount adapter (vdsm.system.mount): the mount table and the command lines."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from vdsm import errors
from vdsm.system import mount

TABLE = r"""/dev/vda / ext4 rw,relatime 0 0
srv:/exp /rhev/data-center/mnt/srv:_exp nfs4 rw,soft,nosharecache,timeo=100 0 0
tmpfs /rhev/data-center/mnt/with\040space tmpfs rw 0 0
/dev/loop3 /rhev/data-center/mnt/gone\134dir (deleted) ext4 rw 0 0
first /stacked tmpfs rw 0 0
second /stacked tmpfs ro 0 0
"""


def test_parse_mount_table():
    records = mount.parse_mounts(TABLE)
    assert records[1] == mount.MountRecord(
        "srv:/exp",
        "/rhev/data-center/mnt/srv:_exp",
        "nfs4",
        ("rw", "soft", "nosharecache", "timeo=100"),
    )
    # octal escapes decoded, " (deleted)" dropped
    assert records[2].target == "/rhev/data-center/mnt/with space"
    assert records[3].target == "/rhev/data-center/mnt/gone\\dir"


def test_stacked_mounts_bottom_first():
    records = mount.parse_mounts(TABLE)
    assert [r.spec for r in mount.mounted_at("/stacked", records)] == ["first", "second"]
    assert mount.mounted_at(Path("/nothing"), records) == []


def test_the_real_mount_table_has_the_root():
    assert any(r.target == "/" for r in mount.read_mounts())


def test_command_lines():
    assert mount.mount_argv("srv:/e", Path("/m"), "nfs", "soft,timeo=100") == [
        "mount",
        "-t",
        "nfs",
        "-o",
        "soft,timeo=100",
        "srv:/e",
        "/m",
    ]
    assert mount.mount_argv("/dev/x", "/m") == ["mount", "/dev/x", "/m"]
    assert mount.umount_argv("/m", force=True, lazy=True) == ["umount", "-f", "-l", "-c", "/m"]
    assert mount.umount_argv("/m") == ["umount", "-c", "/m"]


def test_loop_backing_file_ignores_what_is_not_a_device(tmp_path: Path):
    assert mount.loop_backing_file("srv:/exp") is None
    assert mount.loop_backing_file(str(tmp_path)) is None
    assert mount.loop_backing_file("/dev/null") is None


def test_a_failing_command_is_a_mount_error(tmp_path: Path):
    with pytest.raises(errors.MountError) as info:
        asyncio.run(mount.umount(tmp_path / "not-mounted", timeout=10))
    assert info.value.code == 477
    assert "umount -c" in str(info.value) and "exit status" in str(info.value)


def test_a_command_that_hangs_is_a_mount_error_at_its_timeout():
    start = time.monotonic()
    with pytest.raises(errors.MountError, match=r"sleep 30: no answer after 0.3 s \(killed\)"):
        asyncio.run(mount._checked(["sleep", "30"], 0.3))
    assert time.monotonic() - start < 1.5


def test_a_missing_command_is_a_mount_error():
    with pytest.raises(errors.MountError, match="cannot run no-such-command"):
        asyncio.run(mount._checked(["no-such-command"], 5))


def test_run_kills_and_reaps_what_runs_too_long():
    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(mount.CommandTimeout) as info:
            await mount.run(["sleep", "30"], 0.3)
        assert time.monotonic() - start < 1.5
        await asyncio.wait_for(info.value.reaped, 5)  # killed: it exits at once

    asyncio.run(main())
    assert not _zombie_children()


def test_access_as_this_process(tmp_path: Path):
    async def main() -> tuple[bool, bool, bool]:
        return (
            await mount.access(tmp_path, read=True, write=True, execute=True, timeout=5),
            await mount.access(tmp_path, directory=True, timeout=5),
            await mount.access(tmp_path / "nothing", directory=True, timeout=5),
        )

    assert asyncio.run(main()) == (True, True, False)


def _zombie_children() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(entry))
    return found

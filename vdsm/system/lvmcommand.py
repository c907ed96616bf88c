"""What an `lvm` command line is made of, and how one fails: the `--config` that
restricts LVM to the given devices, size and tag arguments, the device-mapper check
that decides the mode, and the errors.  vdsm/system/lvm.py runs the commands."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

MiB = 1024 * 1024


class LvmError(Exception):
    """An lvm command failed: its argv (without the long --config), exit code, stderr."""

    def __init__(self, argv: Sequence[str], rc: int | None, err: str) -> None:
        super().__init__(argv, rc, err)
        self.argv = [a for a in argv if not a.startswith("devices {")]
        self.rc = rc
        self.err = "\n".join(
            line.strip()
            for line in err.strip().splitlines()
            # noise of every metadata-only call; not the reason for anything
            if "NOT backed up" not in line and "Activation disabled" not in line
        )

    def __str__(self) -> str:
        return f"{' '.join(self.argv)} failed (rc={self.rc}): {self.err}"

    @property
    def not_found(self) -> bool:
        return "not found" in self.err or "Failed to find" in self.err


class LvmTimeout(LvmError):
    pass


class LvmUnavailable(LvmError):
    """The operation needs device-mapper and this kernel has none."""


def device_mapper_available() -> bool:
    """The kernel's device-mapper is loaded.  /dev/mapper/control alone proves nothing:
    LVM creates the node even where opening it fails with ENODEV."""
    try:
        with open("/proc/misc") as f:
            return any(line.split()[-1:] == ["device-mapper"] for line in f)
    except OSError:
        return False


def build_config(devices: Iterable[str]) -> str:
    """The --config of every command: LVM sees `devices` and nothing else."""
    accept = "".join(f'"a|^{re.escape(d)}$|", ' for d in sorted(set(devices)))
    flt = f'[{accept}"r|.*|"]'
    activation = "monitoring=0"
    if not os.path.exists("/run/udev/control"):
        # no udevd: LVM must make the /dev nodes itself and must not wait for udev
        activation += " udev_sync=0 udev_rules=0"
    return (
        f"devices {{ filter={flt} global_filter={flt} use_devicesfile=0 "
        f'obtain_device_list_from_udev=0 write_cache_state=0 hints="none" }} '
        f"global {{ use_lvmpolld=0 }} "
        f"backup {{ backup=0 archive=0 }} "
        f"activation {{ {activation} }}"
    )


class DuplicateVG(LvmError):
    """Two VGs of one name are visible (say, a cloned LUN): no command by name is safe."""

    def __init__(self, name: str, uuids: Iterable[str]) -> None:
        super().__init__(["vgs", name], None, f"VG {name} found twice: {', '.join(uuids)}")
        self.name = name


def _mib(size: int) -> str:
    """LVM sizes in whole MiB (it refuses sizes that are not multiples of 512)."""
    return f"{-(-size // MiB)}m"


def _tag_args(option: str, tags: Iterable[str]) -> list[str]:
    args: list[str] = []
    for tag in tags:
        args += [option, tag]
    return args

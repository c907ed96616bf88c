"""Real system objects for tests: loop devices, LVM volume groups, network namespaces.

Plain classes (no pytest here) so the kernel-lab tests and scripts can use them too.
Names carry the owner's PID (see tests.lab.leftovers) so orphans can be swept.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.leftovers import PREFIX, delete_netns, detach_loop

_counter = itertools.count(1)


def unique_name(sep: str = "-") -> str:
    """`vdsmlab-<pid>-<n>`: unique per process, and says who owns it."""
    return f"{PREFIX}{sep}{os.getpid()}{sep}{next(_counter)}"


class CommandError(RuntimeError):
    def __init__(self, argv: Sequence[str], proc: subprocess.CompletedProcess[str]):
        self.argv = list(argv)
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(
            f"{' '.join(argv)} exited with {proc.returncode}:\n"
            f"{(proc.stderr or proc.stdout).strip()}"
        )


def run(
    argv: Sequence[str],
    check: bool = True,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        env={**os.environ, **env} if env else None,
    )
    if check and proc.returncode != 0:
        raise CommandError(argv, proc)
    return proc


def parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)i?b?\s*", size.lower())
    if not m:
        raise ValueError(f"bad size {size!r}")
    return int(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " ")


def device_mapper_available() -> bool:
    return os.path.exists("/dev/mapper/control")


# --- loop devices ---------------------------------------------------------------------


@dataclass
class LoopDevice:
    path: str
    backing: Path
    size: int

    @classmethod
    def create(cls, directory: Path, size: int | str) -> LoopDevice:
        nbytes = parse_size(size)
        if not os.path.exists("/dev/loop-control"):
            run(["modprobe", "loop"], check=False)
        backing = directory / f"{unique_name()}.img"
        with open(backing, "wb") as f:
            f.truncate(nbytes)  # sparse
        try:
            path = run(["losetup", "--find", "--show", str(backing)]).stdout.strip()
        except BaseException:
            backing.unlink(missing_ok=True)
            raise
        return cls(path, backing, nbytes)

    def attached(self) -> bool:
        proc = run(["losetup", "--json", "--list", "--output", "NAME,BACK-FILE"], check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            return False
        return any(
            d["name"] == self.path and (d.get("back-file") or "").startswith(str(self.backing))
            for d in json.loads(proc.stdout)["loopdevices"]
        )

    def detach(self) -> None:
        if self.attached():
            detach_loop(self.path)
        self.backing.unlink(missing_ok=True)


# --- LVM --------------------------------------------------------------------------------

LVM_ENV = {"LVM_SUPPRESS_FD_WARNINGS": "1"}


def lvm_config(devices: Iterable[str]) -> str:
    """An lvm --config that sees only `devices`: parallel VGs never see each other,
    and nothing of the host's own storage is scanned, backed up or monitored."""
    accept = "".join(f'"a|^{re.escape(d)}$|",' for d in devices)
    flt = f'[{accept}"r|.*|"]'
    activation = "monitoring=0"
    if not os.path.exists("/run/udev/control"):  # no udevd (host): do not wait for it
        activation += " udev_sync=0 udev_rules=0"
    return (
        f"devices {{ filter={flt} global_filter={flt} use_devicesfile=0 "
        f"obtain_device_list_from_udev=0 write_cache_state=0 }} "
        f"backup {{ backup=0 archive=0 }} global {{ use_lvmpolld=0 }} "
        f"activation {{ {activation} }}"
    )


@dataclass
class VolumeGroup:
    """A real VG on its own loop device.  On a host without device-mapper LVs are
    created inactive (`--driverloaded n -an --zero n`); in the kernel lab they can be
    activated and read and written through /dev/VG/LV."""

    name: str
    pv: LoopDevice
    config: str
    lvs: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        pv: LoopDevice,
        tags: Iterable[str] = (),
        name: str | None = None,
        extent_size: str = "4m",
    ) -> VolumeGroup:
        vg = cls(name or unique_name("_"), pv, lvm_config([pv.path]))
        vg.lvm("pvcreate", "-y", pv.path)
        vg.lvm(
            "vgcreate",
            "-s",
            extent_size,
            *itertools.chain.from_iterable(("--addtag", t) for t in tags),
            vg.name,
            pv.path,
        )
        return vg

    def lvm(
        self, command: str, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `lvm COMMAND --config <this VG's filter> ARGS`."""
        return run(
            ["lvm", command, "--config", self.config, *args],
            check=check,
            timeout=timeout,
            env=LVM_ENV,
        )

    def report(self, command: str, fields: str, *args: str) -> list[dict[str, str]]:
        """`vgs`/`lvs`/`pvs` rows as dicts (--reportformat json)."""
        out = self.lvm(
            command, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", fields, *args
        ).stdout
        data = json.loads(out)["report"][0]
        key = {"vgs": "vg", "lvs": "lv", "pvs": "pv"}[command]
        rows: list[dict[str, str]] = data[key]
        return rows

    def tags(self) -> list[str]:
        rows = self.report("vgs", "vg_tags", self.name)
        return [t for t in rows[0]["vg_tags"].split(",") if t]

    def create_lv(
        self, name: str, size: int | str, tags: Iterable[str] = (), activate: bool = False
    ) -> str:
        """Create an LV; returns /dev/VG/LV (a usable device only when `activate`)."""
        tag_args = list(itertools.chain.from_iterable(("--addtag", t) for t in tags))
        nbytes = parse_size(size)
        if activate:
            self.lvm(
                "lvcreate", "-y", "-W", "n", "-n", name, "-L", f"{nbytes}b", *tag_args, self.name
            )
        else:
            self.lvm(
                "lvcreate",
                "--driverloaded",
                "n",
                "-an",
                "--zero",
                "n",
                "-y",
                "-n",
                name,
                "-L",
                f"{nbytes}b",
                *tag_args,
                self.name,
            )
        self.lvs.append(name)
        return f"/dev/{self.name}/{name}"

    def exists(self) -> bool:
        return self.lvm("vgs", self.name, check=False).returncode == 0

    def remove(self) -> None:
        if not self.pv.attached() or not self.exists():
            return
        if device_mapper_available():
            self.lvm("vgchange", "-an", self.name, check=False)
            self.lvm("vgremove", "-f", self.name)
        else:
            self.lvm("vgremove", "--driverloaded", "n", "-f", self.name)
        self.lvm("pvremove", "-y", "-ff", self.pv.path, check=False)


# --- network namespaces -------------------------------------------------------------


@dataclass
class NetNS:
    """A network namespace (`ip netns`), with a veth pair `veth0`/`veth1` inside, up."""

    name: str
    veth: tuple[str, str] = ("veth0", "veth1")

    @classmethod
    def create(cls, veth: tuple[str, str] | None = ("veth0", "veth1")) -> NetNS:
        if shutil.which("ip") is None:
            raise RuntimeError("ip not installed: apt-get install iproute2 (make deps)")
        ns = cls(unique_name())
        run(["ip", "netns", "add", ns.name])
        try:
            ns.ip("link", "set", "lo", "up")
            if veth:
                ns.add_veth(*veth)
                ns.veth = veth
        except BaseException:
            ns.delete()
            raise
        return ns

    def ip(self, *args: str, check: bool = True) -> str:
        return run(["ip", "-n", self.name, *args], check=check).stdout

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout)

    def add_veth(self, a: str, b: str, peer_ns: NetNS | None = None) -> None:
        """A veth pair: `a` here, `b` here or in `peer_ns`; both up."""
        self.ip("link", "add", a, "type", "veth", "peer", "name", b)
        if peer_ns is not None:
            self.ip("link", "set", b, "netns", peer_ns.name)
            peer_ns.ip("link", "set", b, "up")
        else:
            self.ip("link", "set", b, "up")
        self.ip("link", "set", a, "up")

    def links(self) -> dict[str, dict[str, object]]:
        return {link["ifname"]: link for link in json.loads(self.ip("-j", "-d", "link", "show"))}

    def exists(self) -> bool:
        return self.name in run(["ip", "netns", "list"]).stdout.split()

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.exists():
                delete_netns(self.name)

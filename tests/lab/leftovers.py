"""Find and remove what lab fixtures leave behind when a test run dies half-way.

Every system object a fixture makes carries the PID of the pytest process that owns it:
network namespaces, loop-device backing files, libvirt domains, sanlock lockspaces and
/var/tmp dirs are named `vdsmlab-<pid>-<n>`, and processes started by fixtures carry
`VDSM_LAB_OWNER=<pid>` in their environment.  Fixtures remove their own objects at
teardown, whatever the test's outcome; what survives a killed session (its owner PID is
gone) is swept at the start of the next session, and `tools/run-tests` checks at the
end that nothing is left.

    python -m tests.lab.leftovers [--clean]     # list (and remove) orphans; exit 1 if any
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.lab.services import alive

PREFIX = "vdsmlab"
OWNER_ENV = "VDSM_LAB_OWNER"
SHARED_TMP = Path("/var/tmp")  # dirs qemu must read (shared_tmp_path fixture)
_NAME = re.compile(rf"{PREFIX}[-_](\d+)[-_]")


def owner_of(name: str) -> int | None:
    m = _NAME.search(name)
    return int(m.group(1)) if m else None


def orphaned(name: str) -> bool:
    pid = owner_of(name)
    return pid is not None and not alive(pid)


@dataclass
class Leftover:
    kind: str
    name: str
    owner: int

    def __str__(self) -> str:
        return f"{self.kind} {self.name} (owner pid {self.owner} is gone)"


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def namespaces() -> list[str]:
    if shutil.which("ip") is None:
        return []
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def loop_devices() -> list[tuple[str, str]]:
    """(device, backing file) of attached loop devices."""
    if shutil.which("losetup") is None:
        return []
    proc = _run(["losetup", "--json", "--list", "--output", "NAME,BACK-FILE"])
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return [
        (d["name"], d.get("back-file") or "")
        for d in json.loads(proc.stdout).get("loopdevices", [])
    ]


def owned_processes() -> list[tuple[int, int]]:
    """(pid, owner) of processes carrying VDSM_LAB_OWNER in their environment."""
    found = []
    marker = f"{OWNER_ENV}=".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for var in environ.split(b"\0"):
            if var.startswith(marker) and var[len(marker) :].isdigit():
                found.append((int(entry.name), int(var[len(marker) :])))
                break
    return found


def libvirt_domains(uri: str = "qemu:///system") -> list[str]:
    if shutil.which("virsh") is None:
        return []
    try:
        proc = _run(["virsh", "-c", uri, "list", "--all", "--name"], timeout=10)
    except subprocess.TimeoutExpired:
        return []
    if proc.returncode != 0:
        return []
    return [n.strip() for n in proc.stdout.splitlines() if n.strip()]


def sanlock_lockspaces() -> list[str]:
    """`name:host_id:path:offset` of joined lockspaces (empty when sanlock is not up)."""
    if shutil.which("sanlock") is None:
        return []
    try:
        proc = _run(["sanlock", "client", "status"], timeout=10)
    except subprocess.TimeoutExpired:
        return []
    return [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("s ")]


def leave_lockspaces(below: str) -> list[str]:
    """Leaves the joined lockspaces whose `ids` lies below `below`: vdsmd keeps its host
    ids when it stops (as upstream does), so a test's daemon leaves them joined."""
    left = []
    for ls in sanlock_lockspaces():
        path = ls.split(":", 2)[2]
        if path.startswith(below.rstrip("/") + "/"):
            _run(["sanlock", "client", "rem_lockspace", "-s", ls], timeout=60)
            left.append(ls)
    return left


def find() -> list[Leftover]:
    found: list[Leftover] = []
    for ns in namespaces():
        if orphaned(ns):
            found.append(Leftover("netns", ns, owner_of(ns) or 0))
    for dev, back in loop_devices():
        if orphaned(os.path.basename(back)):
            found.append(Leftover("loop", f"{dev} ({back})", owner_of(os.path.basename(back)) or 0))
    for pid, owner in owned_processes():
        if not alive(owner) and alive(pid):
            found.append(Leftover("process", f"{pid} {_cmdline(pid)}", owner))
    for dom in libvirt_domains():
        if orphaned(dom):
            found.append(Leftover("domain", dom, owner_of(dom) or 0))
    for ls in sanlock_lockspaces():
        # A daemon under test names lockspaces after domains: the owner is in the path.
        if orphaned(ls):
            found.append(Leftover("lockspace", ls, owner_of(ls) or 0))
    for path in SHARED_TMP.glob(f"{PREFIX}-*"):
        if orphaned(path.name):
            found.append(Leftover("tmpdir", str(path), owner_of(path.name) or 0))
    return found


def remove(item: Leftover) -> None:
    if item.kind == "process":
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(item.name.split()[0]), signal.SIGKILL)
    elif item.kind == "netns":
        delete_netns(item.name)
    elif item.kind == "loop":
        detach_loop(item.name.split()[0])
    elif item.kind == "domain":
        _run(["virsh", "-c", "qemu:///system", "destroy", item.name], timeout=30)
        _run(["virsh", "-c", "qemu:///system", "undefine", "--nvram", item.name], timeout=30)
    elif item.kind == "lockspace":
        _run(["sanlock", "client", "rem_lockspace", "-s", item.name], timeout=60)
    elif item.kind == "tmpdir":
        # A daemon under test may have mounted storage below it: never delete through
        # a mount.
        unmount(lambda source, target: target == item.name or target.startswith(item.name + "/"))
        shutil.rmtree(item.name, ignore_errors=True)


def delete_netns(name: str) -> None:
    """Kill what runs in the namespace, then delete it."""
    pids = _run(["ip", "netns", "pids", name]).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    proc = _run(["ip", "netns", "delete", name])
    if proc.returncode != 0 and name in namespaces():
        raise RuntimeError(f"ip netns delete {name}: {proc.stderr.strip()}")


def _mounts() -> list[tuple[str, str]]:
    """(source, mount point) of every mount, octal escapes decoded."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        source, target = (f.encode().decode("unicode_escape") for f in fields[:2])
        found.append((source, target))
    return found


def unmount(predicate: object) -> None:
    """Lazily unmount every mount matching predicate(source, target), deepest first: a
    daemon under test may have mounted storage that its failed test never released."""
    matching = [t for s, t in _mounts() if predicate(s, t)]  # type: ignore[operator]
    for target in sorted(matching, key=len, reverse=True):
        _run(["umount", "-l", target])


def detach_loop(device: str) -> None:
    """Unmount the device, remove device-mapper tables on it (kernel lab), detach it."""
    unmount(lambda source, target: source == device)
    if os.path.exists("/dev/mapper/control") and shutil.which("dmsetup"):
        holders = Path(f"/sys/block/{os.path.basename(device)}/holders")
        for holder in holders.iterdir() if holders.is_dir() else []:
            name = (holder / "dm" / "name").read_text().strip()
            _run(["dmsetup", "remove", "--force", name])
    proc = _run(["losetup", "--detach", device])
    if proc.returncode != 0 and any(dev == device for dev, _ in loop_devices()):
        raise RuntimeError(f"losetup --detach {device}: {proc.stderr.strip()}")


def sweep() -> list[Leftover]:
    """Remove orphans of dead sessions; returns what was removed."""
    found = find()
    for item in found:
        with contextlib.suppress(Exception):
            remove(item)
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.leftovers")
    parser.add_argument("--clean", action="store_true", help="remove what is found")
    args = parser.parse_args(argv)
    found = find()
    for item in found:
        print(f"leftover: {item}")
        if args.clean:
            try:
                remove(item)
            except Exception as e:
                print(f"  could not remove it: {e}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

"""Real sanlock faults for tests: another host, a frozen host, a crashed daemon, and an
administrator revoking a lease.

`PeerHost` is a second sanlock daemon on this machine, with its own run directory
(SANLOCK_RUN_DIR), standing for another host: it joins the same lockspace on the same
`ids` file with another host id, and holds leases for its own processes.  sanlock
cannot tell it from a remote host: hosts meet only through the delta leases on storage.
Freezing it (SIGSTOP) makes a host that stops renewing; killing it (SIGKILL) makes a
crashed host, or for a process registered with it a daemon that died under it; starting
it again with the same host name is the host coming back (sanlock then reacquires its
host id at once, with the next generation).

The daemon runs in the foreground (-D) as a child of the test process and dies with it
(PR_SET_PDEATHSIG); it carries VDSM_LAB_OWNER so `tests.lab.leftovers` finds it if not.

Module-level helpers drive the lab's main daemon with `sanlock client`, the way an
administrator would: `revoke` releases a lease held by another process (`release -p`),
`acquire_for` acquires one on behalf of a registered process (`acquire -p`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tests.lab import leftovers, services
from tests.lab.fixtures import supports_direct_io
from tests.lab.resources import LoopDevice, unique_name
from vdsm.storage.clusterlock import DomainLock
from vdsm.system.sanlock import Sanlock

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
PR_SET_PDEATHSIG = 1


def resource_spec(lockspace: str, resource: str, path: str, offset: int) -> str:
    """sanlock's RESOURCE argument: name:resource:path:offset."""
    return f"{lockspace}:{resource}:{path}:{offset}"


def sanlock_client(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sanlock", "client", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def client_result(proc: subprocess.CompletedProcess[str]) -> int:
    """The daemon's result in `sanlock client` output ("<action> done <rv>")."""
    for line in reversed(proc.stdout.splitlines()):
        words = line.split()
        if len(words) >= 3 and words[-2] == "done":
            return int(words[-1])
    raise AssertionError(f"no result in sanlock client output: {proc.stdout!r} {proc.stderr!r}")


def revoke(pid: int, lockspace: str, resource: str, path: str, offset: int) -> None:
    """Release the lease `pid` holds, from outside that process (as an admin would)."""
    proc = sanlock_client(
        "release", "-r", resource_spec(lockspace, resource, path, offset), "-p", str(pid)
    )
    if proc.returncode != 0 or client_result(proc) != 0:
        raise AssertionError(f"sanlock client release failed: {proc.stdout} {proc.stderr}")


def acquire_for(
    pid: int, lockspace: str, resource: str, path: str, offset: int, timeout: float = 60
) -> int:
    """Acquire a lease on behalf of registered process `pid`; the daemon's result."""
    proc = sanlock_client(
        "acquire",
        "-r",
        resource_spec(lockspace, resource, path, offset),
        "-p",
        str(pid),
        timeout=timeout,
    )
    return client_result(proc)


def start_acquire_for(
    pid: int, lockspace: str, resource: str, path: str, offset: int
) -> subprocess.Popen[str]:
    """`acquire_for` in the background (it may wait for a frozen owner)."""
    return subprocess.Popen(
        [
            "sanlock",
            "client",
            "acquire",
            "-r",
            resource_spec(lockspace, resource, path, offset),
            "-p",
            str(pid),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class PeerHost:
    def __init__(self, host_name: str | None = None) -> None:
        self.host_name = host_name or unique_name()
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{unique_name()}-sanlock-", dir="/tmp"))
        self.env = dict(os.environ)
        self.env["SANLOCK_RUN_DIR"] = str(self.run_dir)
        self.env[leftovers.OWNER_ENV] = str(os.getpid())
        self.env.pop("LD_PRELOAD", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.holders: list[subprocess.Popen[str]] = []
        self.log_path = self.run_dir / "daemon.log"

    # -- the daemon ------------------------------------------------------------------

    def start(self, timeout: float = 10) -> PeerHost:
        env = dict(self.env)
        if services.needs_shim():
            env["LD_PRELOAD"] = str(services.build_shim())
        argv = [
            "sanlock",
            "daemon",
            "-D",
            "-w",
            "0",
            "-U",
            "root",
            "-G",
            "root",
            "-e",
            self.host_name,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"peer sanlock exited: {self.log_tail()}")
            if self.client("status", timeout=5).returncode == 0:
                return self
            time.sleep(0.05)
        raise AssertionError(f"peer sanlock did not answer in {timeout} s: {self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def freeze(self) -> None:
        """The host stops renewing its host id (its daemon stops running)."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def crash(self) -> None:
        """The daemon dies at once: its delta leases and lease records stay on storage,
        and processes registered with it find their registration closed."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
        # its helper child exits when the daemon's end of their pipe closes
        (self.run_dir / "sanlock.pid").unlink(missing_ok=True)
        (self.run_dir / "sanlock.sock").unlink(missing_ok=True)

    def stop(self) -> None:
        for holder in self.holders:
            if holder.poll() is None:
                holder.kill()
            holder.wait(timeout=10)
        self.holders.clear()
        self.crash()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- what the other host does --------------------------------------------------------

    def client(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return sanlock_client(*args, env=self.env, timeout=timeout)

    def start_join(
        self, lockspace: str, host_id: int, ids: str, io_timeout: int = 1
    ) -> subprocess.Popen[str]:
        """add_lockspace in the background (joining takes ~3 s with io_timeout 1)."""
        return subprocess.Popen(
            [
                "sanlock",
                "client",
                "add_lockspace",
                "-o",
                str(io_timeout),
                "-s",
                f"{lockspace}:{host_id}:{ids}:0",
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def hold(
        self, lockspace: str, resource: str, path: str, offset: int, timeout: float = 30
    ) -> subprocess.Popen[str]:
        """A process of this host acquiring and holding a lease (until killed).  Returns
        once it holds it; AssertionError with sanlock's answer if it could not."""
        spec = resource_spec(lockspace, resource, path, offset)
        proc = subprocess.Popen(
            [
                "sanlock",
                "client",
                "command",
                "-r",
                spec,
                "-c",
                "/bin/sh",
                "-c",
                "echo holding; exec sleep 3600",
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.holders.append(proc)
        assert proc.stdout is not None
        output = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.strip() == "holding":
                return proc
        proc.kill()
        proc.wait()
        raise AssertionError(f"peer could not hold {spec}: {''.join(output)}")

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run Python (with this repository importable) as a process of this host."""
        return subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen_python(self, code: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            env=self.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.PIPE,
            text=True,
        )


# -- a shared set-up: one domain lock joined by this host and a peer -----------------------


@dataclass
class LabDomain:
    """A formatted domain lock, joined with host id 1 by the lab's daemon (this process
    talks to it) and with host id 2 by a PeerHost; one event loop for all its calls."""

    loop: asyncio.AbstractEventLoop
    sanlock: Sanlock
    lock: DomainLock
    peer: PeerHost
    ids: str
    leases: str
    alignment: int
    join_states: list[tuple[float, bool | None]] = field(default_factory=list)
    join_seconds: float = 0.0
    leave_seconds: float = 0.0

    HOST_ID = 1
    PEER_HOST_ID = 2

    @property
    def name(self) -> str:
        return self.lock.sd_uuid

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def write_resource(self, resource: str, slot: int) -> tuple[str, int]:
        """Another resource in the lockspace (slot * alignment in leases); its disk."""
        disk = (self.leases, slot * self.alignment)
        self.run(
            self.sanlock.write_resource(
                self.name, resource, [disk], align=self.alignment, sector=512
            )
        )
        return disk

    def peer_python(self, body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `body` (async code using `lock`, a DomainLock of this domain) in a process
        of the peer host."""
        return self.peer.python(self.script(body), timeout=timeout)

    def local_python(self, body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The same in another process of this host."""
        return subprocess.run(
            [sys.executable, "-c", self.script(body)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def script(self, body: str) -> str:
        return PEER_SCRIPT.format(
            sd_uuid=self.name,
            ids=self.ids,
            leases=self.leases,
            alignment=self.alignment,
            body=textwrap.indent(textwrap.dedent(body), "    "),
        )


PEER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from vdsm import errors
from vdsm.system.sanlock import Sanlock
from vdsm.storage.clusterlock import DomainLock
from vdsm.storage.spmwatchdog import LeaseWatchdog

async def main():
    sanlock = Sanlock(1)
    lock = DomainLock(sanlock, {sd_uuid!r}, Path({ids!r}), Path({leases!r}),
                      alignment={alignment}, block_size=512, io_timeout=1)
{body}

asyncio.run(main())
"""


@contextlib.contextmanager
def lab_domain(directory: Path, alignment: int = 1024 * 1024) -> Iterator[LabDomain]:
    """Format, join (this host and a peer, in parallel), yield; then release and leave."""
    ids, leases, loops = make_areas(directory, alignment)
    loop = asyncio.new_event_loop()
    sanlock = Sanlock(io_timeout=1)
    lock = DomainLock(
        sanlock,
        unique_name(),
        Path(ids),
        Path(leases),
        alignment=alignment,
        block_size=512,
        io_timeout=1,
    )
    peer = PeerHost()
    domain = LabDomain(loop, sanlock, lock, peer, ids, leases, alignment)
    try:
        domain.run(lock.format())
        peer.start()
        peer_join = peer.start_join(domain.name, LabDomain.PEER_HOST_ID, ids)
        domain.run(_join(domain))
        out, _ = peer_join.communicate(timeout=60)
        if client_result(subprocess.CompletedProcess([], 0, out, "")) != 0:
            raise AssertionError(f"the peer could not join: {out}")
        yield domain
    finally:
        sanlock.close()  # releases whatever this process still holds
        try:
            t0 = time.monotonic()
            domain.run(lock.leave(LabDomain.HOST_ID, unused=True))
            domain.leave_seconds = time.monotonic() - t0
        finally:
            peer.stop()
            loop.close()
            for dev in loops:
                dev.detach()


def make_areas(directory: Path, alignment: int) -> tuple[str, str, list[LoopDevice]]:
    """`ids` and `leases` areas sanlock can use (it needs O_DIRECT, which the kernel
    lab's overlay /tmp lacks: loop devices there); the loop devices to detach."""
    if supports_direct_io(directory):
        ids, leases = str(directory / "ids"), str(directory / "leases")
        for path, size in ((ids, alignment), (leases, 8 * alignment)):
            with open(path, "wb") as f:
                f.truncate(size)
        return ids, leases, []
    loops = [LoopDevice.create(directory, alignment), LoopDevice.create(directory, 8 * alignment)]
    return loops[0].path, loops[1].path, loops


async def _join(domain: LabDomain) -> None:
    t0 = time.monotonic()
    await domain.lock.join(LabDomain.HOST_ID)
    while True:
        state = await domain.lock.joined(LabDomain.HOST_ID)
        if not domain.join_states or domain.join_states[-1][1] != state:
            domain.join_states.append((time.monotonic() - t0, state))
        if state is not None:
            break
        await asyncio.sleep(0.05)
    domain.join_seconds = time.monotonic() - t0

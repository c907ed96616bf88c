"""The lab's service controller: virtlogd + libvirtd, sanlock (and wdmd in the kernel lab).

    python -m tests.lab.services up|down|status [libvirt|sanlock|wdmd|all|NAME...]

`up` starts each daemon only when it does not already answer, waits until it answers and
records the PIDs it started in /run/vdsm-lab/started.json; `down` stops only the daemons
recorded there (a daemon someone else started is left alone), and refuses while test
sessions use them (--force insists); `status` prints who runs what and exits 3 when a
requested daemon is not answering.  `up` is quiet when nothing had to be started.

Test sessions (pytest fixtures, tools/run-tests) use `Session`: the daemons they start
are "session" daemons, stopped when the LAST live session closes, so concurrent test
runs never stop a daemon under each other; a daemon an explicit `services up` started
(or adopted) stays until `services down`.

No systemd runs on the machines this project is tested on: daemons are started in their
own daemon mode (`libvirtd -d`, `sanlock daemon`, ...), with their logs in
/var/log/vdsm-lab/ (libvirt daemons, launcher output) or their usual log
(/var/log/sanlock.log).  Where the process lacks CAP_SYS_RESOURCE (containers,
sandboxes), sanlock cannot raise its memlock/rtprio limits and exits at once; then the
setrlimit shim next to this file is built with gcc into tests/lab/.build/ and preloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
BUILD_DIR = LAB_DIR / ".build"
SHIM_SOURCE = LAB_DIR / "setrlimit-shim.c"
SHIM_LIBRARY = BUILD_DIR / "setrlimit-shim.so"

RUN_DIR = Path(os.environ.get("VDSM_LAB_RUN_DIR", "/run/vdsm-lab"))
LOG_DIR = Path(os.environ.get("VDSM_LAB_LOG_DIR", "/var/log/vdsm-lab"))
STATE_FILE = RUN_DIR / "started.json"

START_TIMEOUT = 60.0  # first libvirtd start probes QEMU capabilities: ~8 s on 2 cores
STOP_TIMEOUT = 10.0
PIDFILE_TIMEOUT = 3.0  # a detached daemon writes its pidfile within milliseconds
CAP_SYS_RESOURCE = 24

GROUPS = {
    "libvirt": ("virtlogd", "libvirtd"),
    "sanlock": ("sanlock",),
    "wdmd": ("wdmd",),
    "all": ("virtlogd", "libvirtd", "sanlock"),
}


class ServiceError(RuntimeError):
    """A daemon did not start, answer or stop; the message carries its log tail."""


@dataclass
class Daemon:
    """How to start one daemon, find its PID and ask it whether it answers."""

    name: str
    argv: list[str]
    pidfile: Path
    probe: Callable[[float], str | None]  # None when it answers, else why not
    logs: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    package: str = ""

    @property
    def output_log(self) -> Path:
        """Where the launcher's stdout/stderr go (errors before the daemon detaches)."""
        return LOG_DIR / f"{self.name}.out"

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in [self.output_log, *self.logs]:
            text = tail(path, lines)
            if text:
                parts.append(f"--- {path} (last {lines} lines) ---\n{text}")
        return "\n".join(parts) or "(no log output)"


@dataclass
class Status:
    name: str
    answering: bool
    pid: int | None
    ours: bool
    detail: str = ""
    owner: str | None = None

    def line(self) -> str:
        if self.answering:
            who = {
                "cli": "started by `services up`",
                "session": "started for test sessions",
                None: "not started by the lab",
            }.get(self.owner, "started by the lab")
            return f"{self.name}: running, pid {self.pid or '?'} ({who})"
        return f"{self.name}: not answering ({self.detail})"


# --- processes ------------------------------------------------------------------------


def proc_starttime(pid: int) -> int | None:
    """The process's start time in clock ticks, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # zombies linger until PID 1 reaps them
        return None
    return int(fields[19])


def alive(pid: int) -> bool:
    return proc_starttime(pid) is not None


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def daemon_env(extra: dict[str, str]) -> dict[str, str]:
    """A small, predictable environment: nothing of the caller's (LD_PRELOAD, venv...)."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
    }
    env.update(extra)
    return env


def run_probe(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> str | None:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=max(timeout, 0.5),
            stdin=subprocess.DEVNULL,
            env=daemon_env(env or {}),
        )
    except subprocess.TimeoutExpired:
        return f"{argv[0]} did not answer within {timeout:.1f} s"
    except FileNotFoundError:
        return f"{argv[0]} not installed"
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return lines[-1] if lines else f"`{' '.join(argv)}` exited with {proc.returncode}"
    return None


def socket_probe(path: Path) -> Callable[[float], str | None]:
    def probe(timeout: float) -> str | None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(max(timeout, 0.5))
            try:
                s.connect(str(path))
            except OSError as e:
                return f"{path}: {e.strerror or e}"
        return None

    return probe


# --- the setrlimit shim ---------------------------------------------------------------


def needs_shim() -> bool:
    return not has_capability(CAP_SYS_RESOURCE)


def build_shim(source: Path = SHIM_SOURCE, library: Path = SHIM_LIBRARY) -> Path:
    """Compile the LD_PRELOAD shim (once; again when the source is newer)."""
    if library.exists() and library.stat().st_mtime >= source.stat().st_mtime:
        return library
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ServiceError(
            "sanlock needs the setrlimit shim here (no CAP_SYS_RESOURCE) "
            "but gcc is missing: apt-get install gcc libc6-dev (make deps)"
        )
    library.parent.mkdir(parents=True, exist_ok=True)
    partial = library.with_name(f"{library.name}.{os.getpid()}.tmp")
    proc = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-o", str(partial), str(source), "-ldl"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ServiceError(f"building {library} failed:\n{proc.stderr}")
    partial.replace(library)
    return library


# --- the daemons ----------------------------------------------------------------------


def libvirt_log_env(name: str) -> dict[str, str]:
    # libvirt daemons read their log set-up from the environment (no journald here)
    return {"LIBVIRT_LOG_OUTPUTS": f"3:file:{LOG_DIR / (name + '.log')}"}


def virtlogd(run_dir: Path = Path("/run")) -> Daemon:
    return Daemon(
        name="virtlogd",
        argv=["virtlogd", "-d"],
        pidfile=run_dir / "virtlogd.pid",
        probe=socket_probe(run_dir / "libvirt" / "virtlogd-sock"),
        logs=[LOG_DIR / "virtlogd.log"],
        env=libvirt_log_env("virtlogd"),
        package="libvirt-daemon-system",
    )


def libvirtd(
    uri: str = "qemu:///system",
    config: Path | None = None,
    pidfile: Path = Path("/run/libvirtd.pid"),
    name: str = "libvirtd",
) -> Daemon:
    argv = ["libvirtd", "-d", "-p", str(pidfile)]
    if config is not None:
        argv += ["-f", str(config)]
    return Daemon(
        name=name,
        argv=argv,
        pidfile=pidfile,
        probe=lambda timeout: run_probe(["virsh", "-c", uri, "version"], timeout),
        logs=[LOG_DIR / f"{name}.log"],
        env=libvirt_log_env(name),
        requires=("virtlogd",),
        package="libvirt-daemon-system",
    )


def sanlock_run_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("SANLOCK_RUN_DIR", "/run/sanlock"))


def sanlock(
    watchdog: bool = False, env: dict[str, str] | None = None, name: str = "sanlock"
) -> Daemon:
    """`sanlock daemon -w 0` on a host, `-w 1` (with wdmd) in the kernel lab."""
    env = dict(env or {})
    if "SANLOCK_RUN_DIR" in os.environ:
        env.setdefault("SANLOCK_RUN_DIR", os.environ["SANLOCK_RUN_DIR"])
    run_dir = sanlock_run_dir(env)
    return Daemon(
        name=name,
        argv=["sanlock", "daemon", "-w", "1" if watchdog else "0", "-U", "root", "-G", "root"],
        pidfile=run_dir / "sanlock.pid",
        probe=lambda timeout: run_probe(["sanlock", "client", "status"], timeout, env),
        logs=[Path("/var/log/sanlock.log")],
        env=env,
        requires=("wdmd",) if watchdog else (),
        package="sanlock",
    )


def wdmd() -> Daemon:
    """The watchdog multiplexer sanlock -w 1 talks to; needs /dev/watchdog (softdog)."""
    return Daemon(
        name="wdmd",
        argv=["wdmd"],
        pidfile=Path("/run/wdmd/wdmd.pid"),
        probe=lambda timeout: run_probe(["wdmd", "--dump"], timeout),
        logs=[],
        package="sanlock",
    )


def registry(watchdog: bool = False) -> dict[str, Daemon]:
    return {d.name: d for d in (virtlogd(), libvirtd(), sanlock(watchdog=watchdog), wdmd())}


def resolve(names: Iterable[str], daemons: dict[str, Daemon]) -> list[str]:
    """Expand groups and dependencies, in start order."""
    wanted: list[str] = []

    def add(name: str) -> None:
        if name in wanted:
            return
        if name not in daemons:
            raise ServiceError(f"unknown service {name!r}; known: {', '.join([*GROUPS, *daemons])}")
        for dep in daemons[name].requires:
            add(dep)
        wanted.append(name)

    for name in names:
        for member in GROUPS.get(name, (name,)):
            add(member)
    return wanted


# --- state: what the lab started -----------------------------------------------------


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialize up/down between processes (a CLI run and a pytest session, say)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_state() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(state: dict[str, dict[str, object]]) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    partial = STATE_FILE.with_suffix(".tmp")
    partial.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    partial.replace(STATE_FILE)


def ours(name: str, state: dict[str, dict[str, object]]) -> int | None:
    """The PID recorded for `name` if that very process still runs."""
    entry = state.get(name)
    if not entry:
        return None
    pid, started = entry.get("pid"), entry.get("starttime")
    if isinstance(pid, int) and proc_starttime(pid) == started:
        return pid
    return None


# --- up / down / status ----------------------------------------------------------------


def status_of(daemon: Daemon, state: dict[str, dict[str, object]] | None = None) -> Status:
    state = load_state() if state is None else state
    why = daemon.probe(5.0)
    pid = read_pidfile(daemon.pidfile)
    if pid is not None and not alive(pid):
        pid = None
    mine = ours(daemon.name, state)
    owner = str(state[daemon.name].get("owner", "cli")) if mine is not None else None
    return Status(daemon.name, why is None, pid or mine, mine is not None, why or "", owner)


def wait_answering(daemon: Daemon, deadline: float, pid: int | None = None) -> None:
    why: str | None = "not probed"
    while True:
        remaining = deadline - time.monotonic()
        why = daemon.probe(max(0.5, min(5.0, remaining)))
        if why is None:
            return
        if pid is not None and not alive(pid):
            raise ServiceError(
                f"{daemon.name} (pid {pid}) exited while starting: {why}\n{daemon.log_tail()}"
            )
        if time.monotonic() >= deadline:
            raise ServiceError(f"{daemon.name} did not answer in time: {why}\n{daemon.log_tail()}")
        time.sleep(0.1)


def start(daemon: Daemon, timeout: float = START_TIMEOUT) -> int:
    """Start `daemon` (which must not be running) and wait until it answers; its PID."""
    deadline = time.monotonic() + timeout
    if shutil.which(daemon.argv[0]) is None:
        raise ServiceError(
            f"{daemon.argv[0]} is not installed: apt-get install "
            f"{daemon.package or daemon.argv[0]} (make deps)"
        )
    env = dict(daemon.env)
    if daemon.argv[0] == "sanlock" and needs_shim():
        env["LD_PRELOAD"] = str(build_shim())
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # run dirs (/run/wdmd...) vanish with a tmpfs /run
        daemon.pidfile.parent.mkdir(parents=True, exist_ok=True)
    old_pid = read_pidfile(daemon.pidfile)
    old_alive = old_pid is not None and alive(old_pid)
    with open(daemon.output_log, "ab") as out:
        out.write(f"=== {time.strftime('%F %T')} {' '.join(daemon.argv)}\n".encode())
        out.flush()
        try:
            # the launcher forks the daemon and exits: wait for it, nothing lingers
            rc = subprocess.run(
                daemon.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=daemon_env(env),
                cwd="/",
                start_new_session=True,
                timeout=max(1.0, deadline - time.monotonic()),
            ).returncode
        except subprocess.TimeoutExpired:
            raise ServiceError(
                f"{daemon.name}: `{' '.join(daemon.argv)}` did not detach in "
                f"{timeout:.0f} s\n{daemon.log_tail()}"
            )
    if rc != 0:
        raise ServiceError(
            f"{daemon.name} failed to start (`{' '.join(daemon.argv)}` exited "
            f"with {rc})\n{daemon.log_tail()}"
        )
    pid = None
    pid_deadline = min(deadline, time.monotonic() + PIDFILE_TIMEOUT)
    while pid is None and time.monotonic() < pid_deadline:
        pid = read_pidfile(daemon.pidfile)
        if pid is None or not alive(pid) or (pid == old_pid and old_alive):
            pid = None
            time.sleep(0.05)
    if pid is None:
        raise ServiceError(
            f"{daemon.name} did not start: no live process is named by "
            f"{daemon.pidfile} after `{' '.join(daemon.argv)}` returned\n"
            f"{daemon.log_tail()}"
        )
    try:
        wait_answering(daemon, deadline, pid)
    except ServiceError:
        terminate(pid)
        raise
    return pid


def terminate(pid: int, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True when it went away on SIGTERM."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return False


ORDER = ("virtlogd", "libvirtd", "wdmd", "sanlock")  # start order; stop in reverse


def up(
    names: Iterable[str] = ("all",),
    timeout: float = START_TIMEOUT,
    watchdog: bool = False,
    log: Callable[[str], None] | None = None,
    owner: str = "cli",
) -> list[str]:
    """Bring `names` up; returns the names this call started (the others already ran).

    `owner` "cli" (an explicit `services up`) keeps a daemon until `services down`, and
    adopts daemons test sessions started; "session" daemons are stopped by the last test
    session to close (see Session)."""
    daemons = registry(watchdog=watchdog)
    started: list[str] = []
    with locked():
        state = load_state()
        for name in resolve(names, daemons):
            daemon = daemons[name]
            if daemon.probe(2.0) is None:
                if owner == "cli" and ours(name, state) is not None:
                    state[name]["owner"] = "cli"
                    save_state(state)
                continue
            pid = read_pidfile(daemon.pidfile)
            if pid is not None and alive(pid) and daemon.argv[0] in cmdline(pid):
                # running but not answering yet (starting up): give it the timeout
                wait_answering(daemon, time.monotonic() + timeout, pid)
                continue
            t0 = time.monotonic()
            pid = start(daemon, timeout)
            state[name] = {
                "pid": pid,
                "starttime": proc_starttime(pid),
                "owner": owner,
                "argv": daemon.argv,
                "started": time.time(),
            }
            save_state(state)
            started.append(name)
            if log:
                log(f"services: started {name} (pid {pid}) in {time.monotonic() - t0:.1f} s")
    return started


def _stop(
    names: Iterable[str], state: dict[str, dict[str, object]], log: Callable[[str], None] | None
) -> list[str]:
    stopped = []
    for name in sorted(set(names), key=lambda n: -ORDER.index(n) if n in ORDER else 0):
        pid = ours(name, state)
        if pid is not None:
            clean = terminate(pid)
            stopped.append(name)
            if log:
                log(f"services: stopped {name} (pid {pid})" + ("" if clean else " with SIGKILL"))
        state.pop(name, None)
    save_state(state)
    return stopped


def down(
    names: Iterable[str] = ("all",),
    log: Callable[[str], None] | None = None,
    watchdog: bool = False,
    force: bool = False,
) -> list[str]:
    """Stop the daemons among `names` that the lab started; returns those it stopped.
    Refuses while test sessions use them, unless `force`."""
    daemons = registry(watchdog=watchdog)
    with locked():
        users = live_users()
        if users and not force:
            raise ServiceError(
                f"test sessions (pids {', '.join(map(str, users))}) use the lab "
                f"services; not stopping them (--force to insist)"
            )
        return _stop(resolve(names, daemons), load_state(), log)


# --- test sessions: the last one out stops what sessions started ----------------------

USERS_DIR = RUN_DIR / "users"


def live_users() -> list[int]:
    """PIDs of live registered sessions, other than this process; prunes dead ones."""
    users = []
    for entry in USERS_DIR.glob("*") if USERS_DIR.is_dir() else []:
        try:
            pid, started = int(entry.name), int(entry.read_text().strip() or -1)
        except (ValueError, OSError):
            entry.unlink(missing_ok=True)
            continue
        if proc_starttime(pid) != started:
            entry.unlink(missing_ok=True)
        elif pid != os.getpid():
            users.append(pid)
    return sorted(users)


class Session:
    """A user of the lab services (a pytest session, a `make test` run).

    Daemons it brings up are marked as session-owned; `close` stops every session-owned
    daemon when no other session is left (so concurrent test runs never pull a daemon
    from under each other), and never those an explicit `services up` started."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.registered = False

    def register(self) -> None:
        if self.registered:
            return
        with locked():
            USERS_DIR.mkdir(parents=True, exist_ok=True)
            (USERS_DIR / str(os.getpid())).write_text(f"{proc_starttime(os.getpid())}\n")
        self.registered = True

    def up(
        self,
        names: Iterable[str],
        watchdog: bool = False,
        timeout: float = START_TIMEOUT,
        log: Callable[[str], None] | None = None,
    ) -> list[str]:
        self.register()
        started = up(names, timeout, watchdog, log, owner="session")
        self.started += started
        return started

    def close(self, log: Callable[[str], None] | None = None) -> tuple[list[str], list[int]]:
        """Unregister; returns (daemons stopped, other sessions still running)."""
        if not self.registered:
            return [], []
        with locked():
            (USERS_DIR / str(os.getpid())).unlink(missing_ok=True)
            self.registered = False
            others = live_users()
            if others:
                return [], others
            state = load_state()
            names = [n for n, e in state.items() if e.get("owner") == "session"]
            return _stop(names, state, log), []


def status(names: Iterable[str] = ("all",), watchdog: bool = False) -> list[Status]:
    daemons = registry(watchdog=watchdog)
    state = load_state()
    return [status_of(daemons[n], state) for n in resolve(names, daemons)]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab.services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "names",
        nargs="*",
        default=["all"],
        help="libvirt, sanlock, wdmd, all (default) or a daemon name",
    )
    parser.add_argument("--timeout", type=float, default=START_TIMEOUT)
    parser.add_argument(
        "--watchdog",
        action="store_true",
        help="sanlock -w 1 with wdmd (needs /dev/watchdog: the kernel lab)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--force", action="store_true", help="down: stop even while test sessions use the services"
    )
    args = parser.parse_args(argv)

    def say(msg: str) -> None:
        if not args.json:
            print(msg, file=sys.stderr)

    try:
        if args.action == "up":
            started = up(args.names, args.timeout, args.watchdog, log=say)
            if args.json:
                print(json.dumps({"started": started}))
            return 0
        if args.action == "down":
            stopped = down(args.names, log=say, watchdog=args.watchdog, force=args.force)
            if args.json:
                print(json.dumps({"stopped": stopped}))
            return 0
        statuses = status(args.names, args.watchdog)
        if args.json:
            print(json.dumps([dataclasses.asdict(s) for s in statuses]))
        else:
            for s in statuses:
                print(s.line())
        return 0 if all(s.answering for s in statuses) else 3
    except ServiceError as e:
        print(f"services: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

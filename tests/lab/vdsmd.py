"""The daemon under test as a real process: its own config, dirs and port, under one root.

d = VdsmdProcess(root, config={"libvirt": {"uri": "qemu:///system"}})
d.start()          # waits until the port file names an address that serves
d.host, d.port, d.pid, d.log_text()
d.stop()           # SIGTERM, SIGKILL after a timeout; returns the exit status

With `netns="NAME"` the daemon runs inside that network namespace (`ip netns exec`,
which also gives it the namespace's /sys/class/net); `d.connect()` opens a TCP
connection from inside it, since its 127.0.0.1 is not the test's.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.leftovers import OWNER_ENV

REPO = Path(__file__).resolve().parents[2]

Config = dict[str, dict[str, str]]


class VdsmdError(RuntimeError):
    pass


class VdsmdProcess:
    """One vdsmd: `python -m vdsm.daemon --config ROOT/vdsm.conf` on 127.0.0.1, port 0."""

    def __init__(
        self,
        root: Path,
        config: Config | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 15.0,
        netns: str | None = None,
    ) -> None:
        self.tmp = root
        self.netns = netns
        self.config_path = root / "vdsm.conf"
        self.dropin_dir = root / "vdsm.conf.d"
        self.port_file = root / "run" / "port"
        self.log_path = root / "vdsm.log"
        self.stderr_path = root / "stderr.log"
        self.repository = root / "data-center"
        self.state_dir = root / "state"
        self.run_dir = root / "run"
        self.hooks_dir = root / "hooks"
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.config: Config = self.default_config()
        for section, values in (config or {}).items():
            self.config.setdefault(section, {}).update(values)
        self.proc: subprocess.Popen[bytes] | None = None
        self.host = ""
        self.port = 0
        self.returncode: int | None = None
        self.killed = False
        self.stopped_by_test = False
        self.starts = 0

    def default_config(self) -> Config:
        return {
            "vars": {"ssl": "false"},
            "addresses": {
                "management_ip": "127.0.0.1",
                "management_port": "0",
                "port_file": str(self.port_file),
            },
            "irs": {"repository": str(self.repository)},
            "paths": {
                "state_dir": str(self.state_dir),
                "run_dir": str(self.run_dir),
                "hooks_dir": str(self.hooks_dir),
                "host_id_file": str(self.state_dir / "vdsm.id"),
            },
            "logging": {"file": str(self.log_path), "level": "DEBUG"},
            "libvirt": {"uri": "test:///default"},
            "sanlock": {"io_timeout": "1"},
        }

    # --- life cycle ----------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise VdsmdError("vdsmd was not started")
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def write_config(self) -> None:
        for d in (self.repository, self.state_dir, self.run_dir, self.hooks_dir, self.dropin_dir):
            d.mkdir(parents=True, exist_ok=True)
        parser = configparser.ConfigParser(interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_dict(self.config)
        with open(self.config_path, "w") as f:
            parser.write(f)

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "vdsm.daemon", "--config", str(self.config_path)]
        if self.netns:
            return ["ip", "netns", "exec", self.netns, *argv]
        return argv

    def connect(self, timeout: float = 2.0) -> socket.socket:
        """A TCP connection to the daemon, made from inside its namespace if it has one."""
        return connect_in_netns(self.netns, (self.host, self.port), timeout)

    def start(self) -> VdsmdProcess:
        if self.running():
            raise VdsmdError(f"vdsmd already runs as pid {self.pid}")
        self.write_config()
        self.port_file.unlink(missing_ok=True)
        self.returncode = None
        self.killed = False
        self.stopped_by_test = False
        env = {**os.environ, **self.env, OWNER_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
        with open(self.stderr_path, "ab") as err:
            err.write(f"=== start {self.starts + 1}: {' '.join(self.argv())}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=REPO,
                env=env,
                start_new_session=True,
            )
        self.starts += 1
        try:
            self.wait_serving()
        except BaseException:
            self.kill()
            raise
        return self

    def wait_serving(self) -> None:
        """Poll the port file, then check the address accepts a TCP connection."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            assert self.proc is not None
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise VdsmdError(
                    f"vdsmd exited with status {rc} before serving\n{self.log_text(tail=60)}"
                )
            address = self._read_port_file()
            if address is not None:
                host, port = address
                try:
                    with connect_in_netns(self.netns, (host, port), 2):
                        pass
                except OSError:
                    pass
                else:
                    self.host, self.port = host, port
                    return
            if time.monotonic() > deadline:
                raise VdsmdError(
                    f"vdsmd (pid {self.proc.pid}) did not serve within {self.start_timeout} s "
                    f"(port file {self.port_file}: "
                    f"{'present' if self.port_file.exists() else 'absent'})\n"
                    f"{self.log_text(tail=60)}"
                )
            time.sleep(0.05)

    def _read_port_file(self) -> tuple[str, int] | None:
        try:
            text = self.port_file.read_text().strip()
        except OSError:
            return None
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            return None  # not written completely yet
        return host.strip("[]"), int(port)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, wait, SIGKILL after `timeout`; returns the exit status (negative for
        a signal, as Popen reports it).  A no-op returning the last status when stopped."""
        if self.proc is None:
            raise VdsmdError("vdsmd was not started")
        self.stopped_by_test = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout if timeout is not None else self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self._kill_group()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> int:
        """SIGKILL the daemon (and anything in its session), as a crash would."""
        if self.proc is None:
            raise VdsmdError("vdsmd was not started")
        self.stopped_by_test = True
        if self.proc.poll() is None:
            self.killed = True
            self._kill_group()
            self.proc.wait(10)
        self.returncode = self.proc.returncode
        return self.returncode

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def restart(self) -> VdsmdProcess:
        self.stop()
        return self.start()

    # --- logs ----------------------------------------------------------------------

    def log_text(self, tail: int | None = None) -> str:
        """The daemon's log file and its stderr (last `tail` lines of each)."""
        parts = []
        for title, path in (("log", self.log_path), ("stderr", self.stderr_path)):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if tail is not None:
                text = "\n".join(text.splitlines()[-tail:])
            parts.append(f"--- vdsmd {title}: {path} ---\n{text}")
        return "\n".join(parts) or "(vdsmd wrote no log)"

    def __repr__(self) -> str:
        state = "running" if self.running() else f"exited {self.returncode}"
        pid = self.proc.pid if self.proc else None
        return f"<VdsmdProcess pid={pid} {self.host}:{self.port} {state}>"


def connect_in_netns(
    netns: str | None, address: tuple[str, int], timeout: float = 2.0
) -> socket.socket:
    """socket.create_connection, from inside network namespace `netns` (None: ours).

    setns(2) switches only the calling thread, and a socket stays in the namespace it
    was created in: a short-lived thread makes it there and the caller uses it here.
    """
    if netns is None:
        return socket.create_connection(address, timeout=timeout)
    import ctypes
    import threading

    result: list[socket.socket | BaseException] = []

    def target() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            result.append(socket.create_connection(address, timeout=timeout))
        except BaseException as e:
            result.append(e)

    thread = threading.Thread(target=target, name=f"connect in {netns}")
    thread.start()
    thread.join()
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome

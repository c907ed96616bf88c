"""The service controller, for real: the shared daemons, a private sanlock, and faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lab import services
from tests.lab.fixtures import LabServices, SanlockDaemon, require_root

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 90,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.lab.services", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_status_names_the_running_daemons(libvirt_uri: str, sanlock: SanlockDaemon) -> None:
    proc = cli("status", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    by_name = {s["name"]: s for s in json.loads(proc.stdout)}
    assert set(by_name) == {"virtlogd", "libvirtd", "sanlock"}
    for name, st in by_name.items():
        assert st["answering"], f"{name}: {st['detail']}"
        assert st["pid"] and services.alive(st["pid"]), name


def test_up_is_fast_and_quiet_when_everything_runs(
    libvirt_uri: str, sanlock: SanlockDaemon, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    # a state dir of its own: an `up` in the shared one would adopt the session's daemons
    proc = cli("up", env={"VDSM_LAB_RUN_DIR": str(tmp_path)})
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert elapsed < 3.0, f"`services up` took {elapsed:.1f} s with everything running"


def test_unknown_service_is_an_error() -> None:
    proc = cli("up", "no-such-daemon")
    assert proc.returncode == 1
    assert "unknown service 'no-such-daemon'" in proc.stderr


def test_private_sanlock_up_status_down(tmp_path: Path) -> None:
    """A second sanlock daemon with its own run dir and state file: up starts it and
    records it, status reports it as ours, down stops exactly that process."""
    require_root()
    env = {
        "VDSM_LAB_RUN_DIR": str(tmp_path / "state"),
        "SANLOCK_RUN_DIR": str(tmp_path / "sanlock"),
    }
    shared_before = services.status(["sanlock"])[0]

    up = cli("up", "sanlock", "--json", env=env)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout) == {"started": ["sanlock"]}
    state = json.loads((tmp_path / "state" / "started.json").read_text())
    pid = state["sanlock"]["pid"]
    try:
        assert services.alive(pid)
        assert (tmp_path / "sanlock" / "sanlock.pid").read_text().strip() == str(pid)
        if services.needs_shim():
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert f"LD_PRELOAD={services.SHIM_LIBRARY}".encode() in environ

        again = cli("up", "sanlock", "--json", env=env)
        assert json.loads(again.stdout) == {"started": []}

        st = cli("status", "sanlock", "--json", env=env)
        assert st.returncode == 0
        [row] = json.loads(st.stdout)
        assert row["answering"] and row["ours"] and row["pid"] == pid
    finally:
        down = cli("down", "sanlock", "--json", env=env)
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout) == {"stopped": ["sanlock"]}
    assert not services.alive(pid)
    assert json.loads((tmp_path / "state" / "started.json").read_text()) == {}
    # the shared daemon was not touched
    shared_after = services.status(["sanlock"])[0]
    assert (shared_after.answering, shared_after.pid) == (
        shared_before.answering,
        shared_before.pid,
    )


def test_down_leaves_daemons_it_did_not_start(tmp_path: Path, sanlock: SanlockDaemon) -> None:
    env = {"VDSM_LAB_RUN_DIR": str(tmp_path / "state")}  # an empty record
    proc = cli("down", "all", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"stopped": []}
    assert services.status(["sanlock"])[0].answering


def test_libvirtd_that_fails_to_start_is_reported_with_its_log(tmp_path: Path) -> None:
    require_root()
    config = tmp_path / "libvirtd.conf"
    config.write_text("listen_tls = [ this is not valid\n")
    daemon = services.libvirtd(
        config=config, pidfile=tmp_path / "libvirtd.pid", name="libvirtd-broken"
    )
    with pytest.raises(services.ServiceError) as err:
        services.start(daemon, timeout=30)
    message = str(err.value)
    assert "libvirtd-broken failed to start" in message
    assert str(config) in message  # libvirtd's own complaint, from its log
    assert "configuration file syntax error" in message
    assert not (tmp_path / "libvirtd.pid").exists()


def test_sanlock_that_fails_to_start_is_reported_with_its_log(tmp_path: Path) -> None:
    require_root()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    run_dir = blocker / "run"  # sanlock cannot create its run dir under a file
    daemon = services.sanlock(env={"SANLOCK_RUN_DIR": str(run_dir)}, name="sanlock-broken")
    t0 = time.monotonic()
    with pytest.raises(services.ServiceError) as err:
        services.start(daemon, timeout=30)
    assert time.monotonic() - t0 < 15
    message = str(err.value)
    assert "sanlock-broken did not start" in message
    assert "/var/log/sanlock.log" in message
    assert f"Using non-standard run directory '{run_dir}'" in message  # its own log line


def test_lab_services_fixture_fails_with_the_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a test sees when a service cannot come up: a failure carrying the log."""
    require_root()
    config = tmp_path / "libvirtd.conf"
    config.write_text("max_clients = \n")
    broken = services.libvirtd(
        config=config,
        pidfile=tmp_path / "pid",
        name="libvirtd",
        uri="qemu+unix:///system?socket=" + str(tmp_path / "none"),
    )
    broken.requires = ()  # leave the shared virtlogd alone
    real_registry = services.registry
    monkeypatch.setattr(
        services, "registry", lambda watchdog=False: {**real_registry(watchdog), "libvirtd": broken}
    )
    monkeypatch.setattr(services, "RUN_DIR", tmp_path / "state")
    monkeypatch.setattr(services, "STATE_FILE", tmp_path / "state" / "started.json")
    monkeypatch.setattr(services, "USERS_DIR", tmp_path / "state" / "users")
    lab = LabServices()
    with pytest.raises(pytest.fail.Exception) as err:
        lab.ensure("libvirtd")
    assert "lab services libvirtd could not start" in str(err.value)
    assert str(config) in str(err.value)
    lab.close()


def test_last_session_out_stops_the_session_daemons(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Concurrent test runs share daemons: a session ending while another still runs
    leaves them up; the last one stops them.  Uses a private sanlock and state dir."""
    require_root()
    state = tmp_path / "state"
    monkeypatch.setattr(services, "RUN_DIR", state)
    monkeypatch.setattr(services, "STATE_FILE", state / "started.json")
    monkeypatch.setattr(services, "USERS_DIR", state / "users")
    monkeypatch.setenv("SANLOCK_RUN_DIR", str(tmp_path / "sanlock"))

    first = services.Session()
    assert first.up(["sanlock"]) == ["sanlock"]
    pid = services.load_state()["sanlock"]["pid"]
    assert isinstance(pid, int) and services.alive(pid)

    other = subprocess.Popen(["sleep", "60"])  # stands for a second test run
    try:
        (state / "users" / str(other.pid)).write_text(f"{services.proc_starttime(other.pid)}\n")
        assert services.live_users() == [other.pid]
        with pytest.raises(services.ServiceError, match="test sessions"):
            services.down(["sanlock"])  # `make services-down` refuses meanwhile
        assert first.close() == ([], [other.pid])
        assert services.alive(pid)
    finally:
        other.kill()
        other.wait()

    last = services.Session()
    assert last.up(["sanlock"]) == []  # already up: nothing started
    stopped, others = last.close()
    assert (stopped, others) == (["sanlock"], [])
    assert not services.alive(pid)
    assert services.load_state() == {}
    assert list((state / "users").iterdir()) == []

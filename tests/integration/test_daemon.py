"""The daemon process: start-up, configuration, recovery, signals, sd_notify, logging."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.rawstomp import RawStomp, ping

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run_daemon(*args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vdsm.daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def call(daemon, method: str, params=None):
    with RawStomp(daemon.host, daemon.port) as c:
        c.connect()
        return c.call(method, params)


def test_port_file_names_the_bound_address(vdsmd):
    daemon = vdsmd()
    host, _, port = Path(daemon.port_file).read_text().strip().rpartition(":")
    assert (host, int(port)) == (daemon.host, daemon.port)
    assert ping(host, int(port))["result"] is True


def test_sigterm_stops_cleanly(vdsmd):
    daemon = vdsmd()
    held = RawStomp(daemon.host, daemon.port)
    held.connect()
    rc = daemon.stop()
    assert rc == 0
    assert held.closed_by_server()
    log = daemon.log_text()
    assert "received SIGTERM, stopping" in log
    assert "vdsm stopped" in log
    assert "Traceback" not in log
    assert not Path(daemon.port_file).exists()


def test_sigint_stops_cleanly(vdsmd):
    daemon = vdsmd()
    daemon.stopped_by_test = True
    os.kill(daemon.pid, signal.SIGINT)
    assert daemon.proc.wait(10) == 0
    assert "received SIGINT, stopping" in daemon.log_text()
    assert "Traceback" not in daemon.log_text()


@pytest.mark.parametrize(
    "text, where",
    [
        ("[addresses]\nmanagement_port = nope\n", "[addresses] management_port"),
        ("[vars]\nssl = perhaps\n", "[vars] ssl"),
        ("[rpc]\nmax_connections = 0\n", "[rpc] max_connections"),
    ],
)
def test_bad_config_value_stops_start(tmp_path, text, where):
    conf = tmp_path / "vdsm.conf"
    conf.write_text(text)
    result = run_daemon("--config", str(conf))
    assert result.returncode != 0
    assert str(conf) in result.stderr
    assert where in result.stderr


def test_bad_value_in_dropin_is_named(tmp_path):
    conf = tmp_path / "vdsm.conf"
    conf.write_text("[vars]\nssl = false\n")
    (tmp_path / "vdsm.conf.d").mkdir()
    dropin = tmp_path / "vdsm.conf.d" / "50-local.conf"
    dropin.write_text("[sanlock]\nio_timeout = -3\n")
    result = run_daemon("--config", str(conf))
    assert result.returncode != 0
    assert str(dropin) in result.stderr and "[sanlock] io_timeout" in result.stderr


def test_missing_config_file(tmp_path):
    result = run_daemon("--config", str(tmp_path / "absent.conf"))
    assert result.returncode != 0
    assert "no such file" in result.stderr


def test_unknown_keys_are_warned_about(vdsmd):
    daemon = vdsmd({"vars": {"fake_kvm_support": "true"}, "mom": {"conf": "/x"}})
    log = daemon.log_text()
    assert "[vars] fake_kvm_support: unknown key, ignored" in log
    assert "[mom] conf: unknown key, ignored" in log


def test_port_in_use_is_a_clear_start_error(vdsmd, tmp_path):
    daemon = vdsmd()
    conf = tmp_path / "clash.conf"
    conf.write_text(
        f"[vars]\nssl = false\n[addresses]\nmanagement_ip = {daemon.host}\n"
        f"management_port = {daemon.port}\n[paths]\nstate_dir = {tmp_path}/s\n"
        f"run_dir = {tmp_path}/r\nhooks_dir = {tmp_path}/h\nhost_id_file = {tmp_path}/s/id\n"
        "[libvirt]\nuri = test:///default\n"
    )
    result = run_daemon("--config", str(conf))
    assert result.returncode == 1
    assert f"cannot listen on {daemon.host}:{daemon.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_recovery_answers_99_until_ready(vdsmd):
    daemon = vdsmd({"devel": {"recovery_delay": "3"}}, wait_ready=False)
    answer = call(daemon, "Host.echo", {"message": "early"})
    assert answer["error"] == {"code": 99, "message": "Recovering from crash or Initializing"}
    assert call(daemon, "Host.ping2")["result"] is True
    assert call(daemon, "Host.ping")["result"] is True
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = call(daemon, "Host.echo", {"message": "late"})
        if "result" in answer:
            break
        time.sleep(0.2)
    assert answer["result"] == "late"


def test_log_level_changes_at_run_time(vdsmd):
    daemon = vdsmd({"logging": {"level": "INFO"}})
    call(daemon, "Host.ping2")
    assert "START Host.ping2" not in daemon.log_text()  # polling verbs log at DEBUG
    assert call(daemon, "Host.setLogLevel", {"level": "DEBUG"})["result"] is True
    call(daemon, "Host.ping2")
    deadline = time.monotonic() + 5
    while "START Host.ping2" not in daemon.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "START Host.ping2" in daemon.log_text()
    assert call(daemon, "Host.setLogLevel", {"level": "WARNING", "name": "vdsm.api"})["result"]
    mark = len(daemon.log_text())
    call(daemon, "Host.echo", {"message": "quiet now"})
    time.sleep(0.2)
    assert "START Host.echo" not in daemon.log_text()[mark:]


def test_secrets_are_masked_in_logs(vdsmd):
    daemon = vdsmd({"logging": {"level": "DEBUG"}})
    call(daemon, "Host.echo", {"message": "m", "password": "hunter2", "_X_token": "t0k3n"})
    time.sleep(0.2)
    log = daemon.log_text()
    assert "hunter2" not in log and "t0k3n" not in log


def test_confirm_connectivity_touches_client_log(vdsmd):
    daemon = vdsmd()
    marker = Path(daemon.run_dir) / "client.log"
    before = marker.stat().st_mtime if marker.exists() else 0
    time.sleep(0.02)
    assert call(daemon, "Host.confirmConnectivity")["result"] is True
    assert marker.stat().st_mtime > before


def test_sd_notify_ready_and_watchdog(vdsmd, tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        daemon = vdsmd(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        messages: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 3:
            messages.append(sock.recv(4096).decode())
        assert any("READY=1" in m for m in messages)
        assert sum("WATCHDOG=1" in m for m in messages) >= 3
        ready_index = next(i for i, m in enumerate(messages) if "READY=1" in m)
        # READY is sent once the port answers: the port file existed by then.
        assert ready_index <= 2
        assert daemon.stop() == 0
        sock.settimeout(0.5)
        tail = []
        with contextlib.suppress(TimeoutError):
            while True:
                tail.append(sock.recv(4096).decode())
        assert any("STOPPING=1" in m for m in tail)
    finally:
        sock.close()


def test_start_to_serving_is_quick(vdsmd):
    started = time.monotonic()
    daemon = vdsmd(wait_ready=False)
    assert ping(daemon.host, daemon.port)["result"] is True
    # Generous: the benchmark measures the real figure; this only catches gross regressions.
    assert time.monotonic() - started < 10


def test_dev_mode_serves_embedded_defaults(tmp_path):
    extra = tmp_path / "port.conf"
    port_file = tmp_path / "port"
    extra.write_text(
        f"[addresses]\nmanagement_port = 0\nport_file = {port_file}\n"
        "[libvirt]\nuri = test:///default\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vdsm.daemon",
            "--dev",
            str(tmp_path / "run"),
            "--config",
            str(extra),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        host, _, port = port_file.read_text().strip().rpartition(":")
        assert host == "127.0.0.1"
        assert ping(host, int(port))["result"] is True
        for sub in ("data-center", "state", "run", "hooks"):
            assert (tmp_path / "run" / sub).is_dir() or sub == "data-center"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "vdsm-client -a 127.0.0.1" in err and "--insecure Host getCapabilities" in err

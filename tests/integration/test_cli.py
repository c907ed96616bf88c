"""vdsm-client and vdsClient as an administrator runs them, against a real daemon."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def vdsm_client(*args: str, stdin: str | None = None, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "vdsm.client.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        cwd=ROOT,
    )


def vds_client(*args: str, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "vdsm.client.vdsclient", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def daemon(request, tmp_path_factory):
    # One daemon for the module: the CLIs only read.
    from tests.integration.conftest import wait_until_ready
    from tests.lab.vdsmd import VdsmdProcess

    d = VdsmdProcess(tmp_path_factory.mktemp("vdsmd-cli")).start()
    wait_until_ready(d)
    yield d
    assert d.stop() == 0


def target(daemon) -> list[str]:
    return ["-a", daemon.host, "-p", str(daemon.port), "--insecure"]


def test_void_verb_prints_true(daemon):
    result = vdsm_client(*target(daemon), "Host", "ping2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "true"


def test_params_as_name_value(daemon):
    result = vdsm_client(*target(daemon), "Host", "echo", "message=hello world")
    assert result.returncode == 0
    assert json.loads(result.stdout) == "hello world"


def test_result_is_indented_and_sorted(daemon):
    result = vdsm_client(*target(daemon), "Host", "getCapabilities")
    assert result.returncode == 0, result.stderr
    caps = json.loads(result.stdout)
    assert result.stdout == json.dumps(caps, indent=4, sort_keys=True) + "\n"
    assert "cpuCores" in caps


def test_typed_params_from_stdin(daemon):
    result = vdsm_client(
        *target(daemon),
        "-f",
        "-",
        "Host",
        "getJobs",
        stdin=json.dumps({"job_ids": [], "job_type": "storage"}),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}


def test_typed_params_from_file(daemon, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"message": "from file"}))
    result = vdsm_client(*target(daemon), "-f", str(params), "Host", "echo")
    assert json.loads(result.stdout) == "from file"


def test_file_and_name_value_is_a_usage_error(daemon, tmp_path):
    params = tmp_path / "p.json"
    params.write_text("{}")
    result = vdsm_client(*target(daemon), "-f", str(params), "Host", "echo", "message=x")
    assert result.returncode == 2
    assert "cannot be combined" in result.stderr


def test_server_error_text_and_exit_code(daemon):
    result = vdsm_client(*target(daemon), "Host", "setLogLevel", "level=LOUD")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "vdsm-client: Command Host.setLogLevel with args {'level': 'LOUD'} failed:\n(code=-32602, "
    )


def test_connection_refused(daemon):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = vdsm_client("-a", "127.0.0.1", "-p", str(port), "--insecure", "Host", "ping2")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"vdsm-client: Connection to 127.0.0.1:{port} with use_tls=False, timeout=60 failed:"
    )


def test_request_timeout():
    # A peer that completes the STOMP handshake and then never answers: a hung host.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0")
        time.sleep(5)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    result = vdsm_client(
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "--insecure",
        "--timeout",
        "1",
        "Host",
        "echo",
        "message=x",
    )
    server.close()
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "vdsm-client: Request Host.echo with args {'message': 'x'} timed out after 1 seconds"
    )


def test_help_comes_from_the_schema():
    top = vdsm_client("-h")
    assert top.returncode == 0 and "Host" in top.stdout
    ns = vdsm_client("Host", "-h")
    assert "getCapabilities" in ns.stdout and "setLogLevel" in ns.stdout
    verb = vdsm_client("Host", "setLogLevel", "-h")
    assert "level: LoggingLevel" in verb.stdout
    assert "JSON representation" in verb.stdout
    assert '"level": "<LoggingLevel: DEBUG|INFO|' in verb.stdout


def test_unknown_verb_is_a_usage_error():
    result = vdsm_client("Host", "noSuchVerb")
    assert result.returncode == 2


def test_flow_id_is_sent(daemon):
    vdsm_client(*target(daemon), "--flow-id", "cli-flow-7", "Host", "echo", "message=x")
    assert "flow_id=cli-flow-7" in daemon.log_text()


def test_events_follow(daemon, veth_pair):
    proc = subprocess.Popen(
        [sys.executable, "-m", "vdsm.client.cli", *target(daemon), "--events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        time.sleep(1.5)  # connected and subscribed
        veth_pair()
        line = proc.stdout.readline()
        event = json.loads(line)
        assert event["event"] == "|net|host_conn|no_id"
        assert "notify_time" in event["params"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_vdsclient_get_vds_caps(daemon):
    result = vds_client(f"{daemon.host}:{daemon.port}", "getVdsCaps")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("\tcpuCores = ") for line in lines)
    keys = [
        line.split(" = ")[0]
        for line in lines
        if line.startswith("\t") and " = " in line and not line.startswith("\t\t")
    ]
    assert keys == sorted(keys)


def test_vdsclient_get_vds_stats(daemon):
    result = vds_client(f"{daemon.host}:{daemon.port}", "getVdsStats")
    assert result.returncode == 0
    assert "\tcpuIdle = " in result.stdout


def test_vdsclient_maps_legacy_names_to_verbs(daemon):
    # The test driver's own domain "test" is an external VM: listed, running.
    result = vds_client(f"{daemon.host}:{daemon.port}", "list", "table")
    assert result.returncode == 0
    assert [line.split()[2:4] for line in result.stdout.splitlines()] == [["test", "Up"]]
    # The verbs on a VM this host does not know answer "does not exist".
    vm = "9ffe28b6-6134-4b1e-8804-1185f49c436f"
    for args in (["destroy", vm], ["getVmStats", vm]):
        result = vds_client(f"{daemon.host}:{daemon.port}", *args)
        assert result.returncode == 1
        assert result.stdout.startswith(f"Virtual machine does not exist: {{'vmId': '{vm}'}}")
    # getSpmStatus reaches StoragePool.getSpmStatus: this host knows no such pool.
    pool = "5849b030-626e-47cb-ad90-3ce782d831b3"
    result = vds_client(f"{daemon.host}:{daemon.port}", "getSpmStatus", pool)
    assert result.returncode == 1
    assert result.stdout.startswith(f"Unknown pool id, pool not connected: ('{pool}',)")


def test_vdsclient_usage_errors(daemon):
    assert vds_client(f"{daemon.host}:{daemon.port}", "noSuchCommand").returncode == 255
    assert vds_client(f"{daemon.host}:{daemon.port}", "destroy").returncode == 255
    help_text = vds_client("-m")
    assert help_text.returncode == 0 and "getVdsCaps" in help_text.stdout

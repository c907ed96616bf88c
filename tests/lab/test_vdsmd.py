"""The vdsmd fixture: the daemon as a real process on a port of its own."""

from __future__ import annotations

import configparser
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.inner import run_pytest
from tests.lab.services import alive
from tests.lab.vdsmd import VdsmdProcess

pytestmark = pytest.mark.integration


def connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


def test_vdsmd_serves_on_the_port_file_address(vdsmd: Callable[..., VdsmdProcess]) -> None:
    daemon = vdsmd()
    assert daemon.port_file.read_text().strip() == f"{daemon.host}:{daemon.port}"
    assert daemon.host == "127.0.0.1" and daemon.port > 0
    assert connects(daemon.host, daemon.port)
    assert alive(daemon.pid)

    config = configparser.ConfigParser()
    config.read(daemon.config_path)
    assert config["addresses"]["management_port"] == "0"
    assert config["libvirt"]["uri"] == "test:///default"
    for key in ("state_dir", "run_dir", "hooks_dir"):
        assert Path(config["paths"][key]).is_relative_to(daemon.tmp)
    assert Path(config["irs"]["repository"]).is_relative_to(daemon.tmp)
    assert daemon.log_path.is_relative_to(daemon.tmp)

    assert daemon.stop() == 0, daemon.log_text(tail=40)
    assert not daemon.killed and not daemon.running()
    assert not connects(daemon.host, daemon.port)


def test_vdsmd_kill_and_restart(vdsmd: Callable[..., VdsmdProcess]) -> None:
    daemon = vdsmd({"logging": {"level": "INFO"}})
    first = daemon.pid
    assert daemon.kill() == -9
    assert not alive(first)
    daemon.restart()
    assert daemon.pid != first and daemon.running()
    assert connects(daemon.host, daemon.port)
    assert "=== start 2:" in daemon.stderr_path.read_text()


def test_config_is_merged_over_the_defaults(
    vdsmd: Callable[..., VdsmdProcess], tmp_path: Path
) -> None:
    daemon = vdsmd(
        {"libvirt": {"uri": "qemu:///system"}, "rpc": {"max_connections": "7"}}, start=False
    )
    daemon.write_config()
    config = configparser.ConfigParser()
    config.read(daemon.config_path)
    assert config["libvirt"]["uri"] == "qemu:///system"
    assert config["rpc"]["max_connections"] == "7"
    assert config["vars"]["ssl"] == "false"
    assert daemon.dropin_dir.is_dir()


INNER_FAILING = """
def test_fails_with_a_daemon(vdsmd):
    daemon = vdsmd()
    assert daemon.running()
    raise AssertionError("failing on purpose")
"""


def test_failing_test_report_carries_the_vdsmd_log(tmp_path: Path) -> None:
    proc = run_pytest(tmp_path, INNER_FAILING)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "failing on purpose" in out
    assert "vdsmd pid " in out  # the report section's title
    assert "--- vdsmd stderr:" in out and "=== start 1:" in out

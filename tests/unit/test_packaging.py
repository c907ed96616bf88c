"""The systemd unit and tmpfiles entry say what the daemon does."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "systemd" / "vdsmd.service")
    return parser


def test_unit_is_notify_with_watchdog_and_restart():
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0
    assert service["NotifyAccess"] == "main"


def test_unit_starts_the_installed_console_script_with_the_default_config():
    exec_start = unit()["Service"]["ExecStart"].split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(exec_start[0]).name in scripts
    assert exec_start[1:] == ["--config", "/etc/vdsm/vdsm.conf"]


def test_tmpfiles_create_the_run_dir_and_client_log():
    lines = [
        line.split()
        for line in (ROOT / "systemd" / "vdsm-tmpfiles.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    paths = {fields[1]: fields[0] for fields in lines}
    assert paths["/run/vdsm"] == "d"
    assert paths["/run/vdsm/client.log"] == "f"


def test_systemd_accepts_the_unit(tmp_path):
    # systemd's own validator, with ExecStart pointed at this checkout's console script.
    import shutil
    import subprocess
    import sys

    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed with libvirt-daemon-system (systemd)"
    vdsmd = Path(sys.executable).with_name("vdsmd")
    text = (ROOT / "systemd" / "vdsmd.service").read_text().replace("/usr/bin/vdsmd", str(vdsmd))
    (tmp_path / "vdsmd.service").write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "vdsmd.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_systemd_tmpfiles_creates_the_runtime_tree(tmp_path):
    import shutil
    import subprocess

    tmpfiles = shutil.which("systemd-tmpfiles")
    assert tmpfiles, "systemd-tmpfiles is installed with libvirt-daemon-system (systemd)"
    result = subprocess.run(
        [tmpfiles, "--create", f"--root={tmp_path}", str(ROOT / "systemd" / "vdsm-tmpfiles.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "vdsm" / "storage").is_dir()
    assert (tmp_path / "run" / "vdsm" / "client.log").is_file()

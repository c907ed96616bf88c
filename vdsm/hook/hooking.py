"""The module hook scripts import: `import hooking` or `from vdsm.hook import hooking`.

The hook runner appends this file's directory to the scripts' PYTHONPATH, so a plain
`import hooking` works from any python3.  Standard library only: a hook may run under
an interpreter that has none of the daemon's dependencies.

Data files (set by the runner for the point being run):
  _hook_domxml  the domain (or device) XML of the point
  _hook_json    the JSON document of the point
Edits written back are seen by the next script and, at the end, by the daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, NoReturn
from xml.dom import minidom

__all__ = [
    "dump_vm_launch_flags_to_file",
    "execCmd",
    "exit_hook",
    "load_vm_launch_flags_from_file",
    "log",
    "read_domxml",
    "read_json",
    "tobool",
    "write_domxml",
    "write_json",
]

_DEFAULT_RUN_DIR = "/run/vdsm"
# The data files' variables: lower case, as upstream names them.
_DOMXML_VAR = "_hook_domxml"
_JSON_VAR = "_hook_json"


def read_domxml() -> minidom.Document:
    """The point's XML as a minidom Document."""
    with open(os.environ[_DOMXML_VAR], "rb") as f:
        return minidom.parseString(f.read())


def write_domxml(domxml: minidom.Document) -> None:
    """Replaces the point's XML with `domxml` (UTF-8, with an XML declaration)."""
    with open(os.environ[_DOMXML_VAR], "wb") as f:
        f.write(domxml.toxml(encoding="utf-8"))


def read_json() -> Any:
    """The point's JSON document, decoded."""
    with open(os.environ[_JSON_VAR], encoding="utf-8") as f:
        return json.load(f)


def write_json(data: Any) -> None:
    """Replaces the point's JSON document with `data`."""
    with open(os.environ[_JSON_VAR], "w", encoding="utf-8") as f:
        json.dump(data, f)


def log(message: str) -> None:
    """Writes one line to stderr, which the daemon logs (and keeps as the error text
    when the script fails)."""
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def exit_hook(message: str, return_code: int = 2) -> NoReturn:
    """Ends the script: `message` to stderr, then exit with `return_code` (2 by default:
    an error that stops the rest of the chain)."""
    log(message)
    sys.exit(return_code)


def execCmd(
    command: list[str],
    sudo: bool = False,
    cwd: str | None = None,
    data: bytes | str | None = None,
    raw: bool = False,
    env: dict[str, str] | None = None,
    **_ignored: Any,
) -> tuple[int, Any, Any]:
    """Runs `command`; returns (rc, out, err).  out/err are lists of byte lines, or the
    raw bytes with `raw=True`.  `data` is fed to stdin."""
    argv = [str(arg) for arg in command]
    if sudo and os.geteuid() != 0:
        argv = ["sudo", "-n", *argv]
    if isinstance(data, str):
        data = data.encode()
    proc = subprocess.run(
        argv,
        input=data,
        stdin=None if data is not None else subprocess.DEVNULL,
        capture_output=True,
        cwd=cwd,
        env=env,
        check=False,
    )
    if raw:
        return proc.returncode, proc.stdout, proc.stderr
    return proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines()


def tobool(value: Any) -> bool:
    """Booleans as they come in custom properties: "true"/"True"/"1" are true;
    None, "false", "0", garbage are false."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "true":
            return True
        try:
            return bool(int(text))
        except ValueError:
            return False
    try:
        return bool(int(value))
    except (TypeError, ValueError):
        return False


def _launch_flags_path(vm_id: str) -> str:
    run_dir = os.environ.get("VDSM_RUN_DIR", _DEFAULT_RUN_DIR)
    return os.path.join(run_dir, vm_id, "launchflags")


def load_vm_launch_flags_from_file(vm_id: str) -> int:
    """The libvirt create flags the daemon will use for this VM (decimal in the file)."""
    with open(_launch_flags_path(vm_id)) as f:
        return int(f.read().strip() or "0")


def dump_vm_launch_flags_to_file(vm_id: str, flags: int) -> None:
    """Changes the libvirt create flags, e.g. to add VIR_DOMAIN_START_PAUSED (1)."""
    with open(_launch_flags_path(vm_id), "w") as f:
        f.write(str(int(flags)))

"""The hook runner (contract §3.2): runs the scripts of one hook point.

A hook point is a directory `<hooks_dir>/<point>/`; its scripts are the regular files
with the execute bit, run one after the other in lexicographic order.  The data of the
point (a domain or device XML, or a JSON document) is written to ONE temporary file
shared by the whole chain, so every script sees the edits of the ones before it; the
file's path is in `_hook_domxml` or `_hook_json`.  After the last script the file is read
back and removed.

Exit codes: 0 ok; 1 error, the chain continues; 2 error, the rest of the chain is
skipped; anything else is reserved, counted as an error, and the chain continues.  A
failing script's stderr is kept as its error text; a script still running after the
timeout is killed with its whole process group and counts as an error.

Raising points raise `HookScriptError` (code 1500, `Hook Error: (b'<last stderr>',)`),
after the edited data was read back, so that before_vm_start can still apply it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import vdsm
import vdsm.hook
from vdsm import errors
from vdsm.hooks.inventory import runnable_scripts

log = logging.getLogger("vdsm.hooks.runner")

# Where `hooking.py` lives: appended to the scripts' PYTHONPATH so `import hooking`
# resolves, as upstream hooks expect.  The directory holding the `vdsm` package follows
# it so `from vdsm.hook import hooking` also works for a system python3 that does not
# have this daemon installed (a development checkout, the test lab).
HOOKING_DIR = Path(vdsm.hook.__file__).resolve().parent
PACKAGE_ROOT = Path(vdsm.__file__).resolve().parent.parent

# Exit codes of a script.
RC_OK = 0
RC_ERROR = 1
RC_STOP = 2

# The launch flags file name under `<run_dir>/<vmId>/` (contract §3.2 rule 6).
LAUNCH_FLAGS_FILE = "launchflags"
# The environment variable telling `hooking` where the launch flags files live; upstream
# hardcodes /run/vdsm, which is also our default.
RUN_DIR_ENV = "VDSM_RUN_DIR"


@dataclass
class HookResult:
    domxml: str | None  # the (possibly edited) XML read back, None if none was given
    json_data: Any  # the (possibly edited) JSON read back, None if none was given
    errors: list[str] = field(default_factory=list)  # stderr of failing scripts, in order


class HookScriptError(errors.HookError):
    """HookError (1500) that also carries what the chain produced."""

    def __init__(self, stderr: bytes, result: HookResult) -> None:
        super().__init__(stderr)
        self.result = result


class HookRunner:
    def __init__(
        self, hooks_dir: Path, *, timeout: float = 60.0, tmp_dir: Path | None = None
    ) -> None:
        self.hooks_dir = Path(hooks_dir)
        self.timeout = timeout
        self.tmp_dir = tmp_dir

    def has_scripts(self, point: str) -> bool:
        return bool(runnable_scripts(self.hooks_dir / point))

    async def run(
        self,
        point: str,
        *,
        domxml: str | None = None,
        json_data: Any = None,
        env: Mapping[str, str] | None = None,
        vm_id: str | None = None,
        raise_on_error: bool = True,
    ) -> HookResult:
        scripts = await asyncio.to_thread(runnable_scripts, self.hooks_dir / point)
        result = HookResult(domxml=domxml, json_data=json_data)
        if not scripts:
            return result

        data_var, payload = _payload(domxml, json_data)
        data_file = await asyncio.to_thread(self._write_temp, payload)
        last_stderr = b""
        try:
            script_env = self._environment(env, vm_id)
            if data_var is not None:
                script_env[data_var] = str(data_file)
            for script in scripts:
                rc, stderr = await self._run_one(point, script, script_env)
                if rc == RC_OK:
                    continue
                last_stderr = stderr
                result.errors.append(stderr.decode("utf-8", "replace"))
                if rc == RC_STOP:
                    log.info("hook %s/%s stopped the chain (rc 2)", point, script.name)
                    break
            if data_var is not None:
                text = await asyncio.to_thread(data_file.read_text, "utf-8")
                if domxml is not None:
                    result.domxml = text
                else:
                    try:
                        result.json_data = json.loads(text)
                    except ValueError as e:
                        error = f"hooks of {point} left invalid JSON: {e}"
                        log.warning("%s", error)
                        result.errors.append(error)
                        last_stderr = error.encode()
        finally:
            with contextlib.suppress(OSError):
                data_file.unlink()
        if result.errors and raise_on_error:
            raise HookScriptError(last_stderr, result)
        return result

    def _write_temp(self, payload: bytes) -> Path:
        fd, name = tempfile.mkstemp(
            prefix="vdsm-hook-", dir=str(self.tmp_dir) if self.tmp_dir else None
        )
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        return Path(name)

    def _environment(self, extra: Mapping[str, str] | None, vm_id: str | None) -> dict[str, str]:
        env = dict(os.environ)
        if extra:
            env.update({str(k): str(v) for k, v in extra.items()})
        if vm_id is not None:
            env["vmId"] = vm_id
        appended = f"{HOOKING_DIR}:{PACKAGE_ROOT}"
        existing = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = f"{existing}:{appended}" if existing else appended
        return env

    async def _run_one(self, point: str, script: Path, env: dict[str, str]) -> tuple[int, bytes]:
        try:
            proc = await asyncio.create_subprocess_exec(
                str(script),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd="/",
                # Its own process group, so a timeout kills what it started too.
                start_new_session=True,
            )
        except OSError as e:
            # A script that cannot be executed (bad shebang...) is a failed script.
            message = f"{script.name}: cannot execute: {e}"
            log.warning("hook %s/%s", point, message)
            return RC_ERROR, message.encode()
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            message = f"{script.name}: timed out after {self.timeout:g} s, killed"
            log.warning("hook %s/%s", point, message)
            return RC_ERROR, message.encode()
        except BaseException:
            # Cancelled by the caller: never leave a script running behind us.
            _kill_group(proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        rc = proc.returncode if proc.returncode is not None else RC_ERROR
        if rc == RC_OK:
            if stderr:
                log.info("hook %s/%s: %s", point, script.name, stderr.decode("utf-8", "replace"))
            return RC_OK, stderr
        if rc not in (RC_ERROR, RC_STOP):
            log.warning("hook %s/%s exited with reserved code %d", point, script.name, rc)
            # Reserved codes (and deaths by signal) count as errors; the chain goes on.
            rc = RC_ERROR
        log.warning(
            "hook %s/%s failed (rc %d): %s",
            point,
            script.name,
            proc.returncode,
            stderr.decode("utf-8", "replace").strip(),
        )
        return rc, stderr


def _payload(domxml: str | None, json_data: Any) -> tuple[str | None, bytes]:
    if domxml is not None:
        return "_hook_domxml", domxml.encode("utf-8")
    if json_data is not None:
        return "_hook_json", json.dumps(json_data).encode("utf-8")
    return None, b""


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# -- launch flags (contract §3.2 rule 6) -----------------------------------------------


def launch_flags_path(run_dir: Path, vm_id: str) -> Path:
    return Path(run_dir) / vm_id / LAUNCH_FLAGS_FILE


def write_launch_flags(run_dir: Path, vm_id: str, flags: int) -> Path:
    """Writes the flags a before_vm_start hook may change; blocking."""
    path = launch_flags_path(run_dir, vm_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(flags))
    return path


def read_launch_flags(run_dir: Path, vm_id: str, default: int = 0) -> int:
    """The flags after the hooks ran; `default` when missing or unreadable; blocking."""
    path = launch_flags_path(run_dir, vm_id)
    try:
        return int(path.read_text().strip() or default)
    except (OSError, ValueError) as e:
        log.warning("cannot read launch flags %s (%s); using %d", path, e, default)
        return default


def remove_launch_flags(run_dir: Path, vm_id: str) -> None:
    path = launch_flags_path(run_dir, vm_id)
    with contextlib.suppress(OSError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()

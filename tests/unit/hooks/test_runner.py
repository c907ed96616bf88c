"""The hook runner on real scripts run by real processes (contract §3.2)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from vdsm import errors
from vdsm.hooks import runner as runner_module
from vdsm.hooks.runner import HookResult, HookRunner, HookScriptError

DOMXML = "<domain type='kvm'><name>x</name><uuid>u</uuid></domain>"


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def script(hooks: Path, point: str, name: str, body: str, *, executable: bool = True) -> Path:
    directory = hooks / point
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(body)
    mode = 0o755 if executable else 0o644
    path.chmod(mode)
    return path


def shell(body: str) -> str:
    return "#!/bin/sh\n" + body + "\n"


def python(body: str) -> str:
    return "#!/usr/bin/python3\n" + body + "\n"


def test_no_scripts_returns_the_data_as_is(tmp_path: Path) -> None:
    result = run(HookRunner(tmp_path).run("before_vm_start", domxml=DOMXML, vm_id="u"))
    assert result == HookResult(domxml=DOMXML, json_data=None, errors=[])


def test_scripts_run_in_lexicographic_order_sharing_one_file(tmp_path: Path) -> None:
    point = "before_vm_start"
    # Created out of order: the names, not creation order, decide.
    script(tmp_path, point, "50_second", shell('echo "<!--50-->" >> "$_hook_domxml"'))
    script(tmp_path, point, "10_first", shell('echo "<!--10-->" >> "$_hook_domxml"'))
    script(tmp_path, point, "9_last", shell('echo "<!--9-->" >> "$_hook_domxml"'))
    result = run(HookRunner(tmp_path, tmp_dir=tmp_path).run(point, domxml=DOMXML))
    assert result.domxml == DOMXML + "<!--10-->\n<!--50-->\n<!--9-->\n"
    assert result.errors == []
    # The shared temp file is gone afterwards.
    assert not list(tmp_path.glob("vdsm-hook-*"))


def test_only_executable_regular_files_run(tmp_path: Path) -> None:
    point = "before_vm_start"
    script(tmp_path, point, "10_not_exec", shell("echo not-exec >&2; exit 2"), executable=False)
    (tmp_path / point / "20_a_directory").mkdir()
    script(tmp_path, point, "30_ok", shell('echo "<!--ok-->" >> "$_hook_domxml"'))
    result = run(HookRunner(tmp_path).run(point, domxml=DOMXML))
    assert result.domxml == DOMXML + "<!--ok-->\n"
    assert result.errors == []


def test_exit_1_is_an_error_and_the_chain_continues(tmp_path: Path) -> None:
    point = "before_vm_start"
    script(tmp_path, point, "10_fail", shell("echo first failure >&2; exit 1"))
    script(tmp_path, point, "20_edit", shell('echo "<!--20-->" >> "$_hook_domxml"'))
    with pytest.raises(HookScriptError) as info:
        run(HookRunner(tmp_path).run(point, domxml=DOMXML))
    error = info.value
    assert isinstance(error, errors.HookError)
    assert error.code == 1500
    assert str(error) == "Hook Error: (b'first failure\\n',)"
    # The edits of the scripts after the failure were read back.
    assert error.result.domxml == DOMXML + "<!--20-->\n"
    assert error.result.errors == ["first failure\n"]


def test_exit_2_stops_the_chain(tmp_path: Path) -> None:
    point = "before_vm_start"
    script(tmp_path, point, "10_edit", shell('echo "<!--10-->" >> "$_hook_domxml"'))
    script(tmp_path, point, "20_stop", shell("echo stop here >&2; exit 2"))
    script(tmp_path, point, "30_never", shell('echo "<!--30-->" >> "$_hook_domxml"'))
    result = run(HookRunner(tmp_path).run(point, domxml=DOMXML, raise_on_error=False))
    assert result.domxml == DOMXML + "<!--10-->\n"
    assert result.errors == ["stop here\n"]


def test_reserved_exit_codes_are_errors_and_the_chain_continues(tmp_path: Path) -> None:
    point = "after_vm_start"
    script(tmp_path, point, "10_rc7", shell("echo seven >&2; exit 7"))
    script(tmp_path, point, "20_rc1", shell("echo one >&2; exit 1"))
    script(tmp_path, point, "30_edit", shell('echo "<!--30-->" >> "$_hook_domxml"'))
    with pytest.raises(HookScriptError) as info:
        run(HookRunner(tmp_path).run(point, domxml=DOMXML))
    # The message carries the LAST failing script's stderr.
    assert str(info.value) == "Hook Error: (b'one\\n',)"
    assert info.value.result.errors == ["seven\n", "one\n"]
    assert info.value.result.domxml == DOMXML + "<!--30-->\n"


def test_stdout_is_ignored_and_stderr_of_successful_scripts_is_not_an_error(
    tmp_path: Path,
) -> None:
    point = "before_vm_start"
    script(tmp_path, point, "10", shell("echo to-stdout; echo just-logging >&2; exit 0"))
    result = run(HookRunner(tmp_path).run(point, domxml=DOMXML))
    assert result.domxml == DOMXML
    assert result.errors == []


def test_a_hanging_script_is_killed_with_its_children_at_the_timeout(tmp_path: Path) -> None:
    point = "before_vm_start"
    pid_file = tmp_path / "child.pid"
    script(
        tmp_path,
        point,
        "10_hang",
        shell(f"sleep 1000 & echo $! > {pid_file}; wait"),
    )
    script(tmp_path, point, "20_after", shell('echo "<!--20-->" >> "$_hook_domxml"'))
    started = time.monotonic()
    result = run(HookRunner(tmp_path, timeout=1.0).run(point, domxml=DOMXML, raise_on_error=False))
    assert time.monotonic() - started < 10
    assert len(result.errors) == 1
    assert "timed out after 1 s" in result.errors[0]
    # The chain went on after the killed script.
    assert result.domxml == DOMXML + "<!--20-->\n"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the hung script's child survived"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_cancelling_the_run_kills_the_script(tmp_path: Path) -> None:
    point = "before_vm_start"
    pid_file = tmp_path / "script.pid"
    script(tmp_path, point, "10_hang", shell(f"echo $$ > {pid_file}; exec sleep 1000"))

    async def cancel_soon() -> None:
        task = asyncio.ensure_future(HookRunner(tmp_path).run(point, domxml=DOMXML))
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_soon())
    assert not _alive(int(pid_file.read_text()))


def test_environment_vm_id_custom_properties_and_pythonpath(tmp_path: Path) -> None:
    point = "before_vm_start"
    out = tmp_path / "env.json"
    script(
        tmp_path,
        point,
        "10_env",
        python(f"import json, os\njson.dump(dict(os.environ), open({str(out)!r}, 'w'))"),
    )
    os.environ["PYTHONPATH"] = "/existing/path"
    try:
        run(
            HookRunner(tmp_path).run(
                point, domxml=DOMXML, vm_id="the-vm", env={"qemu_cmdline": '["-no-hpet"]'}
            )
        )
    finally:
        del os.environ["PYTHONPATH"]
    env = json.loads(out.read_text())
    assert env["vmId"] == "the-vm"
    assert env["qemu_cmdline"] == '["-no-hpet"]'
    assert env["_hook_domxml"].startswith(tempfile_dir())
    parts = env["PYTHONPATH"].split(":")
    assert parts[0] == "/existing/path"
    assert parts[1] == str(runner_module.HOOKING_DIR)
    assert (runner_module.HOOKING_DIR / "hooking.py").is_file()


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_json_points_share_a_json_file(tmp_path: Path) -> None:
    point = "after_get_caps"
    script(
        tmp_path,
        point,
        "10_add",
        python(
            "import hooking\n"
            "caps = hooking.read_json()\n"
            "caps['added'] = caps['n'] + 1\n"
            "hooking.write_json(caps)"
        ),
    )
    result = run(HookRunner(tmp_path).run(point, json_data={"n": 41}))
    assert result.json_data == {"n": 41, "added": 42}
    assert result.domxml is None


def test_invalid_json_left_by_a_hook_is_an_error(tmp_path: Path) -> None:
    point = "after_get_caps"
    script(tmp_path, point, "10_break", shell('echo "{not json" > "$_hook_json"'))
    with pytest.raises(HookScriptError) as info:
        run(HookRunner(tmp_path).run(point, json_data={"n": 1}))
    assert "invalid JSON" in str(info.value)
    assert info.value.result.json_data == {"n": 1}


def test_a_script_that_cannot_be_executed_is_a_failed_script(tmp_path: Path) -> None:
    point = "before_vm_start"
    script(tmp_path, point, "10_bad_shebang", "#!/nonexistent/interpreter\n")
    result = run(HookRunner(tmp_path).run(point, domxml=DOMXML, raise_on_error=False))
    assert len(result.errors) == 1
    assert "cannot execute" in result.errors[0]


def test_launch_flags_helpers_roundtrip(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    path = runner_module.write_launch_flags(run_dir, "vm1", 0)
    assert path == run_dir / "vm1" / "launchflags"
    assert runner_module.read_launch_flags(run_dir, "vm1") == 0
    path.write_text("1\n")
    assert runner_module.read_launch_flags(run_dir, "vm1") == 1
    path.write_text("garbage")
    assert runner_module.read_launch_flags(run_dir, "vm1", default=5) == 5
    runner_module.remove_launch_flags(run_dir, "vm1")
    assert not (run_dir / "vm1").exists()
    assert stat.S_ISDIR(run_dir.stat().st_mode)

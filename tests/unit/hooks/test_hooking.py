"""The `hooking` module as hook scripts use it: run by the real runner under the system
python3, imported both as `import hooking` and `from vdsm.hook import hooking`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from vdsm.hook import hooking
from vdsm.hooks.runner import RUN_DIR_ENV, HookRunner, write_launch_flags

DOMXML = (
    "<domain type='kvm'><name>x</name><uuid>u</uuid>"
    "<devices><interface type='bridge'/></devices></domain>"
)


def install(hooks: Path, point: str, name: str, body: str) -> None:
    directory = hooks / point
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/usr/bin/python3\n" + body)
    path.chmod(0o755)


@pytest.mark.parametrize("import_line", ["import hooking", "from vdsm.hook import hooking"])
def test_every_hooking_function_from_a_real_script(tmp_path: Path, import_line: str) -> None:
    run_dir = tmp_path / "run"
    write_launch_flags(run_dir, "vm-1", 0)
    marker = tmp_path / "execcmd.out"
    install(
        tmp_path,
        "before_vm_start",
        "50_everything",
        f"""{import_line}
import os
doc = hooking.read_domxml()
iface = doc.getElementsByTagName('interface')[0]
iface.setAttribute('type', 'network')
hooking.write_domxml(doc)
flags = hooking.load_vm_launch_flags_from_file(os.environ['vmId'])
hooking.dump_vm_launch_flags_to_file(os.environ['vmId'], flags | 1)
rc, out, err = hooking.execCmd(['echo', 'hello'])
assert rc == 0 and out == [b'hello'], (rc, out, err)
rc, out, err = hooking.execCmd(['cat'], data=b'raw', raw=True)
assert (rc, out) == (0, b'raw'), (rc, out)
open({str(marker)!r}, 'w').write(str(hooking.tobool(os.environ.get('enabled'))))
hooking.log('edited the interface')
""",
    )
    result = asyncio.run(
        HookRunner(tmp_path).run(
            "before_vm_start",
            domxml=DOMXML,
            vm_id="vm-1",
            env={"enabled": "true", RUN_DIR_ENV: str(run_dir)},
        )
    )
    assert result.errors == []
    assert result.domxml is not None
    assert result.domxml.startswith('<?xml version="1.0" encoding="utf-8"?>')
    assert '<interface type="network"/>' in result.domxml
    assert (run_dir / "vm-1" / "launchflags").read_text() == "1"
    assert marker.read_text() == "True"


def test_exit_hook_stops_the_chain_with_its_message(tmp_path: Path) -> None:
    install(
        tmp_path, "before_vm_start", "10_refuse", "import hooking\nhooking.exit_hook('no way')\n"
    )
    install(tmp_path, "before_vm_start", "20_never", "import sys\nsys.exit(1)\n")
    result = asyncio.run(
        HookRunner(tmp_path).run("before_vm_start", domxml=DOMXML, raise_on_error=False)
    )
    assert result.errors == ["no way\n"]


def test_exit_hook_with_a_return_code(tmp_path: Path) -> None:
    install(tmp_path, "after_vm_start", "10_soft", "import hooking\nhooking.exit_hook('soft', 1)\n")
    install(tmp_path, "after_vm_start", "20_also", "import hooking\nhooking.exit_hook('also', 1)\n")
    result = asyncio.run(
        HookRunner(tmp_path).run("after_vm_start", domxml=DOMXML, raise_on_error=False)
    )
    assert result.errors == ["soft\n", "also\n"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (True, True),
        (False, False),
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("1", True),
        ("false", False),
        ("0", False),
        ("", False),
        ("garbage", False),
        (1, True),
        (0, False),
    ],
)
def test_tobool(value: object, expected: bool) -> None:
    assert hooking.tobool(value) is expected


def test_execcmd_reports_failures(tmp_path: Path) -> None:
    rc, out, err = hooking.execCmd(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert rc == 3
    assert out == [b"out"]
    assert err == [b"err"]

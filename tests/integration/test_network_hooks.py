"""The network hook points with real hook scripts: before_network_setup rewriting the
request through _hook_json, after_network_setup, and a failing setup hook (78)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.network import NIC, closing, host_client, kernel_view

pytestmark = pytest.mark.integration


def install(hooks_dir: Path, point: str, name: str, body: str) -> None:
    directory = hooks_dir / point
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n")
    script.chmod(0o755)


@pytest.fixture
def lab(netns_factory, vdsmd):
    host = netns_factory(veth=None)
    host.add_veth(NIC, "veth_0p")
    return host, vdsmd(netns=host.name)


def test_before_hook_rewrites_the_request_and_after_hook_sees_it(lab, tmp_path: Path) -> None:
    host, daemon = lab
    seen = tmp_path / "after.json"
    install(
        daemon.hooks_dir,
        "before_network_setup",
        "50_mtu",
        "path = os.environ['_hook_json']\n"
        "data = json.load(open(path))\n"
        "for net in data['request']['networks'].values():\n"
        "    net['mtu'] = 1400\n"
        "json.dump(data, open(path, 'w'))",
    )
    install(
        daemon.hooks_dir,
        "after_network_setup",
        "50_record",
        f"open({str(seen)!r}, 'w').write(open(os.environ['_hook_json']).read())",
    )
    with closing(host_client(daemon)) as client:
        answer = client.setup({"ovirtmgmt": {"nic": NIC}})
        assert answer.get("result") == {"code": 0, "message": "Done"}, answer
        assert client.result("Host.getNetworkCapabilities")["networks"]["ovirtmgmt"]["mtu"] == (
            "1400"
        )
    view = kernel_view(host)
    assert view["links"]["ovirtmgmt"]["mtu"] == 1400 and view["links"][NIC]["mtu"] == 1400
    request = json.loads(seen.read_text())["request"]
    assert request["networks"]["ovirtmgmt"]["mtu"] == 1400
    assert request["options"] == {"connectivityCheck": False}


def test_a_failing_setup_hook_is_78_and_nothing_changes(lab, tmp_path: Path) -> None:
    host, daemon = lab
    failed = tmp_path / "fail.json"
    install(
        daemon.hooks_dir,
        "before_network_setup",
        "50_refuse",
        "sys.stderr.write('not on this host')\nsys.exit(1)",
    )
    install(
        daemon.hooks_dir,
        "after_network_setup_fail",
        "50_record",
        f"open({str(failed)!r}, 'w').write('x')",
    )
    before = kernel_view(host)
    with closing(host_client(daemon)) as client:
        error = client.setup({"ovirtmgmt": {"nic": NIC}})["error"]
        assert error == {"code": 78, "message": "Hook error: not on this host"}
        assert client.result("Host.ping2") is True
    assert kernel_view(host) == before
    assert not failed.exists()


def test_after_fail_hook_runs_when_the_change_is_rolled_back(lab, tmp_path: Path) -> None:
    _host, daemon = lab
    failed = tmp_path / "fail.json"
    install(
        daemon.hooks_dir,
        "after_network_setup_fail",
        "50_record",
        f"open({str(failed)!r}, 'w').write(open(os.environ['_hook_json']).read())",
    )
    with closing(host_client(daemon)) as client:
        error = client.setup(
            {"ovirtmgmt": {"nic": NIC}}, connectivityCheck=True, connectivityTimeout=1
        )["error"]
    assert error["code"] == 10
    assert "ovirtmgmt" in json.loads(failed.read_text())["request"]["networks"]

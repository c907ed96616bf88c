"""devices/<name> files in the persisted configuration (upstream writes them for SR-IOV
VF counts only): a boot restore, a setupNetworks and a setSafeNetworkConfig carry them
through unchanged, on a real daemon."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.test_network_setup import OVIRTMGMT, lab  # noqa: F401 (fixture)
from tests.support.network import closing, host_client

pytestmark = pytest.mark.integration

SRIOV = {"sriov": {"numvfs": 2}}


def test_device_files_survive_restore_setup_and_set_safe(lab) -> None:  # noqa: F811
    _host, _engine, daemon = lab
    daemon.stop()
    safe = daemon.state_dir / "persistence" / "netconf"
    (safe / "devices").mkdir(parents=True)
    (safe / "nets").mkdir()
    (safe / "devices" / "enp3s0f0").write_text(json.dumps(SRIOV, indent=4))
    (daemon.run_dir / "nets_restored").unlink()
    daemon.start()
    running = daemon.state_dir / "staging" / "netconf"
    with closing(host_client(daemon)) as client:
        deadline = time.monotonic() + 30
        while "error" in client.call("Host.getNetworkCapabilities"):
            assert time.monotonic() < deadline, "daemon never ready"
            time.sleep(0.1)
        assert json.loads((running / "devices" / "enp3s0f0").read_text()) == SRIOV
        assert client.setup({"ovirtmgmt": OVIRTMGMT})["result"]["code"] == 0
        assert json.loads((running / "devices" / "enp3s0f0").read_text()) == SRIOV
        assert client.result("Host.getCapabilities")["netConfigDirty"] == "True"
        assert client.result("Host.setSafeNetworkConfig") is True
        assert client.result("Host.getCapabilities")["netConfigDirty"] == "False"
    assert safe.is_symlink()
    assert json.loads((safe / "devices" / "enp3s0f0").read_text()) == SRIOV
    assert (safe / "nets" / "ovirtmgmt").exists()

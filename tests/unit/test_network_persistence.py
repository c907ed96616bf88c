"""The running/safe configuration files in upstream's layout, swapped atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vdsm.network import model
from vdsm.network.persistence import NetPersistence


def test_layout_symlink_swap_and_dirty(tmp_path: Path) -> None:
    stores = NetPersistence(tmp_path)
    req = model.canonical_request(
        {"ovirtmgmt": {"nic": "eth0", "ipaddr": "10.0.0.2", "prefix": 24}},
        {"bond0": {"nics": ["eth1", "eth2"], "options": "mode=4"}},
        {},
    )
    config = model.merge(model.NetConfig(), req)
    stores.running.save(config)
    running = tmp_path / "staging" / "netconf"
    assert running.is_symlink() and os.readlink(running).startswith("netconf.")
    text = (running / "nets" / "ovirtmgmt").read_text()
    assert text.startswith('{\n    "bootproto": "none",')
    assert json.loads((running / "bonds" / "bond0").read_text())["options"] == "mode=4"
    assert (running / "devices").is_dir()
    assert stores.running.load() == config
    assert stores.dirty()

    stores.commit()
    assert not stores.dirty()
    assert stores.safe.load() == config
    first = os.readlink(tmp_path / "persistence" / "netconf")

    stores.running.save(model.NetConfig())
    stores.commit()
    assert os.readlink(tmp_path / "persistence" / "netconf") != first
    # the previous directory is gone: only the link and its target remain
    assert sorted(p.name for p in (tmp_path / "persistence").iterdir()) == sorted(
        ["netconf", os.readlink(tmp_path / "persistence" / "netconf")]
    )
    assert stores.safe.load() == model.NetConfig()


def test_upstream_files_without_defaults_are_canonicalised(tmp_path: Path) -> None:
    nets = tmp_path / "staging" / "netconf" / "nets"
    nets.mkdir(parents=True)
    (nets / "ovirtmgmt").write_text(json.dumps({"nic": "eth0", "bridged": True}))
    (nets / "broken").write_text("{not json")
    loaded = NetPersistence(tmp_path).running.load()
    assert list(loaded.networks) == ["ovirtmgmt"]
    assert loaded.networks["ovirtmgmt"]["mtu"] == 1500


def test_device_files_written_by_upstream_survive_a_save_and_a_commit(tmp_path: Path) -> None:
    """Upstream writes devices/<nic> only for SR-IOV (hostdevChangeNumvfs); a save here
    must not drop them, nor a setSafeNetworkConfig."""
    devices = tmp_path / "persistence" / "netconf" / "devices"
    devices.mkdir(parents=True)
    (devices / "enp3s0f0").write_text(json.dumps({"sriov": {"numvfs": 4}}, indent=4))
    (devices / "broken").write_text("[1, 2]")
    stores = NetPersistence(tmp_path)
    safe = stores.safe.load()
    assert safe.devices == {"enp3s0f0": {"sriov": {"numvfs": 4}}}
    # A restore makes the safe configuration the running one; a setupNetworks merges.
    req = model.canonical_request({"net": {"nic": "eth0"}}, {}, {})
    stores.running.save(model.merge(safe, req))
    running = tmp_path / "staging" / "netconf" / "devices" / "enp3s0f0"
    assert json.loads(running.read_text()) == {"sriov": {"numvfs": 4}}
    assert running.read_text().startswith('{\n    "sriov"')
    stores.commit()
    assert stores.safe.load().devices == {"enp3s0f0": {"sriov": {"numvfs": 4}}}
    assert not (tmp_path / "persistence" / "netconf" / "devices" / "broken").exists()

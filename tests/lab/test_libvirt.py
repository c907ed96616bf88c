"""libvirt for real: a type='kvm' domain on qemu:///system, started and destroyed."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

pytestmark = pytest.mark.integration


def test_kvm_domain_lifecycle(
    libvirt_conn: Any, libvirt_domain: Callable[..., Any], shared_tmp_path: Path
) -> None:
    import libvirt

    disk = shared_tmp_path / "disk.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True, timeout=30
    )
    t0 = time.monotonic()
    dom = libvirt_domain(memory_mib=64, disk=disk)
    created = time.monotonic() - t0
    name = dom.name()
    state, _ = dom.state()
    assert state == libvirt.VIR_DOMAIN_RUNNING
    root = ElementTree.fromstring(dom.XMLDesc(0))
    assert root.get("type") == "kvm"
    assert root.find("./devices/disk/source").get("file") == str(disk)
    graphics = root.find("./devices/graphics")
    assert graphics.get("type") == "vnc" and graphics.get("listen") == "127.0.0.1"
    assert int(graphics.get("port")) >= 5900
    assert name in [d.name() for d in libvirt_conn.listAllDomains()]

    dom.suspend()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    dom.resume()
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    stats = libvirt_conn.domainListGetStats([dom], libvirt.VIR_DOMAIN_STATS_STATE)
    assert stats[0][1]["state.state"] == libvirt.VIR_DOMAIN_RUNNING

    pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    dom.destroy()
    with pytest.raises(libvirt.libvirtError):
        libvirt_conn.lookupByName(name)  # transient: gone once destroyed
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"qemu pid {pid} still runs after destroy")
    assert created < 30


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2 :].split()[0]

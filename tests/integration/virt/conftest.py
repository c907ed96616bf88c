"""Fixtures of the VM tests: a daemon on the real libvirtd, a client collecting events,
and the domains to destroy at teardown whatever happened."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.lab.fixtures import require_kvm
from tests.support.virt import VdsmClient

# Stats every second, hooks killed after 5 s: tests see both quickly.
VIRT_CONFIG = {"vars": {"vm_sample_interval": "1", "hook_timeout": "5"}}


@pytest.fixture
def virt_daemon(vdsmd: Callable[..., Any], libvirt_uri: str) -> Any:
    """A vdsmd on the real libvirtd (qemu:///system)."""
    require_kvm()
    return vdsmd({"libvirt": {"uri": libvirt_uri}, **VIRT_CONFIG})


@pytest.fixture
def client(virt_daemon: Any) -> Iterator[VdsmClient]:
    c = VdsmClient(virt_daemon)
    yield c
    c.close()


@pytest.fixture
def domains(libvirt_conn: Any) -> Iterator[list[str]]:
    """VM ids to make sure of at teardown: their libvirt domains are destroyed."""
    import libvirt

    ids: list[str] = []
    yield ids
    for vm_id in ids:
        with contextlib.suppress(libvirt.libvirtError):
            dom = libvirt_conn.lookupByUUIDString(vm_id)
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()

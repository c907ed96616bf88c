"""sanlock for real: a lockspace joined and a resource acquired through the daemon."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

from tests.lab.fixtures import Lockspace, SanlockDaemon

pytestmark = pytest.mark.integration


def test_lockspace_join_acquire_release(
    sanlock: SanlockDaemon, sanlock_lockspace: Callable[..., Lockspace]
) -> None:
    import sanlock as sl

    t0 = time.monotonic()
    ls = sanlock_lockspace(host_id=1, io_timeout=1)
    joined = time.monotonic() - t0
    assert sl.inq_lockspace(ls.bname, 1, ls.ids) is True
    assert any(s["lockspace"] == ls.bname and s["host_id"] == 1 for s in sl.get_lockspaces())
    assert joined < 15, f"joining a lockspace with io_timeout 1 took {joined:.1f} s"

    disks = ls.add_resource("SDM")
    fd = ls.register()
    sl.acquire(ls.bname, b"SDM", disks, slkfd=fd)
    owners = sl.read_resource_owners(ls.bname, b"SDM", disks)
    assert [o["host_id"] for o in owners] == [1]

    # a second acquire of the same lease by another registration fails: it is held
    other = ls.register()
    with pytest.raises(sl.SanlockException):
        sl.acquire(ls.bname, b"SDM", disks, slkfd=other)

    sl.release(ls.bname, b"SDM", disks, slkfd=fd)
    assert sl.read_resource_owners(ls.bname, b"SDM", disks) == []
    os.close(other)
    ls.fds.remove(other)

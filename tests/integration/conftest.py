"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def veth_pair() -> Iterator[Callable[[], str]]:
    """Creates a real veth pair in this network namespace (a host network change)."""
    created: list[str] = []

    def create() -> str:
        name = "vt" + uuid.uuid4().hex[:8]
        subprocess.run(
            ["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
            check=True,
            timeout=10,
        )
        created.append(name)
        return name

    yield create
    for name in created:
        subprocess.run(["ip", "link", "del", name], timeout=10, check=False)


def wait_until_ready(daemon, timeout: float = 30.0) -> None:
    """Waits until start-up recovery has finished (the daemon logs it)."""
    deadline = time.monotonic() + timeout
    # The log accumulates over restarts: wait for this start's line.
    while daemon.log_text().count("recovery finished") < daemon.starts:
        if not daemon.running():
            raise AssertionError(f"vdsmd died during recovery\n{daemon.log_text(tail=60)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"vdsmd did not finish recovery\n{daemon.log_text(tail=60)}")
        time.sleep(0.05)


@pytest.fixture
def vdsmd(vdsmd):
    """The lab's vdsmd factory, waiting by default until the daemon is ready."""

    def create(config=None, env=None, *, wait_ready=True, **kwargs):
        daemon = vdsmd(config, env, **kwargs)
        if wait_ready:
            wait_until_ready(daemon)
        return daemon

    return create

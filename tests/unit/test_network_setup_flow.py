"""The setupNetworks flow with a recording kernel: one change at a time, and a change
is not abandoned when its caller goes away.  The real-netlink behaviour is in
tests/integration/test_network_setup.py; here two calls can start in the same instant."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from vdsm import errors
from vdsm.network.apply import Applier
from vdsm.network.connectivity import ConnectivityMonitor
from vdsm.network.persistence import NetPersistence
from vdsm.network.setup import NetworkService
from vdsm.system.netlink import Link, Snapshot


class FakeNetlink:
    async def snapshot(self, rules: bool = False) -> Snapshot:
        eth0 = Link(index=2, name="eth0", flags=1, arptype=1, mtu=1500, mac="02:00:00:00:00:01")
        return Snapshot([eth0], [], [])


class RecordingKernel:
    calls: list[tuple[str, str]] = []

    def close(self) -> None:
        pass

    def __getattr__(self, action: str) -> Any:
        def call(device: str, **_args: Any) -> None:
            RecordingKernel.calls.append((action, device))

        return call


def service(tmp_path: Path) -> NetworkService:
    RecordingKernel.calls = []
    return NetworkService(
        netlink=FakeNetlink(),  # type: ignore[arg-type]
        persistence=NetPersistence(tmp_path / "state"),
        applier=Applier(RecordingKernel),
        connectivity=ConnectivityMonitor(tmp_path),
        sys_class_net=tmp_path / "sys",
    )


NET = {"net": {"nic": "eth0"}}


def test_a_call_in_the_same_instant_answers_40(tmp_path: Path) -> None:
    async def main() -> None:
        svc = service(tmp_path)
        first = asyncio.ensure_future(svc.setup(NET, {}, {"connectivityTimeout": 1}))
        second = asyncio.ensure_future(svc.setup({"other": {"nic": "eth0"}}, {}, {}))
        with pytest.raises(errors.ResourceUnavailable):
            await second
        with pytest.raises(errors.ConnectivityCheckFailed):
            await first  # nobody confirmed: rolled back
        assert RecordingKernel.calls[0] == ("add_link", "net")
        assert RecordingKernel.calls[-1] == ("del_link", "net")

    asyncio.run(main())


def test_a_cancelled_caller_leaves_the_change_to_finish(tmp_path: Path) -> None:
    async def main() -> None:
        svc = service(tmp_path)
        call = asyncio.ensure_future(svc.setup(NET, {}, {"connectivityTimeout": 1}))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # The change goes on under the lock and is rolled back as usual.
        with pytest.raises(errors.ResourceUnavailable):
            await svc.setup(NET, {}, {})
        await asyncio.sleep(1.5)
        assert RecordingKernel.calls[-1] == ("del_link", "net")
        assert await svc.setup(NET, {}, {"connectivityCheck": False}) == {
            "code": 0,
            "message": "Done",
        }

    asyncio.run(main())

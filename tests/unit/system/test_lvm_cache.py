"""The LVM adapter's cache after its own changes, against a recording stand-in for
`lvm`: which commands run, and what the cache says after each.  This kernel has no
device-mapper, so the activation bookkeeping can only be driven this way here; the same
paths run against real LVM in tests/integration/test_lvm_adapter.py (metadata) and in
the kernel lab (tests/lab/guest/test_block_storage.py, activation)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from vdsm.system.lvm import Lvm, LvmError

MiB = 1024 * 1024
EXTENT = 128 * MiB
VG = "vg"

# Records each call's command and arguments (without the --config) and answers `lvs`
# with the LVs of state.json; `sleep` in state.json delays the answer, `fail` names a
# command that fails.
FAKE = """\
import json, sys, time
from pathlib import Path
here = Path(__file__).parent
args = sys.argv[1:]
i = args.index("--config")
del args[i:i + 2]
with open(here / "calls.log", "a") as f:
    f.write(json.dumps(args) + "\\n")
state = json.loads((here / "state.json").read_text())
if args[0] in state.get("fail", []):
    sys.stderr.write("  Volume group has insufficient free space\\n")
    sys.exit(5)
if args[0] == "lvs":
    time.sleep(state.get("sleep", 0))
    rows = [
        {"vg_name": "vg", "lv_name": n, "lv_uuid": "u-" + n, "lv_attr": a, "lv_size": str(s),
         "lv_tags": ",".join(t), "seg_start_pe": "0", "devices": "/dev/x(0)",
         "vg_extent_size": str(128 * 1024 * 1024)}
        for n, (a, s, t) in state["lvs"].items()
    ]
    print(json.dumps({"report": [{"lv": rows}]}))
"""


class FakeLvm:
    def __init__(self, tmp: Path) -> None:
        self.dir = tmp
        (tmp / "lvm").write_text(FAKE)
        self.script = tmp / "lvm-wrapper"
        self.script.write_text(f'#!/bin/sh\nexec {sys.executable} {tmp / "lvm"} "$@"\n')
        self.script.chmod(0o755)
        self.state: dict[str, object] = {"lvs": {"metadata": ["-wi-a-----", EXTENT, []]}}
        self.save()

    def save(self) -> None:
        (self.dir / "state.json").write_text(json.dumps(self.state))

    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.log"
        if not log.exists():
            return []
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        log.unlink()
        return calls

    def adapter(self) -> Lvm:
        return Lvm(lambda: ["/dev/x"], timeout=30, device_mapper=True, command=str(self.script))


@pytest.fixture
def fake(tmp_path: Path) -> FakeLvm:
    return FakeLvm(tmp_path)


def test_a_created_volume_is_known_without_a_report(fake: FakeLvm) -> None:
    async def scenario() -> None:
        lvm = fake.adapter()
        await lvm.lvs(VG)
        fake.calls()
        await lvm.create_lv(VG, "vol", 71 * MiB, tags=["IU_img", "MD_1"], activate=True)
        vol = await lvm.lv(VG, "vol")
        assert vol is not None
        assert vol.size == EXTENT and vol.tags == ("IU_img", "MD_1") and vol.active
        [create] = fake.calls()  # no lvs after the lvcreate
        assert create[0] == "lvcreate" and create[create.index("-a") + 1] == "y"

        # the chain is active and its table ours: activating it again only checks
        # the size against a fresh report (another host may have extended it)
        fake.state["lvs"]["vol"] = ["-wi-a-----", EXTENT, ["IU_img", "MD_1"]]  # type: ignore[index]
        fake.save()
        await lvm.activate(VG, ["vol"])
        assert [c[0] for c in fake.calls()] == ["lvs"]

        # claim tags and activation go in one lvchange
        await lvm.change_lv_tags(VG, "vol", remove=["MD_1"], deactivate=True)
        [change] = fake.calls()
        assert change[:1] == ["lvchange"] and change[-1] == "vg/vol"
        assert "--deltag" in change and change[change.index("-a") + 1] == "n"
        vol = await lvm.lv(VG, "vol")
        assert vol is not None and vol.tags == ("IU_img",) and not vol.active
        assert fake.calls() == []

        # now inactive: activation runs lvchange -ay, and only that
        await lvm.activate(VG, ["vol"])
        assert [c[:3] for c in fake.calls()] == [["lvchange", "-a", "y"]]

    asyncio.run(scenario())


def test_an_lv_active_before_us_is_refreshed(fake: FakeLvm) -> None:
    """Active already when we first read the VG: another host may have extended it, so
    activation refreshes it; from then on only when a report shows a new size."""

    async def scenario() -> None:
        lvm = fake.adapter()
        refresh = [["lvs", "--reportformat"], ["lvchange", "--refresh"]]
        await lvm.activate(VG, ["metadata"])
        assert [c[:2] for c in fake.calls()] == refresh
        # again: the cached report may be old, so a fresh one checks the size
        await lvm.activate(VG, ["metadata"])
        assert [c[:2] for c in fake.calls()] == [["lvs", "--reportformat"]]
        # dropped meanwhile (a refresh of the domain): the report read is the check
        lvm.invalidate_vg(VG)
        await lvm.activate(VG, ["metadata"])
        assert [c[:2] for c in fake.calls()] == [["lvs", "--reportformat"]]
        # another host extended it: the next report shows it, and the table follows
        fake.state["lvs"]["metadata"][1] = 2 * EXTENT  # type: ignore[index]
        fake.save()
        lvm.invalidate_vg(VG)
        await lvm.activate(VG, ["metadata"])
        assert [c[:2] for c in fake.calls()] == refresh

    asyncio.run(scenario())


def test_a_new_volume_survives_a_re_read_without_refresh(fake: FakeLvm) -> None:
    async def scenario() -> None:
        lvm = fake.adapter()
        await lvm.lvs(VG)
        await lvm.create_lv(VG, "vol", 71 * MiB, activate=True)
        fake.state["lvs"]["vol"] = ["-wi-a-----", EXTENT, []]  # type: ignore[index]
        fake.save()
        lvm.invalidate_vg(VG)
        fake.calls()
        await lvm.activate(VG, ["vol"])
        assert [c[0] for c in fake.calls()] == ["lvs"]

    asyncio.run(scenario())


def test_a_failed_change_drops_the_cache(fake: FakeLvm) -> None:
    async def scenario() -> None:
        lvm = fake.adapter()
        await lvm.lvs(VG)
        fake.state["fail"] = ["lvcreate"]
        fake.save()
        with pytest.raises(LvmError):
            await lvm.create_lv(VG, "vol", MiB)
        fake.calls()
        await lvm.lvs(VG)
        assert [c[0] for c in fake.calls()] == ["lvs"]

    asyncio.run(scenario())


def test_a_report_that_raced_a_change_is_not_stored(fake: FakeLvm) -> None:
    async def scenario() -> None:
        lvm = fake.adapter()
        fake.state["sleep"] = 1.0
        fake.save()
        report = asyncio.create_task(lvm.lvs(VG))
        await asyncio.sleep(0.3)  # the report is running
        await lvm.create_lv(VG, "vol", MiB)
        assert "vol" not in await report  # read before the lvcreate
        fake.state["sleep"] = 0
        fake.state["lvs"]["vol"] = ["-wi-------", EXTENT, []]  # type: ignore[index]
        fake.save()
        fake.calls()
        assert "vol" in await lvm.lvs(VG)  # not the raced report: a new one
        assert [c[0] for c in fake.calls()] == ["lvs"]

    asyncio.run(scenario())


def test_size_unknown_without_the_extent_size_drops_the_cache(fake: FakeLvm) -> None:
    """An empty VG's report tells no extent size: the adapter cannot round the new LV's
    size, so it does not guess, and the next lookup reads a report."""

    async def scenario() -> None:
        lvm = fake.adapter()
        fake.state["lvs"] = {}
        fake.save()
        assert await lvm.lvs(VG) == {}
        await lvm.create_lv(VG, "vol", MiB)
        fake.calls()
        await lvm.lvs(VG)
        assert [c[0] for c in fake.calls()] == ["lvs"]

    asyncio.run(scenario())


def test_callers_missing_the_cache_together_share_one_report(fake: FakeLvm) -> None:
    async def scenario() -> None:
        lvm = fake.adapter()
        fake.state["sleep"] = 0.5
        fake.save()
        first = asyncio.create_task(lvm.lvs(VG))
        await asyncio.sleep(0.2)
        # a udev event on a PV meanwhile: the LV report stays good
        lvm.invalidate_pvs()
        second = await lvm.lvs(VG)
        assert await first == second
        assert [c[0] for c in fake.calls()] == ["lvs"]
        await lvm.lvs(VG)  # and it was stored
        assert fake.calls() == []

    asyncio.run(scenario())


def test_a_volume_created_while_the_cache_was_dropped_needs_no_refresh(fake: FakeLvm) -> None:
    """The domain monitor drops the cache at any moment: the new LV's table is still
    known to be ours, at the size LVM gives it."""

    async def scenario() -> None:
        lvm = fake.adapter()
        await lvm.lvs(VG)  # the extent size is known from here on
        lvm.invalidate_vg(VG)
        await lvm.create_lv(VG, "vol", 71 * MiB, activate=True)
        fake.state["lvs"]["vol"] = ["-wi-a-----", EXTENT, []]  # type: ignore[index]
        fake.save()
        fake.calls()
        await lvm.activate(VG, ["vol"])
        assert [c[0] for c in fake.calls()] == ["lvs"]

    asyncio.run(scenario())

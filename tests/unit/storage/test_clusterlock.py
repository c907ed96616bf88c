"""The pure parts of the sanlock adapter, the domain lock and the lease watchdog.

The watchdog's decision table is driven here by a scripted inquiry; every branch that
sanlock can produce on demand is also shown against the real daemon in
tests/integration/test_sanlock_watchdog.py and test_sanlock_domainlock.py.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterable
from pathlib import Path

import pytest

from vdsm.storage.clusterlock import DomainLock, SdmInquiry
from vdsm.storage.spmwatchdog import LeaseWatchdog
from vdsm.system.blocking import BlockingCallTimeout
from vdsm.system.sanlock import RegistrationLost, SanlockError, Timeouts

MiB = 1024 * 1024
LEASES = Path("/dom/dom_md/leases")


def domain_lock(alignment: int = MiB, block_size: int = 512) -> DomainLock:
    return DomainLock(
        None,  # type: ignore[arg-type]  # no sanlock call in these tests
        "sd",
        Path("/dom/dom_md/ids"),
        LEASES,
        alignment=alignment,
        block_size=block_size,
        io_timeout=10,
    )


@pytest.mark.parametrize(
    "alignment, block_size",
    [(MiB, 512), (MiB, 4096), (2 * MiB, 4096), (4 * MiB, 4096), (8 * MiB, 4096)],
)
def test_sdm_lease_sits_at_one_alignment(alignment: int, block_size: int) -> None:
    assert domain_lock(alignment, block_size).sdm_disk == (str(LEASES), alignment)


@pytest.mark.parametrize("alignment, block_size", [(2 * MiB, 512), (MiB, 1024), (3 * MiB, 4096)])
def test_geometry_sanlock_cannot_use(alignment: int, block_size: int) -> None:
    with pytest.raises(ValueError):
        domain_lock(alignment, block_size)


def test_errors_name_sanlock_results() -> None:
    busy = SanlockError("inquire", errno.EBUSY, "Inquire error: Device or resource busy")
    assert busy.temporary and "(EBUSY)" in str(busy)
    held = SanlockError("acquire", -243, "Sanlock resource not acquired")
    assert not held.temporary and "SANLK_ACQUIRE_IDLIVE" in str(held)
    lost = RegistrationLost("inquire", errno.EPIPE, "Broken pipe", ["sd:SDM"])
    assert not lost.temporary and str(lost) == (
        "sanlock registration closed while holding sd:SDM: Broken pipe"
    )


def test_timeouts_follow_the_io_timeout() -> None:
    # acquire may wait host_dead_seconds (8 * io_timeout + 60) for a stale owner
    assert Timeouts.for_io_timeout(10) == Timeouts(quick=15, storage=65, acquire=205)
    assert Timeouts.for_io_timeout(1) == Timeouts(quick=6, storage=11, acquire=79)


# -- the watchdog's decisions -----------------------------------------------------------

HELD = SdmInquiry(True, 7, ((str(LEASES), MiB),))
BUSY = SanlockError("inquire", errno.EBUSY, "busy")


class ScriptedLock:
    """inquire_sdm answers from a script (an answer or an exception per check)."""

    sd_uuid = "sd"
    sdm_disk = (str(LEASES), MiB)

    def __init__(self, answers: Iterable[SdmInquiry | BaseException]) -> None:
        self.answers = list(answers)

    async def inquire_sdm(self) -> SdmInquiry:
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def watch(
    answers: list[SdmInquiry | BaseException], **kwargs: int
) -> tuple[LeaseWatchdog, list[str]]:
    lost: list[str] = []
    watchdog = LeaseWatchdog(ScriptedLock(answers), 7, 0, lost.append, **kwargs)  # type: ignore[arg-type]
    asyncio.run(asyncio.wait_for(watchdog.run(), 5))
    return watchdog, lost


def test_three_temporary_errors_are_tolerated_the_fourth_is_not() -> None:
    watchdog, lost = watch([HELD, BUSY, BUSY, BUSY, BUSY])
    assert watchdog.checks == 5
    assert lost == [f"4 consecutive errors checking the SDM lease: {BUSY}"]


def test_a_good_check_resets_the_count() -> None:
    timeout = BlockingCallTimeout("sanlock registration", "inquire", 15)
    watchdog, lost = watch([BUSY, BUSY, timeout, HELD, BUSY, BUSY, BUSY, SdmInquiry(False)])
    assert watchdog.checks == 8  # without the reset, the 5th answer would be the loss
    assert lost == ["SDM lease is not held any more"]


@pytest.mark.parametrize(
    "answer, reason",
    [
        (SanlockError("inquire", errno.EINVAL, "bad"), "error checking the SDM lease: "),
        (RegistrationLost("inquire", errno.EPIPE, "Broken pipe", ["sd:SDM"]), "sanlock "),
        (ValueError("surprise"), "unexpected error checking the SDM lease: "),
        (SdmInquiry(True, 8, HELD.disks), "SDM lease moved: lver 8, expected 7"),
        (SdmInquiry(True, 7, (("/elsewhere", MiB),)), "SDM lease on (('/elsewhere', "),
    ],
)
def test_anything_else_is_a_loss_at_once(answer: SdmInquiry | BaseException, reason: str) -> None:
    watchdog, lost = watch([HELD, answer])
    assert watchdog.checks == 2 and len(lost) == 1 and lost[0].startswith(reason), lost


def test_on_lost_may_be_a_coroutine_and_runs_once() -> None:
    calls: list[str] = []

    async def on_lost(reason: str) -> None:
        await asyncio.sleep(0)
        calls.append(reason)

    watchdog = LeaseWatchdog(ScriptedLock([SdmInquiry(False)]), 7, 0, on_lost)  # type: ignore[arg-type]
    asyncio.run(watchdog.run())
    assert calls == ["SDM lease is not held any more"] == [watchdog.lost]
    with pytest.raises(RuntimeError):
        asyncio.run(watchdog.run())

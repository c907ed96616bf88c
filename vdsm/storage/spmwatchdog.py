"""The SPM lease watchdog: is the SDM lease still ours, with the lver we got?

sanlock itself protects the lease only against a host that stops renewing its host id:
then it kills the lease holders, and wdmd has the hardware watchdog reset the host if
they survive.  The lease can also go away while this host is healthy: an administrator
releases it (`sanlock client release -p <pid>`), the daemon crashes or restarts and
closes our registration, or the lease is released and acquired again behind our back
(a new lver).  Then this process must stop acting as SPM at once.

Every `interval` seconds the watchdog asks the daemon what this process holds
(DomainLock.inquire_sdm, no storage I/O) and calls `on_lost(reason)`, once, when:

- the SDM lease is not held, or is held with another lver or on another disk;
- the inquiry failed with a temporary error (EBUSY: the daemon is busy with another
  command for this process; or no answer within the call's timeout) more than
  `max_errors` times in a row.  Like upstream (spwd.py), `max_errors` is the number of
  consecutive temporary errors tolerated: the next one is the loss;
- the inquiry failed in any other way, including the daemon closing our registration.

What on_lost does is the caller's business (upstream panics: SIGKILL to its process
group, then exit; systemd restarts it).  The loop ends after calling it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from vdsm.storage.clusterlock import DomainLock
from vdsm.system.blocking import BlockingCallTimeout
from vdsm.system.sanlock import RegistrationLost, SanlockError

log = logging.getLogger("vdsm.storage.spmwatchdog")

MAX_ERRORS = 3


class LeaseWatchdog:
    def __init__(
        self,
        lock: DomainLock,
        expected_lver: int,
        interval: float,
        on_lost: Callable[[str], Awaitable[None] | None],
        *,
        max_errors: int = MAX_ERRORS,
    ) -> None:
        self.lock = lock
        self.expected_lver = expected_lver
        self.interval = interval
        self.max_errors = max_errors
        self._on_lost = on_lost
        self.errors = 0  # consecutive temporary errors
        self.checks = 0
        self.lost: str | None = None  # the reason, once on_lost was called
        self._started = False

    async def run(self) -> None:
        """Check every interval until the lease is lost; then call on_lost and return.

        Cancelling the task (SPM stopping normally) ends the loop without calling
        on_lost; a cancellation during on_lost itself is propagated too.
        """
        if self._started:
            raise RuntimeError("LeaseWatchdog.run() called twice")
        self._started = True
        log.info(
            "watching the SDM lease of %s (lver %d) every %g s",
            self.lock.sd_uuid,
            self.expected_lver,
            self.interval,
        )
        try:
            while True:
                await asyncio.sleep(self.interval)
                reason = await self.check()
                if reason is not None:
                    break
        except asyncio.CancelledError:
            log.info("stopped watching the SDM lease of %s", self.lock.sd_uuid)
            raise
        self.lost = reason
        log.critical("SDM lease of %s lost: %s", self.lock.sd_uuid, reason)
        result = self._on_lost(reason)
        if inspect.isawaitable(result):
            await result

    async def check(self) -> str | None:
        """One check: None while all is well, else why the lease is considered lost."""
        self.checks += 1
        try:
            inquiry = await self.lock.inquire_sdm()
        except RegistrationLost as e:
            return str(e)
        except (SanlockError, BlockingCallTimeout) as e:
            temporary = isinstance(e, BlockingCallTimeout) or e.temporary
            if not temporary:
                return f"error checking the SDM lease: {e}"
            if self.errors < self.max_errors:
                self.errors += 1
                log.warning(
                    "error %d/%d checking the SDM lease of %s: %s",
                    self.errors,
                    self.max_errors,
                    self.lock.sd_uuid,
                    e,
                )
                return None
            return f"{self.errors + 1} consecutive errors checking the SDM lease: {e}"
        except Exception as e:
            log.exception("unexpected error checking the SDM lease of %s", self.lock.sd_uuid)
            return f"unexpected error checking the SDM lease: {e!r}"
        self.errors = 0
        if not inquiry.held:
            return "SDM lease is not held any more"
        if inquiry.lver != self.expected_lver:
            return f"SDM lease moved: lver {inquiry.lver}, expected {self.expected_lver}"
        if inquiry.disks != (self.lock.sdm_disk,):
            return f"SDM lease on {inquiry.disks}, expected {self.lock.sdm_disk}"
        log.debug("SDM lease of %s held, lver %d", self.lock.sd_uuid, inquiry.lver)
        return None

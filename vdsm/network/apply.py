"""Runs a plan as one transaction: all its steps, or none of them.

The steps run in order, in one worker thread that owns a netlink socket.  When one
fails, the steps already done are undone in reverse order (each step's `undo`, computed
by the planner from the state before it) and the failure is raised as
`TransactionFailed`, naming the step and the kernel's refusal.  A done transaction can
be reverted the same way later (the connectivity check's rollback): `inverse(done)`.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import Protocol

from vdsm.network.plan import Step
from vdsm.system.blocking import Bulkhead

log = logging.getLogger("vdsm.network.apply")


class Kernel(Protocol):
    """The kernel adapter (vdsm.system.iproute.KernelChanger): one method per action."""

    def close(self) -> None: ...


class TransactionFailed(Exception):
    def __init__(self, step: Step, error: BaseException, undo_errors: list[str]) -> None:
        super().__init__(f"{_text(step)} failed: {error}")
        self.step = step
        self.error = error
        self.errno = getattr(error, "errno", None) or errno.EIO
        self.undo_errors = undo_errors


def _text(step: Step) -> str:
    args = " ".join(f"{k}={v}" for k, v in step.args.items())
    return f"{step.action} {step.device} {args}".strip()


def execute(kernel: Kernel, step: Step) -> None:
    method = getattr(kernel, step.action)
    method(step.device, **step.args)


def run_steps(kernel: Kernel, steps: list[Step]) -> list[Step]:
    """Blocking: the steps done (all of them), or TransactionFailed after undoing."""
    done: list[Step] = []
    for step in steps:
        try:
            log.debug("network change: %s", _text(step))
            execute(kernel, step)
        except Exception as e:
            log.warning(
                "network change %s failed (%s); undoing %d steps", _text(step), e, len(done)
            )
            raise TransactionFailed(step, e, undo(kernel, done)) from e
        done.append(step)
    return done


def undo(kernel: Kernel, done: list[Step]) -> list[str]:
    """Undoes `done` in reverse order, carrying on past failures; returns them."""
    problems = []
    for step in inverse(done):
        try:
            execute(kernel, step)
        except Exception as e:
            log.error("cannot undo with %s: %s", _text(step), e)
            problems.append(f"{_text(step)}: {e}")
    return problems


def inverse(done: list[Step]) -> list[Step]:
    return [u for step in reversed(done) for u in step.undo]


class Applier:
    """Runs transactions off the event loop, one at a time, each within a time limit."""

    def __init__(self, kernel_factory: Callable[[], Kernel], timeout: float = 60.0) -> None:
        self._factory = kernel_factory
        self._bulkhead = Bulkhead("network changes", 1, timeout)
        self.timeout = timeout

    async def run(self, steps: list[Step]) -> list[Step]:
        return await self._bulkhead.run(self._run, steps)

    async def revert(self, done: list[Step]) -> list[str]:
        """Undoes a done transaction; the problems met (empty when all went back)."""
        return await self._bulkhead.run(self._revert, done)

    def _run(self, steps: list[Step]) -> list[Step]:
        kernel = self._factory()
        try:
            return run_steps(kernel, steps)
        finally:
            kernel.close()

    def _revert(self, done: list[Step]) -> list[str]:
        kernel = self._factory()
        try:
            return undo(kernel, done)
        finally:
            kernel.close()

"""Blocking calls in worker threads, bounded per resource in number and in time.

A `Bulkhead` guards one external resource (libvirt, netlink, ...).  A call waits for
one of its slots, runs in a thread and is given up after the timeout.  A given-up
thread cannot be stopped, so its slot stays taken until the thread really ends: a hung
resource fills its own bulkhead and further calls to it fail fast with
`BlockingCallTimeout`, while every other resource and the event loop carry on.

Each call gets its own daemon thread rather than a worker of the loop's default
executor: hung calls then cannot exhaust the pool everybody else's `to_thread` uses
(six workers on a two-CPU host), and cannot keep `asyncio.run()` or the interpreter
from exiting.  Starting a thread costs ~0.1 ms, noise next to a libvirt call.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("vdsm.system.blocking")

T = TypeVar("T")


class BlockingCallTimeout(TimeoutError):
    """A blocking call (or the wait for a free slot) took longer than allowed."""

    def __init__(self, resource: str, what: str, timeout: float) -> None:
        super().__init__(f"{resource}: {what} timed out after {timeout:g} s")
        self.resource = resource
        self.what = what
        self.timeout = timeout


class Bulkhead:
    def __init__(self, resource: str, concurrency: int, timeout: float) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.resource = resource
        self.timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self.stuck = 0  # calls given up whose thread is still running

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        limit = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        what = getattr(fn, "__name__", repr(fn))
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the awaited future completes.
        try:
            async with asyncio.timeout(limit):
                await self._slots.acquire()
        except TimeoutError:
            raise BlockingCallTimeout(self.resource, f"waiting for a slot for {what}", limit)
        try:
            task = self._start(loop, fn, args, what)
        except BaseException:
            self._slots.release()
            raise
        task.add_done_callback(self._finished)
        try:
            # shield: a timeout or cancellation of the caller must not cancel the task,
            # whose completion is what gives the slot back.
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(task)
        except TimeoutError:
            if not task.done():
                self.stuck += 1
                task.add_done_callback(self._unstuck)
                log.warning("%s: %s still running after %g s", self.resource, what, limit)
            raise BlockingCallTimeout(self.resource, what, limit) from None

    def _start(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        what: str,
    ) -> asyncio.Future[T]:
        future: asyncio.Future[T] = loop.create_future()
        context = contextvars.copy_context()  # the caller's flow id reaches the logs

        def deliver(ok: bool, value: Any) -> None:
            if future.done():
                return
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

        def target() -> None:
            result: tuple[bool, Any]
            try:
                result = (True, context.run(fn, *args))
            except BaseException as e:
                result = (False, e)
            try:
                loop.call_soon_threadsafe(deliver, *result)
            except RuntimeError:
                pass  # the loop is closed: nobody is waiting any more

        threading.Thread(target=target, name=f"{self.resource}: {what}", daemon=True).start()
        return future

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._slots.release()
        # Retrieve the outcome so an abandoned failing call is not reported as
        # "exception never retrieved"; the caller that waited already saw it.
        if not task.cancelled():
            task.exception()

    def _unstuck(self, task: asyncio.Future[Any]) -> None:
        self.stuck -= 1

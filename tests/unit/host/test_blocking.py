import asyncio
import threading
import time

import pytest

from vdsm.system.blocking import BlockingCallTimeout, Bulkhead


def test_result_and_exception_pass_through():
    async def run():
        bulkhead = Bulkhead("test", 2, 5.0)
        assert await bulkhead.run(lambda x: x * 2, 21) == 42
        with pytest.raises(ZeroDivisionError):
            await bulkhead.run(lambda: 1 / 0)

    asyncio.run(run())


def test_a_hung_call_keeps_its_slot_until_it_really_ends():
    release = threading.Event()

    async def run():
        bulkhead = Bulkhead("test", 1, 0.2)
        start = time.monotonic()
        with pytest.raises(BlockingCallTimeout) as info:
            await bulkhead.run(release.wait, 10)
        assert time.monotonic() - start < 2
        assert info.value.resource == "test" and bulkhead.stuck == 1
        # The only slot is still taken by the hung thread: the next call fails fast.
        with pytest.raises(BlockingCallTimeout, match="waiting for a slot"):
            await bulkhead.run(lambda: "never runs")
        release.set()
        for _ in range(100):
            if bulkhead.stuck == 0:
                break
            await asyncio.sleep(0.02)
        assert bulkhead.stuck == 0
        assert await bulkhead.run(lambda: "runs again") == "runs again"

    try:
        asyncio.run(run())
    finally:
        release.set()


def test_calls_run_concurrently_up_to_the_limit():
    active = 0
    peak = 0
    lock = threading.Lock()

    def work():
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with lock:
            active -= 1

    async def run():
        bulkhead = Bulkhead("test", 3, 5.0)
        await asyncio.gather(*(bulkhead.run(work) for _ in range(9)))

    asyncio.run(run())
    assert peak == 3


def test_cancelled_caller_does_not_leak_the_slot():
    release = threading.Event()

    async def run():
        bulkhead = Bulkhead("test", 1, 5.0)
        task = asyncio.ensure_future(bulkhead.run(release.wait, 10))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await bulkhead.run(lambda: 1) == 1

    try:
        asyncio.run(run())
    finally:
        release.set()


def test_a_hung_call_does_not_hold_up_loop_shutdown():
    release = threading.Event()

    async def run():
        bulkhead = Bulkhead("test", 1, 0.1)
        with pytest.raises(BlockingCallTimeout):
            await bulkhead.run(release.wait, 30)

    start = time.monotonic()
    try:
        asyncio.run(run())  # would wait 30 s for a default-executor worker
        assert time.monotonic() - start < 5
    finally:
        release.set()


def test_the_callers_context_reaches_the_thread():
    import contextvars

    flow = contextvars.ContextVar("flow", default="")

    async def run():
        flow.set("abc")
        return await Bulkhead("test", 1, 5.0).run(flow.get)

    assert asyncio.run(run()) == "abc"

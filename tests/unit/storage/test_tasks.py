"""The storage task engine: states, reports, stop/clear/revert, and persistence with
recovery after a crash (simulated by ending the event loop mid-job, which persists
nothing more, then loading the directory in a new loop with a new manager)."""

import asyncio
import os
import threading
import time

import pytest

from vdsm import errors
from vdsm.storage import taskfiles
from vdsm.storage.tasks import RollbackRegistry, State, TaskManager, TaskRegistry
from vdsm.system.blocking import Bulkhead


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


class Journal:
    """Rollbacks that record what they were asked to undo."""

    def __init__(self):
        self.calls = []
        self.registry = RollbackRegistry()
        self.registry.register("volume", "createRollback", self._rollback("create"))
        self.registry.register("image", "linkRollback", self._rollback("link"))
        self.registry.register("image", "broken", self._broken)

    def _rollback(self, what):
        async def rollback(params):
            self.calls.append((what, params))

        return rollback

    async def _broken(self, params):
        self.calls.append(("broken", params))
        raise OSError("cannot undo")


async def two_steps(task, then=None):
    await task.add_recovery("create vol", "volume", "createRollback", ["sd1", "vol1"])
    await task.add_recovery("link img", "image", "linkRollback", ["img1"])
    if then is not None:
        return await then()
    return {"uuid": "vol1"}


def blocked_task(manager, name):
    """A task whose job waits until the returned event is set."""
    release = asyncio.Event()

    async def job(task):
        await release.wait()

    return manager.create(name, job), release


async def wait_state(task, state, timeout=5):
    deadline = time.monotonic() + timeout
    while task.state != state:
        assert time.monotonic() < deadline, f"still {task.state}, not {state}"
        await asyncio.sleep(0.005)


def test_a_job_runs_to_finished_success_with_the_wire_shapes():
    async def main():
        manager = TaskManager()
        started = asyncio.Event()

        async def job(task):
            started.set()
            return "42"

        task = manager.create("createVolume", job, tag="spm")
        assert task.state == State.init  # create returned before anything ran
        assert len(task.id) == 36
        await task.wait()
        assert started.is_set()
        assert task.status() == {
            "taskID": task.id,
            "taskState": "finished",
            "taskResult": "success",
            "code": 0,
            "message": "1 jobs completed successfully",
        }
        assert manager.infos() == {task.id: {"id": task.id, "verb": "createVolume"}}
        assert manager.details() == {
            task.id: {
                "id": task.id,
                "verb": "createVolume",
                "state": "finished",
                "code": 0,
                "message": "1 jobs completed successfully",
                "result": "42",
                "tag": "spm",
            }
        }
        assert manager.statuses(tag="spm") == {task.id: task.status()}
        assert manager.statuses(tag="hsm") == {}
        assert manager.get(task.id) is task

    run(main())


def test_running_is_reported_as_running():
    async def main():
        manager = TaskManager()
        task, release = blocked_task(manager, "spmStart")
        await wait_state(task, State.running)
        assert task.status()["taskState"] == "running" and task.status()["taskResult"] == ""
        assert task.message == "running job 1 of 1"
        assert manager.unfinished() == [task]
        release.set()
        await task.wait()
        assert manager.unfinished() == []
        assert task.result == ""  # None becomes ""

    run(main())


def test_a_failing_job_is_rolled_back_last_step_first():
    journal = Journal()

    async def main():
        manager = TaskManager(journal.registry)

        async def fail():
            raise errors.VolumeCreationError("vol1")

        task = manager.create("createVolume", lambda t: two_steps(t, fail))
        await task.wait()
        assert task.state == State.recovered
        assert journal.calls == [("link", ["img1"]), ("create", ["sd1", "vol1"])]
        assert task.status() == {
            "taskID": task.id,
            "taskState": "finished",
            "taskResult": "cleanSuccess",
            "code": 205,
            "message": "value=Error creating a new volume: ('vol1',) abortedcode=205",
        }
        assert task.recoveries == []

    run(main())


def test_an_unexpected_error_is_code_100():
    async def main():
        manager = TaskManager()

        async def job(task):
            raise ValueError("boom")

        task = manager.create("x", job)
        await task.wait()
        assert (task.code, task.message) == (100, "value=boom abortedcode=100")
        assert task.state == State.recovered

    run(main())


def test_a_failing_rollback_ends_failed_clean_failure():
    journal = Journal()

    async def main():
        manager = TaskManager(journal.registry)

        async def job(task):
            await task.add_recovery("first", "volume", "createRollback", ["a"])
            await task.add_recovery("second", "image", "broken", ["b"])
            raise errors.VolumeCreationError()

        task = manager.create("x", job)
        await task.wait()
        assert task.state == State.failed
        assert task.status()["taskState"] == "finished"
        assert task.status()["taskResult"] == "cleanFailure"
        # The rollback stopped at the failing step; the earlier one did not run.
        assert journal.calls == [("broken", ["b"])]

    run(main())


def test_an_unregistered_rollback_fails_the_rollback():
    async def main():
        manager = TaskManager()

        async def job(task):
            await task.add_recovery("r", "nomodule", "nofunction", [])
            raise errors.VolumeCreationError()

        task = manager.create("x", job)
        await task.wait()
        assert task.state == State.failed

    run(main())


def test_stop_cancels_the_job_and_rolls_it_back():
    journal = Journal()

    async def main():
        manager = TaskManager(journal.registry)
        cancelled = asyncio.Event()

        async def forever():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        task = manager.create("copyImage", lambda t: two_steps(t, forever))
        while len(task.recoveries) < 2:
            await asyncio.sleep(0.005)
        await manager.stop(task.id)
        await task.wait()
        assert cancelled.is_set()
        assert task.state == State.recovered
        assert (task.code, task.message) == (411, "value=shutting down abortedcode=411")
        assert journal.calls == [("link", ["img1"]), ("create", ["sd1", "vol1"])]
        # Stopping a done task changes nothing.
        await manager.stop(task.id)
        assert task.state == State.recovered

    run(main())


def test_stop_before_the_job_starts_means_it_never_runs(tmp_path):
    async def main():
        manager = TaskManager()
        ran = []

        async def job(task):
            ran.append(True)

        task = manager.create("x", job, persist_dir=tmp_path)
        await manager.stop(task.id)
        await task.wait()
        assert ran == []
        assert task.state == State.recovered and task.code == 411
        assert taskfiles.load_task(tmp_path, task.id).task.state == "recovered"

    run(main())


def test_a_job_that_swallows_the_cancel_is_still_aborted():
    async def main():
        manager = TaskManager()

        async def stubborn(task):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                return "pretend success"

        task = manager.create("x", stubborn)
        await wait_state(task, State.running)
        await manager.stop(task.id)
        await task.wait()
        assert task.state == State.recovered and task.code == 411

    run(main())


def test_clear_and_unknown_ids():
    async def main():
        manager = TaskManager()
        task, release = blocked_task(manager, "x")
        with pytest.raises(errors.TaskNotFinished) as info:
            await manager.clear(task.id)
        assert info.value.code == 403
        release.set()
        await task.wait()
        await manager.clear(task.id)
        with pytest.raises(errors.UnknownTask) as info:
            manager.get(task.id)
        assert info.value.code == 401
        with pytest.raises(errors.UnknownTask):
            await manager.stop(task.id)
        with pytest.raises(errors.InvalidParameterException):
            manager.get("a.b")
        assert manager.statuses() == {}

    run(main())


def test_revert_rolls_back_a_finished_task():
    journal = Journal()

    async def main():
        manager = TaskManager(journal.registry)
        task = manager.create("createVolume", two_steps)
        await task.wait()
        assert task.state == State.finished and journal.calls == []
        await manager.revert(task.id)
        assert task.state == State.recovered
        assert task.status()["taskResult"] == "cleanSuccess"
        assert journal.calls == [("link", ["img1"]), ("create", ["sd1", "vol1"])]
        with pytest.raises(errors.InvalidTask):
            await manager.revert(task.id)

    run(main())


def test_revert_of_a_running_task_is_403():
    async def main():
        manager = TaskManager()
        task, release = blocked_task(manager, "x")
        with pytest.raises(errors.TaskNotFinished):
            await manager.revert(task.id)
        release.set()
        await task.wait()

    run(main())


def test_bad_recoveries_are_refused_before_anything_is_written():
    async def main():
        manager = TaskManager()
        problems = []

        async def job(task):
            for args in [
                ("", "m", "f", []),
                ("n", "mod.ule", "f", []),
                ("n", "m", "f", ["a,b"]),
                ("n", "m", "f", [" padded"]),
                ("n", "m", "f", ["has_eq_"]),
            ]:
                try:
                    await task.add_recovery(*args)
                except ValueError:
                    problems.append(args)
            await task.add_recovery("n", "m", "f", [])
            with pytest.raises(ValueError):
                await task.add_recovery("n", "m", "f", [])  # names are unique

        task = manager.create("x", job)
        await task.wait()
        assert len(problems) == 5 and task.state == State.finished

    run(main())


# -- persistence ----------------------------------------------------------------------


def test_every_state_and_recovery_reaches_the_disk(tmp_path):
    async def main():
        manager = TaskManager()
        step = asyncio.Event()
        seen = {}

        async def job(task):
            seen["running"] = taskfiles.load_task(tmp_path, task.id)
            await task.add_recovery("create vol", "volume", "createRollback", ["sd1", "vol1"])
            seen["pushed"] = taskfiles.load_task(tmp_path, task.id)
            await step.wait()
            return {"uuid": "vol1"}

        task = manager.create("createVolume", job, tag="spm", persist_dir=tmp_path)
        await wait_state(task, State.running)
        while "pushed" not in seen:
            await asyncio.sleep(0.005)
        step.set()
        await task.wait()
        assert seen["running"].task.state == "running"
        assert seen["running"].recoveries == ()
        assert seen["pushed"].recoveries == (
            taskfiles.RecoveryRecord(
                "create vol", "volume", "Task", "createRollback", ("sd1", "vol1")
            ),
        )
        final = taskfiles.load_task(tmp_path, task.id)
        assert final.task == taskfiles.TaskRecord(
            id=task.id,
            name="createVolume",
            tag="spm",
            store=str(tmp_path),
            recovery_policy="auto",
            persist_policy="auto",
            clean_policy="manual",
            priority="low",
            state="finished",
        )
        assert final.result == taskfiles.ResultRecord(
            0, "1 jobs completed successfully", "{'uuid': 'vol1'}"
        )
        assert final.jobs[0].name == "createVolume"
        assert os.listdir(tmp_path) == [task.id]
        await manager.clear(task.id)
        assert os.listdir(tmp_path) == []

    run(main())


def test_crash_mid_job_is_rolled_back_by_the_next_manager(tmp_path):
    journal = Journal()
    ids = {}

    async def first_life():
        manager = TaskManager(journal.registry)
        pushed = asyncio.Event()

        async def then():
            pushed.set()
            await asyncio.sleep(3600)  # the "crash" comes while this step runs

        task = manager.create("createVolume", lambda t: two_steps(t, then), persist_dir=tmp_path)
        ids["task"] = task.id
        await pushed.wait()
        # Ending the loop here cancels everything without persisting: as a crash.

    asyncio.run(first_life())
    assert journal.calls == []
    assert taskfiles.load_task(tmp_path, ids["task"]).task.state == "running"

    async def second_life():
        manager = TaskManager()
        loaded = await manager.load_and_recover(tmp_path, journal.registry, wait=True)
        assert [t.id for t in loaded] == [ids["task"]]
        task = loaded[0]
        assert task.state == State.recovered
        assert task.status()["taskState"] == "finished"
        assert task.status()["taskResult"] == "cleanSuccess"
        assert task.code == 411
        assert journal.calls == [("link", ["img1"]), ("create", ["sd1", "vol1"])]
        on_disk = taskfiles.load_task(tmp_path, task.id)
        assert on_disk.task.state == "recovered" and on_disk.recoveries == ()
        await manager.clear(task.id)
        assert os.listdir(tmp_path) == []

    run(second_life())


def test_a_finished_task_is_reported_finished_after_reload(tmp_path):
    async def first_life():
        manager = TaskManager()
        task = manager.create("createVolume", two_steps, tag="spm", persist_dir=tmp_path)
        await task.wait()
        return task.id

    task_id = asyncio.run(first_life())
    journal = Journal()

    async def second_life():
        manager = TaskRegistry()
        await manager.load_and_recover(tmp_path, journal.registry, wait=True)
        assert manager.statuses() == {
            task_id: {
                "taskID": task_id,
                "taskState": "finished",
                "taskResult": "success",
                "code": 0,
                "message": "1 jobs completed successfully",
            }
        }
        assert manager.details()[task_id]["result"] == "{'uuid': 'vol1'}"
        assert manager.details()[task_id]["tag"] == "spm"
        assert journal.calls == []
        # And it can still be reverted with the recoveries it had.
        await manager.revert(task_id)
        assert journal.calls == [("link", ["img1"]), ("create", ["sd1", "vol1"])]

    run(second_life())


def test_an_interrupted_rollback_resumes_where_it_stopped(tmp_path):
    journal = Journal()
    task_id = "5b1d7c1e-0000-4000-8000-000000000001"
    taskfiles.save_task(
        tmp_path,
        taskfiles.TaskRecord(
            id=task_id,
            name="createVolume",
            tag="spm",
            store=str(tmp_path),
            recovery_policy="auto",
            persist_policy="auto",
            clean_policy="manual",
            state="recovering",
        ),
        [taskfiles.JobRecord("createVolume", "x")],
        [taskfiles.RecoveryRecord("create vol", "volume", "Volume", "createRollback", ("sd1",))],
    )

    async def main():
        manager = TaskManager(journal.registry)
        [task] = await manager.load_and_recover(tmp_path, wait=True)
        assert task.state == State.recovered
        assert journal.calls == [("create", ["sd1"])]

    run(main())


def test_an_unloadable_task_is_skipped(tmp_path):
    (tmp_path / "6c2e8d2f-0000-4000-8000-000000000002").mkdir()  # no files

    async def main():
        manager = TaskManager()
        assert await manager.load_and_recover(tmp_path, wait=True) == []
        assert await manager.load_and_recover(tmp_path / "absent", wait=True) == []

    run(main())


def test_a_task_that_cannot_be_persisted_never_runs(tmp_path):
    async def main():
        manager = TaskManager()
        ran = []

        async def job(task):
            ran.append(True)

        task = manager.create("createVolume", job, persist_dir=tmp_path / "missing")
        await task.wait()
        assert ran == []
        assert task.state == State.failed
        assert task.status()["taskResult"] == "cleanFailure"
        assert task.code == errors.InvalidTask.code

    run(main())


def test_a_stuck_store_never_blocks_the_loop(tmp_path, monkeypatch):
    # A hung NFS master cannot be made in a unit test; the save blocking in the kernel
    # is stood in for by a save that waits on an event.
    release = threading.Event()
    real_save = taskfiles.save_task

    def stuck_save(*args):
        release.wait(10)
        return real_save(*args)

    monkeypatch.setattr(taskfiles, "save_task", stuck_save)

    async def main():
        manager = TaskManager(bulkhead=Bulkhead("stuck-master", 2, 0.3))
        ran = []

        async def job(task):
            ran.append(True)

        start = time.monotonic()
        task = manager.create("createVolume", job, persist_dir=tmp_path)
        # The loop keeps answering while the save hangs.
        for _ in range(10):
            assert manager.statuses()[task.id]["taskID"] == task.id
            await asyncio.sleep(0.01)
        await task.wait()
        assert time.monotonic() - start < 2
        assert task.state == State.failed and ran == []
        release.set()
        while manager.bulkhead.stuck:
            await asyncio.sleep(0.01)

    run(main())


def test_saves_given_up_on_never_overlap_nor_leave_an_older_state(tmp_path, monkeypatch):
    # The second save (the first recovery, in state running) hangs past the bulkhead
    # timeout; every later
    # save times out waiting behind it.  Once storage answers again the disk must hold
    # the final state, not whichever stale save finished last.
    release = threading.Event()
    real_save = taskfiles.save_task
    calls = []
    active = []

    def save(*args):
        calls.append(args[1].state)
        active.append(1)
        assert len(active) == 1, "two saves of one task overlap"
        try:
            if len(calls) == 2:
                release.wait(10)
            return real_save(*args)
        finally:
            active.pop()

    monkeypatch.setattr(taskfiles, "save_task", save)
    journal = Journal()

    async def main():
        manager = TaskManager(journal.registry, bulkhead=Bulkhead("slow-master", 20, 0.2))
        task = manager.create("createVolume", two_steps, persist_dir=tmp_path)
        await task.wait()
        # add_recovery could not persist, so the job failed before its first step.
        assert task.state == State.recovered
        assert calls == ["running", "running"]
        release.set()
        while manager.bulkhead.stuck:
            await asyncio.sleep(0.01)
        on_disk = taskfiles.load_task(tmp_path, task.id)
        assert on_disk.task.state == "recovered"
        assert on_disk.recoveries == ()

    run(main())


def test_listing_methods_keep_the_host_verbs_working():
    async def main():
        registry = TaskRegistry()
        assert (registry.statuses(), registry.infos(), registry.details()) == ({}, {}, {})

    run(main())

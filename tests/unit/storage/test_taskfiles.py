"""The persisted task format on real files: exact bytes, the crash-safe replace, and
what the loader tolerates."""

import os
import stat

import pytest

from vdsm import errors
from vdsm.storage import taskfiles as tf

TID = "0e7c2ef5-8f1b-4a8e-9c1f-3b6c9d1e2f3a"
TID2 = "1f8d3f06-902c-4b9f-8d20-4c7d0e2f3a4b"


def record(state="running", **kw):
    return tf.TaskRecord(
        id=TID,
        name="createVolume",
        tag="spm",
        store="/rhev/data-center/sp/mastersd/master/tasks",
        recovery_policy="auto",
        persist_policy="auto",
        clean_policy="manual",
        priority="low",
        state=state,
        **kw,
    )


JOBS = [tf.JobRecord("createVolume", "<bound method createVolume> (args: () kwargs: {})")]
RECOVERIES = [
    tf.RecoveryRecord(
        "create image rollback: img", "image", "Image", "createImageRollback", ("/p/img",)
    ),
    tf.RecoveryRecord(
        "vol rollback", "volume", "Volume", "createVolumeRollback", ("sd", "img", "vol")
    ),
]


def test_files_are_byte_for_byte_upstreams(tmp_path):
    tf.save_task(
        tmp_path,
        record("finished"),
        JOBS,
        RECOVERIES,
        tf.ResultRecord(0, "1 jobs completed successfully", ""),
    )
    task_dir = tmp_path / TID
    assert sorted(os.listdir(tmp_path)) == [TID]
    assert sorted(os.listdir(task_dir)) == sorted(
        [f"{TID}.task", f"{TID}.result", f"{TID}.job.0", f"{TID}.recover.0", f"{TID}.recover.1"]
    )
    assert (task_dir / f"{TID}.task").read_bytes() == (
        f"id = {TID}\n"
        "name = createVolume\n"
        "tag = spm\n"
        "store = /rhev/data-center/sp/mastersd/master/tasks\n"
        "recoveryPolicy = auto\n"
        "persistPolicy = auto\n"
        "cleanPolicy = manual\n"
        "priority = low\n"
        "state = finished\n"
        "njobs = 1\n"
        "nrecoveries = 2\n"
        "metadataVersion = 1\n"
    ).encode()
    assert (task_dir / f"{TID}.job.0").read_bytes() == (
        b"name = createVolume\nruncmd = <bound method createVolume> (args: () kwargs: {})\n"
    )
    assert (task_dir / f"{TID}.recover.1").read_bytes() == (
        b"name = vol rollback\n"
        b"moduleName = volume\n"
        b"object = Volume\n"
        b"function = createVolumeRollback\n"
        b"params = sd,img,vol\n"
    )
    assert (task_dir / f"{TID}.result").read_bytes() == (
        b"code = 0\nmessage = 1 jobs completed successfully\nresult = \n"
    )
    for name in os.listdir(task_dir):
        assert stat.S_IMODE((task_dir / name).stat().st_mode) == 0o644
    assert stat.S_IMODE(task_dir.stat().st_mode) == 0o755


def test_result_exists_only_while_finished(tmp_path):
    tf.save_task(
        tmp_path, record("running"), JOBS, RECOVERIES, tf.ResultRecord(0, "running job 1 of 1")
    )
    assert not (tmp_path / TID / f"{TID}.result").exists()
    tf.save_task(
        tmp_path, record("recovered"), JOBS, [], tf.ResultRecord(201, "value=x abortedcode=201")
    )
    assert not (tmp_path / TID / f"{TID}.result").exists()
    assert not (tmp_path / TID / f"{TID}.recover.0").exists()  # the old copy is gone


def test_round_trip(tmp_path):
    result = tf.ResultRecord(0, "done", "{'uuid': 'x'}")
    tf.save_task(tmp_path, record("finished"), JOBS, RECOVERIES, result)
    loaded = tf.load_task(tmp_path, TID)
    assert loaded.task == record("finished")
    assert loaded.jobs == tuple(JOBS)
    assert loaded.recoveries == tuple(RECOVERIES)
    assert loaded.result == result
    assert loaded.path == tmp_path / TID


def test_equals_signs_are_escaped(tmp_path):
    rec = tf.RecoveryRecord("a=b", "m", "O", "f", ("k=v",))
    tf.save_task(tmp_path, record(), [], [rec])
    text = (tmp_path / TID / f"{TID}.recover.0").read_text()
    assert "name = a_eq_b\n" in text and "params = k_eq_v\n" in text
    assert tf.load_task(tmp_path, TID).recoveries == (rec,)


def test_a_value_holding_the_escape_is_left_out_as_upstream_does(tmp_path):
    tf.save_task(tmp_path, record("finished"), [], [], tf.ResultRecord(5, "has _eq_ inside", "r"))
    text = (tmp_path / TID / f"{TID}.result").read_text()
    assert text == "code = 5\nresult = r\n"
    assert tf.load_task(tmp_path, TID).result == tf.ResultRecord(5, "", "r")


def test_line_breaks_in_values_become_spaces(tmp_path):
    tf.save_task(
        tmp_path, record("finished"), [], [], tf.ResultRecord(1, "line one\nline two\r\n", "")
    )
    assert tf.load_task(tmp_path, TID).result.message == "line one line two"


def test_no_params_load_as_none(tmp_path):
    tf.save_task(tmp_path, record(), [], [tf.RecoveryRecord("n", "m", "O", "f")])
    assert b"params = \n" in (tmp_path / TID / f"{TID}.recover.0").read_bytes()
    assert tf.load_task(tmp_path, TID).recoveries[0].params == ()


def test_a_save_leaves_no_temp_or_backup(tmp_path):
    for state in ("preparing", "running", "finished"):
        tf.save_task(tmp_path, record(state), JOBS, RECOVERIES)
    assert os.listdir(tmp_path) == [TID]


def test_crash_between_renames_loads_the_new_temp_copy(tmp_path):
    # What a crash after "<id> -> <id>.backup" and before "<id>.temp -> <id>" leaves.
    scratch, tasks = tmp_path / "scratch", tmp_path / "tasks"
    scratch.mkdir()
    tasks.mkdir()
    tf.save_task(tasks, record("running"), JOBS, RECOVERIES[:1])
    tf.save_task(scratch, record("running"), JOBS, RECOVERIES)
    os.rename(tasks / TID, tasks / f"{TID}.backup")
    os.rename(scratch / TID, tasks / f"{TID}.temp")
    assert tf.list_task_ids(tasks) == [TID]
    loaded = tf.load_task(tasks, TID)
    assert loaded.path == tasks / f"{TID}.temp"
    assert len(loaded.recoveries) == 2


def test_a_partial_temp_copy_next_to_the_live_one_is_ignored(tmp_path):
    tf.save_task(tmp_path, record("running"), JOBS, RECOVERIES)
    partial = tmp_path / f"{TID}.temp"
    partial.mkdir()
    (partial / f"{TID}.task").write_text("id = " + TID + "\nstate = fini")
    assert tf.load_task(tmp_path, TID).path == tmp_path / TID


def test_an_unreadable_live_copy_gives_way_to_the_backup(tmp_path):
    tf.save_task(tmp_path, record("running"), JOBS, RECOVERIES)
    os.rename(tmp_path / TID, tmp_path / f"{TID}.backup")
    (tmp_path / TID).mkdir()  # upstream creates the empty directory first
    loaded = tf.load_task(tmp_path, TID)
    assert loaded.path == tmp_path / f"{TID}.backup"


def test_nothing_loadable_is_invalid_task(tmp_path):
    (tmp_path / TID).mkdir()
    with pytest.raises(errors.InvalidTask):
        tf.load_task(tmp_path, TID)


def test_finished_without_result_file_does_not_load(tmp_path):
    tf.save_task(tmp_path, record("finished"), [], [])
    os.unlink(tmp_path / TID / f"{TID}.result")
    with pytest.raises(errors.InvalidTask):
        tf.load_task(tmp_path, TID)


def test_the_loader_tolerates_what_upstream_tolerates(tmp_path):
    task_dir = tmp_path / TID
    task_dir.mkdir()
    (task_dir / f"{TID}.task").write_bytes(
        f"id = {TID}\n"
        "\n"
        "name=spmStart\n"  # no spaces
        "unknownField = 1\n"
        "a = b = c\n"  # two '=': skipped
        "no separator here\n"
        "tag = hsm\r\n"
        "store = None\n"
        "state = bogus\n"  # unknown words read as "unknown"
        "njobs = 0\n"
        "nrecoveries = 0\n".encode()
    )
    loaded = tf.load_task(tmp_path, TID)
    assert loaded.task.name == "spmStart" and loaded.task.tag == "hsm"
    assert loaded.task.store == "None"
    assert loaded.task.state == "unknown"
    assert loaded.task.recovery_policy == "none" and loaded.task.clean_policy == "auto"


def test_a_bad_number_or_policy_does_not_load(tmp_path):
    tf.save_task(tmp_path, record(), [], [])
    path = tmp_path / TID / f"{TID}.task"
    path.write_text(path.read_text().replace("njobs = 0", "njobs = many"))
    with pytest.raises(errors.InvalidTask):
        tf.load_task(tmp_path, TID)


def test_a_file_of_another_task_does_not_load(tmp_path):
    tf.save_task(tmp_path, record(), [], [])
    os.rename(tmp_path / TID, tmp_path / TID2)
    os.rename(tmp_path / TID2 / f"{TID}.task", tmp_path / TID2 / f"{TID2}.task")
    with pytest.raises(errors.InvalidTask):
        tf.load_task(tmp_path, TID2)


def test_list_task_ids(tmp_path):
    assert tf.list_task_ids(tmp_path / "absent") == []
    (tmp_path / TID).mkdir()
    (tmp_path / f"{TID}.backup").mkdir()
    (tmp_path / f"{TID2}.temp").mkdir()
    (tmp_path / ".hidden").mkdir()
    assert tf.list_task_ids(tmp_path) == [TID, TID2]


def test_remove_task_removes_every_copy(tmp_path):
    tf.save_task(tmp_path, record(), JOBS, RECOVERIES)
    (tmp_path / f"{TID}.backup").mkdir()
    (tmp_path / f"{TID}.temp").mkdir()
    tf.remove_task(tmp_path, TID)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad", ["", "a.b", "../x", "a/b"])
def test_bad_ids_are_refused(tmp_path, bad):
    with pytest.raises(errors.InvalidParameterException):
        tf.load_task(tmp_path, bad)

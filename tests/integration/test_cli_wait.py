"""`vdsm-client --wait` against a real daemon: it follows storage tasks (spmStart,
Lease.create) and host jobs (SDM.copy_data) to their end, on a terminal and off it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.storage import BLANK, Site, new_uuid
from vdsm.client import follow
from vdsm.client.follow import Outcome, Reporter
from vdsm.client.stomp import EVENTS_QUEUE, StompClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MiB = 1024 * 1024


def client_command(site: Site, *args: str) -> list[str]:
    return daemon_command(site.daemon, *args)


def daemon_command(daemon, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vdsm.client.cli",
        "-a",
        daemon.host,
        "-p",
        str(daemon.port),
        "--insecure",
        *args,
    ]


def vdsm_client(site: Site, *args: str, stdin: str | None = None, timeout: float = 120):
    return subprocess.run(
        client_command(site, *args),
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        cwd=ROOT,
    )


def on_a_terminal(site: Site, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """Runs vdsm-client with stderr on a pseudo-terminal: (exit code, stdout, terminal)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        client_command(site, *args), stdout=subprocess.PIPE, stderr=slave, cwd=ROOT
    )
    os.close(slave)
    seen = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert time.monotonic() < deadline, "vdsm-client did not finish"
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed its end
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        stdout = proc.stdout.read() if proc.stdout else b""
        return proc.wait(10), stdout.decode(), seen.decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def pool_site(vdsmd, root: Path, **kwargs) -> tuple[Site, str, Path]:
    """A daemon connected to a new pool on a V5 LOCALFS master; not SPM yet."""
    site = Site(vdsmd, root, **kwargs)
    master, d = site.new_domain("master")
    site.new_pool(master)
    return site, master, d


def spm_start_args(site: Site, *extra: str) -> list[str]:
    return [
        "StoragePool",
        "spmStart",
        f"storagepoolID={site.sp}",
        "prevID=-1",
        "prevLver=-1",
        "enableScsiFencing=false",
        *extra,
    ]


def test_wait_follows_spm_start_to_spm_on_a_terminal(vdsmd, sanlock, shared_tmp_path):
    site, _, _ = pool_site(vdsmd, shared_tmp_path)
    code, stdout, terminal = on_a_terminal(site, "--wait", *spm_start_args(site))
    assert code == 0, terminal
    task = json.loads(stdout)
    assert re.fullmatch(UUID, task)
    # It returned once the task was over, with this host SPM.
    status = site.vdsm.call("Task.getStatus", taskID=task)
    assert (status["taskState"], status["taskResult"]) == ("finished", "success")
    assert site.vdsm.call("StoragePool.getSpmStatus", storagepoolID=site.sp)["spmStatus"] == "SPM"
    # A spinner line redrawn in place, ended before the result.
    assert f"\r| task {task} " in terminal
    assert re.search(rf"\r. task {task} finished \d+s\x1b\[K", terminal), terminal
    assert terminal.endswith("\n")
    # The task is left for the engine to clear, as without --wait.
    site.vdsm.call("Task.clear", taskID=task)
    site.teardown()


def test_wait_on_a_failing_task_exits_1_with_its_code(vdsmd, sanlock, shared_tmp_path):
    # domVersion 4 passes the verb's own check (3, 4 and 5 exist); the task then finds
    # the master at V5, "too advanced", and fails with 395.
    site, _, _ = pool_site(vdsmd, shared_tmp_path)
    result = vdsm_client(site, "--wait", *spm_start_args(site, "domVersion=4"))
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    failure = re.fullmatch(
        rf"vdsm-client: task ({UUID}) failed: \(code=395, message=(.*)\)", lines[-1]
    )
    assert failure, result.stderr
    task = failure.group(1)
    # Off a terminal: plain lines, one per state, no redrawing.
    assert "\r" not in result.stderr
    assert f"task {task}: finished" in lines
    assert len(lines) == len(set(lines))
    status = site.vdsm.call("Task.getStatus", taskID=task)
    assert status["taskState"] == "finished" and status["code"] == 395
    assert site.vdsm.call("StoragePool.getSpmStatus", storagepoolID=site.sp)["spmStatus"] == "Free"
    site.vdsm.call("Task.clear", taskID=task)
    site.teardown()


def test_wait_timeout_and_ctrl_c_leave_the_task_running(
    vdsmd, sanlock, shared_tmp_path, freezable_mount
):
    # A lease created on a frozen domain: a task that runs until the storage thaws.
    site = Site(vdsmd, shared_tmp_path, process_pool_timeout="30")
    fm = freezable_mount(mountpoint=site.local("frozen"))
    _, other, _ = site.spm_with_second_domain(fm.path)
    fm.freeze()

    lease = json.dumps({"lease": {"sd_id": other, "lease_id": new_uuid()}})
    started = time.monotonic()
    result = vdsm_client(
        site, "--wait", "--wait-timeout", "2", "-f", "-", "Lease", "create", stdin=lease
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    timed_out = re.search(
        rf"vdsm-client: gave up waiting for task ({UUID}) after 2 s \(--wait-timeout\); "
        "it goes on in the daemon",
        result.stderr,
    )
    assert timed_out, result.stderr
    first = timed_out.group(1)
    assert site.vdsm.call("Task.getStatus", taskID=first)["taskState"] == "running"

    # Ctrl-C while waiting: the task is not stopped, the id is told.
    proc = subprocess.Popen(
        client_command(site, "--wait", "-f", "-", "Lease", "create"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdin and proc.stderr
        proc.stdin.write(json.dumps({"lease": {"sd_id": other, "lease_id": new_uuid()}}))
        proc.stdin.close()
        waiting = proc.stderr.readline()  # the first state line: it is following
        second = re.fullmatch(rf"task ({UUID}): running\n", waiting)
        assert second, waiting
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert f"vdsm-client: stopped waiting for task {second.group(1)}; it goes on" in rest
    assert site.vdsm.call("Task.getStatus", taskID=second.group(1))["taskState"] == "running"

    fm.thaw()
    for task in (first, second.group(1)):
        assert site.vdsm.wait_task(task, timeout=60)["taskResult"] == "success"
        site.vdsm.call("Task.clear", taskID=task)
    site.teardown()


def test_wait_on_a_verb_that_starts_nothing(vdsmd):
    daemon = vdsmd()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = daemon_command(daemon, *args)
        return subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=ROOT)

    result = run("--wait", "Host", "echo", "message=hi")
    assert result.returncode == 0
    assert json.loads(result.stdout) == "hi"
    assert result.stderr == "vdsm-client: --wait: Host.echo started no task or job\n"
    usage = run("--wait-timeout", "3", "Host", "ping2")
    assert usage.returncode == 2 and "--wait-timeout needs --wait" in usage.stderr


# -- host jobs ---------------------------------------------------------------------------


def test_a_job_the_host_does_not_know_is_not_waited_for(vdsmd):
    # The events subscription and the Host.getJobs polling, which never lists the id.
    daemon = vdsmd()
    job = new_uuid()

    async def follow_job() -> Outcome:
        client = await StompClient.connect(daemon.host, daemon.port)
        try:
            events = await client.subscribe(EVENTS_QUEUE)
            out = io.StringIO()
            outcome = await follow.wait_job(
                client, job, events, Reporter(out, terminal=False), call_timeout=10, interval=0.2
            )
            assert out.getvalue() == ""  # never seen: nothing to draw
            return outcome
        finally:
            await client.close()

    started = time.monotonic()
    outcome = asyncio.run(follow_job())
    assert outcome == Outcome(False, f"job {job} is not known to the host")
    assert time.monotonic() - started < 10


def create_volume(site: Site, sd: str, img: str, vol: str, size: int) -> None:
    task = site.vdsm.call(
        "Volume.create",
        volumeID=vol,
        storagepoolID=site.sp,
        storagedomainID=sd,
        imageID=img,
        size=str(size),
        volFormat=5,  # RAW
        preallocate=2,  # SPARSE
        diskType="DATA",
        desc="",
        srcImgUUID=BLANK,
        srcVolUUID=BLANK,
    )
    assert site.vdsm.wait_task(task)["taskResult"] == "success"
    site.vdsm.call("Task.clear", taskID=task)


def div(sd: str, img: str, vol: str) -> dict[str, str]:
    return {"endpoint_type": "div", "sd_id": sd, "img_id": img, "vol_id": vol}


def test_wait_follows_a_copy_data_job(vdsmd, sanlock, shared_tmp_path):
    site, master, d = pool_site(vdsmd, shared_tmp_path)
    site.start_spm()
    src_img, src_vol, dst_img, dst_vol = (new_uuid() for _ in range(4))
    create_volume(site, master, src_img, src_vol, 64 * MiB)
    create_volume(site, master, dst_img, dst_vol, 64 * MiB)
    data = os.urandom(MiB)
    src_path = d / master / "images" / src_img / src_vol
    with open(src_path, "r+b") as f:
        for offset in range(0, 48 * MiB, 4 * MiB):
            f.seek(offset)
            f.write(data)

    job = new_uuid()
    params = {
        "job_id": job,
        "source": div(master, src_img, src_vol),
        "destination": div(master, dst_img, dst_vol),
    }
    result = vdsm_client(site, "--wait", "-f", "-", "SDM", "copy_data", stdin=json.dumps(params))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is True
    lines = result.stderr.splitlines()
    assert f"job {job}: done" in lines
    percents = [int(line[10:-1]) for line in lines if line.startswith("progress: ")]
    assert percents == sorted(percents) and percents[-1] == 100
    # The job is over when the client returns: the copy is complete.
    assert site.vdsm.call("Host.getJobs", job_ids=[job])[job]["status"] == "done"
    dst_path = d / master / "images" / dst_img / dst_vol
    assert dst_path.read_bytes()[: 48 * MiB] == src_path.read_bytes()[: 48 * MiB]

    # On a terminal: a progress bar redrawn in place.
    job2 = new_uuid()
    code, _, terminal = on_a_terminal(
        site,
        "--wait",
        "-f",
        str(_params_file(shared_tmp_path, params | {"job_id": job2})),
        "SDM",
        "copy_data",
    )
    assert code == 0, terminal
    assert re.search(r"\r\[#+\] 100%", terminal), terminal
    site.teardown()


def test_wait_on_a_failing_job_exits_1_with_its_code(vdsmd, sanlock, shared_tmp_path):
    # A copy to a destination smaller than the source fails with 79 (contract: "a copy
    # to a too-small destination (79)").
    site, master, _ = pool_site(vdsmd, shared_tmp_path)
    site.start_spm()
    src_img, src_vol, dst_img, dst_vol = (new_uuid() for _ in range(4))
    create_volume(site, master, src_img, src_vol, 64 * MiB)
    create_volume(site, master, dst_img, dst_vol, 16 * MiB)
    job = new_uuid()
    params = {
        "job_id": job,
        "source": div(master, src_img, src_vol),
        "destination": div(master, dst_img, dst_vol),
    }
    result = vdsm_client(site, "--wait", "-f", "-", "SDM", "copy_data", stdin=json.dumps(params))
    assert result.returncode == 1
    assert result.stdout == ""
    assert re.search(
        rf"^vdsm-client: job {job} failed: \(code=79, message=.*\)$", result.stderr, re.M
    ), result.stderr
    assert site.vdsm.call("Host.getJobs", job_ids=[job])[job]["status"] == "failed"
    site.teardown()


def _params_file(root: Path, params: dict) -> Path:
    path = root / f"params-{params['job_id']}.json"
    path.write_text(json.dumps(params))
    return path

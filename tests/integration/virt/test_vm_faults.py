"""Bad input and faults of the VM lifecycle, each on a real daemon + libvirtd/qemu.

Bad input gets the contract's error code with context and leaves no domain behind;
the daemon keeps serving.  Hook faults turn the VM Down with the hook's message.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import wait_until_ready
from tests.support.virt import VdsmClient, engine_xml, install_hook, restart_libvirtd

pytestmark = pytest.mark.integration


def create(client: VdsmClient, vm_id: str, xml: str) -> dict[str, Any]:
    answer = client.call("VM.create", {"vmID": vm_id, "vmParams": {"xml": xml}})
    return answer


def assert_no_domain(libvirt_conn: Any, vm_id: str) -> None:
    import libvirt

    with pytest.raises(libvirt.libvirtError):
        libvirt_conn.lookupByUUIDString(vm_id)


def assert_still_serving(client: VdsmClient) -> None:
    assert client.result("Host.ping2") is True
    assert isinstance(client.result("Host.getVMList"), list)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        ("<domain type='kvm'><name>x</name><uuid>{id}</uuid>", "not well-formed XML"),
        ("<domain type='kvm'><name>x</name></domain>", "the domain has no <uuid>"),
        ("<domain><name>x</name><uuid>{other}</uuid></domain>", "differs from vmID"),
        ("<vm><uuid>{id}</uuid></vm>", "not <domain>"),
        ("", "vmParams.xml"),
    ],
    ids=["invalid-xml", "no-uuid", "other-uuid", "not-a-domain", "no-xml"],
)
def test_bad_domain_xml_is_refused_and_leaves_nothing(
    client: VdsmClient, libvirt_conn: Any, xml: str, reason: str
) -> None:
    vm_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    answer = create(client, vm_id, xml.format(id=vm_id, other=other))
    error = answer["error"]
    assert error["code"] == (11 if reason == "vmParams.xml" else 91), error
    assert reason in error["message"]
    assert vm_id in error["message"]
    assert client.vm_status(vm_id) is None
    assert_no_domain(libvirt_conn, vm_id)
    assert_still_serving(client)


def test_duplicate_vm_id_is_refused(virt_daemon: Any, client: VdsmClient) -> None:
    # The VM stays Down (its hook refuses it): no qemu needed to hold the id.
    install_hook(virt_daemon.hooks_dir, "before_vm_start", "10_no", "#!/bin/sh\nexit 2\n")
    vm_id, _, xml = engine_xml()
    assert "result" in create(client, vm_id, xml)
    client.wait_status(vm_id, "Down")
    error = create(client, vm_id, xml)["error"]
    assert error["code"] == 4
    assert error["message"] == f"Virtual machine already exists: {{'vmId': '{vm_id}'}}"
    client.result("VM.destroy", {"vmID": vm_id})


def test_destroy_of_an_unknown_vm(client: VdsmClient) -> None:
    vm_id = str(uuid.uuid4())
    error = client.error("VM.destroy", {"vmID": vm_id})
    assert error["code"] == 1
    assert error["message"] == f"Virtual machine does not exist: {{'vmId': '{vm_id}'}}"
    for verb in ("VM.pause", "VM.cont", "VM.getStats", "VM.getInfo"):
        assert client.error(verb, {"vmID": vm_id})["code"] == 1, verb
    assert_still_serving(client)


# -- hook faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rc", "text", "chain_goes_on"),
    [(1, "soft", True), (2, "hard", False)],
    ids=["exit-1-chain-continues", "exit-2-chain-stops"],
)
def test_failing_before_vm_start_hook_turns_the_vm_down(
    virt_daemon: Any,
    client: VdsmClient,
    libvirt_conn: Any,
    tmp_path: Path,
    rc: int,
    text: str,
    chain_goes_on: bool,
) -> None:
    marker = tmp_path / "second-ran"
    install_hook(
        virt_daemon.hooks_dir,
        "before_vm_start",
        "10_fail",
        f"#!/bin/sh\necho {text} >&2\nexit {rc}\n",
    )
    install_hook(
        virt_daemon.hooks_dir, "before_vm_start", "20_mark", f"#!/bin/sh\ntouch {marker}\n"
    )
    vm_id, _, xml = engine_xml()
    create(client, vm_id, xml)
    down = client.wait_status(vm_id, "Down")
    assert marker.exists() == chain_goes_on
    assert (down["exitCode"], down["exitReason"]) == (1, 1)
    assert down["exitMessage"] == f"Hook Error: (b'{text}\\n',)"
    assert_no_domain(libvirt_conn, vm_id)
    client.result("VM.destroy", {"vmID": vm_id})


def test_hanging_hook_is_killed_at_its_timeout(
    virt_daemon: Any, client: VdsmClient, libvirt_conn: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "hook.pid"
    install_hook(
        virt_daemon.hooks_dir,
        "before_vm_start",
        "10_hang",
        f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 1000\n",
    )
    vm_id, _, xml = engine_xml()
    started = time.monotonic()
    create(client, vm_id, xml)
    down = client.wait_status(vm_id, "Down", timeout=30)
    assert time.monotonic() - started < 20  # hook_timeout is 5 s in these tests
    assert "10_hang: timed out after 5 s, killed" in down["exitMessage"]
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid)
    assert_no_domain(libvirt_conn, vm_id)
    client.result("VM.destroy", {"vmID": vm_id})


def test_destroy_during_launch_kills_the_hook_and_starts_nothing(
    virt_daemon: Any, client: VdsmClient, libvirt_conn: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "hook.pid"
    install_hook(
        virt_daemon.hooks_dir,
        "before_vm_start",
        "10_slow",
        f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 1000\n",
    )
    vm_id, _, xml = engine_xml()
    create(client, vm_id, xml)
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the hook did not start"
        time.sleep(0.05)
    started = time.monotonic()
    assert client.result("VM.destroy", {"vmID": vm_id}) is True
    assert time.monotonic() - started < 4  # not waiting for the 5 s hook timeout
    assert client.vm_status(vm_id) is None
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid)
    assert_no_domain(libvirt_conn, vm_id)


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2 :].split()[0]


def test_hook_writing_invalid_xml_turns_the_vm_down(
    virt_daemon: Any, client: VdsmClient, libvirt_conn: Any
) -> None:
    install_hook(
        virt_daemon.hooks_dir,
        "before_vm_start",
        "10_garble",
        '#!/bin/sh\necho "<domain><unclosed>" > "$_hook_domxml"\n',
    )
    vm_id, _, xml = engine_xml()
    create(client, vm_id, xml)
    down = client.wait_status(vm_id, "Down")
    assert (down["exitCode"], down["exitReason"]) == (1, 1)
    assert "before_vm_start hooks left an invalid XML" in down["exitMessage"]
    assert_no_domain(libvirt_conn, vm_id)
    client.result("VM.destroy", {"vmID": vm_id})


def test_non_executable_hook_is_ignored(
    virt_daemon: Any, client: VdsmClient, domains: list[str]
) -> None:
    install_hook(
        virt_daemon.hooks_dir, "before_vm_start", "10_off", "#!/bin/sh\nexit 2\n", mode=0o644
    )
    vm_id, _, xml = engine_xml()
    domains.append(vm_id)
    create(client, vm_id, xml)
    client.wait_status(vm_id, "Up")
    client.result("VM.destroy", {"vmID": vm_id})


def test_launch_flags_from_a_hook_start_the_vm_paused(
    virt_daemon: Any, client: VdsmClient, domains: list[str], libvirt_conn: Any
) -> None:
    import libvirt

    install_hook(
        virt_daemon.hooks_dir,
        "before_vm_start",
        "50_paused",
        "#!/usr/bin/python3\nimport os, hooking\n"
        "flags = hooking.load_vm_launch_flags_from_file(os.environ['vmId'])\n"
        "hooking.dump_vm_launch_flags_to_file(os.environ['vmId'], flags | 1)\n",
    )
    vm_id, _, xml = engine_xml()
    domains.append(vm_id)
    create(client, vm_id, xml)
    paused = client.wait_status(vm_id, "Paused")
    assert paused["pauseCode"] == "NOERR"
    assert libvirt_conn.lookupByUUIDString(vm_id).state()[0] == libvirt.VIR_DOMAIN_PAUSED
    client.result("VM.cont", {"vmID": vm_id})
    client.wait_status(vm_id, "Up")
    client.result("VM.destroy", {"vmID": vm_id})


# -- faults behind the daemon's back ------------------------------------------------------


def test_qemu_killed_behind_the_daemons_back(
    client: VdsmClient, domains: list[str], libvirt_conn: Any
) -> None:
    vm_id, name, xml = engine_xml()
    domains.append(vm_id)
    create(client, vm_id, xml)
    client.wait_status(vm_id, "Up")
    pid = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    down = client.wait_status(vm_id, "Down", timeout=30)
    assert (down["exitCode"], down["exitReason"]) == (1, 2)
    assert down["exitMessage"] == "Lost connection with qemu process"
    # Still listed with its exit data until VM.destroy.
    stats = client.result("VM.getStats", {"vmID": vm_id})[0]
    assert (stats["status"], stats["exitReason"]) == ("Down", 2)
    client.result("VM.destroy", {"vmID": vm_id})
    assert client.vm_status(vm_id) is None


def _libvirt_client_ids(pid: int) -> list[str]:
    listing = subprocess.run(
        ["virt-admin", "srv-clients-list", "libvirtd"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    ids = []
    for line in listing.splitlines():
        match = re.match(r"\s*(\d+)\s", line)
        if not match:
            continue
        info = subprocess.run(
            ["virt-admin", "client-info", "libvirtd", match.group(1)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout
        if re.search(rf"unix_process_id\s*:\s*{pid}\b", info):
            ids.append(match.group(1))
    return ids


def test_libvirt_connection_dropped_while_vms_run(
    virt_daemon: Any, client: VdsmClient, domains: list[str], libvirt_conn: Any
) -> None:
    """libvirtd drops the daemon's connection (as on a libvirtd restart): the daemon
    reconnects, the VM stays Up, and events flow again on the new connection."""
    vm_id, _, xml = engine_xml()
    domains.append(vm_id)
    create(client, vm_id, xml)
    client.wait_status(vm_id, "Up")
    ids = _libvirt_client_ids(virt_daemon.pid)
    assert ids, "the daemon has no libvirt connection to drop"
    for client_id in ids:
        subprocess.run(
            ["virt-admin", "client-disconnect", "libvirtd", client_id], check=True, timeout=30
        )
    deadline = time.monotonic() + 30
    while "libvirt connection to" not in virt_daemon.log_text():
        assert time.monotonic() < deadline, "the daemon did not notice the drop"
        time.sleep(0.1)
    assert client.vm_status(vm_id) == "Up"
    # The next call reconnects; lifecycle events come through again.
    assert client.result("VM.pause", {"vmID": vm_id}) == {"vmList": {}}
    client.wait_status(vm_id, "Paused")
    libvirt_conn.lookupByUUIDString(vm_id).resume()  # behind the daemon's back
    client.wait_status(vm_id, "Up")
    client.result("VM.destroy", {"vmID": vm_id})


def test_libvirtd_restarted_while_vms_run(
    virt_daemon: Any, client: VdsmClient, domains: list[str], libvirt_uri: str
) -> None:
    """A real libvirtd restart: qemu keeps running, the daemon reconnects on its own
    (the stats sampler's next call), the VM stays Up, and events flow again."""
    import libvirt

    vm_id, name, xml = engine_xml()
    domains.append(vm_id)
    create(client, vm_id, xml)
    client.wait_status(vm_id, "Up")
    qemu = int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())
    restart_libvirtd()
    deadline = time.monotonic() + 30
    while virt_daemon.log_text().count("[vdsm.system.libvirt] connected to libvirt at") < 2:
        assert time.monotonic() < deadline, "the daemon did not reconnect by itself"
        time.sleep(0.2)
    assert client.vm_status(vm_id) == "Up"
    assert int(Path(f"/run/libvirt/qemu/{name}.pid").read_text()) == qemu
    # Changes made behind the daemon's back reach it through the new connection.
    conn = libvirt.open(libvirt_uri)
    try:
        conn.lookupByUUIDString(vm_id).suspend()
    finally:
        conn.close()
    client.wait_status(vm_id, "Paused")
    os.kill(qemu, signal.SIGKILL)
    down = client.wait_status(vm_id, "Down", timeout=30)
    assert down["exitReason"] == 2
    client.result("VM.destroy", {"vmID": vm_id})


def test_kill_9_with_five_vms_then_restart_recovers_all(
    virt_daemon: Any, client: VdsmClient, domains: list[str], libvirt_conn: Any
) -> None:
    ids = []
    for _ in range(5):
        vm_id, _, xml = engine_xml()
        domains.append(vm_id)
        ids.append(vm_id)
        create(client, vm_id, xml)
    for vm_id in ids:
        client.wait_list_status(vm_id, "Up")
    client.result("VM.pause", {"vmID": ids[0]})
    client.wait_status(ids[0], "Paused")
    client.close()

    virt_daemon.kill()
    virt_daemon.start()
    wait_until_ready(virt_daemon)
    after = VdsmClient(virt_daemon)
    try:
        listed = {e["vmId"]: e["status"] for e in after.result("Host.getVMList")}
        assert listed[ids[0]] == "Paused"
        assert all(listed[vm_id] == "Up" for vm_id in ids[1:]), listed
        log = virt_daemon.log_text()
        assert all(f"recovered VM {vm_id}" in log for vm_id in ids)
        stats = after.result("VM.getStats", {"vmID": ids[0]})[0]
        assert stats["pauseCode"] == "NOERR"
        for vm_id in ids:
            after.result("VM.destroy", {"vmID": vm_id})
            assert_no_domain(libvirt_conn, vm_id)
    finally:
        after.close()


def test_verbs_answer_99_until_recovery_finishes(
    vdsmd: Any, libvirt_uri: str, domains: list[str]
) -> None:
    daemon = vdsmd(
        {"libvirt": {"uri": libvirt_uri}, "devel": {"recovery_delay": "3"}}, wait_ready=False
    )
    c = VdsmClient(daemon, events=False)
    try:
        error = c.error("Host.getVMList")
        assert error["code"] == 99
        assert c.error("VM.destroy", {"vmID": str(uuid.uuid4())})["code"] == 99
        wait_until_ready(daemon)
        assert isinstance(c.result("Host.getVMList"), list)
    finally:
        c.close()


def test_external_domains_are_listed_and_left_alone(
    vdsmd: Any, libvirt_uri: str, libvirt_domain: Any, libvirt_conn: Any
) -> None:
    """A running domain without ovirt-vm metadata, found at start: listed with its
    status, refused by the VM verbs, forgotten once it stops."""
    import libvirt

    dom = libvirt_domain()  # vdsmlab-<pid>-<n>, no metadata; destroyed at teardown
    vm_id = dom.UUIDString()
    daemon = vdsmd({"libvirt": {"uri": libvirt_uri}})
    c = VdsmClient(daemon)
    try:
        assert c.vm_status(vm_id) == "Up"
        stats = {s["vmId"]: s for s in c.result("Host.getAllVmStats")}
        assert stats[vm_id]["vmName"] == dom.name()
        assert c.error("VM.destroy", {"vmID": vm_id})["code"] == 1
        assert c.error("VM.pause", {"vmID": vm_id})["code"] == 1
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        dom.destroy()
        deadline = time.monotonic() + 20
        while c.vm_status(vm_id) is not None:
            assert time.monotonic() < deadline, "a stopped external domain is still listed"
            time.sleep(0.1)
        for _ in range(3):
            c._pump(0.3)  # collect whatever the daemon sent meanwhile
        assert not [p for m, p in c.events if m == f"|virt|VM_status|{vm_id}"], (
            "events were sent for an external domain"
        )
    finally:
        c.close()

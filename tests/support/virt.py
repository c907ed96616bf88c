"""Helpers of the VM tests: engine-style domain XML, a JSON-RPC client that also
collects `jms.queue.events`, and hook script installation."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.lab.resources import unique_name
from tests.support.rawstomp import RawStomp

OVIRT_VM_NS = "http://ovirt.org/vm/1.0"


def make_disk(directory: Path, name: str, size: str = "16M") -> Path:
    path = directory / f"{name}.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True, timeout=30
    )
    path.chmod(0o666)
    return path


def engine_xml(
    *,
    vm_id: str | None = None,
    name: str | None = None,
    disk: Path | None = None,
    custom: dict[str, str] | None = None,
    devices: str = "",
    metadata_extra: str = "",
    domain_type: str = "kvm",
    memory_mib: int = 64,
    with_metadata: bool = True,
) -> tuple[str, str, str]:
    """(vm_id, name, xml) of a small VM as the engine would send it."""
    vm_id = vm_id or str(uuid.uuid4())
    name = name or unique_name()
    disk_xml = ""
    if disk is not None:
        disk_xml = (
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
            f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>"
        )
    custom_xml = "".join(f"<ovirt-vm:{k}>{v}</ovirt-vm:{k}>" for k, v in (custom or {}).items())
    metadata = ""
    if with_metadata:
        metadata = f"""<metadata xmlns:ovirt-vm="{OVIRT_VM_NS}">
    <ovirt-vm:vm>
      <ovirt-vm:clusterVersion>4.7</ovirt-vm:clusterVersion>
      <ovirt-vm:custom>{custom_xml}</ovirt-vm:custom>
      {metadata_extra}
    </ovirt-vm:vm>
  </metadata>"""
    xml = f"""<domain type='{domain_type}' xmlns:ovirt-vm="{OVIRT_VM_NS}">
  <name>{name}</name>
  <uuid>{vm_id}</uuid>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu current='1'>2</vcpu>
  {metadata}
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    {disk_xml}
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'
              passwd='*****' passwdValidTo='1970-01-01T00:00:01'/>
    <memballoon model='none'/>
    {devices}
  </devices>
</domain>"""
    return vm_id, name, xml


def install_hook(hooks_dir: Path, point: str, name: str, body: str, mode: int = 0o755) -> Path:
    directory = hooks_dir / point
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(body)
    path.chmod(mode)
    return path


class VdsmClient:
    """Calls on one connection; events collected on another (subscribed first)."""

    def __init__(self, daemon: Any, *, events: bool = True) -> None:
        self.rpc = RawStomp(daemon.host, daemon.port)
        self.rpc.connect()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ev: RawStomp | None = None
        if events:
            self.ev = RawStomp(daemon.host, daemon.port)
            self.ev.connect()
            self.ev.subscribe("jms.queue.events")

    def call(self, method: str, params: Any = None, timeout: float = 60) -> dict[str, Any]:
        answer: dict[str, Any] = self.rpc.call(method, params, timeout=timeout)
        return answer

    def result(self, method: str, params: Any = None, timeout: float = 60) -> Any:
        answer = self.call(method, params, timeout)
        assert "result" in answer, f"{method}: {answer}"
        return answer["result"]

    def error(self, method: str, params: Any = None) -> dict[str, Any]:
        answer = self.call(method, params)
        assert "error" in answer, f"{method} should fail: {answer}"
        error: dict[str, Any] = answer["error"]
        return error

    def _pump(self, timeout: float) -> None:
        assert self.ev is not None
        try:
            frame = self.ev.read_frame(timeout)
        except TimeoutError:
            return
        if frame.command == "MESSAGE":
            message = json.loads(frame.body)
            self.events.append((message["method"], message["params"]))

    def wait_event(
        self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for method, params in self.events[seen:]:
                if predicate(method, params):
                    return params
            seen = len(self.events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching event in {timeout} s; got {self.events}")
            self._pump(min(remaining, 1.0))

    def wait_status(self, vm_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
        def match(method: str, params: dict[str, Any]) -> bool:
            return method == f"|virt|VM_status|{vm_id}" and params[vm_id]["status"] == status

        body: dict[str, Any] = self.wait_event(match, timeout)[vm_id]
        return body

    def vm_status(self, vm_id: str) -> str | None:
        for entry in self.result("Host.getVMList"):
            if entry["vmId"] == vm_id:
                return str(entry["status"])
        return None

    def wait_list_status(self, vm_id: str, status: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.vm_status(vm_id)) != status:
            if time.monotonic() > deadline:
                raise AssertionError(f"VM {vm_id} is {current}, not {status}")
            time.sleep(0.1)

    def close(self) -> None:
        self.rpc.close()
        if self.ev is not None:
            self.ev.close()


def restart_libvirtd() -> int:
    """Restarts the lab's libvirtd (running VMs survive, as on a real host) and keeps the
    lab's service bookkeeping right; returns the new pid."""
    from tests.lab import services

    daemon = services.registry()["libvirtd"]
    with services.locked():
        state = services.load_state()
        old = services.read_pidfile(daemon.pidfile)
        if old is not None:
            services.terminate(old)
        pid = services.start(daemon)
        entry = state.get("libvirtd")
        if entry is not None and entry.get("pid") == old:
            entry["pid"] = pid
            entry["starttime"] = services.proc_starttime(pid)
            services.save_state(state)
    return pid

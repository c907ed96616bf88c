"""The verbs acting on one running VM: pause, cont, reset, shutdown, set ticket,
balloon and CPUs.  Device hot(un)plug lives in devices.py.

Each runs under the VM's lock, with its hook points around the libvirt call
(contract §3.1): raising `before_*` points abort the verb with HookError 1500,
`after_*` points only log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Any

from vdsm import errors
from vdsm.system.libvirt import LibvirtError, NoSuchDomain
from vdsm.virt import domainxml, vmstatus
from vdsm.virt.backends import Backends
from vdsm.virt.vm import Vm
from vdsm.virt.vmstatus import ExitCode, ExitReason

log = logging.getLogger("vdsm.virt.operations")


def require_running(vm: Vm) -> None:
    if vm.is_down:
        raise errors.VMIsDown(vmId=vm.vm_id)
    if vm.status == vmstatus.WAIT_FOR_LAUNCH:
        raise errors.UnsupportedOperation(vmId=vm.vm_id, reason="the VM is still starting")


def _domain_error(vm: Vm, error: LibvirtError, failure: type[errors.VdsmError]) -> errors.VdsmError:
    if isinstance(error, NoSuchDomain):
        return errors.NoSuchVM(vmId=vm.vm_id)
    return failure(vmId=vm.vm_id, reason=str(error))


async def pause(b: Backends, vm: Vm) -> None:
    require_running(vm)
    async with vm.lock:
        xml = vm.live_xml
        await b.run_hooks("before_vm_pause", vm, domxml=xml)
        try:
            await b.libvirt.suspend_domain(vm.vm_id)
        except LibvirtError as e:
            raise _domain_error(vm, e, errors.GeneralException) from None
        vm.set_status(vmstatus.PAUSED, pause_code=vmstatus.PAUSE_NOERR)
        await b.run_hooks("after_vm_pause", vm, domxml=xml, raise_on_error=False)


async def cont(b: Backends, vm: Vm) -> None:
    require_running(vm)
    async with vm.lock:
        xml = vm.live_xml
        await b.run_hooks("before_vm_cont", vm, domxml=xml)
        try:
            await b.libvirt.resume_domain(vm.vm_id)
        except LibvirtError as e:
            raise _domain_error(vm, e, errors.GeneralException) from None
        vm.set_status(vmstatus.UP)
        await b.run_hooks("after_vm_cont", vm, domxml=xml, raise_on_error=False)


async def reset(b: Backends, vm: Vm) -> None:
    require_running(vm)
    async with vm.lock:
        try:
            await b.libvirt.reset_domain(vm.vm_id)
        except LibvirtError as e:
            raise _domain_error(vm, e, errors.ResetFailed) from None


async def shutdown(
    b: Backends, vm: Vm, *, delay: int, message: str, reboot: bool, timeout: int, force: bool
) -> asyncio.Task[None] | None:
    """ACPI power button (no guest agent here); with `force`, a domain still running
    after `timeout` seconds is destroyed.  Returns the escalation task, if any."""
    require_running(vm)
    async with vm.lock:
        log.info(
            "VM %s: %s requested (delay %d s, timeout %d s, force %s): %s",
            vm.vm_id,
            "reboot" if reboot else "shutdown",
            delay,
            timeout,
            force,
            message,
        )
        vm.shutdown_requested = True
        try:
            if reboot:
                await b.libvirt.reboot_domain(vm.vm_id)
            else:
                await b.libvirt.shutdown_domain(vm.vm_id)
        except LibvirtError as e:
            raise _domain_error(vm, e, errors.GeneralException) from None
        vm.set_status(vmstatus.REBOOT_IN_PROGRESS if reboot else vmstatus.POWERING_DOWN)
    if not force or reboot:
        return None
    return asyncio.get_running_loop().create_task(
        _force_after(b, vm, timeout), name=f"shutdown escalation {vm.vm_id}"
    )


async def _force_after(b: Backends, vm: Vm, timeout: float) -> None:
    await asyncio.sleep(max(0.0, timeout))
    if vm.is_down or vm.destroying:
        return
    log.info("VM %s still runs %g s after the shutdown request: destroying", vm.vm_id, timeout)
    async with vm.lock:
        with contextlib.suppress(NoSuchDomain):
            try:
                await b.libvirt.destroy_domain(vm.vm_id, graceful=False)
            except LibvirtError as e:
                log.warning("forced shutdown of VM %s failed: %s", vm.vm_id, e)
                return
        vm.set_down(ExitCode.NORMAL, ExitReason.ADMIN_SHUTDOWN)


async def set_ticket(
    b: Backends,
    vm: Vm,
    password: str,
    ttl: int,
    existing_conn_action: str,
    params: dict[str, Any],
) -> None:
    require_running(vm)
    async with vm.lock:
        env = {str(k): str(v) for k, v in (params or {}).items()}
        xml = vm.live_xml
        await b.run_hooks(
            "before_vm_set_ticket", vm, domxml=xml, extra_env=env, raise_on_error=False
        )
        root = domainxml.parse_element(await b.libvirt.domain_xml(vm.vm_id))
        graphics = root.findall("devices/graphics")
        if not graphics:
            raise errors.SpiceTicketError(vmId=vm.vm_id, reason="the VM has no graphics device")
        for device in graphics:
            device.set("passwd", password)
            if ttl and ttl > 0:
                valid_to = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=ttl)
                device.set("passwdValidTo", valid_to.strftime("%Y-%m-%dT%H:%M:%S"))
            elif "passwdValidTo" in device.attrib:
                del device.attrib["passwdValidTo"]
            # Only SPICE can drop or refuse the connected client; VNC keeps it.
            if device.get("type") == "spice":
                device.set("connected", existing_conn_action)
            try:
                await b.libvirt.update_device(vm.vm_id, domainxml.to_string(device))
            except LibvirtError as e:
                raise _domain_error(vm, e, errors.SpiceTicketError) from None
        await b.run_hooks(
            "after_vm_set_ticket", vm, domxml=xml, extra_env=env, raise_on_error=False
        )


async def set_balloon_target(b: Backends, vm: Vm, target_kib: int) -> None:
    require_running(vm)
    async with vm.lock:
        try:
            await b.libvirt.set_memory(vm.vm_id, target_kib)
        except LibvirtError as e:
            raise _domain_error(vm, e, errors.BalloonError) from None
        vm.spec.values["balloonTarget"] = target_kib


async def set_number_of_cpus(b: Backends, vm: Vm, count: int) -> None:
    require_running(vm)
    if count < 1:
        raise errors.InvalidParameter(vmId=vm.vm_id, param="numberOfCpus", reason="must be >= 1")
    async with vm.lock:
        await b.run_hooks("before_set_num_of_cpus", vm, domxml="")
        try:
            await b.libvirt.set_vcpus(vm.vm_id, count)
        except LibvirtError as e:
            raise _domain_error(vm, e, errors.SetNumberOfCpusFailed) from None
        vm.update_live_xml(await b.libvirt.domain_xml(vm.vm_id))
        await b.run_hooks("after_set_num_of_cpus", vm, domxml="", raise_on_error=False)

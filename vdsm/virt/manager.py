"""The VMs of this host: create, destroy, list, recover, and libvirt's events.

VM.create answers at once (WaitForLaunch); the launch runs in the background:
prepare the storage drives, write the launch flags, run before_vm_start on the XML,
start a transient libvirt domain, run after_vm_start.  Any failure turns the VM Down
with its reason, and leaves no domain behind.

Nothing is persisted besides what libvirt holds: the ovirt-vm metadata travels in
the domain XML, so after a restart (clean or kill -9) `recover` rebuilds every VM from
the running domains.  Domains without that metadata are someone else's ("external"):
they are listed (getVMList, getAllVmStats) with their status, but no verb acts on
them and no event is sent for them; they are forgotten once they stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.hooks import runner as hookfiles
from vdsm.hooks.runner import HookRunner, HookScriptError
from vdsm.system import libvirt as lv
from vdsm.system.libvirt import Libvirt, LibvirtError, NoSuchDomain
from vdsm.virt import domainxml, storage, vmstatus
from vdsm.virt.backends import Backends
from vdsm.virt.domainxml import InvalidDomainXml
from vdsm.virt.stats import StatsSampler, vm_stats
from vdsm.virt.storage import ImagePreparer
from vdsm.virt.vm import Publisher, Vm, apply_lifecycle_event
from vdsm.virt.vmstatus import ExitCode, ExitReason

log = logging.getLogger("vdsm.virt.manager")

# Seconds between graceful destroy attempts (libvirt itself waits for qemu to exit).
_GRACEFUL_RETRY_DELAY = 0.5


class VmManager:
    def __init__(
        self,
        libvirt: Libvirt,
        hooks: HookRunner,
        publish: Publisher,
        run_dir: Path,
        *,
        preparer: ImagePreparer | None = None,
        sample_interval: float = 15.0,
    ) -> None:
        self.backends = Backends(libvirt, hooks, Path(run_dir), preparer)
        self.publish = publish
        self.vms: dict[str, Vm] = {}
        self.external: dict[str, Vm] = {}
        self.sampler = StatsSampler(self._collect_stats, sample_interval)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recovery_lock = asyncio.Lock()
        self.recovered = False

    @property
    def libvirt(self) -> Libvirt:
        return self.backends.libvirt

    @libvirt.setter
    def libvirt(self, value: Libvirt) -> None:
        self.backends.libvirt = value

    def attach(self, libvirt: Libvirt) -> None:
        """Subscribes to libvirt's lifecycle events (before it connects)."""
        self.libvirt = libvirt
        libvirt.on_lifecycle_event(self.on_lifecycle_event)
        libvirt.on_connect(self._on_libvirt_connect)

    def get(self, vm_id: str) -> Vm:
        vm = self.vms.get(vm_id)
        if vm is None:
            raise errors.NoSuchVM(vmId=vm_id)
        return vm

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        return self.adopt_task(asyncio.get_running_loop().create_task(coro, name=name))

    def adopt_task(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Keeps a background task of a VM operation alive until it ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- create -----------------------------------------------------------------------------

    async def create(self, vm_id: str, params: dict[str, Any]) -> dict[str, Any]:
        xml = params.get("xml")
        if not isinstance(xml, str) or not xml.strip():
            raise errors.MissingParameter(vmId=vm_id, param="vmParams.xml")
        try:
            spec = domainxml.parse(xml, expected_id=vm_id)
        except InvalidDomainXml as e:
            raise errors.InvalidParameter(vmId=vm_id, param="vmParams.xml", reason=str(e)) from None
        if spec.vm_id in self.vms or spec.vm_id in self.external:
            raise errors.VMExists(vmId=spec.vm_id)
        vm = Vm(spec.vm_id, spec, self.publish)
        domainxml.set_metadata_value(spec.root, "startTime", f"{vm.start_time:.3f}", "float")
        self.vms[vm.vm_id] = vm
        vm.launch_task = self._spawn(self._launch(vm), f"launch VM {vm.vm_id}")
        log.info("VM %s (%s) created, launching", vm.vm_id, vm.name)
        return vm.definition()

    async def _launch(self, vm: Vm) -> None:
        try:
            async with vm.lock:
                await self._start(vm)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("VM %s failed to start", vm.vm_id)
            # Whatever failed, no domain may be left running for a VM reported Down.
            with contextlib.suppress(Exception):
                await self._kill_domain(vm.vm_id, 1)
            await self._fail_start(vm, ExitReason.GENERIC_ERROR, str(e))
        finally:
            vm.launch_task = None

    async def _fail_start(self, vm: Vm, reason: ExitReason, message: str) -> None:
        await storage.teardown_drives(vm.prepared_drives, self.backends.preparer)
        vm.prepared_drives = []
        vm.set_down(ExitCode.ERROR, reason, message)

    async def _start(self, vm: Vm) -> None:
        b = self.backends
        try:
            vm.prepared_drives = await storage.prepare_drives(vm.spec, b.preparer)
        except storage.DiskPrepareError as e:
            vm.prepared_drives = e.prepared
            await self._fail_start(vm, ExitReason.GENERIC_ERROR, str(e))
            return
        flags = lv.START_PAUSED if vm.spec.launch_paused else 0
        await asyncio.to_thread(hookfiles.write_launch_flags, b.run_dir, vm.vm_id, flags)
        try:
            await self._device_hooks(vm, "before_device_create")
        except HookScriptError as e:
            await self._fail_start(vm, ExitReason.GENERIC_ERROR, str(e))
            return
        hook_error: HookScriptError | None = None
        try:
            result = await b.run_hooks("before_vm_start", vm, domxml=vm.spec.to_xml())
        except HookScriptError as e:
            hook_error, result = e, e.result
        # The hooks' edits are applied even when one failed (contract §3.3).
        try:
            vm.spec = domainxml.parse(result.domxml or "", expected_id=vm.vm_id)
        except InvalidDomainXml as e:
            await self._fail_start(
                vm, ExitReason.GENERIC_ERROR, f"before_vm_start hooks left an invalid XML: {e}"
            )
            return
        if hook_error is not None:
            await self._fail_start(vm, ExitReason.GENERIC_ERROR, str(hook_error))
            return
        flags = await asyncio.to_thread(hookfiles.read_launch_flags, b.run_dir, vm.vm_id, flags)
        # Shielded: once libvirt was asked, the domain exists whatever happens to us, and
        # a concurrent destroy waits for this call rather than miss the domain.
        vm.creating = asyncio.ensure_future(b.libvirt.create_domain(vm.spec.to_xml(), flags))
        try:
            live = await asyncio.shield(vm.creating)
        except LibvirtError as e:
            await self._fail_start(vm, ExitReason.LIBVIRT_START_FAILED, str(e))
            return
        finally:
            vm.creating = None
        vm.update_live_xml(live)
        vm.started_monotonic = time.monotonic()
        if flags & lv.START_PAUSED:
            vm.set_status(vmstatus.PAUSED, pause_code=vmstatus.PAUSE_NOERR)
        else:
            vm.set_status(vmstatus.UP)
        await self._device_hooks(vm, "after_device_create", apply=False)
        await b.run_hooks("after_vm_start", vm, domxml=live, raise_on_error=False)

    async def _device_hooks(self, vm: Vm, point: str, *, apply: bool = True) -> None:
        """Runs a device point for every device with custom properties: only that
        device's XML in `_hook_domxml`, its custom properties in the env; the edited
        device replaces the original (when `apply`)."""
        b = self.backends
        for meta in vm.spec.devices:
            if not meta.custom:
                continue
            element = domainxml.device_element(vm.spec.root, meta)
            if element is None:
                continue
            result = await b.run_hooks(
                point,
                vm,
                domxml=domainxml.to_string(element),
                extra_env=meta.custom,
                raise_on_error=apply,
            )
            if apply and result.domxml:
                try:
                    domainxml.replace_element(element, result.domxml)
                except InvalidDomainXml as e:
                    raise HookScriptError(
                        f"{point} left an invalid device XML: {e}".encode(), result
                    ) from None

    # -- destroy ----------------------------------------------------------------------------

    async def destroy(self, vm_id: str, graceful_attempts: int = 1) -> None:
        vm = self.get(vm_id)
        if vm.destroying:
            raise errors.VMDestroyFailed(vmId=vm_id, reason="already being destroyed")
        vm.destroying = True
        try:
            await self._stop_launch(vm)
            async with vm.lock:
                await self._destroy_locked(vm, max(1, graceful_attempts))
        except BaseException:
            vm.destroying = False
            raise
        self.vms.pop(vm_id, None)
        log.info("VM %s destroyed", vm_id)

    async def _stop_launch(self, vm: Vm) -> None:
        task = vm.launch_task
        if task is None:
            return
        if vm.creating is not None:
            await asyncio.wait([vm.creating])
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _destroy_locked(self, vm: Vm, graceful_attempts: int) -> None:
        b = self.backends
        xml = vm.live_xml or vm.spec.to_xml()
        await self._device_hooks(vm, "before_device_destroy", apply=False)
        # before_vm_destroy gets an empty data file (contract §3.1).
        await b.run_hooks("before_vm_destroy", vm, domxml="", raise_on_error=False)
        if not vm.is_down:
            await self._kill_domain(vm.vm_id, graceful_attempts)
            vm.set_down(ExitCode.NORMAL, ExitReason.ADMIN_SHUTDOWN)
        await storage.teardown_drives(vm.prepared_drives, b.preparer)
        vm.prepared_drives = []
        await asyncio.to_thread(hookfiles.remove_launch_flags, b.run_dir, vm.vm_id)
        await self._device_hooks(vm, "after_device_destroy", apply=False)
        await b.run_hooks("after_vm_destroy", vm, domxml=xml, raise_on_error=False)

    async def _kill_domain(self, vm_id: str, graceful_attempts: int) -> None:
        lvirt = self.backends.libvirt
        for attempt in range(graceful_attempts):
            try:
                await lvirt.destroy_domain(vm_id, graceful=True)
                return
            except NoSuchDomain:
                return
            except LibvirtError as e:
                log.info("graceful destroy %d of VM %s failed: %s", attempt + 1, vm_id, e)
                await asyncio.sleep(_GRACEFUL_RETRY_DELAY)
        try:
            await lvirt.destroy_domain(vm_id, graceful=False)
        except NoSuchDomain:
            return
        except LibvirtError as e:
            raise errors.VMDestroyFailed(vmId=vm_id, reason=str(e)) from None

    # -- listing ----------------------------------------------------------------------------

    def select(self, vm_ids: Iterable[str] | None) -> list[Vm]:
        """Our VMs, then the external domains, as listings report them."""
        everything = {**self.external, **self.vms}
        if not vm_ids:
            return list(everything.values())
        return [everything[i] for i in vm_ids if i in everything]

    def status_list(self, vm_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        return [vm.status_entry() for vm in self.select(vm_ids)]

    async def dumpxmls(self, vm_ids: Iterable[str] | None) -> dict[str, str]:
        result = {}
        for vm in self.select(vm_ids):
            xml = vm.live_xml or vm.spec.to_xml()
            if vm.is_running:
                with contextlib.suppress(LibvirtError):
                    xml = await self.backends.libvirt.domain_xml(vm.vm_id)
            result[vm.vm_id] = xml
        return result

    def count_all(self) -> int:
        return len(self.vms) + len(self.external)

    def count_up(self) -> int:
        return sum(1 for vm in self.select(None) if vm.status == vmstatus.UP)

    def stats(self, vm: Vm) -> dict[str, Any]:
        return vm_stats(vm, self.sampler)

    async def _collect_stats(self) -> dict[str, dict[str, Any]]:
        # No VM running here: no reason to make libvirtd walk every domain.
        if not any(vm.is_running for vm in self.select(None)):
            return {}
        return await self.backends.libvirt.all_domain_stats()

    async def sample_forever(self) -> None:
        await self.sampler.run()

    # -- libvirt events ---------------------------------------------------------------------

    def on_lifecycle_event(self, vm_id: str, event: int, detail: int) -> None:
        external = self.external.get(vm_id)
        if external is not None:
            apply_lifecycle_event(external, event, detail)
            if external.is_down:
                del self.external[vm_id]  # down externals are not reported
            return
        vm = self.vms.get(vm_id)
        if vm is None:
            return
        log.debug("VM %s lifecycle event %d detail %d", vm_id, event, detail)
        was_down = vm.is_down
        apply_lifecycle_event(vm, event, detail)
        if vm.is_down and not was_down:
            self._spawn(self._after_death(vm), f"cleanup after VM {vm_id}")

    async def _after_death(self, vm: Vm) -> None:
        async with vm.lock:
            await storage.teardown_drives(vm.prepared_drives, self.backends.preparer)
            vm.prepared_drives = []

    def _on_libvirt_connect(self) -> None:
        # A connection that was down at start-up adopts what recovery could not see;
        # a reconnection catches up with what happened meanwhile.
        self._spawn(self._reconcile(), "reconcile VMs with libvirt")

    async def _reconcile(self) -> None:
        await self.recover()
        if self.vms:
            await self.resync()

    async def resync(self) -> None:
        """After a (re)connection: catch up with changes whose events were lost while
        libvirtd was away."""
        try:
            domains = {d.uuid: d for d in await self.backends.libvirt.list_domains()}
        except LibvirtError as e:
            log.warning("cannot resync VMs with libvirt: %s", e)
            return
        for vm_id in [i for i in self.external if i not in domains]:
            del self.external[vm_id]  # stopped while we were not listening
        for vm in list(self.vms.values()):
            if vm.destroying or vm.is_down or vm.status == vmstatus.WAIT_FOR_LAUNCH:
                continue
            domain = domains.get(vm.vm_id)
            if domain is None:
                vm.set_down(ExitCode.ERROR, ExitReason.LOST_QEMU_CONNECTION)
                self._spawn(self._after_death(vm), f"cleanup after VM {vm.vm_id}")
            elif domain.state == lv.DOMAIN_PAUSED and vm.status != vmstatus.PAUSED:
                vm.set_status(vmstatus.PAUSED, pause_code=vmstatus.PAUSE_NOERR)
            elif domain.state == lv.DOMAIN_RUNNING and vm.status == vmstatus.PAUSED:
                vm.set_status(vmstatus.UP)

    # -- recovery ---------------------------------------------------------------------------

    async def recover(self) -> int:
        """Adopts the running domains that carry ovirt-vm metadata; returns how many.

        Done once per process, by whoever comes first: the start-up recovery or the
        first libvirt connection (which may come later, when libvirt was down)."""
        async with self._recovery_lock:
            if self.recovered:
                return 0
            return await self._recover_locked()

    async def _recover_locked(self) -> int:
        try:
            domains = await self.backends.libvirt.list_domains()
        except LibvirtError as e:
            log.warning("cannot list libvirt domains for recovery: %s", e)
            return 0
        self.recovered = True
        adopted = 0
        for domain in domains:
            vm = self._adopt(domain)
            if vm is None:
                continue
            if vm.external:
                self.external[vm.vm_id] = vm
                continue
            self.vms[vm.vm_id] = vm
            adopted += 1
            log.info("recovered VM %s (%s): %s", vm.vm_id, vm.name, vm.status)
        log.info(
            "recovered %d VM(s); %d external domain(s) left alone", adopted, len(self.external)
        )
        return adopted

    def _adopt(self, domain: lv.DomainInfo) -> Vm | None:
        try:
            spec = domainxml.parse(domain.xml)
        except InvalidDomainXml as e:
            log.warning("domain %s has an unreadable XML (%s); ignored", domain.name, e)
            return None
        if spec.vm_id in self.vms or spec.vm_id in self.external:
            return None
        if domain.state in (lv.DOMAIN_RUNNING, lv.DOMAIN_BLOCKED):
            status, pause_code = vmstatus.UP, None
        elif domain.state == lv.DOMAIN_PAUSED:
            # virDomainPausedReason 2 = VIR_DOMAIN_PAUSED_IOERROR
            pause_code = vmstatus.PAUSE_EIO if domain.reason == 2 else vmstatus.PAUSE_NOERR
            status = vmstatus.PAUSED
        elif domain.state == lv.DOMAIN_SHUTDOWN:
            status, pause_code = vmstatus.POWERING_DOWN, None
        else:
            return None
        external = not spec.has_metadata
        # External domains send no events: they are not the engine's VMs to follow.
        publish = _no_events if external else self.publish
        vm = Vm(spec.vm_id, spec, publish, status=status, pause_code=pause_code)
        vm.external = external
        try:
            vm.start_time = float(spec.values.get("startTime", vm.start_time))
        except (TypeError, ValueError):
            pass
        vm.update_live_xml(domain.xml)
        vm.prepared_drives = [meta for meta, _ in domainxml.storage_drives(spec)]
        return vm


def _no_events(method: str, params: dict[str, Any]) -> None:
    pass

"""The `VM` namespace, and the Host verbs that list VMs (getVMList, getAllVmStats...)."""

from __future__ import annotations

import logging
from typing import Any

from vdsm import errors
from vdsm.hooks.runner import HookScriptError
from vdsm.virt import devices, operations
from vdsm.virt.manager import VmManager

log = logging.getLogger("vdsm.api.vm")

_NO_MIGRATION = {"code": 0, "message": "Migration not in progress"}


async def _stats_hooks(manager: VmManager, point: str, vm_id: str | None, data: Any) -> Any:
    """before_*: failure -> 78 "Hook error"; after_*: edits returned, failures logged."""
    hooks = manager.backends.hooks
    if point.startswith("before_"):
        try:
            await hooks.run(point, json_data={}, vm_id=vm_id)
        except HookScriptError as e:
            raise errors.HookFailed(str(e)) from None
        return data
    result = await hooks.run(point, json_data=data, vm_id=vm_id, raise_on_error=False)
    return result.json_data


class VMAPI:
    NAMESPACE = "VM"

    def __init__(self, *, vms: VmManager) -> None:
        self.vms = vms

    async def create(self, vmID: str, vmParams: dict[str, Any]) -> dict[str, Any]:
        return await self.vms.create(vmID, vmParams)

    async def destroy(self, vmID: str, gracefulAttempts: int) -> None:
        await self.vms.destroy(vmID, gracefulAttempts)

    async def shutdown(
        self, vmID: str, delay: int, message: str, reboot: bool, timeout: int, force: bool
    ) -> None:
        vm = self.vms.get(vmID)
        task = await operations.shutdown(
            self.vms.backends,
            vm,
            delay=delay,
            message=message,
            reboot=reboot,
            timeout=timeout,
            force=force,
        )
        if task is not None:
            self.vms.adopt_task(task)

    async def pause(self, vmID: str) -> dict[str, Any]:
        await operations.pause(self.vms.backends, self.vms.get(vmID))
        return {"vmList": {}}

    async def cont(self, vmID: str) -> dict[str, Any]:
        await operations.cont(self.vms.backends, self.vms.get(vmID))
        return {"vmList": {}}

    async def reset(self, vmID: str) -> None:
        await operations.reset(self.vms.backends, self.vms.get(vmID))

    async def getInfo(self, vmID: str) -> dict[str, Any]:
        vm = self.vms.get(vmID)
        info = vm.definition()
        xmls = await self.vms.dumpxmls([vmID])
        info["xml"] = xmls.get(vmID, info["xml"])
        return info

    async def getStats(self, vmID: str) -> list[dict[str, Any]]:
        vm = self.vms.get(vmID)
        await _stats_hooks(self.vms, "before_get_vm_stats", vmID, None)
        stats = [self.vms.stats(vm)]
        edited = await _stats_hooks(self.vms, "after_get_vm_stats", vmID, stats)
        return edited if isinstance(edited, list) else stats

    async def setTicket(
        self,
        vmID: str,
        password: str,
        ttl: int,
        existingConnAction: str,
        params: dict[str, str],
    ) -> None:
        await operations.set_ticket(
            self.vms.backends, self.vms.get(vmID), password, ttl, existingConnAction, params
        )

    async def hotplugDisk(self, vmID: str, params: dict[str, Any]) -> dict[str, Any]:
        return await devices.hotplug_disk(self.vms.backends, self.vms.get(vmID), params)

    async def hotunplugDisk(self, vmID: str, params: dict[str, Any]) -> dict[str, Any]:
        return await devices.hotunplug_disk(self.vms.backends, self.vms.get(vmID), params)

    async def hotplugNic(self, vmID: str, params: dict[str, Any]) -> dict[str, Any]:
        return await devices.hotplug_nic(self.vms.backends, self.vms.get(vmID), params)

    async def hotunplugNic(self, vmID: str, params: dict[str, Any]) -> dict[str, Any]:
        return await devices.hotunplug_nic(self.vms.backends, self.vms.get(vmID), params)

    async def updateDevice(self, vmID: str, params: dict[str, Any]) -> dict[str, Any]:
        return await devices.update_device(self.vms.backends, self.vms.get(vmID), params)

    async def setBalloonTarget(self, vmID: str, target: int) -> None:
        await operations.set_balloon_target(self.vms.backends, self.vms.get(vmID), target)

    async def setNumberOfCpus(
        self, vmID: str, numberOfCpus: int, cpusets: list[str]
    ) -> dict[str, Any]:
        vm = self.vms.get(vmID)
        await operations.set_number_of_cpus(self.vms.backends, vm, numberOfCpus)
        return vm.definition()

    async def getMigrationStatus(self, vmID: str) -> dict[str, Any]:
        self.vms.get(vmID)
        return {"status": dict(_NO_MIGRATION), "progress": 0}


class VmHostAPI:
    """The Host verbs about VMs (a second object serving the Host namespace)."""

    NAMESPACE = "Host"

    def __init__(self, *, vms: VmManager) -> None:
        self.vms = vms

    async def getVMList(
        self, fullStatus: bool, vmList: list[str], onlyUUID: bool
    ) -> list[dict[str, Any]]:
        # At upstream HEAD both flags are ignored: always {vmId, status, statusTime}.
        return self.vms.status_list(vmList)

    async def getVMFullList(self, vmList: list[str]) -> list[dict[str, Any]]:
        return self.vms.status_list(vmList)

    async def getAllVmStats(self) -> list[dict[str, Any]]:
        await _stats_hooks(self.vms, "before_get_all_vm_stats", None, None)
        stats = [self.vms.stats(vm) for vm in self.vms.select(None)]
        edited = await _stats_hooks(self.vms, "after_get_all_vm_stats", None, stats)
        return edited if isinstance(edited, list) else stats

    async def dumpxmls(self, vmList: list[str]) -> dict[str, str]:
        return await self.vms.dumpxmls(vmList)

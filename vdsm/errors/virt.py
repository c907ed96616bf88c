"""Errors of the VM verbs (contract §2.3, core codes of upstream's common/exception.py)."""

from __future__ import annotations

from vdsm.errors import VdsmError

__all__ = [
    "BalloonError",
    "HotplugDiskFailed",
    "HotplugNicFailed",
    "HotunplugDiskFailed",
    "HotunplugNicFailed",
    "ResetFailed",
    "SetNumberOfCpusFailed",
    "SpiceTicketError",
    "UpdateDeviceFailed",
    "VMDestroyFailed",
]


class SpiceTicketError(VdsmError, code=18, message="Error while setting spice ticket"):
    pass


class VMDestroyFailed(VdsmError, code=42, message="Virtual machine destroy error"):
    pass


class HotplugDiskFailed(VdsmError, code=45, message="Failed to hotplug disk"):
    pass


class HotunplugDiskFailed(VdsmError, code=46, message="Failed to hotunplug disk"):
    pass


class HotplugNicFailed(VdsmError, code=49, message="Failed to hotplug NIC"):
    pass


class HotunplugNicFailed(VdsmError, code=50, message="Failed to hotunplug NIC"):
    pass


class BalloonError(VdsmError, code=53, message="Balloon operation is not available"):
    pass


class UpdateDeviceFailed(VdsmError, code=56, message="Failed to update device"):
    pass


class SetNumberOfCpusFailed(VdsmError, code=60, message="Failed to set the number of cpus"):
    pass


class ResetFailed(VdsmError, code=90, message="Failed to reset VM."):
    pass

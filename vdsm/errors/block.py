"""Errors of block storage domains (VGs, LVs), with upstream's codes and texts
(storage/exception.py, the 500-621 family)."""

from __future__ import annotations

from vdsm.errors.storage import StorageError

__all__ = [
    "BlockVolumeGroupDoesNotExist",
    "CannotActivateLogicalVolumes",
    "CannotCreateLogicalVolume",
    "LVMCommandError",
    "LogicalVolumeExtendError",
    "MkfsError",
    "NoFreeMetadataSlot",
    "VolumeGroupDuplicate",
    "VolumeGroupHasDomainTag",
    "VolumeGroupReplaceTagError",
    "VolumeGroupUninitialized",
]


class BlockVolumeGroupDoesNotExist(
    StorageError, code=506, message="Volume Group does not exist", expected=True
):
    pass


class VolumeGroupUninitialized(
    StorageError, code=509, message="Volume Group not initialize", expected=True
):
    pass


class VolumeGroupHasDomainTag(
    StorageError,
    code=515,
    message="Volume Group has domain tag - requires cleaning",
    expected=True,
):
    pass


class VolumeGroupReplaceTagError(StorageError, code=516, message="Replace Volume Group tag error"):
    pass


class VolumeGroupDuplicate(
    StorageError, code=513, message="Volume Group scanning error", expected=True
):
    """Two VGs of one name are visible (a cloned LUN): nothing addressed by name is safe."""


class CannotCreateLogicalVolume(StorageError, code=550, message="Cannot create Logical Volume"):
    pass


class LogicalVolumeExtendError(StorageError, code=554, message="Logical Volume extend failed"):
    pass


class CannotActivateLogicalVolumes(
    StorageError, code=570, message="Cannot activate Logical Volumes"
):
    pass


class MkfsError(StorageError, code=608, message="Cannot create filesystem on device"):
    pass


class LVMCommandError(StorageError, code=621, message="LVM command failed"):
    pass


class NoFreeMetadataSlot(StorageError, code=1100, message="Resource exhausted", expected=True):
    """Every volume metadata slot of the domain's `metadata` LV is taken."""

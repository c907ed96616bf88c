"""VG, LV and LVM errors, with upstream's codes and texts (storage/exception.py):
500-519 volume groups, 550-573 logical volumes, 600-621 devices and LVM commands.

The daemon raises these from the LVM adapter's failures (vdsm.system.lvm.LvmError);
the failed command, its exit code and LVM's own words go in the context, so the engine
log says why.
"""

from __future__ import annotations

from vdsm.errors.storage import StorageError

__all__ = [
    "BlockDeviceActionError",
    "CannotAccessLogicalVolume",
    "CannotActivateLogicalVolume",
    "CannotActivateLogicalVolumes",
    "CannotCreateLogicalVolume",
    "CannotDeactivateLogicalVolume",
    "CannotRemoveLogicalVolume",
    "CouldNotResizePhysicalVolume",
    "CouldNotRetrieveLogicalVolumesList",
    "CouldNotRetrievePhysicalVolumeList",
    "DeviceBlockSizeError",
    "ForbiddenPhysicalVolumeOperation",
    "GetVolumeGroupListError",
    "InaccessiblePhysDev",
    "LVMCommandError",
    "LVMSetupError",
    "LogicalVolumeAddTagError",
    "LogicalVolumeAlreadyExists",
    "LogicalVolumeDoesNotExistError",
    "LogicalVolumeExtendError",
    "LogicalVolumeRefreshError",
    "LogicalVolumeRemoveError",
    "LogicalVolumeRemoveTagError",
    "LogicalVolumeRenameError",
    "LogicalVolumeReplaceTagError",
    "LogicalVolumeScanError",
    "LogicalVolumeWrongTagError",
    "LogicalVolumesListError",
    "MissingTagOnLogicalVolume",
    "NoSuchDestinationPhysicalVolumes",
    "NoSuchPhysicalVolume",
    "PartitionedPhysDev",
    "PhysDevInitializationError",
    "SmallVgMetadata",
    "UnexpectedVolumeGroupMetadata",
    "VolumeGroupActionError",
    "VolumeGroupAlreadyExistsError",
    "VolumeGroupBlockSizeError",
    "VolumeGroupCreateError",
    "VolumeGroupDoesNotExist",
    "VolumeGroupExtendError",
    "VolumeGroupHasDomainTag",
    "VolumeGroupPermissionsError",
    "VolumeGroupReadTagError",
    "VolumeGroupReduceError",
    "VolumeGroupRemoveError",
    "VolumeGroupRenameError",
    "VolumeGroupReplaceTagError",
    "VolumeGroupScanError",
    "VolumeGroupSizeError",
    "VolumeGroupUninitialized",
]


class VolumeGroupActionError(StorageError, code=500, message="Error volume group action"):
    pass


class VolumeGroupPermissionsError(
    StorageError,
    code=501,
    message="Could not update/change volume group permissions",
):
    pass


class VolumeGroupCreateError(StorageError, code=502, message="Cannot create Volume Group"):
    pass


class VolumeGroupExtendError(StorageError, code=503, message="Cannot extend Volume Group"):
    pass


class VolumeGroupSizeError(
    StorageError,
    code=504,
    message="Volume Group not big enough",
    expected=True,
):
    pass


class VolumeGroupAlreadyExistsError(
    StorageError,
    code=505,
    message="Volume Group Already Exists",
    expected=True,
):
    pass


class VolumeGroupDoesNotExist(
    StorageError,
    code=506,
    message="Volume Group does not exist",
    expected=True,
):
    pass


class VolumeGroupRenameError(StorageError, code=507, message="Volume Group rename error"):
    pass


class VolumeGroupRemoveError(StorageError, code=508, message="Volume Group remove error"):
    pass


class VolumeGroupUninitialized(StorageError, code=509, message="Volume Group not initialize"):
    pass


class VolumeGroupReadTagError(StorageError, code=510, message="Read Volume Group's tag error"):
    pass


class VolumeGroupScanError(StorageError, code=513, message="Volume Group scanning error"):
    pass


class GetVolumeGroupListError(StorageError, code=514, message="Get Volume Group list error"):
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


class VolumeGroupBlockSizeError(
    StorageError,
    code=517,
    message="All devices in domain must have the same block size",
    expected=True,
):
    pass


class DeviceBlockSizeError(
    StorageError,
    code=518,
    message="Device block size is not supported",
    expected=True,
):
    pass


class VolumeGroupReduceError(StorageError, code=519, message="Cannot reduce the Volume Group"):
    pass


class CannotCreateLogicalVolume(StorageError, code=550, message="Cannot create Logical Volume"):
    pass


class CannotRemoveLogicalVolume(StorageError, code=551, message="Cannot remove Logical Volume"):
    pass


class CannotDeactivateLogicalVolume(
    StorageError,
    code=552,
    message="Cannot deactivate Logical Volume",
):
    pass


class CannotAccessLogicalVolume(StorageError, code=553, message="Cannot access Logical Volume"):
    pass


class LogicalVolumeExtendError(StorageError, code=554, message="Logical Volume extend failed"):
    pass


class LogicalVolumesListError(
    StorageError,
    code=555,
    message="Cannot get Logical Volumes list from Volume Group",
):
    pass


class LogicalVolumeRefreshError(StorageError, code=556, message="Cannot refresh Logical Volume"):
    pass


class LogicalVolumeScanError(StorageError, code=557, message="Logical volume scanning error"):
    pass


class CannotActivateLogicalVolume(StorageError, code=558, message="Cannot activate Logical Volume"):
    pass


class LogicalVolumeAddTagError(StorageError, code=560, message="Add tag to Logical Volume error"):
    pass


class LogicalVolumeRemoveTagError(
    StorageError,
    code=561,
    message="Remove tag from Logical Volume error",
):
    pass


class LogicalVolumeRenameError(StorageError, code=566, message="Cannot rename Logical Volume"):
    pass


class CannotActivateLogicalVolumes(
    StorageError,
    code=570,
    message="Cannot activate Logical Volumes",
):
    pass


class LogicalVolumeReplaceTagError(
    StorageError,
    code=572,
    message="Replace Logical Volume tag error",
):
    pass


class LogicalVolumeRemoveError(StorageError, code=573, message="Cannot remove Logical Volume"):
    pass


class BlockDeviceActionError(StorageError, code=600, message="Error block device action"):
    pass


class PhysDevInitializationError(
    StorageError,
    code=601,
    message="Failed to initialize physical device",
    expected=True,
):
    pass


class LVMSetupError(StorageError, code=602, message="LVM setup failed"):
    pass


class CouldNotRetrievePhysicalVolumeList(
    StorageError,
    code=603,
    message="Could not retrieve pv list",
):
    pass


class LogicalVolumeAlreadyExists(
    StorageError,
    code=604,
    message="Cannot create logical volume - already exists",
    expected=True,
):
    pass


class CouldNotRetrieveLogicalVolumesList(
    StorageError,
    code=605,
    message="Could not retrieve lv list",
):
    pass


class InaccessiblePhysDev(
    StorageError,
    code=606,
    message="Multipath cannot access physical device(s)",
    expected=True,
):
    pass


class PartitionedPhysDev(
    StorageError,
    code=607,
    message="Partitioned physical device",
    expected=True,
):
    pass


class MissingTagOnLogicalVolume(StorageError, code=609, message="Missing logical volume tag."):
    pass


class LogicalVolumeDoesNotExistError(
    StorageError,
    code=610,
    message="Logical volume does not exist",
    expected=True,
):
    pass


class LogicalVolumeWrongTagError(StorageError, code=612, message="Wrong logical volume tag"):
    pass


class SmallVgMetadata(
    StorageError,
    code=614,
    message=(
        "Warning - The allocated VG metadata area size is too small, which might limit "
        "its capacity (the number of Vdisks and/or their size)"
    ),
):
    pass


class CouldNotResizePhysicalVolume(StorageError, code=615, message="Could not resize PV"):
    pass


class UnexpectedVolumeGroupMetadata(
    StorageError,
    code=616,
    message="Volume Group metadata isn't as expected",
):
    pass


class ForbiddenPhysicalVolumeOperation(
    StorageError,
    code=617,
    message="The operation couldn't be performed on the provided pv",
    expected=True,
):
    pass


class NoSuchPhysicalVolume(StorageError, code=619, message="No such PV", expected=True):
    pass


class NoSuchDestinationPhysicalVolumes(
    StorageError,
    code=620,
    message="No such destination PVs",
    expected=True,
):
    pass


class LVMCommandError(StorageError, code=621, message="LVM command failed"):
    pass

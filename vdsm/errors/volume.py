"""Volume and image errors (upstream's 200-268 range), plus the copy errors of the
core range that the image verbs raise."""

from __future__ import annotations

from vdsm.errors import VdsmError
from vdsm.errors.storage import StorageError

__all__ = [
    "CannotDeleteSharedVolume",
    "CopyImageError",
    "DestinationVolumeTooSmall",
    "IllegalVolumeSnapshotError",
    "ImageDeleteError",
    "ImageIsNotLegalChain",
    "ImagePathError",
    "ImageVerificationError",
    "IncorrectFormat",
    "IncorrectType",
    "InvalidVolumeUpdate",
    "MergeSnapshotsError",
    "MoveImageError",
    "PrepareIllegalVolumeError",
    "VolumeAccessError",
    "VolumeCopyError",
    "VolumeExtendingError",
    "VolumeImageHasChildren",
    "VolumeIsBusy",
    "VolumeMetadataReadError",
    "VolumeMetadataWriteError",
    "VolumeResizeValueError",
    "VolumeSizeTooSmall",
    "VolumeWasNotPreparedBeforeTeardown",
]


class IncorrectFormat(StorageError, code=202, message="Incorrect Volume format", expected=True):
    pass


class VolumeIsBusy(StorageError, code=203, message="Volume is busy", expected=True):
    pass


class VolumeImageHasChildren(
    StorageError,
    code=204,
    message="Cannot delete volume which has children (non-ethical)",
    expected=True,
):
    pass


class VolumeExtendingError(StorageError, code=206, message="Error extending volume"):
    pass


class VolumeMetadataReadError(
    StorageError, code=207, message="Error while processing volume meta data"
):
    pass


class VolumeMetadataWriteError(
    StorageError, code=208, message="Error while updating volume meta data"
):
    pass


class VolumeAccessError(StorageError, code=209, message="Error accessing a volume"):
    pass


class CannotDeleteSharedVolume(
    StorageError, code=223, message="Shared Volume cannot be deleted", expected=True
):
    pass


class VolumeCopyError(StorageError, code=225, message="Volume copy failed"):
    pass


class IllegalVolumeSnapshotError(
    StorageError,
    code=226,
    message="Cannot create volume snapshot from illegal volume",
    expected=True,
):
    pass


class PrepareIllegalVolumeError(
    StorageError, code=227, message="Cannot prepare illegal volume", expected=True
):
    pass


class VolumeSizeTooSmall(
    StorageError,
    code=229,
    message="Requested size is too small. Must be larger or equal to 1",
    expected=True,
):
    pass


class VolumeWasNotPreparedBeforeTeardown(
    StorageError, code=230, message="Volume was not prepared before being torn down"
):
    pass


class IncorrectType(
    StorageError, code=231, message="Incorrect Volume Preallocate Type", expected=True
):
    pass


class VolumeResizeValueError(
    StorageError, code=232, message="Incorrect size value for volume resize", expected=True
):
    pass


class InvalidVolumeUpdate(
    StorageError, code=235, message="Cannot update volume attributes", expected=True
):
    pass


class MergeSnapshotsError(StorageError, code=252, message="Error merging snapshots"):
    pass


class MoveImageError(StorageError, code=253, message="Error moving image"):
    pass


class ImagePathError(
    StorageError, code=254, message="Image path does not exist or cannot be accessed/created"
):
    pass


class ImageDeleteError(StorageError, code=256, message="Could not remove all image's volumes"):
    pass


class CopyImageError(StorageError, code=261, message="low level Image copy failed"):
    pass


class ImageIsNotLegalChain(
    StorageError, code=262, message="Image is not a legal chain", expected=True
):
    pass


class DestinationVolumeTooSmall(
    VdsmError,
    code=79,
    message="Destination volume is too small",
    expected=True,
):
    pass


class ImageVerificationError(
    StorageError, code=484, message="Image verification failed", expected=True
):
    pass

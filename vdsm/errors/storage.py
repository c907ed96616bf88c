"""Storage errors, with upstream's codes and texts (storage/exception.py).

Upstream prints a storage error's arguments as a tuple, even an empty one:
"Storage domain does not exist: ('x',)", "Not SPM: ()".
"""

from __future__ import annotations

from vdsm.errors import VdsmError

__all__ = [
    "CannotConnectMultiplePools",
    "CannotDetachMasterStorageDomain",
    "CannotFormatAttachedStorageDomain",
    "CannotFormatStorageDomainInConnectedPool",
    "CurrentVersionTooAdvancedError",
    "ImageDoesNotExistInSD",
    "InvalidMetadata",
    "InvalidParameterException",
    "MetaDataGeneralError",
    "MetaDataKeyError",
    "MetaDataSealIsBroken",
    "MetaDataValidationError",
    "MetadataCleared",
    "MetadataOverflowError",
    "MiscOperationInProgress",
    "MixedSDVersionError",
    "MountError",
    "MountTypeError",
    "NoSuchLease",
    "ShuttingDownError",
    "StorageDomainAccessError",
    "StorageDomainActionError",
    "StorageDomainActivateError",
    "StorageDomainAlreadyAttached",
    "StorageDomainAlreadyExists",
    "StorageDomainAttachError",
    "StorageDomainBlockSizeMismatch",
    "StorageDomainCreationError",
    "StorageDomainDeactivateError",
    "StorageDomainDescriptionTooLongError",
    "StorageDomainDetachError",
    "StorageDomainDoesNotExist",
    "StorageDomainFSNotMounted",
    "StorageDomainFormatError",
    "StorageDomainIllegalRemotePath",
    "StorageDomainIsMemberOfPool",
    "StorageDomainMasterError",
    "StorageDomainMetadataCreationError",
    "StorageDomainNotActive",
    "StorageDomainNotEmpty",
    "StorageDomainNotInPool",
    "StorageDomainNotMemberOfPool",
    "StorageDomainStatusError",
    "StorageDomainTargetUnsupported",
    "StorageError",
    "StoragePoolActionError",
    "StoragePoolConnected",
    "StoragePoolConnectionError",
    "StoragePoolCreationError",
    "StoragePoolDescriptionTooLongError",
    "StoragePoolMasterNotFound",
    "StoragePoolNotConnected",
    "StoragePoolUnknown",
    "StoragePoolWrongMaster",
    "StorageServerAccessPermissionError",
    "StorageServerActionError",
    "StorageServerConnectionError",
    "StorageServerDisconnectionError",
    "StorageServerValidationError",
    "StorageTypeError",
    "TooManyDomainsInStoragePoolError",
    "UnicodeArgumentException",
    "UnsupportedDomainVersion",
    "VolumeAlreadyExists",
    "VolumeCreationError",
    "VolumeDoesNotExist",
]


class StorageError(VdsmError, code=200, message="General Storage Exception"):
    def __str__(self) -> str:
        if self.context:
            return f"{self.message}: {self.context!r}"
        return f"{self.message}: {self.args!r}"


class InvalidParameterException(
    StorageError,
    code=1000,
    message="Invalid parameter",
    expected=True,
):
    pass


class ShuttingDownError(StorageError, code=3001, message="Shutdown in progress"):
    pass


class VolumeDoesNotExist(StorageError, code=201, message="Volume does not exist"):
    pass


class VolumeCreationError(StorageError, code=205, message="Error creating a new volume"):
    pass


class VolumeAlreadyExists(StorageError, code=212, message="Volume already exists"):
    pass


class ImageDoesNotExistInSD(StorageError, code=268, message="Image does not exist in domain"):
    pass


class StoragePoolActionError(StorageError, code=300, message="Error storage pool action"):
    pass


class StoragePoolConnectionError(StorageError, code=302, message="Error storage pool connection"):
    pass


class StoragePoolMasterNotFound(StorageError, code=304, message="Cannot find master domain"):
    pass


class StoragePoolUnknown(
    StorageError,
    code=309,
    message="Unknown pool id, pool not connected",
    expected=True,
):
    pass


class StoragePoolNotConnected(
    StorageError,
    code=313,
    message="Storage pool not connected",
    expected=True,
):
    pass


class CannotConnectMultiplePools(
    StorageError,
    code=323,
    message="Cannot connect pool, already connected to another pool",
    expected=True,
):
    pass


class StoragePoolWrongMaster(
    StorageError,
    code=324,
    message="Wrong Master domain or its version",
    expected=True,
):
    pass


class StoragePoolConnected(
    StorageError,
    code=325,
    message="Cannot perform action while storage pool is connected",
    expected=True,
):
    pass


class StoragePoolDescriptionTooLongError(
    StorageError,
    code=327,
    message="Storage pool description is too long",
    expected=True,
):
    pass


class StorageDomainCreationError(StorageError, code=351, message="Error creating a storage domain"):
    pass


class StorageDomainFormatError(StorageError, code=352, message="Error formatting a storage domain"):
    pass


class StorageDomainNotInPool(
    StorageError,
    code=353,
    message="Storage domain not in pool",
    expected=True,
):
    pass


class StorageDomainAttachError(StorageError, code=354, message="Error attaching storage domain"):
    pass


class StorageDomainMasterError(
    StorageError,
    code=355,
    message="Error validating master storage domain",
):
    pass


class StorageDomainDetachError(StorageError, code=356, message="Error detaching storage domain"):
    pass


class StorageDomainDeactivateError(
    StorageError,
    code=357,
    message="Error deactivating storage domain",
):
    pass


class StorageDomainDoesNotExist(
    StorageError,
    code=358,
    message="Storage domain does not exist",
    expected=True,
):
    pass


class StorageDomainActivateError(StorageError, code=359, message="Error activating storage domain"):
    pass


class StorageDomainFSNotMounted(
    StorageError,
    code=360,
    message="Storage domain remote path not mounted",
):
    pass


class StorageDomainNotEmpty(
    StorageError,
    code=361,
    message="Storage domain is not empty - requires cleaning",
):
    pass


class StorageDomainAlreadyExists(
    StorageError,
    code=365,
    message="Storage domain already exists",
    expected=True,
):
    pass


class StorageDomainNotActive(
    StorageError,
    code=369,
    message="Storage domain not active",
    expected=True,
):
    pass


class StorageDomainStatusError(
    StorageError,
    code=376,
    message="Unsupported Storage Domain status",
    expected=True,
):
    pass


class StorageDomainAccessError(
    StorageError,
    code=379,
    message="Domain is either partially accessible or entirely inaccessible",
):
    pass


class StorageDomainAlreadyAttached(
    StorageError,
    code=380,
    message="Storage domain already attached to pool",
    expected=True,
):
    pass


class CannotDetachMasterStorageDomain(
    StorageError,
    code=383,
    message="Illegal action",
    expected=True,
):
    pass


class StorageDomainDescriptionTooLongError(
    StorageError,
    code=387,
    message="Storage domain description is too long",
    expected=True,
):
    pass


class CannotFormatAttachedStorageDomain(
    StorageError,
    code=391,
    message="Cannot format attached storage domain",
    expected=True,
):
    pass


class CannotFormatStorageDomainInConnectedPool(
    StorageError,
    code=392,
    message="Cannot format storage domain in connected pool",
    expected=True,
):
    pass


class CurrentVersionTooAdvancedError(
    StorageError,
    code=395,
    message="Current domain version is too advanced",
    expected=True,
):
    pass


class StorageServerActionError(StorageError, code=450, message="Error storage server action"):
    pass


class StorageServerConnectionError(
    StorageError,
    code=451,
    message="Error storage server connection",
):
    pass


class StorageServerDisconnectionError(
    StorageError,
    code=452,
    message="Error storage server disconnection",
):
    pass


class StorageServerValidationError(
    StorageError,
    code=453,
    message=(
        "The specified path does not exist or cannot be reached. Verify the path is correct "
        "and for remote storage, check the connection to your storage."
    ),
    expected=True,
):
    pass


class StorageTypeError(StorageError, code=468, message="Storage type error"):
    pass


class StorageServerAccessPermissionError(
    StorageError,
    code=469,
    message=(
        "Permission settings on the specified path do not allow access to the storage. "
        "Verify permission settings on the specified storage path."
    ),
    expected=True,
):
    pass


class MountTypeError(StorageError, code=470, message="Mount type error"):
    pass


class MountError(StorageError, code=477, message="Problem while trying to mount target"):
    pass


class MetaDataGeneralError(StorageError, code=749, message="General Meta data error"):
    pass


class MetaDataKeyError(MetaDataGeneralError, code=750, message="Meta data key error"):
    pass


class InvalidMetadata(MetaDataGeneralError, code=751, message="Meta Data key not found error"):
    pass


class MetaDataSealIsBroken(
    MetaDataGeneralError,
    code=752,
    message="Meta Data seal is broken (checksum mismatch)",
    expected=True,
):
    pass


class MetaDataValidationError(
    MetaDataGeneralError,
    code=753,
    message="Meta Data self-validation failed",
):
    pass


class MetadataOverflowError(
    MetaDataGeneralError,
    code=756,
    message="Metadata is too big. Cannot change Metadata",
):
    pass


class MetadataCleared(
    InvalidMetadata,
    code=757,
    message="Metadata was cleared, volume is partly deleted",
    expected=True,
):
    pass


class NoSuchLease(StorageError, code=936, message="No such lease", expected=True):
    pass


class StoragePoolCreationError(StorageError, code=301, message="Error creating a storage pool"):
    pass


class TooManyDomainsInStoragePoolError(
    StorageError, code=328, message="Too many domains in Storage pool", expected=True
):
    pass


class StorageDomainBlockSizeMismatch(
    StorageError, code=348, message="Block size does not match storage block size", expected=True
):
    pass


class StorageDomainActionError(StorageError, code=350, message="Error in storage domain action"):
    pass


class StorageDomainMetadataCreationError(
    StorageError, code=362, message="Error creating a storage domain's metadata"
):
    pass


class StorageDomainNotMemberOfPool(
    StorageError, code=375, message="Domain is not member in pool", expected=True
):
    pass


class StorageDomainIllegalRemotePath(
    StorageError, code=390, message="Remote path is illegal", expected=True
):
    pass


class UnsupportedDomainVersion(
    StorageError,
    code=394,
    message="Domain version is unsupported by this version of VDSM",
    expected=True,
):
    pass


class MixedSDVersionError(
    StorageError,
    code=398,
    message="Domain version is different from the master domain version",
    expected=True,
):
    pass


class StorageDomainTargetUnsupported(
    StorageError, code=399, message="Storage Domain target is unsupported", expected=True
):
    pass


class MiscOperationInProgress(
    StorageError, code=2005, message="Operation is already in progress", expected=True
):
    pass


class UnicodeArgumentException(
    StorageError, code=4900, message="Unicode arguments are not supported", expected=True
):
    pass


class StorageDomainIsMemberOfPool(
    StorageError, code=900, message="Storage domain is member of pool", expected=True
):
    pass

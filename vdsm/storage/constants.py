"""Storage enums and the few numbers every storage module agrees on.

The wire carries domain types and classes as ints (contract §2); the metadata on disk
carries their names.  Both directions live here so no module invents its own table.
"""

from __future__ import annotations

from vdsm import errors

MiB = 1024 * 1024

# -- domain types (wire int <-> metadata TYPE word) --------------------------------------

UNKNOWN_DOMAIN = 0
NFS_DOMAIN = 1
FCP_DOMAIN = 2
ISCSI_DOMAIN = 3
LOCALFS_DOMAIN = 4
CIFS_DOMAIN = 5
POSIXFS_DOMAIN = 6
GLUSTERFS_DOMAIN = 7

DOMAIN_TYPES: dict[int, str] = {
    UNKNOWN_DOMAIN: "UNKNOWN",
    NFS_DOMAIN: "NFS",
    FCP_DOMAIN: "FCP",
    ISCSI_DOMAIN: "ISCSI",
    LOCALFS_DOMAIN: "LOCALFS",
    CIFS_DOMAIN: "CIFS",
    POSIXFS_DOMAIN: "POSIXFS",
    GLUSTERFS_DOMAIN: "GLUSTERFS",
}
FILE_DOMAIN_TYPES = frozenset(
    {NFS_DOMAIN, LOCALFS_DOMAIN, CIFS_DOMAIN, POSIXFS_DOMAIN, GLUSTERFS_DOMAIN}
)
BLOCK_DOMAIN_TYPES = frozenset({FCP_DOMAIN, ISCSI_DOMAIN})

# -- domain classes (wire int <-> metadata CLASS word) -----------------------------------

DATA_DOMAIN = 1
ISO_DOMAIN = 2
BACKUP_DOMAIN = 3

DOMAIN_CLASSES: dict[int, str] = {DATA_DOMAIN: "Data", ISO_DOMAIN: "Iso", BACKUP_DOMAIN: "Backup"}

# -- roles and statuses (metadata words) -------------------------------------------------

ROLE_REGULAR = "Regular"
ROLE_MASTER = "Master"

STATUS_ACTIVE = "Active"
STATUS_ATTACHED = "Attached"
STATUS_UNATTACHED = "Unattached"
STATUS_UNKNOWN = "Unknown"
DOMAIN_STATUSES = frozenset({STATUS_ACTIVE, STATUS_ATTACHED, STATUS_UNATTACHED, STATUS_UNKNOWN})
# Written by old engines and old pool metadata; means what Attached means today.
LEGACY_STATUSES = {"Inactive": STATUS_ATTACHED}

# -- ids, sizes --------------------------------------------------------------------------

BLANK_UUID = "00000000-0000-0000-0000-000000000000"
ISO_IMAGE_UUID = "11111111-1111-1111-1111-111111111111"

BLOCK_SIZE_512 = 512
BLOCK_SIZE_4K = 4096
ALIGNMENT_1M = 1 * MiB
ALIGNMENT_2M = 2 * MiB
ALIGNMENT_4M = 4 * MiB
ALIGNMENT_8M = 8 * MiB
ALIGNMENTS = (ALIGNMENT_1M, ALIGNMENT_2M, ALIGNMENT_4M, ALIGNMENT_8M)
HOSTS_MAX = 2000
HOSTS_DEFAULT = 250  # spmStart maxHostID, StorageDomain.create maxHosts

# Pool keys hold these until an SPM writes real values.
SPM_ID_FREE = -1
LVER_INVALID = -1


def domain_type_name(value: int | str) -> str:
    """The metadata word for a wire int, or for a name in any case ("nfs" -> "NFS")."""
    if isinstance(value, str):
        upper = value.upper()
        if upper in DOMAIN_TYPES.values():
            return upper
        try:
            value = int(value)
        except ValueError:
            raise errors.InvalidParameterException("domainType", value) from None
    try:
        return DOMAIN_TYPES[value]
    except KeyError:
        raise errors.InvalidParameterException("domainType", value) from None


def domain_type_code(name: str) -> int:
    upper = name.upper()
    for code, word in DOMAIN_TYPES.items():
        if word == upper:
            return code
    raise errors.InvalidParameterException("domainType", name)


def domain_class_name(value: int | str) -> str:
    """The metadata word for a wire int (1 -> "Data"); a valid word passes through."""
    if isinstance(value, str):
        if value in DOMAIN_CLASSES.values():
            return value
        try:
            value = int(value)
        except ValueError:
            raise errors.InvalidParameterException("domainClass", value) from None
    try:
        return DOMAIN_CLASSES[value]
    except KeyError:
        raise errors.InvalidParameterException("domainClass", value) from None


def domain_class_code(name: str) -> int:
    for code, word in DOMAIN_CLASSES.items():
        if word == name:
            return code
    raise errors.InvalidParameterException("domainClass", name)


def is_file_type(domain_type: int | str) -> bool:
    return domain_type_code(domain_type_name(domain_type)) in FILE_DOMAIN_TYPES


def alignment_for(block_size: int, max_hosts: int) -> int:
    """Sanlock lease alignment for a domain: 512-byte storage always 1 MiB; 4K storage
    grows with the host count (250 hosts per MiB)."""
    if not 1 <= max_hosts <= HOSTS_MAX:
        raise errors.InvalidParameterException("max_hosts", max_hosts)
    if block_size == BLOCK_SIZE_512:
        return ALIGNMENT_1M
    if block_size != BLOCK_SIZE_4K:
        raise errors.InvalidParameterException("block_size", block_size)
    if max_hosts > 1000:
        return ALIGNMENT_8M
    if max_hosts > 500:
        return ALIGNMENT_4M
    if max_hosts > 250:
        return ALIGNMENT_2M
    return ALIGNMENT_1M

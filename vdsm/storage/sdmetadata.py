"""What the keys of a domain's metadata mean (contract §4.2).

`metadata` knows the text format; this module knows the keys: which ones a new file
domain gets for each version, their defaults, a typed read-only view, and the pure
updates attach/detach/activate/master changes make.  Every update returns a new dict
of strings ready for `metadata.write_file`; nothing here touches storage.

The pool keys (MASTER_VERSION, POOL_*) live in the master domain's metadata next to
the domain's own keys, as upstream keeps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import metadata

# -- keys -------------------------------------------------------------------------------

VERSION = "VERSION"
SDUUID = "SDUUID"
TYPE = "TYPE"
CLASS = "CLASS"
DESCRIPTION = "DESCRIPTION"
ROLE = "ROLE"
POOL_UUID = "POOL_UUID"
LOCKPOLICY = "LOCKPOLICY"
LOCKRENEWALINTERVALSEC = "LOCKRENEWALINTERVALSEC"
LEASETIMESEC = "LEASETIMESEC"
IOOPTIMEOUTSEC = "IOOPTIMEOUTSEC"
LEASERETRIES = "LEASERETRIES"
REMOTE_PATH = "REMOTE_PATH"  # file domains
ALIGNMENT = "ALIGNMENT"  # V5
BLOCK_SIZE = "BLOCK_SIZE"  # V5
VGUUID = "VGUUID"  # block domains
LOGBLKSIZE = "LOGBLKSIZE"  # block domains before V5
PHYBLKSIZE = "PHYBLKSIZE"  # block domains before V5

# Pool keys, on the master domain only.
MASTER_VERSION = "MASTER_VERSION"
POOL_DESCRIPTION = "POOL_DESCRIPTION"
POOL_DOMAINS = "POOL_DOMAINS"
POOL_SPM_ID = "POOL_SPM_ID"
POOL_SPM_LVER = "POOL_SPM_LVER"

# Every version ever written can be read; this daemon creates 3, 4 and 5 only (0 and 2
# need safelease, which it does not implement).
READABLE_VERSIONS = (0, 2, 3, 4, 5)
WRITABLE_VERSIONS = (3, 4, 5)
UNICODE_MIN_VERSION = 3
XLEASES_MIN_VERSION = 4

MAX_DESCRIPTION = 50
MAX_POOL_DESCRIPTION = 50

# What a new domain gets.  LOCKPOLICY is written empty at creation; "ON" appears only
# when a pool is created with zero lease parameters (upstream's fallback pack).
DEFAULT_LEASE_PARAMS: dict[str, int] = {
    LOCKRENEWALINTERVALSEC: 5,
    LEASETIMESEC: 60,
    IOOPTIMEOUTSEC: 10,
    LEASERETRIES: 3,
}
FALLBACK_LOCKPOLICY = "ON"

_REQUIRED = (VERSION, SDUUID, TYPE, CLASS, ROLE, DESCRIPTION)


# -- creating ----------------------------------------------------------------------------


def new_file_domain(
    sd_uuid: str,
    domain_type: int | str,
    domain_class: int | str,
    description: str,
    remote_path: str,
    version: int,
    block_size: int = sc.BLOCK_SIZE_512,
    alignment: int = sc.ALIGNMENT_1M,
) -> dict[str, str]:
    """The metadata upstream writes when it creates a file domain: the common keys and
    REMOTE_PATH for every version, plus ALIGNMENT and BLOCK_SIZE from V5 on."""
    if version not in WRITABLE_VERSIONS:
        raise errors.InvalidParameterException("version", version)
    type_name = sc.domain_type_name(domain_type)
    if not sc.is_file_type(type_name):
        raise errors.InvalidParameterException("domainType", domain_type)
    if version < 5 and (block_size != sc.BLOCK_SIZE_512 or alignment != sc.ALIGNMENT_1M):
        raise errors.InvalidParameterException("block_size", block_size)
    if block_size not in (sc.BLOCK_SIZE_512, sc.BLOCK_SIZE_4K):
        raise errors.InvalidParameterException("block_size", block_size)
    if alignment not in sc.ALIGNMENTS:
        raise errors.InvalidParameterException("alignment", alignment)
    _check_description(description, version)
    _check_text("remote_path", remote_path)
    values = {
        VERSION: str(version),
        SDUUID: sd_uuid,
        TYPE: type_name,
        CLASS: sc.domain_class_name(domain_class),
        DESCRIPTION: description,
        ROLE: sc.ROLE_REGULAR,
        POOL_UUID: "",
        LOCKPOLICY: "",
        REMOTE_PATH: remote_path,
        **{key: str(value) for key, value in DEFAULT_LEASE_PARAMS.items()},
    }
    if version >= 5:
        values[ALIGNMENT] = str(alignment)
        values[BLOCK_SIZE] = str(block_size)
    return values


def pool_keys(pool_description: str, master_sd_uuid: str, master_version: int) -> dict[str, str]:
    """The pool keys StoragePool.create adds to the master domain's metadata."""
    _check_pool_description(pool_description)
    return {
        POOL_SPM_ID: str(sc.SPM_ID_FREE),
        POOL_SPM_LVER: str(sc.LVER_INVALID),
        MASTER_VERSION: str(int(master_version)),
        POOL_DESCRIPTION: pool_description,
        POOL_DOMAINS: encode_domains({master_sd_uuid: sc.STATUS_ACTIVE}),
    }


def lease_keys(
    lock_renewal_interval_sec: int | None,
    lease_time_sec: int | None,
    io_op_timeout_sec: int | None,
    lease_retries: int | None,
) -> dict[str, str]:
    """The lease keys a pool create/reconstruct writes.  As upstream: when any of the
    four is missing or zero the defaults are written instead, LOCKPOLICY=ON included."""
    given = (lock_renewal_interval_sec, lease_time_sec, io_op_timeout_sec, lease_retries)
    if all(given):
        return {
            LEASERETRIES: str(int(lease_retries or 0)),
            LEASETIMESEC: str(int(lease_time_sec or 0)),
            LOCKRENEWALINTERVALSEC: str(int(lock_renewal_interval_sec or 0)),
            IOOPTIMEOUTSEC: str(int(io_op_timeout_sec or 0)),
        }
    fallback = {key: str(value) for key, value in DEFAULT_LEASE_PARAMS.items()}
    fallback[LOCKPOLICY] = FALLBACK_LOCKPOLICY
    return fallback


# -- the typed view ----------------------------------------------------------------------


@dataclass(frozen=True)
class DomainMetadata:
    """A validated, read-only view of a domain's metadata values."""

    values: Mapping[str, str]

    def __post_init__(self) -> None:
        for key in _REQUIRED:
            if key not in self.values:
                raise errors.InvalidMetadata(f"key={key}")
        version = _int(self.values, VERSION)
        if version not in READABLE_VERSIONS:
            raise errors.MetaDataValidationError(f"unsupported domain version {version}")
        if self.values[TYPE].upper() not in sc.DOMAIN_TYPES.values():
            raise errors.MetaDataValidationError(f"unknown domain type {self.values[TYPE]!r}")
        if self.values[CLASS] not in sc.DOMAIN_CLASSES.values():
            raise errors.MetaDataValidationError(f"unknown domain class {self.values[CLASS]!r}")
        block_size, alignment = self.block_size, self.alignment
        if version < 5 and (block_size != sc.BLOCK_SIZE_512 or alignment != sc.ALIGNMENT_1M):
            raise errors.MetaDataValidationError(
                f"domain version {version} supports only block size 512 and alignment 1 MiB"
            )

    @property
    def sd_uuid(self) -> str:
        return self.values[SDUUID]

    @property
    def version(self) -> int:
        return _int(self.values, VERSION)

    @property
    def domain_type(self) -> str:
        return self.values[TYPE].upper()

    @property
    def domain_type_code(self) -> int:
        return sc.domain_type_code(self.domain_type)

    @property
    def domain_class(self) -> str:
        return self.values[CLASS]

    @property
    def domain_class_code(self) -> int:
        return sc.domain_class_code(self.domain_class)

    @property
    def description(self) -> str:
        return self.values[DESCRIPTION]

    @property
    def role(self) -> str:
        return self.values[ROLE]

    @property
    def is_master(self) -> bool:
        return self.role.capitalize() == sc.ROLE_MASTER

    @property
    def pool_uuids(self) -> list[str]:
        return decode_pools(self.values.get(POOL_UUID, ""))

    @property
    def remote_path(self) -> str | None:
        return self.values.get(REMOTE_PATH)

    @property
    def block_size(self) -> int:
        return _int(self.values, BLOCK_SIZE, sc.BLOCK_SIZE_512)

    @property
    def alignment(self) -> int:
        return _int(self.values, ALIGNMENT, sc.ALIGNMENT_1M)

    @property
    def supports_xleases(self) -> bool:
        return self.version >= XLEASES_MIN_VERSION

    @property
    def lock_policy(self) -> str:
        return self.values.get(LOCKPOLICY, "")

    @property
    def lease_params(self) -> dict[str, int]:
        """The four lease keys; an unreadable or missing one reads as its default."""
        return {
            key: _int_or(self.values.get(key), dflt) for key, dflt in DEFAULT_LEASE_PARAMS.items()
        }

    # Pool keys: None when this domain holds none (not a master).

    @property
    def master_version(self) -> int | None:
        return _optional_int(self.values, MASTER_VERSION)

    @property
    def pool_description(self) -> str | None:
        return self.values.get(POOL_DESCRIPTION)

    @property
    def pool_domains(self) -> dict[str, str] | None:
        raw = self.values.get(POOL_DOMAINS)
        return None if raw is None else decode_domains(raw)

    @property
    def pool_spm_id(self) -> int | None:
        return _optional_int(self.values, POOL_SPM_ID)

    @property
    def pool_spm_lver(self) -> int | None:
        return _optional_int(self.values, POOL_SPM_LVER)


# -- pure updates ------------------------------------------------------------------------


def with_pool(values: Mapping[str, str], pool_uuid: str) -> dict[str, str]:
    """Attach: add the pool to POOL_UUID.  Only an ISO domain may be in several pools;
    attaching to a pool it is already in changes nothing."""
    view = DomainMetadata(values)
    pools = view.pool_uuids
    new = dict(values)
    if pool_uuid in pools:
        return new
    if pools and view.domain_class != sc.DOMAIN_CLASSES[sc.ISO_DOMAIN]:
        raise errors.StorageDomainAlreadyAttached(pools[0], view.sd_uuid)
    new[POOL_UUID] = encode_pools([*pools, pool_uuid])
    return new


def without_pool(values: Mapping[str, str], pool_uuid: str) -> dict[str, str]:
    """Detach: drop the pool from POOL_UUID and make sure the role is Regular.  A pool
    the domain is not in changes nothing (upstream logs and returns)."""
    pools = DomainMetadata(values).pool_uuids
    new = dict(values)
    if pool_uuid not in pools:
        return new
    pools.remove(pool_uuid)
    new[POOL_UUID] = encode_pools(pools)
    new[ROLE] = sc.ROLE_REGULAR
    return new


def with_role(values: Mapping[str, str], role: str) -> dict[str, str]:
    if role not in (sc.ROLE_REGULAR, sc.ROLE_MASTER):
        raise ValueError(f"invalid domain role {role!r}")
    return {**values, ROLE: role}


def with_description(values: Mapping[str, str], description: str) -> dict[str, str]:
    _check_description(description, DomainMetadata(values).version)
    return {**values, DESCRIPTION: description}


def as_master(
    values: Mapping[str, str], pool_uuid: str, leases: Mapping[str, str]
) -> dict[str, str]:
    """Make a domain the master of a new pool: lease keys (see `lease_keys`), the
    pool as its only pool, role Master.  A domain of another pool is refused."""
    view = DomainMetadata(values)
    pools = view.pool_uuids
    if len(pools) > 1 or (pools and pools[0] != pool_uuid):
        raise errors.StorageDomainAlreadyAttached(pools[0], view.sd_uuid)
    return {**values, **leases, POOL_UUID: pool_uuid, ROLE: sc.ROLE_MASTER}


def demoted(values: Mapping[str, str]) -> dict[str, str]:
    """The old master after a master switch: MASTER_VERSION 0 and role Regular (the
    other pool keys stay, as upstream leaves them)."""
    return {**values, MASTER_VERSION: "0", ROLE: sc.ROLE_REGULAR}


def with_master_version(values: Mapping[str, str], master_version: int) -> dict[str, str]:
    return {**values, MASTER_VERSION: str(int(master_version))}


def with_pool_description(values: Mapping[str, str], description: str) -> dict[str, str]:
    _check_pool_description(description)
    return {**values, POOL_DESCRIPTION: description}


def with_spm_status(
    values: Mapping[str, str], *, lver: int | None = None, spm_id: int | None = None
) -> dict[str, str]:
    new = dict(values)
    if lver is not None:
        new[POOL_SPM_LVER] = str(int(lver))
    if spm_id is not None:
        new[POOL_SPM_ID] = str(int(spm_id))
    return new


def with_domain_status(values: Mapping[str, str], sd_uuid: str, status: str) -> dict[str, str]:
    """Set one domain's status in POOL_DOMAINS (added at the end if new)."""
    status = normalize_status(status)
    domains = decode_domains(values.get(POOL_DOMAINS, ""))
    domains[sd_uuid] = status
    return {**values, POOL_DOMAINS: encode_domains(domains)}


def without_domain(values: Mapping[str, str], sd_uuid: str) -> dict[str, str]:
    domains = decode_domains(values.get(POOL_DOMAINS, ""))
    domains.pop(sd_uuid, None)
    return {**values, POOL_DOMAINS: encode_domains(domains)}


def with_pool_domains(values: Mapping[str, str], domains: Mapping[str, str]) -> dict[str, str]:
    """Replace the whole map (reconstructMaster, connect with a domainDict)."""
    checked = {sd: normalize_status(status) for sd, status in domains.items()}
    return {**values, POOL_DOMAINS: encode_domains(checked)}


def upgraded_to_v5(values: Mapping[str, str]) -> dict[str, str]:
    """A V4 domain's metadata as V5: VERSION 5, BLOCK_SIZE 512, ALIGNMENT 1 MiB (a V4
    domain never had anything else), and the block-only V4 size keys removed."""
    version = DomainMetadata(values).version
    if version != 4:
        raise errors.MetaDataValidationError(f"cannot convert version {version} to 5")
    new = {k: v for k, v in values.items() if k not in (LOGBLKSIZE, PHYBLKSIZE)}
    new[VERSION] = "5"
    new[BLOCK_SIZE] = str(sc.BLOCK_SIZE_512)
    new[ALIGNMENT] = str(sc.ALIGNMENT_1M)
    return new


# -- value encodings ---------------------------------------------------------------------


def encode_pools(pools: list[str]) -> str:
    return ",".join(pools)


def decode_pools(raw: str) -> list[str]:
    # Old pool metadata marked a free domain with the blank UUID as its pool.
    return [pool for pool in raw.split(",") if pool and pool != sc.BLANK_UUID] if raw else []


def encode_domains(domains: Mapping[str, str]) -> str:
    """`sd:Status,sd:Status` in the map's order."""
    return ",".join(f"{sd}:{status}" for sd, status in domains.items())


def decode_domains(raw: str) -> dict[str, str]:
    """Parse POOL_DOMAINS.  Statuses are capitalized and quotes stripped as upstream
    reads them; the legacy word Inactive reads as Attached."""
    domains: dict[str, str] = {}
    if not raw:
        return domains
    for entry in raw.split(","):
        sd, sep, status = entry.partition(":")
        if not sep or ":" in status:
            raise errors.MetaDataValidationError(f"invalid {POOL_DOMAINS} entry {entry!r}")
        word = status.strip("'").capitalize()
        domains[sd.strip("'")] = sc.LEGACY_STATUSES.get(word, word)
    return domains


def normalize_status(status: str) -> str:
    """A status word as stored: capitalized, legacy Inactive -> Attached; anything but
    the four statuses is StorageDomainStatusError (376)."""
    word = status.capitalize()
    word = sc.LEGACY_STATUSES.get(word, word)
    if word not in sc.DOMAIN_STATUSES:
        raise errors.StorageDomainStatusError(status)
    return word


# -- helpers -----------------------------------------------------------------------------


def _check_description(description: str, version: int) -> None:
    if len(description) > MAX_DESCRIPTION:
        raise errors.StorageDomainDescriptionTooLongError()
    if not description.isascii() and version < UNICODE_MIN_VERSION:
        raise errors.InvalidParameterException("description", description)
    _check_text("description", description)


def _check_pool_description(description: str) -> None:
    if len(description) > MAX_POOL_DESCRIPTION:
        raise errors.StoragePoolDescriptionTooLongError()
    _check_text("description", description)


def _check_text(name: str, value: str) -> None:
    # A line break would end the metadata line early and break the seal for upstream
    # readers; refuse it up front rather than fail when writing.
    if metadata.has_line_break(value):
        raise errors.InvalidParameterException(name, value)


def _int(values: Mapping[str, str], key: str, default: int | None = None) -> int:
    raw = values.get(key)
    if raw is None:
        if default is None:
            raise errors.InvalidMetadata(f"key={key}")
        return default
    try:
        return int(raw)
    except ValueError:
        raise errors.MetaDataValidationError(f"{key}={raw!r} is not a number") from None


def _optional_int(values: Mapping[str, str], key: str) -> int | None:
    return None if key not in values else _int(values, key)


def _int_or(raw: Any, default: int) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return default

"""Storage server connections: StoragePool.connectStorageServer / disconnectStorageServer.

A connection makes a file storage server reachable under the repository:

    NFS (1), POSIXFS (6)   mount <connection> on <repository>/mnt/<mangled connection>
    LOCALFS (4)            symlink <repository>/mnt/<mangled path> -> <path>
    FCP (2)                nothing to do (the devices are already there)

Mangling (contract §4.1): "_" -> "__", then "/" -> "_", so "srv:/exp" -> "srv:_exp" and
"/data/local" -> "_data_local".  Connection strings are normalised first as upstream
normalises them (fileUtils.normalize_path), so "srv://exp/" and "srv:/exp" are one
connection with one mount point.

Every entry is answered on its own, `{"id", "status"}` with 0 or an error code; one bad
entry never fails the others, and entries run concurrently so one hung server costs
the call at most one mount timeout.  Connecting is idempotent (a mount of the same
source already on the mount point answers 0) and so is disconnecting (nothing mounted
answers 0; upstream answers 477 there).

Nothing here touches a mount point from the event loop: the mount table comes from
procfs, and directory checks on the storage run in child processes with a timeout
(vdsm.system.mount), because the storage may hang.  Only the repository's own local
mnt/ directory is changed in place (mkdir, rmdir, symlink: local, never crossing into
a mount).

Access (upstream fileSD.validateDirAccess): a LOCALFS directory, and every mount once
mounted, must be readable, writable and searchable by the daemon and by the vdsm user
(groups kvm), and readable and searchable by the user qemu runs as (groups qemu and
kvm); otherwise 469.  Upstream checks effective access, not owners or modes: its docs
ask for vdsm:kvm (36:36) and mode 0755, which passes.  Who is checked is a constructor
argument (`AccessCheck`); users missing on this host are skipped with a warning.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.system import mount
from vdsm.system.mount import Identity

log = logging.getLogger("vdsm.storage.connections")

MNT_DIR = "mnt"
GLUSTER_DIR = "glusterSD"

# NFS defaults and rules (upstream storageServer.NFSConnection).
NFS_DEFAULT_OPTIONS = ("soft", "nosharecache")
NFS_DEFAULT_TIMEOUT = 100  # tenths of a second
NFS_DEFAULT_RETRANS = 3
NFS_DEFAULT_VERSION = "3"

MIN_PORT, MAX_PORT = 1, 65535


# -- names -------------------------------------------------------------------------------


def mangle(path: str) -> str:
    """The mount point name of a connection (contract §4.1)."""
    return path.replace("_", "__").replace("/", "_")


def _normpath(path: str) -> str:
    path = os.path.normpath(path)
    # POSIX lets "//x" mean something else than "/x"; Linux does not.
    if path.startswith("//"):
        path = path[1:]
    return path


def _is_port(text: str) -> bool:
    if text.startswith("0") or not text.isdigit():
        return False
    return MIN_PORT <= int(text) <= MAX_PORT


def _split_host(spec: str) -> tuple[str, str]:
    """host and tail of "host:tail" ("[v6addr]:tail" for IPv6 literals)."""
    if spec.startswith("["):
        end = spec.find("]:")
        host, tail = (spec[1:end], spec[end + 2 :]) if end > 0 else ("", "")
    else:
        host, _, tail = spec.partition(":")
    if not host or not tail:
        raise errors.InvalidParameterException("connection", spec, "not a host:path address")
    return host, tail


def normalize_path(spec: str) -> str:
    """A connection string in upstream's canonical form.

    Local paths and strings without ":" are normalised as paths; "host:[port:]path"
    keeps its host (IPv6 literals in brackets) and port, and normalises the path.
    """
    if spec.startswith("/") or ":" not in spec:
        return _normpath(spec)
    host, tail = _split_host(spec)
    port, sep, rest = tail.partition(":")
    tail = f"{port}:{_normpath(rest)}" if sep and _is_port(port) else _normpath(tail)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{tail}"


def _checked_name(name: str, connection: str) -> str:
    # After mangling no "/" is left; what remains could still climb out of mnt/.
    if name in ("", ".", "..") or "\0" in name or len(name.encode()) > 255:
        raise errors.InvalidParameterException("connection", connection, "unusable as a path")
    return name


# -- NFS options -------------------------------------------------------------------------


def nfs_options(
    version: str | None = NFS_DEFAULT_VERSION,
    timeout: int = NFS_DEFAULT_TIMEOUT,
    retrans: int = NFS_DEFAULT_RETRANS,
    extra: str = "",
) -> str:
    """The -o string upstream mounts NFS with.

    `version` is protocol_version ("3", "4", "4.1", "4.2"; None for "auto");
    `extra` the engine's mnt_options, appended.  NFSv3 (and auto, which may end up
    v3) gets "nolock" unless the engine asked for "lock" or "nolock" itself: remote
    NFSv3 locks break the failover of highly available VMs.
    """
    options = [*NFS_DEFAULT_OPTIONS, f"timeo={timeout}", f"retrans={retrans}"]
    if version:
        try:
            numbers = [int(part) for part in version.split(".")]
        except ValueError:
            numbers = []
        if not 1 <= len(numbers) <= 2:
            raise errors.InvalidParameterException("protocol_version", version)
        options.append(f"nfsvers={numbers[0]}")
        if len(numbers) == 2:
            options.append(f"minorversion={numbers[1]}")
    engine = [opt for opt in extra.split(",") if opt]
    if version in (None, "3"):
        if "lock" in engine:
            log.warning("NFSv3 with remote locks: highly available VMs should not use this mount")
        elif "nolock" not in engine:
            engine.append("nolock")
    return ",".join(options + engine)


# -- access ------------------------------------------------------------------------------


RWX = os.R_OK | os.W_OK | os.X_OK
RX = os.R_OK | os.X_OK


@dataclass(frozen=True)
class AccessCheck:
    """Who must be able to use a storage directory, and how (os.R_OK | ...).

    `users`: candidate user names, the first one that exists is checked (empty: this
    process itself); `groups`: group names it is checked with, besides the user's own
    primary group, those missing on the host left out.
    """

    mode: int
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


# upstream: the daemon itself, vdsm (groups kvm) rwx, qemu (groups qemu, kvm) r-x.
# "libvirt-qemu" is the user Debian's libvirt runs qemu as.
UPSTREAM_ACCESS_CHECKS = (
    AccessCheck(RWX),
    AccessCheck(RWX, ("vdsm",), ("kvm",)),
    AccessCheck(RX, ("qemu", "libvirt-qemu"), ("qemu", "kvm")),
)


@dataclass(frozen=True)
class _Principal:
    name: str
    mode: int
    identity: Identity | None  # None: this process


def _resolve(checks: Sequence[AccessCheck]) -> list[_Principal]:
    resolved = []
    for check in checks:
        if not check.users:
            resolved.append(_Principal("this process", check.mode, None))
            continue
        for user in check.users:
            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                continue
            gids = [entry.pw_gid]
            for group in check.groups:
                try:
                    gid = grp.getgrnam(group).gr_gid
                except KeyError:
                    continue
                if gid not in gids:
                    gids.append(gid)
            resolved.append(_Principal(user, check.mode, Identity(entry.pw_uid, tuple(gids))))
            break
        else:
            log.warning(
                "no user %s on this host: storage access is not checked for it",
                " or ".join(check.users),
            )
    if os.geteuid() != 0 and any(p.identity is not None for p in resolved):
        log.warning("not root: storage access is checked for this process only")
        resolved = [p for p in resolved if p.identity is None]
    return resolved


# -- connections -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    spec: str
    target: Path
    vfstype: str | None
    options: str


class StorageConnections:
    """connect/disconnect answer `[{"id", "status"}]` for a list of connection dicts
    (contract §2.2); they raise only for the call as a whole: an empty list to
    connect (1000), an unknown domain type (1000) or one this host does not serve
    (468).  `mount_timeout` bounds one mount or umount, `check_timeout` one access
    check on the storage (a timeout there answers 451)."""

    def __init__(
        self,
        repository: Path,
        *,
        mount_timeout: float = 180.0,
        check_timeout: float = 60.0,
        access_checks: Sequence[AccessCheck] = UPSTREAM_ACCESS_CHECKS,
    ) -> None:
        # Canonical, so mount targets compare equal to what the kernel lists.
        self.repository = Path(os.path.realpath(repository))
        self.mnt = self.repository / MNT_DIR
        self.mount_timeout = mount_timeout
        self.check_timeout = check_timeout
        self._principals = _resolve(access_checks)
        self._locks: dict[Path, asyncio.Lock] = {}

    # -- public --------------------------------------------------------------------------

    async def connect(self, domain_type: int, params: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not params:
            raise errors.InvalidParameterException("conList", params)
        action = self._action(domain_type, connect=True)
        return list(await asyncio.gather(*(self._answer(action, p) for p in params)))

    async def disconnect(
        self, domain_type: int, params: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if not params:
            # The engine sends an empty list when iSCSI domains share a target.
            log.warning("disconnectStorageServer with no connections: nothing to do")
            return []
        action = self._action(domain_type, connect=False)
        return list(await asyncio.gather(*(self._answer(action, p) for p in params)))

    def mount_point(self, domain_type: int, connection: str) -> Path:
        """Where the domains of this connection live (a symlink for LOCALFS)."""
        if domain_type == sc.LOCALFS_DOMAIN:
            path = self._local_path(connection)
            return self.mnt / _checked_name(mangle(path), connection)
        if domain_type in (sc.NFS_DOMAIN, sc.POSIXFS_DOMAIN, sc.CIFS_DOMAIN):
            base = self.mnt
        elif domain_type == sc.GLUSTERFS_DOMAIN:
            base = self.mnt / GLUSTER_DIR
        else:
            raise errors.InvalidParameterException(
                "domainType", domain_type, "no mount point for this storage type"
            )
        spec = normalize_path(connection)
        return base / _checked_name(mangle(spec), connection)

    # -- dispatch ------------------------------------------------------------------------

    def _action(
        self, domain_type: int, *, connect: bool
    ) -> Callable[[dict[str, Any]], Awaitable[None]]:
        if domain_type == sc.LOCALFS_DOMAIN:
            return self._link if connect else self._unlink
        if domain_type in (sc.NFS_DOMAIN, sc.POSIXFS_DOMAIN):

            def mount_action(params: dict[str, Any]) -> Awaitable[None]:
                target = self._mount_params(domain_type, params)
                return self._mount(target) if connect else self._umount(target)

            return mount_action
        if domain_type == sc.FCP_DOMAIN:
            return _nothing
        if domain_type in sc.DOMAIN_TYPES and domain_type != sc.UNKNOWN_DOMAIN:
            raise errors.StorageTypeError(
                f"{sc.DOMAIN_TYPES[domain_type]} connections are not supported by this host"
            )
        raise errors.InvalidParameterException("domainType", domain_type)

    async def _answer(
        self, action: Callable[[dict[str, Any]], Awaitable[None]], params: Any
    ) -> dict[str, Any]:
        con_id = params.get("id") if isinstance(params, dict) else None
        try:
            if not isinstance(params, dict) or "id" not in params:
                raise errors.InvalidParameterException("connection", "", "no id")
            await action(params)
            status = 0
        except errors.VdsmError as e:
            log.warning("connection %s: %s", con_id, e)
            status = e.code
        except Exception:
            log.exception("connection %s: unexpected error", con_id)
            status = errors.GeneralException.code
        return {"id": con_id, "status": status}

    def _lock(self, path: Path) -> asyncio.Lock:
        # Two calls for one mount point (two engines' requests, or one entry twice)
        # take turns, so the second finds the first one's mount.
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = asyncio.Lock()
        return lock

    # -- parameters ----------------------------------------------------------------------

    def _local_path(self, connection: Any) -> str:
        if not isinstance(connection, str) or not connection.startswith("/"):
            raise errors.InvalidParameterException("connection", connection, "not an absolute path")
        return _normpath(connection)

    def _mount_params(self, domain_type: int, params: dict[str, Any]) -> _Mount:
        connection = params.get("connection")
        if not isinstance(connection, str) or not connection:
            raise errors.InvalidParameterException("connection", connection)
        target = self.mount_point(domain_type, connection)
        spec = normalize_path(connection)
        extra = params.get("mnt_options") or ""
        if not isinstance(extra, str):
            raise errors.InvalidParameterException("mnt_options", extra)
        if domain_type == sc.NFS_DOMAIN:
            version = params.get("protocol_version")
            version = NFS_DEFAULT_VERSION if version is None else str(version)
            options = nfs_options(
                None if version == "auto" else version,
                _int_param(params, "timeout", NFS_DEFAULT_TIMEOUT),
                _int_param(params, "retrans", NFS_DEFAULT_RETRANS),
                extra,
            )
            return _Mount(spec, target, "nfs", options)
        vfstype = params.get("vfs_type") or None
        if vfstype is not None and not isinstance(vfstype, str):
            raise errors.InvalidParameterException("vfs_type", vfstype)
        return _Mount(spec, target, vfstype, extra)

    # -- mounts --------------------------------------------------------------------------

    async def _mount(self, m: _Mount) -> None:
        async with self._lock(m.target):
            stacked = mount.mounted_at(m.target)
            if stacked:
                if any(_same_source(r.spec, m.spec) for r in stacked):
                    log.info("%s is already mounted on %s", m.spec, m.target)
                    return
                raise errors.MountError(
                    f"{m.target} is in use: {stacked[-1].spec} is mounted there, not {m.spec}"
                )
            _make_mount_dir(m.target)
            try:
                await mount.mount(
                    m.spec,
                    m.target,
                    vfstype=m.vfstype,
                    options=m.options,
                    timeout=self.mount_timeout,
                )
            except errors.MountError:
                _remove_mount_dir(m.target, quiet=True)
                raise
            try:
                await self._check_access(m.target)
            except errors.VdsmError:
                log.warning("%s is mounted but unusable: unmounting it", m.target)
                await self._unmount_all(m.target)
                _remove_mount_dir(m.target, quiet=True)
                raise

    async def _umount(self, m: _Mount) -> None:
        async with self._lock(m.target):
            await self._unmount_all(m.target)
            try:
                _remove_mount_dir(m.target, quiet=False)
            except OSError as e:
                raise errors.StorageServerDisconnectionError(
                    f"cannot remove mount point {m.target}: {e}"
                )

    async def _unmount_all(self, target: Path) -> None:
        # Forced and lazy, as upstream: the mount leaves the namespace at once even if
        # the server is gone or a process still uses it.  Mounts stacked on one
        # target (a crash between two mounts) go one per round.
        for _ in range(len(mount.mounted_at(target))):
            await mount.umount(target, force=True, lazy=True, timeout=self.mount_timeout)
            if not mount.mounted_at(target):
                return
        if mount.mounted_at(target):
            raise errors.MountError(f"{target} is still mounted after umount")

    # -- local directories ---------------------------------------------------------------

    async def _link(self, params: dict[str, Any]) -> None:
        connection = params.get("connection")
        path = self._local_path(connection)
        link = self.mount_point(sc.LOCALFS_DOMAIN, path)
        async with self._lock(link):
            if not await self._test(path, directory=True):
                raise errors.InvalidParameterException("path", path, "not a directory")
            await self._check_access(Path(path))
            self.mnt.mkdir(parents=True, exist_ok=True)
            try:
                current = os.readlink(link)
            except FileNotFoundError:
                current = None
            except OSError as e:
                raise errors.StorageServerConnectionError(f"{link} is not a symlink: {e}")
            if current is not None and _normpath(current) == path:
                log.info("%s already links to %s", link, path)
                return
            # Replaced in one rename: the link never disappears for a reader.
            # A dot name: mangled paths start with "_" and never collide with it.
            tmp = link.with_name(f".{link.name}.tmp")
            tmp.unlink(missing_ok=True)
            os.symlink(path, tmp)
            os.replace(tmp, link)
            log.info("linked %s to %s", link, path)

    async def _unlink(self, params: dict[str, Any]) -> None:
        link = self.mount_point(sc.LOCALFS_DOMAIN, self._local_path(params.get("connection")))
        async with self._lock(link):
            try:
                link.unlink()
            except FileNotFoundError:
                return
            except OSError as e:
                raise errors.StorageServerDisconnectionError(f"cannot remove {link}: {e}")
            log.info("removed %s", link)

    # -- checks --------------------------------------------------------------------------

    async def _test(
        self, path: str | Path, *, identity: Identity | None = None, **wanted: bool
    ) -> bool:
        try:
            return await mount.access(path, identity=identity, timeout=self.check_timeout, **wanted)
        except TimeoutError:
            raise errors.StorageServerConnectionError(
                f"{path} did not answer within {self.check_timeout:g} s"
            )
        except OSError as e:
            raise errors.StorageServerConnectionError(f"cannot check {path}: {e}")

    async def _check_access(self, path: Path) -> None:
        async def check(p: _Principal) -> str | None:
            ok = await self._test(
                path,
                identity=p.identity,
                read=bool(p.mode & os.R_OK),
                write=bool(p.mode & os.W_OK),
                execute=bool(p.mode & os.X_OK),
            )
            return None if ok else p.name

        denied = [name for name in await asyncio.gather(*map(check, self._principals)) if name]
        if denied:
            log.warning("%s: access denied for %s", path, ", ".join(denied))
            raise errors.StorageServerAccessPermissionError(str(path))


async def _nothing(params: dict[str, Any]) -> None:
    return None


def _int_param(params: dict[str, Any], key: str, default: int) -> int:
    value = params.get(key)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise errors.InvalidParameterException(key, value)


def _same_source(listed: str, spec: str) -> bool:
    """Whether a mount table source is the connection's: normalised alike, and a loop
    device counts as the file behind it (as upstream compares them)."""
    candidates = {listed, mount.loop_backing_file(listed) or listed}
    try:
        candidates.add(normalize_path(listed))
    except errors.InvalidParameterException:
        pass
    wanted = {spec}
    if spec.startswith("/dev/"):
        wanted.add(os.path.realpath(spec))
    return bool(candidates & wanted)


def _make_mount_dir(target: Path) -> None:
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise errors.MountError(f"cannot create mount point {target}: {e}")


def _remove_mount_dir(target: Path, *, quiet: bool) -> None:
    try:
        target.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        if not quiet:
            raise
        log.warning("cannot remove mount point %s: %s", target, e)
    else:
        log.info("removed mount point %s", target)


__all__ = [
    "RWX",
    "RX",
    "UPSTREAM_ACCESS_CHECKS",
    "AccessCheck",
    "StorageConnections",
    "mangle",
    "nfs_options",
    "normalize_path",
]

"""The storage repository tree and where each storage domain lives in it (contract §4.1).

    <repository>/mnt/<mangled remote path>/<sdUUID>/   file domains
    <repository>/<spUUID>/<sdUUID> -> domain dir        one link per active domain
    <repository>/<spUUID>/mastersd -> master domain dir

Finding a domain means looking under every mount, and any mount may hang (a dead NFS
server).  Each mount is therefore probed in its own bulkhead with a short timeout: a
hung mount costs one stuck thread and a log line, never the lookup of another domain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

from vdsm import errors
from vdsm.system.blocking import BlockingCallTimeout, Bulkhead

log = logging.getLogger("vdsm.storage.repository")

DOMAIN_MD_DIR = "dom_md"
METADATA = "metadata"
MASTER_LINK = "mastersd"
BLOCK_SD_DIR = "blockSD"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def is_uuid(name: str) -> bool:
    return bool(UUID_RE.match(name))


def _domain_dirs(mount: Path) -> dict[str, Path]:
    """The domains directly under one mount (blocking: runs in the mount's bulkhead)."""
    found: dict[str, Path] = {}
    try:
        names = os.listdir(mount)
    except OSError:
        return found
    for name in names:
        if is_uuid(name) and (mount / name / DOMAIN_MD_DIR / METADATA).exists():
            found[name] = mount / name
    return found


def _has_domain(directory: Path) -> bool:
    return (directory / DOMAIN_MD_DIR / METADATA).exists()


class Repository:
    def __init__(self, root: Path, *, probe_timeout: float = 10.0) -> None:
        self.root = root
        self.mnt = root / "mnt"
        self.probe_timeout = probe_timeout
        self._bulkheads: dict[str, Bulkhead] = {}
        self._known: dict[str, Path] = {}

    def pool_dir(self, sp_uuid: str) -> Path:
        return self.root / sp_uuid

    def prepare(self) -> None:
        self.mnt.mkdir(parents=True, exist_ok=True)

    def _bulkhead(self, mount: str) -> Bulkhead:
        bulkhead = self._bulkheads.get(mount)
        if bulkhead is None:
            bulkhead = self._bulkheads[mount] = Bulkhead(f"mount {mount}", 2, self.probe_timeout)
        return bulkhead

    def _mounts(self) -> list[str]:
        # Names only: listing the local mnt/ directory never touches the mounts.
        # blockSD/ holds the links of block domains, which are found through LVM.
        try:
            return sorted(n for n in os.listdir(self.mnt) if n != BLOCK_SD_DIR)
        except FileNotFoundError:
            return []

    async def _scan(self, mount: str) -> dict[str, Path]:
        try:
            return await self._bulkhead(mount).run(_domain_dirs, self.mnt / mount)
        except BlockingCallTimeout:
            log.warning("mount %s does not answer: its domains are not visible", mount)
            return {}

    async def domains(self) -> dict[str, Path]:
        """Every file domain visible under the repository's mounts."""
        found: dict[str, Path] = {}
        for result in await asyncio.gather(*(self._scan(m) for m in self._mounts())):
            found.update(result)
        self._known = dict(found)
        return found

    async def find_domain(self, sd_uuid: str) -> Path:
        """The directory of a domain; errors.StorageDomainDoesNotExist if none."""
        known = self._known.get(sd_uuid)
        if known is not None:
            mount = known.parent.name
            try:
                if await self._bulkhead(mount).run(_has_domain, known):
                    return known
            except BlockingCallTimeout:
                raise errors.StorageDomainAccessError(sd_uuid) from None
            del self._known[sd_uuid]
        found = await self.domains()
        if sd_uuid not in found:
            raise errors.StorageDomainDoesNotExist(sd_uuid)
        return found[sd_uuid]

    def forget(self, sd_uuid: str) -> None:
        self._known.pop(sd_uuid, None)

    async def run_on_mount(self, mount: Path, fn: object, *args: object) -> object:
        """Runs a blocking call against one mount, in that mount's bulkhead."""
        return await self._bulkhead(mount.name).run(fn, *args)  # type: ignore[arg-type]

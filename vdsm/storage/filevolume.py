"""Volumes of file domains on disk (contract §4.1, §4.3): the blocking layer under
FileVolumeStore (vdsm/storage/filevolumestore.py), which runs each helper in the
domain's bulkhead; nothing else calls these.

    <sd>/images/<img>/<vol>          data (raw or qcow2), mode 0660
    <sd>/images/<img>/<vol>.meta     metadata (vdsm/storage/volmeta.py)
    <sd>/images/<img>/<vol>.lease    sanlock resource of the volume, offset 0

A qcow2 volume's backing file is its parent's bare name (same image directory), as
upstream writes it, so a chain stays valid wherever the domain is mounted.

Ordering is what keeps a crash harmless: data is created before metadata and metadata
is written ILLEGAL first, so a volume is LEGAL only once complete; deletion removes the
metadata last, so a half-deleted volume is never mistaken for a good one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vdsm import errors
from vdsm.storage import volmeta
from vdsm.storage.repository import is_uuid
from vdsm.storage.volmeta import VolumeMetadata

log = logging.getLogger("vdsm.storage.filevolume")

META_EXT = ".meta"
LEASE_EXT = ".lease"
VOLUME_MODE = 0o660
IMAGE_DIR_MODE = 0o755
REMOVE_PREFIX = "_remove_me_"


@dataclass(frozen=True)
class VolumePaths:
    data: Path
    meta: Path
    lease: Path

    @classmethod
    def of(cls, image_dir: Path, vol_uuid: str) -> VolumePaths:
        return cls(
            image_dir / vol_uuid,
            image_dir / f"{vol_uuid}{META_EXT}",
            image_dir / f"{vol_uuid}{LEASE_EXT}",
        )

    def exists(self) -> bool:
        return self.data.exists() or self.meta.exists()


# -- metadata --------------------------------------------------------------------------


def read_metadata(meta: Path, vol_uuid: str) -> VolumeMetadata:
    try:
        data = meta.read_bytes()
    except FileNotFoundError:
        raise errors.VolumeDoesNotExist(vol_uuid) from None
    return volmeta.parse(data)


def read_metadata_and_sizes(
    paths: VolumePaths, vol_uuid: str
) -> tuple[VolumeMetadata, tuple[int, int] | None]:
    """Both in one trip to the storage (Volume.getInfo); sizes None if the data file
    cannot be read."""
    md = read_metadata(paths.meta, vol_uuid)
    try:
        return md, sizes(paths.data)
    except OSError:
        return md, None


def write_metadata(meta: Path, md: VolumeMetadata, domain_version: int) -> None:
    """Atomic: a reader sees the old or the new metadata, never a mix."""
    data = md.to_bytes(domain_version)  # MetadataOverflowError before anything is written
    tmp = meta.with_name(meta.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, VOLUME_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, VOLUME_MODE)
    os.rename(tmp, meta)


# -- listing ---------------------------------------------------------------------------


def list_volumes(image_dir: Path) -> list[str]:
    """The volumes of an image: UUID-named files that have metadata."""
    try:
        names = set(os.listdir(image_dir))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if is_uuid(n) and f"{n}{META_EXT}" in names)


def read_image(image_dir: Path) -> dict[str, VolumeMetadata | Exception]:
    """Every volume's metadata (or why it cannot be read)."""
    found: dict[str, VolumeMetadata | Exception] = {}
    for vol in list_volumes(image_dir):
        try:
            found[vol] = read_metadata(VolumePaths.of(image_dir, vol).meta, vol)
        except (errors.VdsmError, OSError) as e:
            found[vol] = e
    return found


def images_holding(images_dir: Path, img_uuid: str) -> bool:
    return (images_dir / img_uuid).is_dir()


def list_images(images_dir: Path) -> list[str]:
    try:
        names = os.listdir(images_dir)
    except FileNotFoundError:
        return []
    # `_remove_me_<uuid>` directories are images being deleted: not listed.
    return sorted(n for n in names if is_uuid(n) and (images_dir / n).is_dir())


# -- creation --------------------------------------------------------------------------


def make_image_dir(image_dir: Path) -> bool:
    """Creates the image directory; answers whether it is new."""
    try:
        image_dir.mkdir(mode=IMAGE_DIR_MODE)
    except FileExistsError:
        return False
    return True


def claim_path(paths: VolumePaths, token: str) -> Path:
    return paths.data.with_name(f".{paths.data.name}.{token}")


def start_volume(image_dir: Path, paths: VolumePaths, vol_uuid: str, token: str) -> None:
    """The image directory if new, then the volume's empty data file, claimed for the
    creating task: the file is made under a name only that task uses and hard-linked
    to the volume's name (EEXIST: another volume has it, 212).  The claim link stays
    until the creation is complete, so a rollback removes a volume only when it is the
    one this task made, never another created under the same id."""
    make_image_dir(image_dir)
    claim = claim_path(paths, token)
    fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, VOLUME_MODE)
    os.close(fd)
    os.chmod(claim, VOLUME_MODE)
    try:
        os.link(claim, paths.data)
    except FileExistsError:
        claim.unlink()
        raise errors.VolumeAlreadyExists(vol_uuid) from None


def end_claim(paths: VolumePaths, token: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        claim_path(paths, token).unlink()


def remove_claimed(paths: VolumePaths, token: str) -> bool:
    """The rollback of a creation: removes the volume if this token's claim holds it;
    answers whether it did."""
    claim = claim_path(paths, token)
    try:
        ours = os.stat(claim)
    except FileNotFoundError:
        return False  # never claimed (or completed): nothing of ours to remove
    try:
        theirs = os.stat(paths.data)
        mine = (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
    except FileNotFoundError:
        mine = True  # only the claim was made
    if mine:
        remove_volume(paths)
    claim.unlink()
    return mine


def finish_volume(paths: VolumePaths, md: VolumeMetadata, domain_version: int) -> None:
    """The (ILLEGAL) metadata and the lease file."""
    write_metadata(paths.meta, md, domain_version)
    create_lease_file(paths.lease)


def create_data_file(path: Path, vol_uuid: str) -> None:
    """Exclusive creation: a volume is never created over another (212)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, VOLUME_MODE)
    except FileExistsError:
        raise errors.VolumeAlreadyExists(vol_uuid) from None
    os.close(fd)
    os.chmod(path, VOLUME_MODE)


def preallocate(path: Path, size: int, offset: int = 0) -> None:
    """Reserves the blocks (ENOSPC when the file system is full)."""
    if size <= offset:
        return
    fd = os.open(path, os.O_WRONLY)
    try:
        os.posix_fallocate(fd, offset, size - offset)
    finally:
        os.close(fd)


def truncate(path: Path, size: int) -> None:
    os.truncate(path, size)


def create_lease_file(path: Path) -> None:
    """An empty lease file; sanlock formats it (and sizes it to the alignment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, VOLUME_MODE)
    os.close(fd)
    os.chmod(path, VOLUME_MODE)


def set_permissions(path: Path) -> None:
    # qemu-img may have created the file with its own mode.
    os.chmod(path, VOLUME_MODE)


# -- removal ---------------------------------------------------------------------------


def remove_volume(paths: VolumePaths) -> None:
    """Data and lease first, metadata last (see the module docstring)."""
    for path in (paths.data, paths.lease, paths.meta):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(FileNotFoundError):
        paths.meta.with_name(paths.meta.name + ".new").unlink()


def remove_image_dir_if_empty(image_dir: Path) -> bool:
    try:
        image_dir.rmdir()
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


def mark_image_for_removal(image_dir: Path) -> Path:
    """Renames the image out of sight (`_remove_me_<img>`) in one atomic step."""
    target = image_dir.with_name(REMOVE_PREFIX + image_dir.name)
    if target.exists():
        shutil.rmtree(target)
    os.rename(image_dir, target)
    return target


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=False)


def garbage(images_dir: Path) -> list[Path]:
    """Images whose deletion was interrupted."""
    try:
        return [images_dir / n for n in os.listdir(images_dir) if n.startswith(REMOVE_PREFIX)]
    except FileNotFoundError:
        return []


# -- rewriting data in place (sparsify) -------------------------------------------------


def replace_data(scratch: Path, data: Path, size: int | None) -> None:
    """The scratch copy takes the data's place in one rename."""
    if size is not None:
        os.truncate(scratch, size)
    os.chmod(scratch, VOLUME_MODE)
    os.rename(scratch, data)


def remove_scratch(scratch: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        scratch.unlink()


# -- VMs -------------------------------------------------------------------------------


def check_readable(paths: list[Path]) -> None:
    for path in paths:
        os.stat(path)  # every layer readable before a VM uses it


def link_image(image_dir: Path, data: list[Path], link: Path) -> None:
    """`link` -> the image directory, replaced atomically when it points elsewhere."""
    check_readable(data)
    link.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if os.readlink(link) == str(image_dir):
            return
        link.unlink()
    tmp = link.with_name(f".{link.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(image_dir, tmp)
    os.rename(tmp, link)


# -- sizes -----------------------------------------------------------------------------


def sizes(path: Path) -> tuple[int, int]:
    """(apparent size, bytes allocated) of a volume's data file."""
    st = os.stat(path)
    return st.st_size, st.st_blocks * 512

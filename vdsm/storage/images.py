"""Images: the Image.* verbs, StorageDomain.getVolumes and
StoragePool.getDomainsContainingImage (contract §2.1, §2.2, §4.1).

An image is a set of volumes forming one qcow2 chain (base ... leaf), kept by the
domain's VolumeStore (a directory on file domains, LVs tagged with the image on block
domains).  Preparing it for a VM checks the whole chain, activates it and links it
under `<run>/storage/<sd>/<img>`, so `<run>/storage/<sd>/<img>/<vol>` names every volume
of the chain and the relative backing names inside the qcow2 headers resolve there.

Deleting an image first marks it removed (`_remove_me_<img>`, one atomic step that
takes it out of every listing), then removes its volumes; an interrupted deletion is
finished by the next one on that domain.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import volmeta
from vdsm.storage.domain import StorageDomain
from vdsm.storage.volume import Volume
from vdsm.storage.volumes import Volumes
from vdsm.storage.volumestore import VolumeStore, activated
from vdsm.system import qemuimg

log = logging.getLogger("vdsm.storage.images")

MOVE_OPERATIONS = {1: "copy", 2: "move"}
SYNC_TYPES = ("INTERNAL", "LEAF", "ALL")


class Images:
    def __init__(self, volumes: Volumes, run_storage_dir: Path) -> None:
        self.volumes = volumes
        self.storage = volumes.storage
        self.run_storage_dir = run_storage_dir
        # (sd, img) -> the store that activated it for a VM, until teardown.
        self._prepared: dict[tuple[str, str], VolumeStore] = {}

    # -- queries -----------------------------------------------------------------------

    async def _image(self, sd_uuid: str, img: str) -> tuple[StorageDomain, dict[str, Volume]]:
        domain = await self.volumes.domain(sd_uuid)
        if not await domain.volumes.image_exists(img):
            raise errors.ImageDoesNotExistInSD(img, sd_uuid)
        return domain, await self.volumes.image(domain, img)

    async def volume_ids(self, sd_uuid: str, img: str) -> list[str]:
        domain = await self.volumes.domain(sd_uuid)
        return await domain.volumes.volume_ids(img)

    async def domains_containing(self, sp_uuid: str, img: str) -> list[str]:
        pool = self.storage.get_pool(sp_uuid)
        found = []
        for sd_uuid in sorted(pool.domains()):
            try:
                domain = await self.volumes.domain(sd_uuid)
                if await domain.volumes.image_exists(img):
                    found.append(sd_uuid)
            except errors.VdsmError as e:
                log.warning("domain %s not searched for image %s: %s", sd_uuid, img, e)
        return found

    # -- prepare / teardown -------------------------------------------------------------

    async def prepare(
        self, sp_uuid: str, sd_uuid: str, img: str, vol: str, allow_illegal: bool
    ) -> dict[str, Any]:
        """The leaf's path for a VM: through the run-dir link when a pool is given (as
        upstream), the store's own data path for the blank pool; each volume of the
        chain with its real path and lease.  The chain stays activated until
        teardown."""
        leaf = await self.volumes.get(sd_uuid, img, vol)
        chain = await self.volumes.chain(leaf)
        if not allow_illegal:
            for volume in chain:
                if volume.md.legality == volmeta.ILLEGAL:
                    raise errors.PrepareIllegalVolumeError(volume.vol)
        store = leaf.store
        vols = [volume.vol for volume in chain]
        await store.activate(img, [vol])
        try:
            if blank(sp_uuid):
                await store.check_readable(img, [vol])
                path = str(leaf.data_path)
            else:
                link = self.run_storage_dir / sd_uuid / img
                await store.link_image(img, vols, link)
                path = str(link / vol)
            leases = [await store.lease(img, v) for v in vols]
        except BaseException:
            if (sd_uuid, img) not in self._prepared:
                await store.deactivate(img, [vol])
            raise
        self._prepared[(sd_uuid, img)] = store
        return {
            "path": path,
            "info": {"type": store.drive_type, "path": path},
            "imgVolumesInfo": [
                {
                    "domainID": sd_uuid,
                    "imageID": img,
                    "volumeID": volume.vol,
                    "path": str(volume.data_path),
                    "leasePath": str(lease.path),
                    "leaseOffset": lease.offset,
                }
                for volume, lease in zip(chain, leases, strict=True)
            ],
        }

    async def teardown(self, sd_uuid: str, img: str, vol: str | None) -> None:
        link = self.run_storage_dir / sd_uuid / img
        # Local run-dir bookkeeping, never the volumes: a symlink or a directory of
        # symlinks (VolumeStore.link_image).
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
        # The store that prepared it, not a fresh look-up: teardown must not wait on
        # storage that hangs (a VM on it is being torn down).
        store = self._prepared.pop((sd_uuid, img), None)
        if store is not None:
            await store.deactivate(img, None)

    # -- SPM: delete -------------------------------------------------------------------

    def delete(self, sp_uuid: str, sd_uuid: str, img: str, force: bool) -> str:
        self.volumes.ensure_spm(sp_uuid)

        async def job(task: Any) -> None:
            domain, _ = await self._image(sd_uuid, img)
            self.volumes.ensure_spm(sp_uuid)
            await self._collect_garbage(domain)
            trash = await domain.volumes.mark_image_removed(img)
            await domain.volumes.purge(trash)
            log.info("deleted image %s/%s", sd_uuid, img)

        return self.volumes.schedule(sp_uuid, "deleteImage", job)

    async def _collect_garbage(self, domain: StorageDomain) -> None:
        for trash in await domain.volumes.garbage():
            log.info("removing %s, left by an interrupted image deletion", trash)
            await domain.volumes.purge(trash)

    def delete_volumes(
        self, sp_uuid: str, sd_uuid: str, img: str, vol_ids: list[str], force: bool
    ) -> str:
        self.volumes.ensure_spm(sp_uuid)

        async def job(task: Any) -> None:
            _, volumes = await self._image(sd_uuid, img)
            missing = [v for v in vol_ids if v not in volumes]
            if missing:
                raise errors.VolumeDoesNotExist(missing[0])
            # Children before their parents, whatever order the caller gave.
            remaining = list(vol_ids)
            while remaining:
                parents = {volumes[v].md.parent for v in remaining}
                ready = [v for v in remaining if v not in parents] or remaining[:1]
                for vol in ready:
                    volume = await self.volumes.get(sd_uuid, img, vol)
                    await self.volumes.delete_volume(volume, force=force, spm=sp_uuid)
                    remaining.remove(vol)

        return self.volumes.schedule(sp_uuid, "deleteVolumes", job)

    # -- SPM: copying between domains --------------------------------------------------

    def clone_structure(self, sp_uuid: str, sd_uuid: str, img: str, dst_sd: str) -> str:
        self.volumes.ensure_spm(sp_uuid)

        async def job(task: Any) -> None:
            await self._clone(task, sp_uuid, sd_uuid, img, dst_sd, copy_data=None)

        return self.volumes.schedule(sp_uuid, "cloneImageStructure", job)

    def sync_data(self, sp_uuid: str, sd_uuid: str, img: str, dst_sd: str, sync_type: str) -> str:
        self.volumes.ensure_spm(sp_uuid)
        if sync_type not in SYNC_TYPES:
            raise errors.InvalidParameterException("syncType", sync_type)

        async def job(task: Any) -> None:
            _, src = await self._image(sd_uuid, img)
            _, dst = await self._image(dst_sd, img)
            chain = await self.volumes.chain(self._leaf(src, img))
            for volume in chain:
                wanted = (
                    sync_type == "ALL"
                    or (sync_type == "LEAF" and volume.is_leaf)
                    or (sync_type == "INTERNAL" and not volume.is_leaf)
                )
                if wanted:
                    target = dst.get(volume.vol)
                    if target is None:
                        raise errors.VolumeDoesNotExist(volume.vol)
                    await self.copy_volume_data(volume, target)

        return self.volumes.schedule(sp_uuid, "syncImageData", job)

    def move(
        self, sp_uuid: str, sd_uuid: str, img: str, dst_sd: str, operation: int, force: bool
    ) -> str:
        self.volumes.ensure_spm(sp_uuid)
        op = MOVE_OPERATIONS.get(int(operation))
        if op is None:
            raise errors.InvalidParameterException("operation", operation)
        if dst_sd == sd_uuid:
            raise errors.InvalidParameterException("dstSdUUID", dst_sd)

        async def job(task: Any) -> None:
            await self._clone(task, sp_uuid, sd_uuid, img, dst_sd, copy_data=True)
            if op == "move":
                domain, _ = await self._image(sd_uuid, img)
                self.volumes.ensure_spm(sp_uuid)
                trash = await domain.volumes.mark_image_removed(img)
                await domain.volumes.purge(trash)
            log.info("%s of image %s from %s to %s done", op, img, sd_uuid, dst_sd)

        return self.volumes.schedule(sp_uuid, "moveImage", job)

    @staticmethod
    def _leaf(volumes: dict[str, Volume], img: str) -> Volume:
        leaves = [v for v in volumes.values() if v.is_leaf]
        if len(leaves) != 1:
            raise errors.ImageIsNotLegalChain(img, f"{len(leaves)} leaf volumes")
        return leaves[0]

    async def _clone(
        self,
        task: Any,
        sp_uuid: str,
        sd_uuid: str,
        img: str,
        dst_sd: str,
        copy_data: bool | None,
    ) -> None:
        """The image's chain re-created on `dst_sd` (same ids, formats, capacities),
        each volume created by the same code as Volume.create; with `copy_data` the
        data follows and the volumes end LEGAL, without it they stay ILLEGAL until
        SDM.copy_data fills them."""
        _, volumes = await self._image(sd_uuid, img)
        dst_domain = await self.volumes.domain(dst_sd)
        if dst_domain.metadata.domain_class != "Data":
            raise errors.InvalidParameterException("dstSdUUID", dst_sd)
        chain = await self.volumes.chain(self._leaf(volumes, img))
        # Created LEGAL (a snapshot needs a legal parent), then each volume is ILLEGAL
        # until its data is in.
        for volume in chain:
            md = volume.md
            await self.volumes._create(
                task,
                dst_sd,
                img,
                volume.vol,
                capacity=md.capacity,
                fmt=md.format,
                alloc=md.type,
                disk_type=md.disktype,
                description=md.description,
                parent_vol=md.parent if volume.has_parent else None,
                legal=True,
                sequence=md.sequence,
                spm=sp_uuid,
            )
        for volume in chain:
            target = await self.volumes.get(dst_sd, img, volume.vol)
            if copy_data:
                await self.copy_volume_data(volume, target)
            else:
                await self.volumes.write(target, target.md.replace(legality=volmeta.ILLEGAL))
        for volume in chain:
            await self.volumes.end_claim(task, dst_sd, img, volume.vol)

    async def copy_volume_data(
        self,
        src: Volume,
        dst: Volume,
        progress: Any = None,
    ) -> None:
        """Copies one volume's own data (not its backing) into an existing volume of
        the same chain shape, then marks it LEGAL with a new generation."""
        if dst.md.capacity < src.md.capacity:
            raise errors.DestinationVolumeTooSmall(
                src=src.vol, src_capacity=src.md.capacity, dst_capacity=dst.md.capacity
            )
        await self.volumes.write(dst, dst.md.replace(legality=volmeta.ILLEGAL))
        backing = dst.md.parent if dst.has_parent else None
        backing_fmt = None
        if backing is not None:
            parent = await self.volumes.get(dst.domain.sd_uuid, dst.img, backing)
            backing_fmt = parent.qemu_format
        await convert_into(
            self.volumes, src, dst, backing=backing, backing_fmt=backing_fmt, progress=progress
        )
        await self.volumes.write(
            dst,
            dst.md.replace(
                legality=volmeta.LEGAL, generation=volmeta.next_generation(dst.md.generation)
            ),
        )


async def fit(volumes: Volumes, dst: Volume, src: Volume, *, whole_chain: bool) -> None:
    """Before qemu-img writes `src`'s data (its chain's with `whole_chain`) into `dst`,
    both activated: a qcow2 volume on a block domain is a thin LV, grown here to what
    the data needs, as upstream does.  RAW LVs are whole already and file volumes grow
    by themselves."""
    if dst.store.drive_type != "block" or dst.qemu_format != qemuimg.QCOW2:
        return
    try:
        raw = await qemuimg.measure(
            str(src.data_path),
            fmt=src.qemu_format,
            out_fmt=qemuimg.QCOW2,
            backing_chain=whole_chain,
            timeout=volumes.qemu_timeout,
        )
    except qemuimg.QemuImgError as e:
        raise errors.VolumeAccessError(e.err) from None
    await dst.store.extend_data(dst.img, dst.vol, int(raw["required"]))


async def convert_into(
    volumes: Volumes,
    src: Volume,
    dst: Volume,
    *,
    backing: str | None = None,
    backing_fmt: str | None = None,
    progress: Any = None,
) -> None:
    """qemu-img writes `src`'s data into the existing `dst`, both activated: on top of
    `backing` (src's own layer only), or with src's whole chain collapsed without it."""
    try:
        async with (
            activated(src.store, src.img, [src.vol]),
            activated(dst.store, dst.img, [dst.vol]),
        ):
            await fit(volumes, dst, src, whole_chain=backing is None)
            await qemuimg.convert(
                str(src.data_path),
                str(dst.data_path),
                src_fmt=src.qemu_format,
                dst_fmt=dst.qemu_format,
                backing=backing,
                backing_fmt=backing_fmt,
                progress=progress,
            )
    except qemuimg.QemuImgError as e:
        raise errors.CopyImageError(str(e)) from None


def blank(value: str | None) -> bool:
    return not value or value == sc.BLANK_UUID


class VolumeCopier:
    """Volume.copy: a volume with its whole chain collapsed into a new base volume
    (another image, possibly another domain); `volType` SHARED makes a template."""

    def __init__(self, images: Images) -> None:
        self.images = images
        self.volumes = images.volumes

    def copy(
        self,
        sp_uuid: str,
        sd_uuid: str,
        img: str,
        vol: str,
        *,
        dst_sd: str,
        dst_img: str,
        dst_vol: str,
        description: str,
        vol_type: int | str,
        vol_format: int | str,
        preallocate: int | str,
    ) -> str:
        self.volumes.ensure_spm(sp_uuid)
        role = volmeta.word(volmeta.ROLES, vol_type, "volType")
        fmt = volmeta.word(volmeta.FORMATS, vol_format, "volFormat")
        alloc = volmeta.word(volmeta.ALLOCATIONS, preallocate, "preallocate")
        if role == "INTERNAL":
            raise errors.InvalidParameterException("volType", vol_type)

        async def job(task: Any) -> None:
            src = await self.volumes.get(sd_uuid, img, vol)
            await self.volumes._create(
                task,
                dst_sd,
                dst_img,
                dst_vol,
                capacity=src.md.capacity,
                fmt=fmt,
                alloc=alloc,
                disk_type=src.md.disktype,
                description=description,
                parent_vol=None,
                legal=False,
                sequence=0,
                spm=sp_uuid,
            )
            dst = await self.volumes.get(dst_sd, dst_img, dst_vol)
            await convert_into(self.volumes, src, dst)
            self.volumes.ensure_spm(sp_uuid)
            await self.volumes.write(dst, dst.md.replace(legality=volmeta.LEGAL, voltype=role))
            await self.volumes.end_claim(task, dst_sd, dst_img, dst_vol)
            log.info("copied %s/%s/%s to %s/%s/%s", sd_uuid, img, vol, dst_sd, dst_img, dst_vol)

        return self.volumes.schedule(sp_uuid, "copyImage", job)

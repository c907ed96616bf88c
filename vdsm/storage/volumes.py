"""Volumes: the Volume.* verbs (contract §2.1, §2.2, §4.3).

Changes are SPM tasks (create, delete, extendSize): each is persisted on the master
domain and pushes its rollback *before* the step it undoes, so a failure, a Task.stop
or a daemon killed half-way ends with the volume either complete and LEGAL or gone
(the next SPM runs the persisted rollback).  Queries (getInfo, getSize, ...) are HSM
verbs any connected host answers.

Where a volume lives is the domain's VolumeStore (vdsm/storage/volumestore.py): its
storage I/O runs in the domain's bulkhead, and every qemu-img step (an async subprocess,
vdsm/system/qemuimg.py) runs with the volume activated, which block domains need.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage import volmeta
from vdsm.storage.blockvolumestore import BlockVolumeStore
from vdsm.storage.domain import StorageDomain
from vdsm.storage.qcow2heads import Qcow2Heads
from vdsm.storage.service import StorageService
from vdsm.storage.volmeta import VolumeMetadata
from vdsm.storage.volume import (
    QEMU_FORMATS,
    ROLLBACK_MODULE,
    Volume,
    halfbaked_rollback,
    parse_size,
    together,
)
from vdsm.storage.volumestore import VolumeStore, activated
from vdsm.system import qemuimg

log = logging.getLogger("vdsm.storage.volumes")


class Volumes:
    def __init__(self, storage: StorageService, *, qemu_timeout: float = 60.0) -> None:
        self.storage = storage
        self.qemu_timeout = qemu_timeout
        self._qcow2_heads = Qcow2Heads(timeout=qemu_timeout)
        storage.rollbacks.register(ROLLBACK_MODULE, "remove_halfbaked", self._rollback_create)
        storage.rollbacks.register(ROLLBACK_MODULE, "set_voltype", self._rollback_voltype)
        storage.rollbacks.register(ROLLBACK_MODULE, "set_capacity", self._rollback_capacity)

    # -- plumbing ----------------------------------------------------------------------

    async def domain(self, sd_uuid: str) -> StorageDomain:
        domain: StorageDomain = await self.storage.domains.produce(sd_uuid)
        try:
            _ = domain.metadata
        except RuntimeError:  # not read yet
            await domain.refresh()
        return domain

    async def get(self, sd_uuid: str, img: str, vol: str) -> Volume:
        domain = await self.domain(sd_uuid)
        md = await domain.volumes.read_metadata(img, vol)
        if md.image != img:
            raise errors.VolumeDoesNotExist(vol)
        return Volume(domain, img, vol, md)

    async def write(self, volume: Volume, md: VolumeMetadata) -> None:
        await volume.store.write_metadata(volume.img, volume.vol, md)
        volume.md = md

    async def image(self, domain: StorageDomain, img: str) -> dict[str, Volume]:
        found = await domain.volumes.read_image(img)
        volumes = {}
        for vol, md in found.items():
            if isinstance(md, Exception):
                log.warning("volume %s/%s/%s unreadable: %s", domain.sd_uuid, img, vol, md)
                continue
            volumes[vol] = Volume(domain, img, vol, md)
        return volumes

    async def children(self, volume: Volume) -> list[str]:
        siblings = await self.image(volume.domain, volume.img)
        return sorted(v for v, other in siblings.items() if other.md.parent == volume.vol)

    async def chain(self, leaf: Volume) -> list[Volume]:
        """Base first, `leaf` last; ImageIsNotLegalChain when a parent is missing or
        the chain loops."""
        volumes = await self.image(leaf.domain, leaf.img)
        chain = [leaf]
        seen = {leaf.vol}
        current = leaf
        while current.has_parent:
            parent = volumes.get(current.md.parent)
            if parent is None or parent.vol in seen:
                raise errors.ImageIsNotLegalChain(leaf.img, current.md.parent)
            seen.add(parent.vol)
            chain.append(parent)
            current = parent
        chain.reverse()
        return chain

    def ensure_spm(self, sp_uuid: str) -> None:
        self.storage.get_spm(sp_uuid).ensure_spm()

    def schedule(
        self,
        sp_uuid: str,
        verb: str,
        job: Any,
        first_recovery: tuple[str, str, str, list[str]] | None = None,
        task_id: str | None = None,
    ) -> str:
        """An SPM task persisted on the master domain."""
        spm = self.storage.get_spm(sp_uuid)
        spm.ensure_spm()
        master = spm.pool.master
        task = self.storage.tasks.create(
            verb,
            job,
            tag="spm",
            persist_dir=master.tasks_dir,
            first_recovery=first_recovery,
            task_id=task_id,
        )
        return str(task.id)

    # -- HSM queries -------------------------------------------------------------------

    async def info(self, sd_uuid: str, img: str, vol: str) -> dict[str, Any]:
        domain = await self.domain(sd_uuid)
        md, sizes = await domain.volumes.read_metadata_and_sizes(img, vol)
        if md.image != img:
            raise errors.VolumeDoesNotExist(vol)
        info = md.info()
        info["uuid"] = vol
        info["allocType"] = md.type
        if sizes is None:
            info["apparentsize"] = info["truesize"] = "0"
            info["status"] = "INVALID"
        else:
            info["apparentsize"], info["truesize"] = str(sizes[0]), str(sizes[1])
            info["status"] = "OK"
        if md.legality == volmeta.ILLEGAL:
            info["status"] = volmeta.ILLEGAL
        info["children"] = []
        lease = await domain.volumes.lease(img, vol)
        info["lease"] = {
            "path": str(lease.path),
            "offset": lease.offset,
            "owners": [],
            "version": None,
        }
        return info

    async def size(self, sd_uuid: str, img: str, vol: str) -> dict[str, str]:
        volume = await self.get(sd_uuid, img, vol)
        apparent, true = await volume.store.sizes(img, vol)
        return {"apparentsize": str(apparent), "truesize": str(true)}

    async def qemu_info(self, sd_uuid: str, img: str, vol: str) -> dict[str, Any]:
        volume = await self.get(sd_uuid, img, vol)
        async with activated(volume.store, img, [vol]):
            raw = await self._qemu(
                qemuimg.info(
                    str(volume.data_path), fmt=volume.qemu_format, timeout=self.qemu_timeout
                )
            )
        result: dict[str, Any] = {
            "virtualsize": raw["virtual-size"],
            "format": raw["format"],
        }
        if "cluster-size" in raw:
            result["clustersize"] = raw["cluster-size"]
        if "backing-filename" in raw:
            result["backingfile"] = raw["backing-filename"]
        specific = raw.get("format-specific", {}).get("data", {})
        if "compat" in specific:
            result["compat"] = specific["compat"]
        if specific.get("bitmaps"):
            result["bitmaps"] = specific["bitmaps"]
        return result

    async def measure(
        self, sd_uuid: str, img: str, vol: str, dst_format: int, backing_chain: bool
    ) -> dict[str, int]:
        volume = await self.get(sd_uuid, img, vol)
        out_fmt = QEMU_FORMATS[volmeta.word(volmeta.FORMATS, dst_format, "dstVolFormat")]
        async with activated(volume.store, img, [vol]):
            raw = await self._qemu(
                qemuimg.measure(
                    str(volume.data_path),
                    fmt=volume.qemu_format,
                    out_fmt=out_fmt,
                    backing_chain=backing_chain,
                    timeout=self.qemu_timeout,
                )
            )
        return {"required": int(raw["required"]), "bitmaps": int(raw.get("bitmaps", 0))}

    async def verify_untrusted(self, sd_uuid: str, img: str, vol: str) -> None:
        """An image uploaded by a user: its format must be what the metadata says and
        it must not point outside the image (no backing file for a base volume)."""
        volume = await self.get(sd_uuid, img, vol)
        # No format given: qemu-img probes it, which is the point of the check.
        async with activated(volume.store, img, [vol]):
            raw = await self._qemu(
                qemuimg.info(str(volume.data_path), timeout=self.qemu_timeout, unsafe=True)
            )
        if raw["format"] != volume.qemu_format:
            raise errors.ImageVerificationError(
                f"format is {raw['format']}, the metadata says {volume.md.format}"
            )
        if raw["virtual-size"] > volume.md.capacity:
            raise errors.ImageVerificationError(
                f"virtual size {raw['virtual-size']} exceeds capacity {volume.md.capacity}"
            )
        backing = raw.get("backing-filename", sc.BLANK_UUID)
        if backing != volume.md.parent:
            raise errors.ImageVerificationError(
                f"backing file {backing!r} is not the parent {volume.md.parent!r}"
            )
        if raw["format"] == qemuimg.QCOW2:
            compat = raw.get("format-specific", {}).get("data", {}).get("compat")
            allowed = ("0.10", "1.1") if volume.domain.metadata.version >= 4 else ("0.10",)
            if compat not in allowed:
                raise errors.ImageVerificationError(f"qcow2 compat {compat!r} not supported")

    async def refresh(self, sd_uuid: str, img: str, vol: str) -> None:
        volume = await self.get(sd_uuid, img, vol)
        await volume.store.refresh_volume(img, vol)

    async def _qemu(self, coro: Any) -> Any:
        try:
            return await coro
        except qemuimg.QemuImgError as e:
            log.warning("%s", e)
            raise errors.VolumeAccessError(e.err) from None

    # -- HSM changes (deprecated but still used by the engine) ---------------------------

    async def set_legality(
        self, sp_uuid: str, sd_uuid: str, img: str, vol: str, legality: str
    ) -> None:
        if legality not in (volmeta.LEGAL, volmeta.ILLEGAL):
            raise errors.InvalidParameterException("legality", legality)
        volume = await self.get(sd_uuid, img, vol)
        await self.write(volume, volume.md.replace(legality=legality))

    async def set_description(
        self, sp_uuid: str, sd_uuid: str, img: str, vol: str, description: str
    ) -> None:
        self.ensure_spm(sp_uuid)
        volume = await self.get(sd_uuid, img, vol)
        await self.write(volume, volume.md.replace(description=description))

    # -- SPM: create -------------------------------------------------------------------

    async def create(
        self,
        sp_uuid: str,
        sd_uuid: str,
        img: str,
        vol: str,
        *,
        size: str,
        vol_format: int | str,
        preallocate: int | str,
        disk_type: str,
        description: str,
        src_img: str,
        src_vol: str,
        initial_size: str | None,
        legal: bool,
        sequence: int,
    ) -> str:
        capacity = parse_size(size)
        fmt = volmeta.word(volmeta.FORMATS, vol_format, "volFormat")
        alloc = volmeta.word(volmeta.ALLOCATIONS, preallocate, "preallocate")
        if str(disk_type) not in volmeta.DISK_TYPES:
            raise errors.InvalidParameterException("diskType", disk_type)
        has_parent = bool(src_vol) and src_vol != sc.BLANK_UUID
        if has_parent and fmt != "COW":
            raise errors.IncorrectFormat(vol, "a snapshot must be COW")
        if has_parent and src_img not in (img, sc.BLANK_UUID, ""):
            raise errors.InvalidParameterException(
                "srcImgUUID", f"{src_img}: the parent must be in the same image"
            )
        wanted: int | None = None
        if initial_size is not None:
            wanted = parse_size(initial_size, "initialSize")
            store = (await self.domain(sd_uuid)).volumes
            if store.drive_type == "block":
                # As upstream: a thin COW LV starts at initialSize (plus qcow2 overhead);
                # a RAW one is always whole.
                if fmt == "RAW" or wanted > capacity * 1.1:
                    raise errors.InvalidParameterException("initialSize", initial_size)
            # As upstream on file domains: COW and sparse RAW volumes grow by themselves.
            elif fmt == "COW" or alloc == "SPARSE" or wanted > capacity:
                raise errors.InvalidParameterException("initialSize", initial_size)
        if not 0 <= sequence <= volmeta.MAX_SEQUENCE:
            raise errors.InvalidParameterException("sequence", sequence)

        async def job(task: Any) -> None:
            await self._create(
                task,
                sd_uuid,
                img,
                vol,
                capacity=capacity,
                fmt=fmt,
                alloc=alloc,
                disk_type=str(disk_type),
                description=description,
                parent_vol=src_vol if has_parent else None,
                legal=legal,
                sequence=sequence,
                spm=sp_uuid,
                initial_size=wanted,
                rollback_declared=True,
            )
            await self.end_claim(task, sd_uuid, img, vol)

        task_id = str(uuid.uuid4())
        return self.schedule(
            sp_uuid,
            "createVolume",
            job,
            first_recovery=halfbaked_rollback(sd_uuid, img, vol, task_id),
            task_id=task_id,
        )

    async def _create(
        self,
        task: Any,
        sd_uuid: str,
        img: str,
        vol: str,
        *,
        capacity: int,
        fmt: str,
        alloc: str,
        disk_type: str,
        description: str,
        parent_vol: str | None,
        legal: bool,
        sequence: int,
        spm: str,
        initial_size: int | None = None,
        rollback_declared: bool = False,
    ) -> None:
        """Creates one volume inside an SPM task.  Its rollback is pushed first, unless
        the task was created with it (`rollback_declared`)."""
        domain = await self.domain(sd_uuid)
        store = domain.volumes
        parent: Volume | None = None
        if parent_vol is not None:
            parent = await self.get(sd_uuid, img, parent_vol)
            if parent.md.legality == volmeta.ILLEGAL:
                raise errors.IllegalVolumeSnapshotError(parent_vol)
            if capacity < parent.md.capacity:
                raise errors.InvalidParameterException(
                    "size", f"{capacity} is smaller than the parent's {parent.md.capacity}"
                )
        if await store.volume_exists(img, vol):
            raise errors.VolumeAlreadyExists(vol)
        md = VolumeMetadata(
            domain=sd_uuid,
            image=img,
            parent=parent.vol if parent else sc.BLANK_UUID,
            capacity=capacity,
            format=fmt,
            type=alloc,
            voltype="LEAF",
            disktype=disk_type,
            description=description,
            legality=volmeta.ILLEGAL,
            sequence=sequence,
        )
        final = md.replace(legality=volmeta.LEGAL) if legal else md
        if store.hides_unfinished:
            md = final  # nobody sees it before end_claim: one metadata write, as upstream
        # Everything below is undone by this rollback, persisted first.
        if not rollback_declared:
            await task.add_recovery(*halfbaked_rollback(sd_uuid, img, vol, task.id))
        self.ensure_spm(spm)
        timings: dict[str, float] = {}
        started = time.monotonic()
        staged: list[bytes] = []
        if (
            isinstance(store, BlockVolumeStore)
            and store.lvm.device_mapper
            and (fmt, alloc, parent) == ("COW", "SPARSE", None)
        ):
            # A new thin qcow2 image is a few clusters of header and tables: qemu-img
            # makes them in a scratch file while lvcreate runs, then one direct write
            # puts them on the LV (instead of qemu-img's start-up after the lvcreate).
            async def stage() -> None:
                compat = "1.1" if domain.metadata.version >= 4 else "0.10"
                try:
                    staged.append(await self._qcow2_heads.get(capacity, compat))
                except qemuimg.QemuImgError as e:
                    raise errors.VolumeCreationError(vol, e.err) from None

            await together(store.start_volume(img, vol, task.id, md, initial_size), stage())
        else:
            await store.start_volume(img, vol, task.id, md, initial_size)
        timings["start"] = time.monotonic() - started

        async def data() -> None:
            begun = time.monotonic()
            try:
                async with activated(store, img, [vol]):
                    if staged and isinstance(store, BlockVolumeStore):
                        await store.write_image_head(img, vol, staged[0])
                    else:
                        await self._make_data(domain, img, vol, capacity, fmt, alloc, parent)
            except OSError as e:
                raise errors.VolumeCreationError(vol, e.strerror or str(e)) from None
            except qemuimg.QemuImgError as e:
                raise errors.VolumeCreationError(vol, e.err) from None
            await store.fix_permissions(img, vol)
            timings["data"] = time.monotonic() - begun

        async def metadata_and_lease() -> None:
            begun = time.monotonic()
            await store.create_metadata_and_lease(img, vol, md)
            timings["metadata and lease"] = time.monotonic() - begun

        # Independent files, and the rollback above removes all of them: the data and
        # the (ILLEGAL) metadata and lease are made side by side.
        self.ensure_spm(spm)
        await together(data(), metadata_and_lease())
        if parent is not None and parent.md.voltype == "LEAF":
            await task.add_recovery(
                f"Restore parent type {parent.vol}",
                ROLLBACK_MODULE,
                "set_voltype",
                [sd_uuid, img, parent.vol, "LEAF"],
            )
            self.ensure_spm(spm)
            await self.write(parent, parent.md.replace(voltype="INTERNAL"))
        if md != final:
            self.ensure_spm(spm)
            await store.write_metadata(img, vol, final)
        log.info(
            "created volume %s/%s/%s (%s %s, %d bytes)", sd_uuid, img, vol, fmt, alloc, capacity
        )
        timings["total"] = time.monotonic() - started
        log.debug("volume %s took %s", vol, ", ".join(f"{k} {v:.3f} s" for k, v in timings.items()))

    async def end_claim(self, task: Any, sd_uuid: str, img: str, vol: str) -> None:
        """The task is done with the volume it created: from here its rollback leaves
        the volume alone (call last, when nothing of the task can fail any more)."""
        domain = await self.domain(sd_uuid)
        await domain.volumes.end_claim(img, vol, task.id)

    async def _make_data(
        self,
        domain: StorageDomain,
        img: str,
        vol: str,
        capacity: int,
        fmt: str,
        alloc: str,
        parent: Volume | None,
    ) -> None:
        """The data of a new volume, already activated."""
        store: VolumeStore = domain.volumes
        path = store.data_path(img, vol)
        compat = "1.1" if domain.metadata.version >= 4 else "0.10"
        if fmt == "RAW":
            await store.resize_data(img, vol, capacity)
            if alloc == "PREALLOCATED":
                await store.allocate_data(img, vol, capacity)
            return
        await qemuimg.create(
            str(path),
            fmt=qemuimg.QCOW2,
            size=capacity,
            compat=compat,
            backing=parent.vol if parent else None,
            backing_fmt=parent.qemu_format if parent else None,
            timeout=self.qemu_timeout,
        )
        if alloc == "PREALLOCATED":
            check = await qemuimg.check(str(path), timeout=self.qemu_timeout)
            offset = -(-int(check.get("image-end-offset", 0)) // 4096) * 4096
            await store.allocate_data(img, vol, capacity, offset)

    async def _rollback_create(self, params: list[str]) -> None:
        sd_uuid, img, vol, task_id = params
        domain = await self.domain(sd_uuid)
        if await domain.volumes.remove_claimed(img, vol, task_id):
            log.info("rolled back the creation of volume %s/%s/%s", sd_uuid, img, vol)
        await domain.volumes.tidy_image(img)

    async def _rollback_voltype(self, params: list[str]) -> None:
        sd_uuid, img, vol, voltype = params
        try:
            volume = await self.get(sd_uuid, img, vol)
        except errors.VolumeDoesNotExist:
            return
        await self.write(volume, volume.md.replace(voltype=voltype))

    async def _rollback_capacity(self, params: list[str]) -> None:
        sd_uuid, img, vol, capacity = params
        try:
            volume = await self.get(sd_uuid, img, vol)
        except errors.VolumeDoesNotExist:
            return
        await self.write(volume, volume.md.replace(capacity=int(capacity)))

    # -- SPM: delete -------------------------------------------------------------------

    def delete(self, sp_uuid: str, sd_uuid: str, img: str, vol: str, force: bool) -> str:
        self.ensure_spm(sp_uuid)

        async def job(task: Any) -> None:
            volume = await self.get(sd_uuid, img, vol)
            await self.delete_volume(volume, force=force, spm=sp_uuid)

        return self.schedule(sp_uuid, "deleteVolume", job)

    async def delete_volume(self, volume: Volume, *, force: bool, spm: str) -> None:
        """Deletes one volume: refused while it has children (204) and, without force,
        when it is a template (223).  Its parent becomes the leaf again."""
        if volume.md.voltype == "SHARED" and not force:
            raise errors.CannotDeleteSharedVolume(volume.vol)
        if await self.children(volume):
            raise errors.VolumeImageHasChildren(volume.vol)
        self.ensure_spm(spm)
        # ILLEGAL first: a crash part-way never leaves a LEGAL volume without its data.
        await self.write(volume, volume.md.replace(legality=volmeta.ILLEGAL))
        await volume.store.remove_volume(volume.img, volume.vol)
        if volume.has_parent:
            try:
                parent = await self.get(volume.domain.sd_uuid, volume.img, volume.md.parent)
            except errors.VolumeDoesNotExist:
                parent = None
            if parent is not None and not await self.children(parent):
                await self.write(parent, parent.md.replace(voltype="LEAF"))
        await volume.store.tidy_image(volume.img)
        log.info("deleted volume %s/%s/%s", volume.domain.sd_uuid, volume.img, volume.vol)

    # -- SPM: extend -------------------------------------------------------------------

    def extend_size(self, sp_uuid: str, sd_uuid: str, img: str, vol: str, new_size: str) -> str:
        self.ensure_spm(sp_uuid)
        capacity = parse_size(new_size, "newSize")

        async def job(task: Any) -> None:
            volume = await self.get(sd_uuid, img, vol)
            await self._extend(task, volume, capacity, sp_uuid)

        return self.schedule(sp_uuid, "extendVolumeSize", job)

    async def _extend(self, task: Any, volume: Volume, capacity: int, spm: str) -> None:
        if capacity < volume.md.capacity:
            raise errors.VolumeResizeValueError(capacity)
        if capacity == volume.md.capacity:
            return
        await task.add_recovery(
            f"Restore capacity {volume.vol}",
            ROLLBACK_MODULE,
            "set_capacity",
            [volume.domain.sd_uuid, volume.img, volume.vol, str(volume.md.capacity)],
        )
        self.ensure_spm(spm)
        try:
            if volume.md.format == "COW":
                async with activated(volume.store, volume.img, [volume.vol]):
                    await qemuimg.resize(
                        str(volume.data_path),
                        capacity,
                        fmt=qemuimg.QCOW2,
                        timeout=self.qemu_timeout,
                    )
            else:
                await volume.store.resize_data(volume.img, volume.vol, capacity)
                if volume.md.type == "PREALLOCATED":
                    await volume.store.allocate_data(volume.img, volume.vol, capacity)
        except (OSError, qemuimg.QemuImgError) as e:
            raise errors.VolumeExtendingError(volume.vol, str(e)) from None
        await self.write(
            volume,
            volume.md.replace(
                capacity=capacity, generation=volmeta.next_generation(volume.md.generation)
            ),
        )
        log.info("extended volume %s/%s to %d bytes", volume.img, volume.vol, capacity)

"""SDM.* verbs: storage host jobs on volumes (contract §1.4 "Host jobs", §2.1).

Unlike SPM tasks these are not persisted: the engine follows them with Host.getJobs and
`|jobs|status|<id>` events, and checks the volume's generation before and after (a job
refuses a volume whose generation is not the one the engine saw, and bumps it when it
changed the data), which is how upstream makes a retried job safe.

Progress comes from qemu-img's own progress output.  An aborted or failed copy leaves
its destination ILLEGAL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vdsm import errors
from vdsm.jobs import HostJob, JobRegistry, Notify
from vdsm.storage import volmeta
from vdsm.storage.images import Images, fit
from vdsm.storage.volume import Volume
from vdsm.storage.volumes import Volumes
from vdsm.storage.volumestore import activated
from vdsm.system import qemuimg

log = logging.getLogger("vdsm.storage.sdm")

JOB_TYPE = "storage"


class Sdm:
    def __init__(
        self, volumes: Volumes, images: Images, jobs: JobRegistry, notify: Notify | None
    ) -> None:
        self.volumes = volumes
        self.images = images
        self.jobs = jobs
        self.notify = notify

    def _start(self, job_id: str, description: str, work: Callable[[HostJob], Any]) -> None:
        job = HostJob(job_id, JOB_TYPE, description, work, self.notify)
        self.jobs.add(job)
        job.start()

    async def _endpoint(self, endpoint: dict[str, Any], role: str) -> Volume:
        kind = endpoint.get("endpoint_type", "div")
        if kind != "div":
            raise errors.UnsupportedOperation(reason=f"{role} endpoint type {kind!r}")
        try:
            volume = await self.volumes.get(
                endpoint["sd_id"], endpoint["img_id"], endpoint["vol_id"]
            )
        except KeyError as e:
            raise errors.InvalidParameterException(role, f"missing {e.args[0]}") from None
        self._check_generation(volume, endpoint.get("generation"))
        return volume

    @staticmethod
    def _check_generation(volume: Volume, generation: Any) -> None:
        if generation is not None and int(generation) != volume.md.generation:
            raise errors.InvalidParameterException(
                "generation", f"{volume.vol} is at {volume.md.generation}, not {generation}"
            )

    # -- verbs -------------------------------------------------------------------------

    def copy_data(self, job_id: str, source: dict[str, Any], destination: dict[str, Any]) -> None:
        async def work(job: HostJob) -> None:
            src = await self._endpoint(source, "source")
            dst = await self._endpoint(destination, "destination")
            job.progress = 0.0

            def progress(value: float) -> None:
                job.progress = value

            await self.images.copy_volume_data(src, dst, progress=progress)
            log.info("copied %s/%s to %s/%s", src.img, src.vol, dst.img, dst.vol)

        self._start(job_id, "copy_data", work)

    def update_volume(self, job_id: str, vol_info: dict[str, Any], attrs: dict[str, Any]) -> None:
        unknown = set(attrs) - {"legality", "description", "generation", "type"}
        if unknown:
            raise errors.InvalidParameterException("vol_attr", sorted(unknown))
        if "legality" in attrs and attrs["legality"] not in (volmeta.LEGAL, volmeta.ILLEGAL):
            raise errors.InvalidParameterException("legality", attrs["legality"])
        if "type" in attrs and attrs["type"] != "SHARED":
            # Upstream only turns volumes into templates this way.
            raise errors.InvalidVolumeUpdate(attrs["type"])

        async def work(job: HostJob) -> None:
            volume = await self._endpoint(vol_info, "vol_info")
            changes: dict[str, Any] = {}
            if "legality" in attrs:
                changes["legality"] = attrs["legality"]
            if "description" in attrs:
                changes["description"] = attrs["description"]
            if "generation" in attrs:
                changes["generation"] = int(attrs["generation"])
            if "type" in attrs:
                if await self.volumes.children(volume) or volume.has_parent:
                    raise errors.InvalidVolumeUpdate(f"{volume.vol} is part of a chain")
                changes["voltype"] = "SHARED"
            await self.volumes.write(volume, volume.md.replace(**changes))

        self._start(job_id, "update_volume", work)

    def amend_volume(
        self, job_id: str, vol_info: dict[str, Any], qcow2_attr: dict[str, Any]
    ) -> None:
        compat = qcow2_attr.get("compat")
        if compat not in ("0.10", "1.1"):
            raise errors.InvalidParameterException("compat", compat)

        async def work(job: HostJob) -> None:
            volume = await self._endpoint(vol_info, "vol_info")
            if volume.md.format != "COW":
                raise errors.IncorrectFormat(volume.vol, "only qcow2 volumes can be amended")
            if volume.domain.metadata.version < 4 and compat == "1.1":
                raise errors.InvalidParameterException("compat", compat)
            await self._data_change(volume, self._amend(volume, compat))

        self._start(job_id, "amend_volume", work)

    def sparsify_volume(self, job_id: str, vol_info: dict[str, Any]) -> None:
        async def work(job: HostJob) -> None:
            volume = await self._endpoint(vol_info, "vol_info")
            await self._data_change(volume, self._sparsify(volume))

        self._start(job_id, "sparsify_volume", work)

    @staticmethod
    async def _amend(volume: Volume, compat: str) -> None:
        async with activated(volume.store, volume.img, [volume.vol]):
            await qemuimg.amend(str(volume.data_path), compat=compat)

    async def _sparsify(self, volume: Volume) -> None:
        """Gives the space of zeroed blocks back: the volume is rewritten through
        qemu-img (which skips zeroes) into a scratch copy that then replaces it."""
        backing = volume.md.parent if volume.has_parent else None
        # A raw base keeps its full size: qemu-img may end the copy at the last data.
        size = volume.md.capacity if backing is None and volume.qemu_format == qemuimg.RAW else None
        async with (
            activated(volume.store, volume.img, [volume.vol]),
            volume.store.rewrite_data(volume.img, volume.vol, size) as scratch,
        ):
            await qemuimg.convert(
                str(volume.data_path),
                str(scratch),
                src_fmt=volume.qemu_format,
                dst_fmt=volume.qemu_format,
                create=True,
                backing=backing,
                compat="1.1" if volume.domain.metadata.version >= 4 else "0.10",
            )

    def merge(self, job_id: str, subchain: dict[str, Any]) -> None:
        async def work(job: HostJob) -> None:
            await self._merge(job, subchain)

        self._start(job_id, "merge", work)

    async def _merge(self, job: HostJob, subchain: dict[str, Any]) -> None:
        """Cold merge of `top` into its parent `base`: qemu-img commit, then the chain
        skips `top` (its child is rebased onto `base`, `base` takes `top`'s role) and
        `top` is left ILLEGAL for the engine to delete."""
        sd, img = subchain["sd_id"], subchain["img_id"]
        top = await self.volumes.get(sd, img, subchain["top_id"])
        base = await self.volumes.get(sd, img, subchain["base_id"])
        self._check_generation(base, subchain.get("base_generation"))
        if top.md.parent != base.vol:
            raise errors.MergeSnapshotsError(f"{top.vol} is not a child of {base.vol}")
        if top.md.legality != volmeta.LEGAL:
            raise errors.MergeSnapshotsError(f"{top.vol} is not legal")
        children = await self.volumes.children(top)
        job.progress = 0.0

        def progress(value: float) -> None:
            job.progress = value * 0.95

        await self.volumes.write(base, base.md.replace(legality=volmeta.ILLEGAL))
        store = top.store
        try:
            async with activated(store, img, [top.vol]):  # top's chain holds base
                if (
                    base.store.drive_type == "block"
                    and base.qemu_format == qemuimg.RAW
                    and top.md.capacity > base.md.capacity
                ):
                    # a raw base LV grows before qemu-img can resize into it
                    await base.store.resize_data(img, base.vol, top.md.capacity)
                # a qcow2 base LV: room for what top brings (measured with its chain)
                await fit(self.volumes, base, top, whole_chain=True)
                if top.md.capacity > base.md.capacity:
                    await qemuimg.resize(str(base.data_path), top.md.capacity, fmt=base.qemu_format)
                await qemuimg.commit(
                    str(top.data_path), base=str(base.data_path), progress=progress
                )
        except qemuimg.QemuImgError as e:
            raise errors.MergeSnapshotsError(str(e)) from None
        for child in children:
            volume = await self.volumes.get(sd, img, child)
            async with activated(store, img, [child]):
                await qemuimg.rebase(str(volume.data_path), base.vol, backing_fmt=base.qemu_format)
            await self.volumes.write(volume, volume.md.replace(parent=base.vol))
        await self.volumes.write(
            base,
            base.md.replace(
                legality=volmeta.LEGAL,
                voltype=top.md.voltype,
                capacity=max(base.md.capacity, top.md.capacity),
                generation=volmeta.next_generation(base.md.generation),
            ),
        )
        await self.volumes.write(top, top.md.replace(legality=volmeta.ILLEGAL, voltype="INTERNAL"))
        log.info("merged %s into %s (image %s)", top.vol, base.vol, img)

    async def _data_change(self, volume: Volume, change: Any) -> None:
        await self.volumes.write(volume, volume.md.replace(legality=volmeta.ILLEGAL))
        try:
            await change
        except qemuimg.QemuImgError as e:
            raise errors.VolumeAccessError(str(e)) from None
        await self.volumes.write(
            volume,
            volume.md.replace(
                legality=volmeta.LEGAL, generation=volmeta.next_generation(volume.md.generation)
            ),
        )

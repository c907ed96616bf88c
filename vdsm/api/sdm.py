"""The `SDM` namespace: storage host jobs, followed with Host.getJobs."""

from __future__ import annotations

from typing import Any

from vdsm.storage.sdm import Sdm


class SdmAPI:
    NAMESPACE = "SDM"

    def __init__(self, *, sdm: Sdm) -> None:
        self.sdm = sdm

    async def copy_data(
        self,
        job_id: str,
        source: dict[str, Any],
        destination: dict[str, Any],
        copy_bitmaps: bool,
    ) -> None:
        self.sdm.copy_data(job_id, source, destination)

    async def update_volume(
        self, job_id: str, vol_info: dict[str, Any], vol_attr: dict[str, Any]
    ) -> None:
        self.sdm.update_volume(job_id, vol_info, vol_attr)

    async def amend_volume(
        self, job_id: str, vol_info: dict[str, Any], qcow2_attr: dict[str, Any]
    ) -> None:
        self.sdm.amend_volume(job_id, vol_info, qcow2_attr)

    async def sparsify_volume(self, job_id: str, vol_info: dict[str, Any]) -> None:
        self.sdm.sparsify_volume(job_id, vol_info)

    async def merge(self, job_id: str, subchain_info: dict[str, Any], merge_bitmaps: bool) -> None:
        self.sdm.merge(job_id, subchain_info)

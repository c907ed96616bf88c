"""One volume as the volume verbs see it (its domain, its metadata as last read), and
the small rules those verbs share: wire sizes, the rollback of a
half-created volume, steps run side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsm import errors
from vdsm.storage import constants as sc
from vdsm.storage.domain import StorageDomain
from vdsm.storage.volmeta import VolumeMetadata
from vdsm.storage.volumestore import VolumeStore
from vdsm.system import qemuimg

ROLLBACK_MODULE = "volume"
QEMU_FORMATS = {"COW": qemuimg.QCOW2, "RAW": qemuimg.RAW}
ALIGN = 512


@dataclass
class Volume:
    """One volume, its metadata as last read."""

    domain: StorageDomain
    img: str
    vol: str
    md: VolumeMetadata

    @property
    def store(self) -> VolumeStore:
        return self.domain.volumes

    @property
    def data_path(self) -> Path:
        """Where qemu-img reads and writes it (on block domains only while activated)."""
        return self.store.data_path(self.img, self.vol)

    @property
    def qemu_format(self) -> str:
        return QEMU_FORMATS[self.md.format]

    @property
    def is_leaf(self) -> bool:
        return self.md.voltype == "LEAF"

    @property
    def has_parent(self) -> bool:
        return self.md.parent != sc.BLANK_UUID


def parse_size(value: str | int, what: str = "size") -> int:
    """Sizes arrive as decimal strings of bytes (the schema refuses ints); they must be
    positive multiples of 512."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise errors.InvalidParameterException(what, value) from None
    if size < 1:
        raise errors.VolumeSizeTooSmall(what, value)
    if size % ALIGN:
        raise errors.InvalidParameterException(what, f"{value} is not a multiple of {ALIGN}")
    return size


def halfbaked_rollback(
    sd_uuid: str, img: str, vol: str, task_id: str
) -> tuple[str, str, str, list[str]]:
    """Removes whatever part of the volume the task created (VolumeStore.remove_claimed
    knows what is the task's) and the image's container if left empty.  The name and
    params are persisted in task files: they must not change."""
    return (
        f"Halfbaked volume rollback {vol}",
        ROLLBACK_MODULE,
        "remove_halfbaked",
        [sd_uuid, img, vol, task_id],
    )


async def together(*coros: Coroutine[Any, Any, None]) -> None:
    """Runs the steps concurrently and waits for all of them, even when one fails: a
    step running in a storage thread cannot be cancelled, and a rollback must never
    race a write still in flight.  The first failure is raised as itself."""
    steps = asyncio.gather(*coros, return_exceptions=True)
    try:
        results = await asyncio.shield(steps)
    except asyncio.CancelledError:
        # Task.stop: the steps are short (qemu-img create has its timeout); letting
        # them end is what keeps the rollback from racing them.
        await asyncio.wait({steps})
        raise
    for result in results:
        if isinstance(result, BaseException):
            raise result

"""The bytes of new, empty qcow2 images, made by qemu-img in a scratch directory.

A thin qcow2 image starts as a few clusters (header, refcount table and block, L1
table).  Block Volume.create makes them here while lvcreate runs, then writes them
onto the new LV in one direct write, instead of starting qemu-img on the LV after the
lvcreate.  qemu-img's output for one capacity and compat level is the same bytes every
time (no ids, no timestamps), so the last few are kept: another volume of a size already
made costs no qemu-img run.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

from vdsm.system import qemuimg

KEPT = 8  # images of that many capacities, a few hundred KiB each


class Qcow2Heads:
    def __init__(self, *, timeout: float, kept: int = KEPT) -> None:
        self.timeout = timeout
        self.kept = kept
        self.made = 0  # qemu-img runs
        self._heads: OrderedDict[tuple[int, str], bytes] = OrderedDict()

    async def get(self, capacity: int, compat: str) -> bytes:
        """An empty qcow2 image of `capacity` bytes at that compat level ("1.1" or
        "0.10"), as qemu-img writes it; QemuImgError if qemu-img fails."""
        key = (capacity, compat)
        if key in self._heads:
            self._heads.move_to_end(key)
            return self._heads[key]
        head = await self._make(capacity, compat)
        self._heads[key] = head
        while len(self._heads) > self.kept:
            self._heads.popitem(last=False)
        return head

    async def _make(self, capacity: int, compat: str) -> bytes:
        scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="vdsm-qcow2-"))
        try:
            path = scratch / "image"
            await qemuimg.create(
                str(path), fmt=qemuimg.QCOW2, size=capacity, compat=compat, timeout=self.timeout
            )
            self.made += 1
            return await asyncio.to_thread(path.read_bytes)
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

"""Errors of block storage domains not in the VG/LV/LVM family of vdsm/errors/lvm.py,
with upstream's codes and texts."""

from __future__ import annotations

from vdsm.errors.storage import StorageError

__all__ = ["MkfsError", "NoFreeMetadataSlot"]


class MkfsError(StorageError, code=608, message="Cannot create filesystem on device"):
    pass


class NoFreeMetadataSlot(StorageError, code=1100, message="Resource exhausted", expected=True):
    """Every volume metadata slot of the domain's `metadata` LV is taken."""

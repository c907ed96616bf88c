"""The block devices this host may use for block storage domains (its "LUNs").

Which devices count is configuration (`[lvm] devices`, globs): on a real host the
multipath devices under /dev/mapper, in tests loop devices.  The list is what LVM is
allowed to see (vdsm.system.lvm builds its filter from it) and what Host.getDeviceList
reports.
"""

from __future__ import annotations

import glob
import os
import stat


def _is_block_device(path: str) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


class BlockDevices:
    def __init__(self, patterns: str) -> None:
        self.patterns = patterns.split()

    def paths(self) -> list[str]:
        """The configured devices present now (a glob per call: a few stat()s)."""
        found: set[str] = set()
        for pattern in self.patterns:
            found.update(p for p in glob.glob(pattern) if _is_block_device(p))
        # /dev/mapper/control is a character device; other non-LUN nodes are
        # filtered by the block-device test above
        return sorted(found)

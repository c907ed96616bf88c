"""getNetworkStatistics: per-interface counters (getStats' `network`) plus rates.

Counters are the kernel's totals since the link appeared; rates are computed against
the previous call's sample, as upstream's older `rxRate`/`txRate` were: the percentage
of the link speed used, as strings ("0.0" on the first call or a counter reset).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vdsm.network.report import SYS_CLASS_NET, link_statistics


class NetworkStatistics:
    def __init__(self, sys_class_net: Path = SYS_CLASS_NET) -> None:
        self._sys = sys_class_net
        self._previous: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def sample(self) -> dict[str, Any]:
        """Blocking (sysfs reads): call it in a worker thread."""
        network = link_statistics(self._sys)
        with self._lock:
            previous, self._previous = self._previous, network
        for name, entry in network.items():
            before = previous.get(name)
            for key in ("rx", "tx"):
                entry[f"{key}Rate"] = _rate(entry, before, key)
        return {
            "network": network,
            "rxDropped": str(sum(int(n["rxDropped"]) for n in network.values())),
            "txDropped": str(sum(int(n["txDropped"]) for n in network.values())),
        }


def _rate(entry: dict[str, Any], before: dict[str, Any] | None, key: str) -> str:
    if before is None:
        return "0.0"
    elapsed = entry["sampleTime"] - before["sampleTime"]
    delta = int(entry[key]) - int(before[key])
    speed_bits = int(entry["speed"]) * 1_000_000
    if elapsed <= 0 or delta < 0 or speed_bits <= 0:
        return "0.0"
    return f"{min(100.0, 100.0 * delta * 8 / elapsed / speed_bits):.1f}"

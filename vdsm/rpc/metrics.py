"""Request, connection and error counters, rendered in the Prometheus text format."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable

# Seconds; RPC calls range from sub-millisecond pings to minute-long storage verbs.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)


class Histogram:
    __slots__ = ("count", "counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
        self.sum += value
        self.count += 1


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = defaultdict(Histogram)
        self.connections: dict[str, int] = defaultdict(int)
        self.connections_total: dict[str, int] = defaultdict(int)
        self.protocol_errors: dict[str, int] = defaultdict(int)
        # Values owned by other components (event counters, phase), read at render time.
        self._external: list[tuple[str, str, str, Callable[[], float]]] = []

    def observe(self, verb: str, code: int, seconds: float) -> None:
        self.requests[(verb, code)] += 1
        self.latency[verb].observe(seconds)

    def connection_opened(self, protocol: str) -> None:
        self.connections[protocol] += 1
        self.connections_total[protocol] += 1

    def connection_closed(self, protocol: str) -> None:
        self.connections[protocol] -= 1

    def protocol_error(self, reason: str) -> None:
        self.protocol_errors[reason] += 1

    def register(self, name: str, kind: str, help_text: str, read: Callable[[], float]) -> None:
        self._external.append((name, kind, help_text, read))

    def render(self) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)

        family(
            "vdsm_rpc_requests_total",
            "counter",
            "JSON-RPC calls by verb and result code.",
            (
                f'vdsm_rpc_requests_total{{verb="{_label(v)}",code="{c}"}} {n}'
                for (v, c), n in sorted(self.requests.items())
            ),
        )
        samples = []
        for verb, hist in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip(LATENCY_BUCKETS, hist.counts, strict=False):
                cumulative += count
                labels = f'verb="{_label(verb)}",le="{bound}"'
                samples.append(f"vdsm_rpc_request_seconds_bucket{{{labels}}} {cumulative}")
            samples.append(
                f'vdsm_rpc_request_seconds_bucket{{verb="{_label(verb)}",le="+Inf"}} {hist.count}'
            )
            samples.append(f'vdsm_rpc_request_seconds_sum{{verb="{_label(verb)}"}} {hist.sum:.6f}')
            samples.append(f'vdsm_rpc_request_seconds_count{{verb="{_label(verb)}"}} {hist.count}')
        family("vdsm_rpc_request_seconds", "histogram", "JSON-RPC call latency.", samples)
        family(
            "vdsm_connections",
            "gauge",
            "Open client connections by protocol.",
            (
                f'vdsm_connections{{protocol="{p}"}} {n}'
                for p, n in sorted(self.connections.items())
            ),
        )
        family(
            "vdsm_connections_total",
            "counter",
            "Accepted client connections by protocol.",
            (
                f'vdsm_connections_total{{protocol="{p}"}} {n}'
                for p, n in sorted(self.connections_total.items())
            ),
        )
        family(
            "vdsm_protocol_errors_total",
            "counter",
            "Connections refused or cut, by reason.",
            (
                f'vdsm_protocol_errors_total{{reason="{_label(r)}"}} {n}'
                for r, n in sorted(self.protocol_errors.items())
            ),
        )
        for name, kind, help_text, read in self._external:
            family(name, kind, help_text, [f"{name} {read()}"])
        return "\n".join(lines) + "\n"

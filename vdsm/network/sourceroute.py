"""Source routing: each network with a static IPv4 address and a gateway gets its own
routing table, so that traffic from (and to) its subnet leaves through its own gateway
even when the host's default route is on another network (contract §6.1 `gateway`).

As upstream does (its nmstate-era layout): the table id is the Adler-32 checksum of the
network's top device name (a bridge, or the NIC/bond/VLAN of a bridgeless network),
which is stable across address changes and never one of the reserved tables (0, 253,
254, 255: a checksum of a non-empty name is at least 0x20000).  The table holds the
subnet's link route and a default route via the gateway; two rules at priority 3200
send packets `from <subnet>` and `to <subnet>` to it.  The default-route network gets
the same, besides its default route in the main table.  IPv4 only, as upstream.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass

RULE_PRIORITY = 3200
DEFAULT_DST = "0.0.0.0/0"
# The kernel's own tables: never source-routing tables.
RESERVED_TABLES = frozenset({0, 253, 254, 255})


def table_id(device: str) -> int:
    return zlib.adler32(device.encode("utf-8"))


@dataclass(frozen=True)
class TableRoute:
    dst: str  # "a.b.c.d/p"
    gateway: str | None  # None: a link route (on the subnet itself)


@dataclass(frozen=True)
class RuleSpec:
    src: str | None  # "a.b.c.d/p" or None
    dst: str | None


@dataclass(frozen=True)
class SourceRoute:
    table: int
    subnet: str
    gateway: str

    @classmethod
    def of(cls, device: str, ipaddr: str, netmask: str, gateway: str) -> SourceRoute:
        subnet = ipaddress.IPv4Interface(f"{ipaddr}/{netmask}").network
        return cls(table_id(device), str(subnet), gateway)

    def routes(self) -> set[TableRoute]:
        return {TableRoute(self.subnet, None), TableRoute(DEFAULT_DST, self.gateway)}

    def rules(self) -> set[RuleSpec]:
        return {RuleSpec(self.subnet, None), RuleSpec(None, self.subnet)}

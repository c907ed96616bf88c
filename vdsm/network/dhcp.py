"""DHCPv4 for `bootproto: dhcp` networks: one busybox `udhcpc` per top device.

No NetworkManager and no dhclient here: busybox's udhcpc (a Debian essential's static
sibling, `busybox-static`, or `busybox`) runs in the foreground as the daemon's child,
with an event script of ours that puts the lease on the device with its lifetime (so
the address is dynamic, which is how the capabilities tell `dhcpv4`) and, for the
default-route network, the default route via the offered router; any other DHCP network
gets source routing (vdsm/network/sourceroute.py): the subnet and the router in its own
table, and the rules from/to the leased subnet, as upstream does once a lease arrives.

Clients are the daemon's: `sync(config)` makes the set of running clients match the
configuration's DHCP networks (after a setupNetworks, a rollback or a restore), and
`stop_all()` ends them when the daemon stops; the next start syncs them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from vdsm.network.model import NetConfig
from vdsm.network.running import KernelState
from vdsm.network.sourceroute import table_id

log = logging.getLogger("vdsm.network.dhcp")

SCRIPT = """#!/bin/sh
# udhcpc event script written by vdsm: apply the lease to $interface.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface" dynamic 2>/dev/null
    if [ -n "$VDSM_ROUTE_TABLE" ]; then
        ip -4 route flush table "$VDSM_ROUTE_TABLE" dev "$interface" 2>/dev/null
        while ip -4 rule del priority 3200 table "$VDSM_ROUTE_TABLE" 2>/dev/null; do :; done
    fi
    ;;
bound|renew)
    ip -4 addr replace "$ip/${mask:-24}" dev "$interface" \\
        valid_lft "${lease:-3600}" preferred_lft "${lease:-3600}"
    if [ "$VDSM_DEFAULT_ROUTE" = 1 ] && [ -n "$router" ]; then
        set -- $router
        ip -4 route replace default via "$1" dev "$interface"
    elif [ -n "$VDSM_ROUTE_TABLE" ]; then
        # Source routing: the subnet and the router in the network's own table,
        # and the rules that lead to it (replacing those of an earlier lease).
        eval "$("$VDSM_BUSYBOX" ipcalc -n "$ip/${mask:-24}")"
        subnet="$NETWORK/${mask:-24}"
        ip -4 route replace "$subnet" dev "$interface" table "$VDSM_ROUTE_TABLE"
        if [ -n "$router" ]; then
            set -- $router
            ip -4 route replace default via "$1" dev "$interface" table "$VDSM_ROUTE_TABLE"
        fi
        while ip -4 rule del priority 3200 table "$VDSM_ROUTE_TABLE" 2>/dev/null; do :; done
        ip -4 rule add to "$subnet" table "$VDSM_ROUTE_TABLE" priority 3200
        ip -4 rule add from "$subnet" table "$VDSM_ROUTE_TABLE" priority 3200
    fi
    ;;
esac
exit 0
"""


def top_device(name: str, net: Mapping[str, Any]) -> str:
    """The device carrying a network's IP configuration: its bridge, else its lower
    device (`<base>.<vlan>` or the NIC/bond)."""
    base = net.get("nic") or net.get("bonding") or ""
    lower = f"{base}.{net['vlan']}" if base and "vlan" in net else base
    return name if net.get("bridged", True) else lower


def dhcp_devices(config: NetConfig) -> dict[str, bool]:
    """Top device -> default route wanted, for every DHCP network of `config`."""
    return {
        top_device(name, net): bool(net.get("defaultRoute"))
        for name, net in config.networks.items()
        if net.get("bootproto") == "dhcp"
    }


class DhcpClients:
    def __init__(self, run_dir: Path, busybox: str | None = None) -> None:
        self._dir = run_dir / "dhcp"
        self._busybox = busybox or shutil.which("busybox")
        self._clients: dict[str, tuple[bool, asyncio.subprocess.Process]] = {}

    def available(self) -> bool:
        return self._busybox is not None

    def running(self) -> dict[str, bool]:
        return {
            dev: route for dev, (route, proc) in self._clients.items() if proc.returncode is None
        }

    async def sync(self, config: NetConfig) -> None:
        wanted = dhcp_devices(config)
        for dev, (route, proc) in list(self._clients.items()):
            if wanted.get(dev) != route or proc.returncode is not None:
                await self.stop(dev)
        for dev, route in sorted(wanted.items()):
            if dev not in self._clients:
                await self.start(dev, route)

    async def start(self, device: str, default_route: bool) -> None:
        if self._busybox is None:
            log.error("no busybox: cannot run a DHCP client on %s", device)
            return
        script = await asyncio.to_thread(self._write_script)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "VDSM_DEFAULT_ROUTE": "1" if default_route else "0",
            "VDSM_BUSYBOX": self._busybox,
        }
        if not default_route:
            # As upstream: a DHCP network without the default route gets its lease's
            # routes in its own table, and the source-routing rules once it has a lease.
            env["VDSM_ROUTE_TABLE"] = str(table_id(device))
        proc = await asyncio.create_subprocess_exec(
            self._busybox,
            "udhcpc",
            "-f",  # foreground: our child, ended by stop()
            "-i",
            device,
            "-s",
            str(script),
            "-t",
            "3",
            "-T",
            "1",
            "-A",
            "2",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
        )
        self._clients[device] = (default_route, proc)
        log.info("DHCP client for %s started (pid %d)", device, proc.pid)

    async def stop(self, device: str) -> None:
        entry = self._clients.pop(device, None)
        if entry is None:
            return
        proc = entry[1]
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        log.info("DHCP client for %s stopped", device)

    async def stop_all(self) -> None:
        for device in list(self._clients):
            await self.stop(device)

    async def wait_for_lease(
        self, devices: list[str], state: Callable[[], Awaitable[KernelState]], timeout: float
    ) -> list[str]:
        """The devices still without a dynamic IPv4 address after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        missing = list(devices)
        while missing:
            kernel = await state()
            missing = [d for d in missing if not kernel.dynamic.get(d)]
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        return missing

    def _write_script(self) -> Path:
        self._dir.mkdir(parents=True, exist_ok=True)
        path = self._dir / "udhcpc-event"
        if not path.exists() or path.read_text() != SCRIPT:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(SCRIPT)
            tmp.chmod(0o755)
            tmp.replace(path)
        return path

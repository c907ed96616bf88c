"""Tells the engine to refresh capabilities when the host's network changes.

The monitor listens to netlink link and address notifications.  Each one drops the
cached network report at once (a getCapabilities arriving in the middle of a burst
sees fresh data); the first one of a burst also starts a `debounce` window, at whose
end `|net|host_conn|no_id` is published once (contract §1.4).  An address notification
for an address the host already has is a lifetime refresh (IPv6 router advertisements
send them every few minutes) and is ignored.

With `only_report_changes=True` the report is rebuilt at the end of the window and the
event is published only if it differs from the one last announced, so changes the
report does not show (a VM's tap device appearing) cost one rebuild and no event.

`run()` is a daemon background task: it returns only by cancellation, re-subscribing
after netlink errors.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any

from vdsm.events import EventBus
from vdsm.network.report import NetworkReport
from vdsm.system.netlink import Netlink, NetlinkEvent

log = logging.getLogger("vdsm.network.monitor")

EVENT = "|net|host_conn|no_id"


class NetworkChangeMonitor:
    def __init__(
        self,
        bus: EventBus,
        netlink: Netlink,
        report: NetworkReport | None = None,
        *,
        debounce: float = 1.0,
        retry_delay: float = 5.0,
        only_report_changes: bool = False,
    ) -> None:
        if only_report_changes and report is None:
            raise ValueError("only_report_changes needs a report to compare")
        self._bus = bus
        self._netlink = netlink
        self._report = report
        self._debounce = debounce
        self._retry_delay = retry_delay
        self._filter = only_report_changes
        self._dirty = asyncio.Event()
        self._announced: str | None = None
        self._addresses: set[tuple[int, str]] = set()
        # Set once the netlink subscription is bound; changes after it are seen.
        self.ready = asyncio.Event()
        self.published = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(), name="netlink-listen")
            group.create_task(self._announce(), name="netlink-announce")

    async def _listen(self) -> None:
        while True:
            try:
                with self._netlink.watch(("link", "addr")) as events:
                    await self._learn_addresses()
                    self.ready.set()
                    async for event in events:
                        self._changed(event)
            except OSError:
                log.exception("netlink subscription failed; retrying in %g s", self._retry_delay)
                self.ready.clear()
                # We may have missed changes while unsubscribed.
                self._changed(NetlinkEvent("overflow", "", 0))
                await asyncio.sleep(self._retry_delay)

    async def _learn_addresses(self) -> None:
        try:
            snapshot = await self._netlink.snapshot()
        except (OSError, TimeoutError) as e:
            log.warning("cannot list addresses: %s", e)
            return
        self._addresses = {(a.index, a.cidr) for a in snapshot.addresses}

    def _changed(self, event: NetlinkEvent) -> None:
        if event.kind == "addr" and _link_local(event.address):
            # Not in the report (link-scope addresses are left out), and every new link
            # brings one a moment later, once IPv6 duplicate address detection is done.
            return
        if event.kind == "addr" and event.address:
            key = (event.index, event.address)
            if event.action == "new":
                if key in self._addresses:
                    return
                self._addresses.add(key)
            else:
                self._addresses.discard(key)
        log.debug("netlink %s %s index=%d %s", event.kind, event.action, event.index, event.name)
        if self._report is not None:
            self._report.invalidate()
        self._dirty.set()

    async def _announce(self) -> None:
        if self._filter:
            # The baseline: what a getCapabilities made now would show.
            try:
                self._announced = await self._fingerprint()
            except Exception:
                log.exception("cannot build the network report")
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._debounce)
            self._dirty.clear()
            if self._report is not None:
                self._report.invalidate()
            if not self._filter:
                self._publish()
                continue
            try:
                current = await self._fingerprint()
            except Exception:
                log.exception("cannot rebuild the network report; announcing the change")
                self._publish()
                continue
            if current != self._announced:
                self._announced = current
                self._publish()

    async def _fingerprint(self) -> str:
        assert self._report is not None
        report: dict[str, Any] = await self._report.report()
        return json.dumps(report, sort_keys=True, default=str)

    def _publish(self) -> None:
        self.published += 1
        log.info("host network changed; notifying clients")
        self._bus.publish(EVENT, {})


def _link_local(cidr: str) -> bool:
    try:
        ip = ipaddress.ip_interface(cidr).ip
    except ValueError:
        return False
    # IPv6 fe80::/10 always has link scope; an IPv4 169.254/16 address may be global.
    return ip.version == 6 and ip.is_link_local

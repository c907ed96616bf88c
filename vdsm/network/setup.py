"""setupNetworks and setSafeNetworkConfig (contract §6.1, §6.2).

The flow of one setupNetworks: canonicalise the request, merge it into the running
configuration and validate the result against the host's links (nothing touched yet)
-> `before_network_setup` hooks, which may rewrite the request (it is checked again)
-> plan the kernel changes from the running configuration, the wanted one and what the
kernel has -> apply them as one transaction -> record the new running configuration
-> wait for a client to prove it still reaches the host (`connectivityCheck`), else
revert the transaction and the record and answer 10 -> `after_network_setup` (or
`after_network_setup_fail` on any failure).

One network change at a time: a call arriving while another runs answers 40 at once
rather than queueing behind a change that may cut the link it came over.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from vdsm import errors
from vdsm.errors.network import (
    ConnectivityCheckFailed,
    NetworkHookFailed,
    NetworkIfupFailed,
    NetworkParamsError,
)
from vdsm.network import model, plan
from vdsm.network.apply import Applier, TransactionFailed
from vdsm.network.connectivity import ConnectivityMonitor
from vdsm.network.dhcp import DhcpClients, dhcp_devices, top_device
from vdsm.network.persistence import NetPersistence
from vdsm.network.report import SYS_CLASS_NET
from vdsm.network.resolver import Resolver, wanted_nameservers
from vdsm.network.running import KernelState, kernel_state, read_bridge_opts
from vdsm.system.netlink import Netlink

log = logging.getLogger("vdsm.network.setup")

DONE = {"code": 0, "message": "Done"}
DHCP_TIMEOUT = 30.0  # seconds a blockingdhcp call waits for its leases


class HookResultLike(Protocol):
    json_data: Any
    errors: list[str]


class Hooks(Protocol):
    """vdsm.hooks.runner.HookRunner, as far as networking uses it."""

    async def run(
        self, point: str, *, json_data: Any = None, raise_on_error: bool = True
    ) -> HookResultLike: ...


class Invalidatable(Protocol):
    def invalidate(self) -> None: ...


class NetworkService:
    def __init__(
        self,
        *,
        netlink: Netlink,
        persistence: NetPersistence,
        applier: Applier,
        connectivity: ConnectivityMonitor,
        report: Invalidatable | None = None,
        hooks: Hooks | None = None,
        dhcp: DhcpClients | None = None,
        resolver: Resolver | None = None,
        sys_class_net: Path = SYS_CLASS_NET,
    ) -> None:
        self.netlink = netlink
        self.persistence = persistence
        self.applier = applier
        self.connectivity = connectivity
        self.report = report
        self.hooks = hooks
        self.dhcp = dhcp
        self.resolver = resolver
        self._sys = sys_class_net
        self._lock = asyncio.Lock()
        self._running: model.NetConfig | None = None
        self._safe: model.NetConfig | None = None  # None: not read yet
        self._host_resolvers: list[str] = []
        self._tasks: set[asyncio.Future[Any]] = set()

    # -- state ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Reads the running configuration and the dirty flag (at start, after a restore)."""
        self._running = await asyncio.to_thread(self.persistence.running.load)
        self._safe = await asyncio.to_thread(self.persistence.safe.load)
        await self._sync_dhcp(self._running)

    async def close(self) -> None:
        """At daemon stop: the DHCP clients are our children."""
        if self.dhcp is not None:
            await self.dhcp.stop_all()

    async def _sync_dhcp(self, config: model.NetConfig) -> None:
        if self.dhcp is not None:
            await self.dhcp.sync(config)

    def running_config(self) -> model.NetConfig:
        return self._running.copy() if self._running is not None else model.NetConfig()

    def config_dirty(self) -> bool:
        """The running configuration differs from the safe one (netConfigDirty)."""
        if self._running is None or self._safe is None:
            return False
        return self._running != self._safe

    async def kernel(self) -> KernelState:
        snapshot = await self.netlink.snapshot(rules=True)
        return await asyncio.to_thread(kernel_state, snapshot, self._sys)

    def _busy(self) -> errors.ResourceUnavailable:
        return errors.ResourceUnavailable("another network change is in progress")

    # -- setupNetworks -------------------------------------------------------------------

    async def setup(
        self,
        networks: Mapping[str, Any],
        bondings: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any:
        if self._lock.locked():
            raise self._busy()
        await self._lock.acquire()  # free: taken at once, before anyone else can look
        # A change is never abandoned half-way: a caller's timeout or cancellation
        # leaves the task to finish (or roll back) under the lock.
        task = asyncio.ensure_future(self._setup_and_release(networks, bondings, options))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def _setup_and_release(
        self, networks: Mapping[str, Any], bondings: Mapping[str, Any], options: Mapping[str, Any]
    ) -> Any:
        try:
            return await self._setup(dict(networks), dict(bondings), dict(options))
        finally:
            self._lock.release()

    async def _setup(
        self, networks: dict[str, Any], bondings: dict[str, Any], options: dict[str, Any]
    ) -> Any:
        started = time.monotonic()
        running = await asyncio.to_thread(self.persistence.running.load)
        kernel = await self.kernel()
        self._host_resolvers = (
            await asyncio.to_thread(self.resolver.current) if self.resolver is not None else []
        )
        request, wanted = self._check(running, kernel, networks, bondings, options)
        wire = {"networks": networks, "bondings": bondings, "options": options}
        if self.hooks is not None and not request.options["dryRun"]:
            rewritten = await self._before_hooks(wire)
            if rewritten != wire:
                log.info("before_network_setup hooks rewrote the request")
                wire = rewritten
                request, wanted = self._check(
                    running,
                    kernel,
                    wire.get("networks") or {},
                    wire.get("bondings") or {},
                    wire.get("options") or {},
                )
        steps = await self._plan(running, wanted, kernel)
        if request.options["dryRun"]:
            return [step.describe() for step in steps]
        planned_at = time.monotonic()
        log.info(
            "setupNetworks: %d kernel changes, planned in %.3f s", len(steps), planned_at - started
        )
        try:
            done = await self.applier.run(steps)
        except TransactionFailed as e:
            await self._after_hooks("after_network_setup_fail", wire)
            detail = f"; undo problems: {e.undo_errors}" if e.undo_errors else ""
            raise NetworkIfupFailed(f"{e}{detail}") from None
        except TimeoutError as e:
            await self._after_hooks("after_network_setup_fail", wire)
            raise NetworkIfupFailed(f"network changes timed out: {e}") from None
        applied_at = time.monotonic()
        log.info("setupNetworks: kernel changes made in %.3f s", applied_at - planned_at)
        await self._record(wanted)
        await self._sync_dhcp(wanted)
        resolv_before = await self._set_resolvers(wanted)
        opts = request.options
        if request.blocking_dhcp and self.dhcp is not None:
            tops = [top_device(n, wanted.networks[n]) for n in sorted(request.blocking_dhcp)]
            missing = await self.dhcp.wait_for_lease(tops, self.kernel, DHCP_TIMEOUT)
            if missing:
                await self._rollback(done, running, wire, resolv_before)
                raise NetworkIfupFailed(f"no DHCP lease on {', '.join(missing)}")
        if opts["connectivityCheck"] and not opts["_inRollback"]:
            timeout = opts["connectivityTimeout"]
            if not await self.connectivity.wait(applied_at, timeout):
                log.warning("no client confirmed connectivity in %s s: rolling back", timeout)
                await self._rollback(done, running, wire, resolv_before)
                raise ConnectivityCheckFailed()
        if opts["commitOnSuccess"]:
            await self._commit()
        await self._after_hooks("after_network_setup", wire)
        log.info("setupNetworks done in %.3f s", time.monotonic() - started)
        return dict(DONE)

    async def _plan(
        self, running: model.NetConfig, wanted: model.NetConfig, kernel: KernelState
    ) -> list[plan.Step]:
        new = plan.layout(wanted)
        keys = plan.bridge_opt_keys(new)
        if keys:
            kernel.bridge_opts = await asyncio.to_thread(read_bridge_opts, keys, self._sys)
        return plan.plan(plan.layout(running), new, kernel)

    async def _set_resolvers(self, config: model.NetConfig) -> str | None:
        """The previous resolv.conf text when it was rewritten, for a rollback."""
        if self.resolver is None:
            return None
        try:
            return await asyncio.to_thread(self.resolver.apply, wanted_nameservers(config))
        except OSError as e:
            log.error("cannot write the resolvers to %s: %s", self.resolver.path, e)
            return None

    async def _rollback(
        self,
        done: list[plan.Step],
        running: model.NetConfig,
        wire: dict[str, Any],
        resolv_before: str | None,
    ) -> None:
        problems = await self.applier.revert(done)
        await self._record(running)
        await self._sync_dhcp(running)
        if resolv_before is not None and self.resolver is not None:
            await asyncio.to_thread(self.resolver.restore, resolv_before)
        await self._after_hooks("after_network_setup_fail", wire)
        if problems:
            log.error("rollback incomplete: %s", problems)

    def _check(
        self,
        running: model.NetConfig,
        kernel: KernelState,
        networks: Mapping[str, Any],
        bondings: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> tuple[model.Request, model.NetConfig]:
        request = model.canonical_request(networks, bondings, options, self._host_resolvers)
        wanted = model.merge(running, request)
        host = model.HostLinks(kernel.nics(), kernel.others())
        model.validate(wanted, host, request)
        if dhcp_devices(wanted) and (self.dhcp is None or not self.dhcp.available()):
            raise NetworkParamsError("bootproto dhcp is not supported: no DHCP client here")
        return request, wanted

    async def _record(self, config: model.NetConfig) -> None:
        await asyncio.to_thread(self.persistence.running.save, config)
        self._running = config.copy()
        self._invalidate()

    def _invalidate(self) -> None:
        if self.report is not None:
            self.report.invalidate()

    async def _before_hooks(self, wire: dict[str, Any]) -> dict[str, Any]:
        assert self.hooks is not None
        data = {"request": copy.deepcopy(wire)}
        try:
            result = await self.hooks.run("before_network_setup", json_data=data)
        except errors.HookError as e:
            # The script's own words (its stderr) rather than the 1500 wrapper's repr.
            outputs = getattr(getattr(e, "result", None), "errors", [])
            said = [text.strip() for text in outputs if text.strip()]
            raise NetworkHookFailed(said[-1] if said else str(e)) from None
        returned = result.json_data
        if isinstance(returned, Mapping) and isinstance(returned.get("request"), Mapping):
            return dict(returned["request"])
        return wire

    async def _after_hooks(self, point: str, wire: dict[str, Any]) -> None:
        if self.hooks is None:
            return
        try:
            result = await self.hooks.run(
                point, json_data={"request": copy.deepcopy(wire)}, raise_on_error=False
            )
        except Exception:
            log.exception("%s hooks failed", point)
            return
        for error in result.errors:
            log.warning("%s hook failed: %s", point, error)

    # -- setSafeNetworkConfig -------------------------------------------------------------

    async def set_safe(self) -> None:
        if self._lock.locked():
            raise self._busy()
        async with self._lock:
            await self._commit()
            log.info("running network configuration made safe")

    async def _commit(self) -> None:
        running = await asyncio.to_thread(self.persistence.running.load)
        await asyncio.to_thread(self.persistence.safe.save, running)
        self._safe = running

    # -- restoring the safe configuration ---------------------------------------------------

    async def restore_safe(self) -> list[dict[str, Any]]:
        """Makes the kernel and the running configuration the safe configuration."""
        async with self._lock:
            safe = await asyncio.to_thread(self.persistence.safe.load)
            running = await asyncio.to_thread(self.persistence.running.load)
            kernel = await self.kernel()
            steps = await self._plan(running, safe, kernel)
            log.info("restoring the safe network configuration: %d kernel changes", len(steps))
            if steps:
                try:
                    await self.applier.run(steps)
                except TransactionFailed as e:
                    raise NetworkIfupFailed(f"cannot restore the safe configuration: {e}") from None
            await self._record(safe)
            await self._sync_dhcp(safe)
            await self._set_resolvers(safe)
            self._safe = safe.copy()
            return [step.describe() for step in steps]

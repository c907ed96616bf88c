"""Async adapter over python3-libvirt: one connection, every call bounded.

libvirt's Python binding is blocking, so each call runs in a worker thread behind one
`Bulkhead` (a few concurrent calls, each with the configured timeout).  The binding is
imported on first connect: importing it costs ~12 MB of RSS and is not needed until a
caller asks for something libvirt knows.

Works with `qemu:///system` (a running libvirtd or virtqemud) and with the in-process
`test:///default` driver.  Domain lifecycle events arrive through libvirtaio on the
event loop: the asyncio event implementation is registered before the first connection
opens, and the lifecycle callback is registered again on every (re)connection.

Domain code never imports libvirt: it addresses domains by UUID string and reads the
numeric constants below (libvirt's stable ABI values).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vdsm.system.blocking import BlockingCallTimeout, Bulkhead

log = logging.getLogger("vdsm.system.libvirt")

# libvirt encodes versions as major * 1_000_000 + minor * 1000 + micro.
Version = tuple[int, int, int]


class LibvirtError(Exception):
    """Base of the errors this adapter raises."""


class LibvirtUnavailable(LibvirtError):
    """No connection to libvirt (refused, not running, timed out, or lost)."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"cannot connect to libvirt at {uri}: {reason}")
        self.uri = uri
        self.reason = reason


class LibvirtCallError(LibvirtError):
    """libvirt answered a call with an error (the connection itself is fine)."""

    def __init__(self, call: str, reason: str, code: int | None = None) -> None:
        super().__init__(f"libvirt {call} failed: {reason}")
        self.call = call
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class LibvirtVersions:
    library: Version  # libvirt of the daemon we talk to (getLibVersion)
    hypervisor: Version | None  # e.g. QEMU; None when the driver does not say
    driver: str  # "QEMU", "TEST", ...


class NoSuchDomain(LibvirtCallError):
    """The domain asked for is not (or no longer) known to libvirt."""


# libvirt's VIR_ERR_NO_DOMAIN.
_ERR_NO_DOMAIN = 42

# virDomainState
DOMAIN_RUNNING = 1
DOMAIN_BLOCKED = 2
DOMAIN_PAUSED = 3
DOMAIN_SHUTDOWN = 4
DOMAIN_SHUTOFF = 5
DOMAIN_CRASHED = 6
DOMAIN_PMSUSPENDED = 7

# virDomainEventType and the details the VM state machine looks at.
EVENT_DEFINED = 0
EVENT_UNDEFINED = 1
EVENT_STARTED = 2
EVENT_SUSPENDED = 3
EVENT_RESUMED = 4
EVENT_STOPPED = 5
EVENT_SHUTDOWN = 6
EVENT_PMSUSPENDED = 7
EVENT_CRASHED = 8
STOPPED_SHUTDOWN = 0
STOPPED_DESTROYED = 1
STOPPED_CRASHED = 2
STOPPED_MIGRATED = 3
STOPPED_SAVED = 4
STOPPED_FAILED = 5
SUSPENDED_PAUSED = 0
SUSPENDED_IOERROR = 2

# virDomainCreateFlags
START_PAUSED = 1

# Lifecycle events reach the handler as (domain uuid, event, detail) on the loop thread.
LifecycleHandler = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DomainInfo:
    uuid: str
    name: str
    state: int
    reason: int
    xml: str


_event_impl_registered = False


def _register_event_impl() -> None:
    """libvirt's event loop = asyncio's; must precede the first connection."""
    global _event_impl_registered
    if _event_impl_registered:
        return
    import libvirtaio

    # Its DEBUG lines (one per poll update) would drown the daemon's own.
    logging.getLogger("virEventAsyncIOImpl").setLevel(logging.INFO)
    libvirtaio.virEventRegisterAsyncIOImpl(loop=asyncio.get_running_loop())
    _event_impl_registered = True


def decode_version(number: int) -> Version:
    return number // 1_000_000, number // 1000 % 1000, number % 1000


class Libvirt:
    def __init__(self, uri: str, timeout: float, concurrency: int = 4) -> None:
        self.uri = uri
        self.timeout = timeout
        self._bulkhead = Bulkhead(f"libvirt {uri}", concurrency, timeout)
        self._conn: Any = None
        self._connecting = asyncio.Lock()
        self._lifecycle_handler: LifecycleHandler | None = None
        self._reconnect_handlers: list[Callable[[], None]] = []
        self._closing: set[asyncio.Task[Any]] = set()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def connect(self) -> None:
        async with self._connecting:
            if self._conn is not None:
                return
            # A connection opened by a thread whose caller gave up (timeout) is closed
            # by that thread when it finally returns, instead of leaking.
            abandoned = threading.Event()
            _register_event_impl()
            try:
                conn = await self._bulkhead.run(self._open, abandoned)
            except BlockingCallTimeout as e:
                abandoned.set()
                raise LibvirtUnavailable(self.uri, str(e)) from None
            try:
                await self._bulkhead.run(self._register_callbacks, conn)
            except Exception as e:
                log.warning("cannot register libvirt event callbacks: %s", e)
            self._conn = conn
            log.info("connected to libvirt at %s", self.uri)
        for handler in list(self._reconnect_handlers):
            handler()

    def on_lifecycle_event(self, handler: LifecycleHandler) -> None:
        """Set before connecting: domain lifecycle events of every connection."""
        self._lifecycle_handler = handler

    def on_connect(self, handler: Callable[[], None]) -> None:
        """Called on the loop after every new connection (events may have been missed)."""
        self._reconnect_handlers.append(handler)

    def _register_callbacks(self, conn: Any) -> None:
        import libvirt

        def closed(_conn: Any, reason: int, _opaque: Any) -> None:
            # libvirtd went away (restart, crash): the next call reconnects.
            log.warning("libvirt connection to %s closed (reason %d)", self.uri, reason)
            if self._conn is conn:
                self._conn = None
                # Release the dead connection (and its callbacks) off the loop thread.
                task = asyncio.get_running_loop().create_task(
                    self._bulkhead.run(_close_quietly, conn)
                )
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

        def lifecycle(_conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
            handler = self._lifecycle_handler
            if handler is None:
                return
            try:
                handler(dom.UUIDString(), event, detail)
            except Exception:
                log.exception("lifecycle event handler failed")

        conn.registerCloseCallback(closed, None)
        if self._lifecycle_handler is not None:
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None
            )

    def _open(self, abandoned: threading.Event) -> Any:
        import libvirt

        # The binding's default handler prints every error to stderr; errors reach
        # us as exceptions and are logged where they are handled.
        libvirt.registerErrorHandler(_ignore_error, None)
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as e:
            raise LibvirtUnavailable(self.uri, str(e).strip()) from None
        if abandoned.is_set():
            _close_quietly(conn)
            raise LibvirtUnavailable(self.uri, "connection abandoned after timeout")
        return conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self._bulkhead.run(_close_quietly, conn)
            except BlockingCallTimeout:
                log.warning("closing the libvirt connection timed out")

    async def capabilities_xml(self) -> str:
        result: str = await self._call("getCapabilities", lambda c: c.getCapabilities())
        return result

    async def domain_capabilities_xml(
        self, arch: str = "x86_64", virttype: str = "kvm", fallback: str | None = "qemu"
    ) -> str:
        """Domain capabilities for `virttype`, or for `fallback` when that fails.

        KVM is refused without /dev/kvm (nested or emulated test hosts); plain QEMU
        emulation still tells which CPU models and machines the emulator knows.
        """

        def get(virt: str) -> Any:
            return lambda c: c.getDomainCapabilities(None, arch, None, virt, 0)

        try:
            result: str = await self._call("getDomainCapabilities", get(virttype))
            return result
        except LibvirtCallError as e:
            if fallback is None or fallback == virttype:
                raise
            log.info("domain capabilities for %s unavailable (%s), using %s", virttype, e, fallback)
            result = await self._call("getDomainCapabilities", get(fallback))
            return result

    async def versions(self) -> LibvirtVersions:
        def get(conn: Any) -> LibvirtVersions:
            hypervisor: Version | None = None
            try:
                number = conn.getVersion()
                # The test driver answers a bare 2; real drivers a packed version.
                if number >= 1000:
                    hypervisor = decode_version(number)
            except Exception:
                log.debug("hypervisor version unavailable", exc_info=True)
            return LibvirtVersions(decode_version(conn.getLibVersion()), hypervisor, conn.getType())

        result: LibvirtVersions = await self._call("getVersion", get)
        return result

    async def module_has(self, name: str) -> bool:
        """Whether the installed binding defines `name` (a feature probe, e.g. a flag)."""
        import libvirt

        return hasattr(libvirt, name)

    # -- domains -------------------------------------------------------------------------

    async def create_domain(self, xml: str, flags: int = 0) -> str:
        """Starts a transient domain; returns its live XML."""

        def create(conn: Any) -> str:
            dom = conn.createXML(xml, flags)
            text: str = dom.XMLDesc(0)
            return text

        result: str = await self._call("createXML", create)
        return result

    async def _on_domain(self, what: str, vm_id: str, fn: Callable[[Any], Any]) -> Any:
        return await self._call(what, lambda c: fn(c.lookupByUUIDString(vm_id)))

    async def domain_xml(self, vm_id: str) -> str:
        result: str = await self._on_domain("XMLDesc", vm_id, lambda d: d.XMLDesc(0))
        return result

    async def domain_state(self, vm_id: str) -> tuple[int, int]:
        state, reason = await self._on_domain("state", vm_id, lambda d: d.state(0))
        return int(state), int(reason)

    async def destroy_domain(self, vm_id: str, graceful: bool) -> None:
        # VIR_DOMAIN_DESTROY_GRACEFUL = 1: SIGTERM only, no SIGKILL escalation.
        flags = 1 if graceful else 0
        await self._on_domain("destroyFlags", vm_id, lambda d: d.destroyFlags(flags))

    async def shutdown_domain(self, vm_id: str) -> None:
        await self._on_domain("shutdown", vm_id, lambda d: d.shutdown())

    async def reboot_domain(self, vm_id: str) -> None:
        await self._on_domain("reboot", vm_id, lambda d: d.reboot(0))

    async def suspend_domain(self, vm_id: str) -> None:
        await self._on_domain("suspend", vm_id, lambda d: d.suspend())

    async def resume_domain(self, vm_id: str) -> None:
        await self._on_domain("resume", vm_id, lambda d: d.resume())

    async def reset_domain(self, vm_id: str) -> None:
        await self._on_domain("reset", vm_id, lambda d: d.reset(0))

    async def attach_device(self, vm_id: str, xml: str) -> None:
        # VIR_DOMAIN_AFFECT_LIVE = 1
        await self._on_domain("attachDeviceFlags", vm_id, lambda d: d.attachDeviceFlags(xml, 1))

    async def detach_device(self, vm_id: str, xml: str) -> None:
        await self._on_domain("detachDeviceFlags", vm_id, lambda d: d.detachDeviceFlags(xml, 1))

    async def update_device(self, vm_id: str, xml: str) -> None:
        await self._on_domain("updateDeviceFlags", vm_id, lambda d: d.updateDeviceFlags(xml, 1))

    async def set_memory(self, vm_id: str, kib: int) -> None:
        await self._on_domain("setMemoryFlags", vm_id, lambda d: d.setMemoryFlags(kib, 1))

    async def set_vcpus(self, vm_id: str, count: int) -> None:
        await self._on_domain("setVcpusFlags", vm_id, lambda d: d.setVcpusFlags(count, 1))

    async def set_metadata(self, vm_id: str, xml: str, prefix: str, namespace: str) -> None:
        # VIR_DOMAIN_METADATA_ELEMENT = 2, on the live domain.
        await self._on_domain(
            "setMetadata", vm_id, lambda d: d.setMetadata(2, xml, prefix, namespace, 1)
        )

    async def list_domains(self) -> list[DomainInfo]:
        """Every running (active) domain with its live XML."""

        def listing(conn: Any) -> list[DomainInfo]:
            found = []
            for dom in conn.listAllDomains(1):  # VIR_CONNECT_LIST_DOMAINS_ACTIVE
                try:
                    state, reason = dom.state(0)
                    found.append(
                        DomainInfo(dom.UUIDString(), dom.name(), state, reason, dom.XMLDesc(0))
                    )
                except Exception:
                    # Gone between listing and reading: not ours to recover.
                    log.debug("domain vanished while listing", exc_info=True)
            return found

        result: list[DomainInfo] = await self._call("listAllDomains", listing)
        return result

    async def all_domain_stats(self) -> dict[str, dict[str, Any]]:
        """ONE bulk call: every active domain's stats keyed by uuid."""

        def stats(conn: Any) -> dict[str, dict[str, Any]]:
            # VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE = 1
            return {dom.UUIDString(): values for dom, values in conn.getAllDomainStats(0, 1)}

        result: dict[str, dict[str, Any]] = await self._call("getAllDomainStats", stats)
        return result

    async def _call(self, what: str, fn: Any) -> Any:
        await self.connect()
        conn = self._conn
        if conn is None:
            raise LibvirtUnavailable(self.uri, "not connected")

        def call() -> Any:
            import libvirt

            try:
                return fn(conn)
            except libvirt.libvirtError as e:
                alive = True
                try:
                    alive = bool(conn.isAlive())
                except libvirt.libvirtError:
                    alive = False
                if not alive:
                    raise LibvirtUnavailable(self.uri, str(e).strip()) from None
                code = e.get_error_code()
                if code == _ERR_NO_DOMAIN:
                    raise NoSuchDomain(what, str(e).strip(), code) from None
                raise LibvirtCallError(what, str(e).strip(), code) from None

        call.__name__ = what
        try:
            return await self._bulkhead.run(call)
        except LibvirtUnavailable:
            # Drop the dead connection; the next call reconnects.
            if self._conn is conn:
                self._conn = None
                log.warning("lost the libvirt connection to %s", self.uri)
                try:
                    await self._bulkhead.run(_close_quietly, conn)
                except BlockingCallTimeout:
                    pass
            raise


def _ignore_error(_ctx: Any, _error: Any) -> None:
    pass


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:
        log.debug("error closing a libvirt connection", exc_info=True)

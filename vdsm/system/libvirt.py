"""Async adapter over python3-libvirt: one connection, every call bounded.

libvirt's Python binding is blocking, so each call runs in a worker thread behind one
`Bulkhead` (a few concurrent calls, each with the configured timeout).  The binding is
imported on first connect: importing it costs ~12 MB of RSS and is not needed until a
caller asks for something libvirt knows.

Works with `qemu:///system` (a running libvirtd or virtqemud) and with the in-process
`test:///default` driver.  Domains and events (libvirtaio) come later.
"""

from __future__ import annotations

import asyncio
import logging
import threading
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


def decode_version(number: int) -> Version:
    return number // 1_000_000, number // 1000 % 1000, number % 1000


class Libvirt:
    def __init__(self, uri: str, timeout: float, concurrency: int = 4) -> None:
        self.uri = uri
        self.timeout = timeout
        self._bulkhead = Bulkhead(f"libvirt {uri}", concurrency, timeout)
        self._conn: Any = None
        self._connecting = asyncio.Lock()

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
            try:
                self._conn = await self._bulkhead.run(self._open, abandoned)
            except BlockingCallTimeout as e:
                abandoned.set()
                raise LibvirtUnavailable(self.uri, str(e)) from None
            log.info("connected to libvirt at %s", self.uri)

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
                raise LibvirtCallError(what, str(e).strip(), e.get_error_code()) from None

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

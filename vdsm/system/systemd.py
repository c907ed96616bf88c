"""sd_notify(3) without libsystemd: READY=1, WATCHDOG=1, STOPPING=1, STATUS=..."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("vdsm.system.systemd")


class Notifier:
    """Talks to the service manager when $NOTIFY_SOCKET is set; a no-op otherwise."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self.address = address
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_usec = (
            int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0
        )

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the manager's timeout, as sd_notify advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def notify(self, *assignments: str) -> bool:
        if not self.address:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode(), self.address)
            return True
        except OSError as e:
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), e)
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

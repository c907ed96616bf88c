"""A small publish/subscribe bus for the notifications the engine receives.

Domain code publishes `(method, params)`, e.g. `|net|host_conn|no_id`; the RPC edge
subscribes consumers that deliver to STOMP `jms.queue.events` subscribers and WebSocket
clients.  Publishing never blocks: a consumer takes a notification or refuses it (its
queue is full) and the bus counts the refusal as a drop.  Everything runs on the event
loop thread; code in worker threads hands events over with `loop.call_soon_threadsafe`.

Notifications are suppressed until start-up recovery finishes (contract §1.4).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("vdsm.events")

# Upstream's notify_time: a large offset plus the monotonic clock in milliseconds.
_NOTIFY_TIME_BASE = 2147483647


def notify_time() -> int:
    return _NOTIFY_TIME_BASE + int(time.monotonic() * 1000)


class Notification:
    """One JSON-RPC notification, serialised once however many consumers send it."""

    __slots__ = ("_payload", "method", "params")

    def __init__(self, method: str, params: dict[str, Any]) -> None:
        self.method = method
        self.params = params
        self._payload: bytes | None = None

    @property
    def payload(self) -> bytes:
        if self._payload is None:
            message = {"jsonrpc": "2.0", "method": self.method, "params": self.params}
            self._payload = json.dumps(message).encode()
        return self._payload


# A consumer returns False when it had to drop the notification.
Consumer = Callable[[Notification], bool]


class EventBus:
    def __init__(self) -> None:
        self._consumers: list[Consumer] = []
        self.enabled = False
        self.published = 0
        self.dropped = 0
        self.suppressed = 0

    def subscribe(self, consumer: Consumer) -> Callable[[], None]:
        self._consumers.append(consumer)

        def unsubscribe() -> None:
            if consumer in self._consumers:
                self._consumers.remove(consumer)

        return unsubscribe

    def publish(self, method: str, params: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            self.suppressed += 1
            return
        body = dict(params or {})
        body["notify_time"] = notify_time()
        notification = Notification(method, body)
        self.published += 1
        for consumer in list(self._consumers):
            try:
                accepted = consumer(notification)
            except Exception:
                log.exception("event consumer %r failed on %s", consumer, method)
                accepted = False
            if not accepted:
                self.dropped += 1

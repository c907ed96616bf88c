"""Where the daemon is in its life: starting, recovering, ready, stopping."""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum


class Phase(StrEnum):
    STARTING = "starting"
    RECOVERING = "recovering"
    READY = "ready"
    STOPPING = "stopping"


class Lifecycle:
    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self._started = time.monotonic()
        self.ready = asyncio.Event()

    @property
    def uptime(self) -> float:
        return time.monotonic() - self._started

    @property
    def is_ready(self) -> bool:
        return self.phase is Phase.READY

    def enter(self, phase: Phase) -> None:
        self.phase = phase
        if phase is Phase.READY:
            self.ready.set()

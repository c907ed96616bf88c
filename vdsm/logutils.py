"""Logging set-up, run-time level changes, and masking of secrets in logged params."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any

from vdsm import context

FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s%(flow)s"
MASK = "********"


class _FlowFilter(logging.Filter):
    """Appends the engine's correlation id (ovirtCorrelationId) to records of a call."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        record.flow = f" (flow_id={ctx.flow_id})" if ctx and ctx.flow_id else ""
        return True


def setup(level: str, file: Path | None) -> None:
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        # Watched: logrotate may move the file under us.
        handler = logging.handlers.WatchedFileHandler(file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_FlowFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter that would drown the daemon's own lines at DEBUG.
    for noisy in ("asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


def set_level(level: str, name: str = "") -> None:
    level = {"WARN": "WARNING", "CRIT": "CRITICAL"}.get(level, level)
    logging.getLogger(name or None).setLevel(level)


def is_secret(key: Any) -> bool:
    return isinstance(key, str) and (key == "password" or key.startswith("_X_"))


def mask(value: Any) -> Any:
    """A copy of `value` with every `password` and `_X_*` key's value hidden, at any depth."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret(k) else mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v) for v in value]
    return value

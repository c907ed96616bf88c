"""Who is calling: set by the RPC edge for the duration of one verb call.

Lives at the top of the package because logging (flow ids) and every layer read it.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    method: str
    # "host:port" of the client, and of our end of its connection (lastClientIface).
    peer: str = ""
    local_address: str = ""
    flow_id: str | None = None


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "vdsm_call_context", default=None
)


def current() -> CallContext | None:
    return _current.get()


def enter(ctx: CallContext) -> contextvars.Token[CallContext | None]:
    return _current.set(ctx)


def leave(token: contextvars.Token[CallContext | None]) -> None:
    _current.reset(token)

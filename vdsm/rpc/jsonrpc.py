"""JSON-RPC 2.0 dispatch: parse, check, call the verb, and map errors at the edge.

`jsonrpcserver` does the JSON-RPC mechanics (batches, notifications, ids, the standard
error objects).  Around it this module adds what VDSM's engine expects (contract §1.3):
- a one-element batch is answered with a bare object (the engine always sends those);
- an empty batch is -32600, an oversized one -32600 naming the limit;
- params are validated and coerced by the schema before a verb runs (-32602 naming the
  param); unknown params are dropped and logged once per verb and name;
- every verb but the ping family answers 99 until start-up recovery finishes;
- a verb's `VdsmError` becomes its code and text; anything else becomes 100 with the
  traceback logged once; `None` results become `true`;
- START/FINISH lines with the caller and the engine's flow id, secrets masked.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from jsonrpcserver import Error, Result, Success
from jsonrpcserver.async_dispatcher import dispatch_to_response_pure
from jsonrpcserver.response import to_serializable_one

from vdsm import context, errors, logutils
from vdsm.api.registry import Binding
from vdsm.lifecycle import Lifecycle
from vdsm.rpc.metrics import Metrics

log = logging.getLogger("vdsm.api")
_UNKNOWN_VERB = "<unknown>"


@dataclass(frozen=True)
class RequestMeta:
    """Where a request came from, as the transport knows it."""

    peer: str
    local_address: str
    flow_id: str | None = None


Handler = Callable[..., Awaitable[Result]]


class _Methods(dict[str, Handler]):
    """jsonrpcserver looks methods up with `[]`; unknown names get upstream's error text."""

    def __missing__(self, name: str) -> Handler:
        async def unknown(meta: RequestMeta, *args: Any, **kwargs: Any) -> Result:
            return Error(errors.MethodNotFound.code, str(errors.MethodNotFound(method=name)))

        return unknown


def _check_request(entry: Any) -> None:
    """The JSON-RPC 2.0 request shape, checked by hand (the library's jsonschema is slow)."""
    if not isinstance(entry, dict) or entry.get("jsonrpc") != "2.0":
        raise ValueError("not a JSON-RPC 2.0 request")
    if not isinstance(entry.get("method"), str):
        raise ValueError("method must be a string")
    if "params" in entry and not isinstance(entry["params"], list | dict):
        raise ValueError("params must be an object or an array")
    if "id" in entry and not (entry["id"] is None or isinstance(entry["id"], str | int | float)):
        raise ValueError("id must be a string, a number or null")


# Calls of a batch run this many at a time (see Dispatcher.handle).
BATCH_SLICE = 100


def _validate(request: Any) -> Any:
    for entry in request if isinstance(request, list) else [request]:
        _check_request(entry)
    return request


def _is_valid(request: Any) -> bool:
    try:
        _validate(request)
    except Exception:
        return False
    return True


def _error(exc: errors.VdsmError, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": exc.info(), "id": request_id}


class Dispatcher:
    def __init__(
        self,
        table: dict[str, Binding],
        lifecycle: Lifecycle,
        metrics: Metrics,
        *,
        max_batch_size: int,
        call_timeout: float,
    ) -> None:
        self.lifecycle = lifecycle
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.call_timeout = call_timeout
        self._methods = _Methods({name: self._handler(b) for name, b in table.items()})
        self._warned_unknown: set[tuple[str, str]] = set()

    async def handle(self, body: bytes | str, meta: RequestMeta) -> bytes | None:
        """Answer a request body; None when there is nothing to send back."""
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            self.metrics.observe(_UNKNOWN_VERB, errors.ParseError.code, 0.0)
            return self._dump(_error(errors.ParseError(str(e))))
        if isinstance(parsed, list):
            if not parsed:
                return self._dump(_error(errors.InvalidRequest("request batch is empty")))
            if len(parsed) > self.max_batch_size:
                return self._dump(
                    _error(
                        errors.InvalidRequest(
                            f"batch of {len(parsed)} requests exceeds the limit of "
                            f"{self.max_batch_size}"
                        )
                    )
                )
        if isinstance(parsed, list) and len(parsed) > BATCH_SLICE and _is_valid(parsed):
            # A slice's calls all run in one turn of the event loop: between slices,
            # the other connections are served (a big batch stalls nobody).
            answers: list[Any] = []
            for start in range(0, len(parsed), BATCH_SLICE):
                part = await self._dispatch(parsed[start : start + BATCH_SLICE], meta)
                answers.extend(part or ())
                await asyncio.sleep(0)
            response = answers or None
        else:
            response = await self._dispatch(parsed, meta)
        if response is None:
            return None
        if isinstance(response, list) and len(response) == 1:
            # Upstream answers a lone response bare, and its clients expect that.
            response = response[0]
        return self._dump(response)

    async def _dispatch(self, parsed: Any, meta: RequestMeta) -> Any:
        return await dispatch_to_response_pure(
            deserializer=lambda _: parsed,
            validator=_validate,
            methods=self._methods,
            context=meta,
            post_process=to_serializable_one,  # type: ignore[arg-type]
            request="",
        )

    @staticmethod
    def _dump(response: Any) -> bytes:
        try:
            return json.dumps(response).encode()
        except (TypeError, ValueError) as e:
            log.error("cannot serialise response: %s", e)
            request_id = response.get("id") if isinstance(response, dict) else None
            return json.dumps(_error(errors.InternalError(str(e)), request_id)).encode()

    def _handler(self, binding: Binding) -> Handler:
        async def handler(meta: RequestMeta, *args: Any, **kwargs: Any) -> Result:
            return await self._call(binding, meta, list(args) if args else kwargs)

        # jsonrpcserver checks every call against the handler's signature; a precomputed
        # one spares inspect.signature's work on each request (~25 us).
        handler.__signature__ = _HANDLER_SIGNATURE  # type: ignore[attr-defined]
        return handler

    async def _call(self, binding: Binding, meta: RequestMeta, params: Any) -> Result:
        verb = binding.verb
        started = time.perf_counter()
        if not self.lifecycle.is_ready and not verb.during_recovery:
            log.info("in recovery, refusing %s from %s", verb.name, meta.peer)
            return self._finish(verb.name, started, errors.RecoveryInProgress())
        try:
            args, unknown = verb.bind(params)
        except (errors.InvalidParams, errors.InvalidParameterException) as e:
            log.info("%s from %s: %s", verb.name, meta.peer, e)
            return self._finish(verb.name, started, e)
        for name in unknown:
            if (verb.name, name) not in self._warned_unknown:
                self._warned_unknown.add((verb.name, name))
                log.warning("%s: ignoring unknown param %r", verb.name, name)
        level = logging.DEBUG if verb.quiet else logging.INFO
        token = context.enter(
            context.CallContext(verb.name, meta.peer, meta.local_address, meta.flow_id)
        )
        try:
            if log.isEnabledFor(level):
                log.log(level, "START %s(%s) from=%s", verb.name, logutils.mask(args), meta.peer)
            deadline = asyncio.timeout(self.call_timeout)
            try:
                async with deadline:
                    result = await binding.call(**args)
            except errors.VdsmError as e:
                # Errors of the tree are anticipated: their text says it all.
                log.log(
                    logging.INFO if e.expected else logging.WARNING,
                    "FINISH %s error=%s",
                    verb.name,
                    e,
                )
                return self._finish(verb.name, started, e)
            except TimeoutError as e:
                if not deadline.expired():
                    # The verb's own timeout, not ours: an error like any other.
                    log.exception("FINISH %s unexpected error", verb.name)
                    return self._finish(verb.name, started, errors.GeneralException(str(e)))
                log.error("FINISH %s timed out after %.0f s", verb.name, self.call_timeout)
                error = errors.GeneralException(
                    f"{verb.name} timed out after {self.call_timeout:.0f} s"
                )
                return self._finish(verb.name, started, error)
            except Exception as e:
                log.exception("FINISH %s unexpected error", verb.name)
                return self._finish(verb.name, started, errors.GeneralException(str(e)))
            if log.isEnabledFor(level):
                log.log(level, "FINISH %s return=%s", verb.name, _brief(logutils.mask(result)))
            return self._finish(verb.name, started, None, result)
        finally:
            context.leave(token)

    def _finish(
        self, verb: str, started: float, error: errors.VdsmError | None, result: Any = None
    ) -> Result:
        self.metrics.observe(verb, error.code if error else 0, time.perf_counter() - started)
        if error is not None:
            return Error(error.code, str(error))
        return Success(True if result is None else result)


async def _signature_model(meta: RequestMeta, *args: Any, **kwargs: Any) -> Result: ...


_HANDLER_SIGNATURE = inspect.signature(_signature_model)


def _brief(value: Any, limit: int = 400) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"

"""Binds each schema verb to the coroutine that implements it.

An API object declares `NAMESPACE` and has one async method per verb, named like the
verb and taking the verb's params by their wire names: `Host.getCapabilities` is
`HostAPI.getCapabilities` in vdsm/api/host.py.  Building the table fails when a schema
verb has no implementation or an implementation's signature does not match the schema,
so the two can never drift apart unnoticed.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vdsm.api.schema import Schema, Verb


@dataclass(frozen=True)
class Binding:
    verb: Verb
    call: Callable[..., Awaitable[Any]]


class RegistryError(Exception):
    pass


def build(schema: Schema, apis: Iterable[Any]) -> dict[str, Binding]:
    by_namespace = {api.NAMESPACE: api for api in apis}
    table: dict[str, Binding] = {}
    problems: list[str] = []
    for name, verb in schema.verbs.items():
        api = by_namespace.get(verb.namespace)
        impl = getattr(api, verb.method, None) if api is not None else None
        if impl is None or not inspect.iscoroutinefunction(impl):
            problems.append(f"{name}: no async implementation")
            continue
        expected = [p.name for p in verb.params]
        actual = [
            p.name
            for p in inspect.signature(impl).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if actual != expected:
            problems.append(f"{name}: implementation takes {actual}, schema says {expected}")
            continue
        table[name] = Binding(verb, impl)
    if problems:
        raise RegistryError("; ".join(problems))
    return table

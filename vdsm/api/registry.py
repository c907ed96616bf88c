"""Binds each schema verb to the coroutine that implements it.

An API object declares `NAMESPACE` and has one async method per verb, named like the
verb and taking the verb's params by their wire names: `Host.getCapabilities` is
`HostAPI.getCapabilities` in vdsm/api/host.py.  A namespace may be served by several
objects, one per area (the Host network verbs live in vdsm/api/network.py); a verb
implemented by two of them is an error.  Building the table fails when a schema
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
    by_namespace: dict[str, list[Any]] = {}
    for api in apis:
        by_namespace.setdefault(api.NAMESPACE, []).append(api)
    table: dict[str, Binding] = {}
    problems: list[str] = []
    for name, verb in schema.verbs.items():
        impls = [
            impl
            for api in by_namespace.get(verb.namespace, ())
            if inspect.iscoroutinefunction(impl := getattr(api, verb.method, None))
        ]
        if len(impls) != 1:
            problems.append(
                f"{name}: no async implementation"
                if not impls
                else f"{name}: implemented {len(impls)} times"
            )
            continue
        impl = impls[0]
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

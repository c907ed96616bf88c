"""The machine-readable schema of the verbs this daemon implements.

`vdsm-api.yml` (next to this module) and its companions `vdsm-api-<area>.yml` (one
per area: storage images, virt, network...) list every verb with its params and their *wire*
types, which are what the engine really sends (contract §2: int storage enums, byte
sizes as decimal strings...), not always what upstream's schema says.  The daemon
validates and coerces params with it before a verb runs; vdsm-client builds its help
from it.

Type expressions in the YAML:
    string int uint long ulong float boolean   primitives
    dict any                                    any JSON object / any value
    UUID, LoggingLevel, ...                     named types from `types:`
    list[T]                                     a JSON array of T
    map[K, V]                                   a JSON object with keys K and values V

Named type kinds: `uuid`, `enum` (values: a list of strings, or a mapping of wire ints
to names), `object` (properties: list of params), `alias` (of: a type expression),
`size` (a non-negative decimal string of bytes; anything else, ints included, is
refused with upstream's storage code 1000).

Coercion is deliberately narrow: vdsm-client sends every `name=value` as a string, so
numeric and boolean strings become numbers and booleans; nothing else is guessed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from vdsm.errors import InvalidParameterException, InvalidParams

SCHEMA_FILE = Path(__file__).with_name("vdsm-api.yml")


def schema_files() -> list[Path]:
    """The main schema file first, then the per-area companions in name order."""
    return [SCHEMA_FILE, *sorted(SCHEMA_FILE.parent.glob("vdsm-api-*.yml"))]


_NO_DEFAULT = object()
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
_INT_RE = re.compile(r"^[+-]?\d+$")

Coercer = Callable[[Any, str], Any]


class SchemaError(Exception):
    """The schema file itself is wrong (a bug, caught by the unit tests)."""


def _bad(path: str, expected: str, value: Any) -> InvalidParams:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidParams(param=path, reason=f"expected {expected}, got {shown}")


def _string(value: Any, path: str) -> str:
    if isinstance(value, str):
        return value
    # Numbers are accepted where the wire wants a string: the conversion is lossless.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _bad(path, "a string", value)


def _integer(low: int | None) -> Coercer:
    name = "a non-negative integer" if low == 0 else "an integer"

    def coerce(value: Any, path: str) -> int:
        if isinstance(value, bool):
            raise _bad(path, name, value)
        if isinstance(value, int):
            result = value
        elif isinstance(value, str) and _INT_RE.match(value.strip()):
            result = int(value.strip())
        else:
            raise _bad(path, name, value)
        if low is not None and result < low:
            raise _bad(path, name, value)
        return result

    return coerce


def _float(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise _bad(path, "a number", value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _bad(path, "a number", value)


def _boolean(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _bad(path, "a boolean", value)


def _dict(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _bad(path, "an object", value)


def _any(value: Any, path: str) -> Any:
    return value


def _uuid(value: Any, path: str) -> str:
    if isinstance(value, str) and _UUID_RE.match(value):
        return value
    raise _bad(path, "a UUID", value)


def _size(value: Any, path: str) -> str:
    if isinstance(value, str) and value.isdigit():
        return value
    # Upstream's storage code refuses anything but a decimal string with 1000 (an int
    # included), not with a JSON-RPC params error.
    raise InvalidParameterException(path, f"{value!r} is not a size in bytes as a decimal string")


_PRIMITIVES: dict[str, Coercer] = {
    "string": _string,
    "int": _integer(None),
    "long": _integer(None),
    "uint": _integer(0),
    "ulong": _integer(0),
    "float": _float,
    "boolean": _boolean,
    "dict": _dict,
    "any": _any,
}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    description: str = ""
    default: Any = _NO_DEFAULT
    coerce: Coercer = field(default=_any, repr=False, compare=False)

    @property
    def required(self) -> bool:
        return self.default is _NO_DEFAULT

    def default_value(self) -> Any:
        # Defaults are containers sometimes; never hand out the shared instance.
        return copy.deepcopy(self.default)


@dataclass(frozen=True)
class Verb:
    name: str
    params: tuple[Param, ...]
    returns: str | None
    description: str = ""
    deprecated: bool = False
    # Polling verbs log their calls at DEBUG, others at INFO.
    quiet: bool = False
    # Answered while start-up recovery runs (the ping family); every other verb gets 99.
    during_recovery: bool = False

    @property
    def namespace(self) -> str:
        return self.name.partition(".")[0]

    @property
    def method(self) -> str:
        return self.name.partition(".")[2]

    def bind(self, params: Any) -> tuple[dict[str, Any], list[str]]:
        """Validate and coerce wire params into keyword arguments.

        Returns the arguments and the names of unknown params (dropped, for the caller
        to log).  Raises InvalidParams naming the offending param.
        """
        if isinstance(params, list):
            if len(params) > len(self.params):
                raise InvalidParams(
                    reason=f"{self.name} takes {len(self.params)} params, got {len(params)}"
                )
            given = {p.name: v for p, v in zip(self.params, params, strict=False)}
        elif isinstance(params, dict):
            given = params
        else:
            raise InvalidParams(reason="params must be an object or an array")
        args: dict[str, Any] = {}
        for p in self.params:
            if p.name in given:
                value = given[p.name]
                # An explicit null for an optional param means "use the default".
                if value is None and not p.required:
                    args[p.name] = p.default_value()
                else:
                    args[p.name] = p.coerce(value, p.name)
            elif p.required:
                raise InvalidParams(param=p.name, reason="missing required parameter")
            else:
                args[p.name] = p.default_value()
        unknown = [name for name in given if name not in args] if isinstance(params, dict) else []
        return args, unknown


@dataclass
class Schema:
    types: dict[str, dict[str, Any]]
    verbs: dict[str, Verb]

    def namespaces(self) -> dict[str, list[Verb]]:
        result: dict[str, list[Verb]] = {}
        for verb in self.verbs.values():
            result.setdefault(verb.namespace, []).append(verb)
        return result

    def skeleton(self, type_expr: str, depth: int = 0) -> Any:
        """An example JSON value of a type, for vdsm-client's help."""
        if depth > 4:
            return "..."
        inner = _generic_args(type_expr, "list")
        if inner:
            return [self.skeleton(inner[0], depth + 1)]
        inner = _generic_args(type_expr, "map")
        if inner:
            return {f"<{inner[0]}>": self.skeleton(inner[1], depth + 1)}
        spec = self.types.get(type_expr)
        if spec is None:
            return {"dict": {}, "any": None}.get(type_expr, f"<{type_expr}>")
        kind = spec["kind"]
        if kind == "object" and spec.get("properties"):
            return {p["name"]: self.skeleton(p["type"], depth + 1) for p in spec["properties"]}
        if kind == "enum":
            values = spec["values"]
            keys = list(values) if isinstance(values, dict) else values
            return f"<{type_expr}: {'|'.join(str(v) for v in keys)}>"
        if kind == "alias":
            return self.skeleton(spec["of"], depth + 1)
        return f"<{type_expr}>"


def _generic_args(expr: str, name: str) -> list[str] | None:
    expr = expr.strip()
    if not (expr.startswith(name + "[") and expr.endswith("]")):
        return None
    body = expr[len(name) + 1 : -1]
    # Split at the top-level comma only (maps of lists nest brackets).
    depth = 0
    for i, ch in enumerate(body):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            return [body[:i].strip(), body[i + 1 :].strip()]
    return [body.strip()]


class _Compiler:
    def __init__(self, types: Mapping[str, dict[str, Any]]) -> None:
        self.types = types
        self.cache: dict[str, Coercer] = {}

    def compile(self, expr: str) -> Coercer:
        if expr not in self.cache:
            # Placeholder first: a type may refer to itself through a list or map.
            self.cache[expr] = lambda v, p: self.cache[expr](v, p)
            self.cache[expr] = self._build(expr)
        return self.cache[expr]

    def _build(self, expr: str) -> Coercer:
        if expr in _PRIMITIVES:
            return _PRIMITIVES[expr]
        args = _generic_args(expr, "list")
        if args:
            return self._list(self.compile(args[0]))
        args = _generic_args(expr, "map")
        if args:
            if len(args) != 2:
                raise SchemaError(f"map needs a key and a value type: {expr}")
            return self._map(self.compile(args[0]), self.compile(args[1]))
        spec = self.types.get(expr)
        if spec is None:
            raise SchemaError(f"unknown type {expr!r}")
        kind = spec.get("kind")
        if kind == "uuid":
            return _uuid
        if kind == "size":
            return _size
        if kind == "alias":
            return self.compile(spec["of"])
        if kind == "enum":
            return self._enum(expr, spec["values"])
        if kind == "object":
            return self._object(expr, [self.param(p) for p in spec.get("properties", [])])
        raise SchemaError(f"type {expr!r} has unknown kind {kind!r}")

    def param(self, spec: dict[str, Any]) -> Param:
        try:
            name, type_expr = spec["name"], spec["type"]
        except KeyError as e:
            raise SchemaError(f"param without {e}: {spec}") from None
        return Param(
            name=name,
            type=type_expr,
            description=spec.get("description", ""),
            default=spec.get("default", _NO_DEFAULT),
            coerce=self.compile(type_expr),
        )

    @staticmethod
    def _list(item: Coercer) -> Coercer:
        def coerce(value: Any, path: str) -> list[Any]:
            if not isinstance(value, list):
                raise _bad(path, "an array", value)
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return coerce

    @staticmethod
    def _map(key: Coercer, val: Coercer) -> Coercer:
        def coerce(value: Any, path: str) -> dict[Any, Any]:
            if not isinstance(value, dict):
                raise _bad(path, "an object", value)
            return {key(k, f"{path} key"): val(v, f"{path}[{k!r}]") for k, v in value.items()}

        return coerce

    @staticmethod
    def _enum(name: str, values: Any) -> Coercer:
        if isinstance(values, dict):
            # Wire ints named in the schema (storage enums): accept the int or its digits.
            wire = set(values)
            as_int = _integer(None)

            def coerce_int(value: Any, path: str) -> int:
                try:
                    number = as_int(value, path)
                except InvalidParams:
                    number = None
                if number not in wire:
                    raise _bad(path, f"{name} (one of {sorted(wire)})", value)
                return number

            return coerce_int
        allowed = frozenset(values)

        def coerce(value: Any, path: str) -> str:
            if value not in allowed:
                raise _bad(path, f"{name} (one of {', '.join(map(str, values))})", value)
            return str(value)

        return coerce

    @staticmethod
    def _object(name: str, props: list[Param]) -> Coercer:
        def coerce(value: Any, path: str) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise _bad(path, f"{name} (an object)", value)
            result = dict(value)  # properties the schema does not name pass through
            for p in props:
                if p.name in value and value[p.name] is not None:
                    result[p.name] = p.coerce(value[p.name], f"{path}.{p.name}")
                elif p.required:
                    raise InvalidParams(param=f"{path}.{p.name}", reason="missing required field")
                elif p.name not in value:
                    result[p.name] = p.default_value()
            return result

        return coerce


def parse(document: Mapping[str, Any]) -> Schema:
    types = dict(document.get("types") or {})
    compiler = _Compiler(types)
    for type_name in types:
        compiler.compile(type_name)  # fail early on a broken type
    verbs: dict[str, Verb] = {}
    for name, spec in (document.get("verbs") or {}).items():
        spec = spec or {}
        if name.count(".") != 1:
            raise SchemaError(f"verb names are Namespace.verb: {name!r}")
        params = tuple(compiler.param(p) for p in spec.get("params") or [])
        seen = [p.name for p in params]
        if len(set(seen)) != len(seen):
            raise SchemaError(f"{name}: duplicate param names")
        returns = spec.get("returns")
        if returns is not None:
            compiler.compile(returns)
        verbs[name] = Verb(
            name=name,
            params=params,
            returns=returns,
            description=" ".join(str(spec.get("description", "")).split()),
            deprecated=bool(spec.get("deprecated", False)),
            quiet=bool(spec.get("quiet", False)),
            during_recovery=bool(spec.get("during_recovery", False)),
        )
    return Schema(types=types, verbs=verbs)


def merge(documents: list[Mapping[str, Any]]) -> dict[str, Any]:
    """One document from several; a type or verb defined twice is an error, since the
    files are split by area and must not silently override each other."""
    merged: dict[str, dict[str, Any]] = {"types": {}, "verbs": {}}
    for document in documents:
        for section in ("types", "verbs"):
            for name, spec in (document.get(section) or {}).items():
                if name in merged[section]:
                    raise SchemaError(f"{section[:-1]} {name!r} is defined twice")
                merged[section][name] = spec
    return merged


@cache
def load(*paths: Path) -> Schema:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    documents = []
    for path in paths or schema_files():
        with open(path, encoding="utf-8") as f:
            documents.append(yaml.load(f, Loader=loader) or {})
    return parse(merge(documents))

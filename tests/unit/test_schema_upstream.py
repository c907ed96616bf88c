"""Our verbs against upstream's schema: names, param names and order, optionality, types.

Upstream's schema is read from ../shared/reference/upstream-vdsm-api.yml when that file
is present (the steering repository's reference folder); the test skips only without it.
Where the engine's wire types differ from upstream's schema (contract §2), our schema
follows the wire; those cases are listed in WIRE_TYPES below, each with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from vdsm.api import schema

UPSTREAM = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "upstream-vdsm-api.yml"

# (verb, param) -> our wire type, where it deliberately differs from upstream's schema.
WIRE_TYPES: dict[tuple[str, str], str] = {}

_PRIMITIVES = {"string", "int", "uint", "long", "ulong", "float", "boolean"}


@pytest.fixture(scope="module")
def upstream() -> dict[str, Any]:
    if not UPSTREAM.is_file():
        pytest.skip(f"upstream schema not present at {UPSTREAM}")
    with open(UPSTREAM) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def describe_upstream(t: Any) -> str:
    """Upstream's type in our type-expression syntax."""
    if isinstance(t, list):
        return f"list[{describe_upstream(t[0])}]"
    if isinstance(t, str):
        return t
    kind = t.get("type")
    if kind == "map":
        return f"map[{describe_upstream(t['key-type'])}, {describe_upstream(t['value-type'])}]"
    return t["name"]


def compatible(ours: str, theirs: str, our_types: dict[str, Any]) -> bool:
    if ours == theirs:
        return True
    for generic in ("list", "map"):
        o, t = schema._generic_args(ours, generic), schema._generic_args(theirs, generic)
        if o is not None and t is not None:
            return len(o) == len(t) and all(compatible(a, b, our_types) for a, b in zip(o, t))
    # An object we do not describe field by field is carried as a plain dict.
    return ours == "dict" and theirs not in _PRIMITIVES


def test_every_verb_exists_upstream_with_the_same_params(upstream):
    ours = schema.load()
    problems = []
    for name, verb in ours.verbs.items():
        spec = upstream.get(name)
        if spec is None:
            problems.append(f"{name}: not an upstream verb")
            continue
        theirs = spec.get("params") or []
        if [p.name for p in verb.params] != [p["name"] for p in theirs]:
            problems.append(
                f"{name}: params {[p.name for p in verb.params]} != {[p['name'] for p in theirs]}"
            )
            continue
        for mine, their in zip(verb.params, theirs):
            if mine.required != ("defaultvalue" not in their):
                problems.append(f"{name}.{mine.name}: required={mine.required} differs")
            expected = WIRE_TYPES.get((name, mine.name), describe_upstream(their["type"]))
            if not compatible(mine.type, expected, ours.types):
                problems.append(f"{name}.{mine.name}: type {mine.type} != upstream {expected}")
        if bool(spec.get("deprecated")) != verb.deprecated:
            problems.append(f"{name}: deprecated flag differs")
    assert problems == []


def test_named_enums_accept_upstream_values(upstream):
    ours = schema.load()
    upstream_types = upstream["types"]
    for name, spec in ours.types.items():
        if spec.get("kind") != "enum" or isinstance(spec["values"], dict):
            continue
        theirs = upstream_types.get(name)
        if theirs is None or theirs.get("type") != "enum":
            continue
        assert set(theirs["values"]) <= set(spec["values"]), name

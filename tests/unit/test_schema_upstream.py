"""Our verbs against upstream's schema: names, param names and order, optionality, types.

The comparison uses tests/data/upstream-api-facts.json (names and types only, extracted
from upstream's schema by tests/unit/upstream_facts.py), so it runs on any checkout.
When upstream's schema itself is present (../shared/reference/upstream-vdsm-api.yml in
the steering repository), a second test proves the facts file matches it.

Where the engine's wire types differ from upstream's schema (contract §2), our schema
follows the wire; those cases are listed in WIRE_TYPES, each with its reason.
"""

from __future__ import annotations

import pytest

from tests.unit import upstream_facts
from vdsm.api import schema

# (verb, param) -> our wire type, where it deliberately differs from upstream's schema.
WIRE_TYPES: dict[tuple[str, str], str] = {
    # The engine sends the remote path (file) or the VG UUID (block) as a plain string.
    ("StorageDomain.create", "typeArgs"): "string",
    # LUN GUIDs are multipath WWIDs and VG ids are LVM's UUIDs: not RFC 4122 UUIDs.
    ("Host.getDevicesVisibility", "guidList"): "list[string]",
    ("LVMVolumeGroup.create", "lvmvolumegroupID"): "string",
    ("LVMVolumeGroup.getInfo", "lvmvolumegroupID"): "string",
    ("LVMVolumeGroup.remove", "lvmvolumegroupID"): "string",
}

_PRIMITIVES = {"string", "int", "uint", "long", "ulong", "float", "boolean"}


def compatible(ours: str, theirs: str) -> bool:
    if ours == theirs:
        return True
    # Our `size` kind is a string checked to hold a decimal number of bytes.
    if theirs == "string" and schema.load().types.get(ours, {}).get("kind") == "size":
        return True
    for generic in ("list", "map"):
        o, t = schema._generic_args(ours, generic), schema._generic_args(theirs, generic)
        if o is not None and t is not None:
            return len(o) == len(t) and all(compatible(a, b) for a, b in zip(o, t, strict=True))
    # An object we do not describe field by field is carried as a plain dict.
    return ours == "dict" and theirs not in _PRIMITIVES


@pytest.fixture(scope="module")
def facts():
    return upstream_facts.load_facts()


def test_every_verb_exists_upstream_with_the_same_params(facts):
    ours = schema.load()
    problems = []
    for name, verb in ours.verbs.items():
        spec = facts["verbs"].get(name)
        if spec is None:
            problems.append(f"{name}: not an upstream verb")
            continue
        theirs = spec["params"]
        if [p.name for p in verb.params] != [p["name"] for p in theirs]:
            problems.append(
                f"{name}: params {[p.name for p in verb.params]} != {[p['name'] for p in theirs]}"
            )
            continue
        for mine, their in zip(verb.params, theirs, strict=True):
            if mine.required == their["optional"]:
                problems.append(f"{name}.{mine.name}: required={mine.required} differs")
            expected = WIRE_TYPES.get((name, mine.name), their["type"])
            if not compatible(mine.type, expected):
                problems.append(f"{name}.{mine.name}: type {mine.type} != upstream {expected}")
        if spec["deprecated"] != verb.deprecated:
            problems.append(f"{name}: deprecated flag differs")
    assert problems == []


def test_named_enums_accept_upstream_values(facts):
    ours = schema.load()
    for name, spec in ours.types.items():
        if spec.get("kind") != "enum" or isinstance(spec["values"], dict):
            continue
        theirs = facts["enums"].get(name)
        if theirs is not None:
            assert set(theirs) <= {str(v) for v in spec["values"]}, name


def test_facts_file_matches_upstream_schema():
    if not upstream_facts.UPSTREAM.is_file():
        pytest.skip(f"upstream schema not present at {upstream_facts.UPSTREAM}")
    expected = upstream_facts.extract(upstream_facts.load_upstream())
    assert upstream_facts.load_facts() == expected, (
        "regenerate: python -m tests.unit.upstream_facts"
    )

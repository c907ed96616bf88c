"""Facts about upstream's API schema that the schema test needs, without upstream's text.

`tests/data/upstream-api-facts.json` holds, for each upstream verb, its param names in
order, whether each is optional, each param's type in our type-expression syntax, and
the deprecated flag; and the values of upstream's named enums.  No descriptions.

Regenerate it from upstream's schema (the steering repository's reference copy):

    .venv/bin/python -m tests.unit.upstream_facts ../shared/reference/upstream-vdsm-api.yml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

FACTS = Path(__file__).resolve().parents[1] / "data" / "upstream-api-facts.json"
UPSTREAM = Path(__file__).resolve().parents[3] / "shared" / "reference" / "upstream-vdsm-api.yml"


def describe(t: Any) -> str:
    """Upstream's type in our type-expression syntax."""
    if isinstance(t, list):
        return f"list[{describe(t[0])}]"
    if isinstance(t, str):
        return t
    if t.get("type") == "map":
        return f"map[{describe(t['key-type'])}, {describe(t['value-type'])}]"
    return str(t["name"])


def extract(document: dict[str, Any]) -> dict[str, Any]:
    verbs = {}
    for name, spec in document.items():
        if name == "types":
            continue
        verbs[name] = {
            "params": [
                {"name": p["name"], "type": describe(p["type"]), "optional": "defaultvalue" in p}
                for p in spec.get("params") or []
            ],
            "deprecated": bool(spec.get("deprecated")),
        }
    enums = {
        name: sorted(str(v) for v in spec["values"])
        for name, spec in document.get("types", {}).items()
        if spec.get("type") == "enum"
    }
    return {"verbs": verbs, "enums": enums}


def load_upstream(path: Path = UPSTREAM) -> dict[str, Any]:
    with open(path) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_facts() -> dict[str, Any]:
    return json.loads(FACTS.read_text())


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else UPSTREAM
    FACTS.write_text(json.dumps(extract(load_upstream(source)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FACTS}")

"""The API schema: loading, coercion of wire params, and clear errors."""

from __future__ import annotations

import pytest

from vdsm import errors
from vdsm.api import schema
from vdsm.errors import InvalidParams

DOC = {
    "types": {
        "UUID": {"kind": "uuid"},
        "Size": {"kind": "size"},
        "Color": {"kind": "enum", "values": ["red", "green"]},
        "DomainType": {"kind": "enum", "values": {1: "NFS", 4: "LOCALFS"}},
        "Conn": {
            "kind": "object",
            "properties": [
                {"name": "id", "type": "UUID"},
                {"name": "port", "type": "int", "default": 3260},
            ],
        },
    },
    "verbs": {
        "Test.all": {
            "params": [
                {"name": "s", "type": "string"},
                {"name": "i", "type": "int", "default": 0},
                {"name": "u", "type": "uint", "default": 0},
                {"name": "f", "type": "float", "default": 0.0},
                {"name": "b", "type": "boolean", "default": False},
                {"name": "uuid", "type": "UUID", "default": None},
                {"name": "color", "type": "Color", "default": "red"},
                {"name": "dtype", "type": "DomainType", "default": 1},
                {"name": "ids", "type": "list[UUID]", "default": []},
                {"name": "m", "type": "map[UUID, Color]", "default": {}},
                {"name": "conns", "type": "list[Conn]", "default": []},
                {"name": "size", "type": "Size", "default": "0"},
            ]
        },
        "Test.none": {},
    },
}
U1 = "407cb255-34be-432c-be7c-eb43b8de82be"


@pytest.fixture(scope="module")
def verb():
    return schema.parse(DOC).verbs["Test.all"]


def test_defaults_fill_missing_optional_params(verb):
    args, unknown = verb.bind({"s": "x"})
    assert args["i"] == 0 and args["ids"] == [] and args["color"] == "red"
    assert unknown == []


def test_default_containers_are_not_shared(verb):
    a, _ = verb.bind({"s": "x"})
    a["ids"].append(U1)
    b, _ = verb.bind({"s": "x"})
    assert b["ids"] == []


def test_cli_strings_are_coerced(verb):
    # vdsm-client sends every name=value as a string.
    args, _ = verb.bind(
        {"s": "x", "i": "-12", "u": "7", "f": "1.5", "b": "True", "dtype": "4", "size": "1024"}
    )
    assert (args["i"], args["u"], args["f"], args["b"], args["dtype"]) == (-12, 7, 1.5, True, 4)


def test_numbers_become_strings_where_strings_are_wanted(verb):
    args, _ = verb.bind({"s": 5})
    assert args["s"] == "5"


@pytest.mark.parametrize(
    "params, param",
    [
        ({}, "s"),
        ({"s": None}, "s"),
        ({"s": ["x"]}, "s"),
        ({"s": "x", "i": "1.5"}, "i"),
        ({"s": "x", "i": True}, "i"),
        ({"s": "x", "u": -1}, "u"),
        ({"s": "x", "b": "yes"}, "b"),
        ({"s": "x", "uuid": "../../etc"}, "uuid"),
        ({"s": "x", "uuid": U1 + "0"}, "uuid"),
        ({"s": "x", "color": "blue"}, "color"),
        ({"s": "x", "dtype": 2}, "dtype"),
        ({"s": "x", "ids": [U1, "nope"]}, "ids[1]"),
        ({"s": "x", "ids": U1}, "ids"),
        ({"s": "x", "m": {"nope": "red"}}, "m key"),
        ({"s": "x", "m": {U1: "blue"}}, f"m[{U1!r}]"),
        ({"s": "x", "conns": [{"port": 1}]}, "conns[0].id"),
        ({"s": "x", "conns": [{"id": U1, "port": "x"}]}, "conns[0].port"),
    ],
)
def test_bad_params_name_the_param(verb, params, param):
    with pytest.raises(InvalidParams) as info:
        verb.bind(params)
    assert info.value.code == -32602
    assert info.value.context["param"] == param


@pytest.mark.parametrize("size", [1024, "-5", "1k", "12.5"])
def test_sizes_that_are_not_decimal_strings_answer_upstreams_1000(verb, size):
    with pytest.raises(errors.InvalidParameterException) as info:
        verb.bind({"s": "x", "size": size})
    assert info.value.code == 1000
    assert "size" in str(info.value)


def test_objects_get_property_defaults_and_keep_extra_keys(verb):
    args, _ = verb.bind({"s": "x", "conns": [{"id": U1, "user": "me"}]})
    assert args["conns"] == [{"id": U1, "port": 3260, "user": "me"}]


def test_positional_params_follow_schema_order(verb):
    args, _ = verb.bind(["x", "3"])
    assert args["s"] == "x" and args["i"] == 3


def test_too_many_positional_params(verb):
    with pytest.raises(InvalidParams, match="takes 12 params"):
        verb.bind(["x"] * 13)


def test_unknown_params_are_reported_not_passed(verb):
    args, unknown = verb.bind({"s": "x", "extra": 1})
    assert "extra" not in args
    assert unknown == ["extra"]


def test_explicit_null_means_default(verb):
    args, _ = verb.bind({"s": "x", "color": None})
    assert args["color"] == "red"


def test_broken_schemas_are_refused():
    with pytest.raises(schema.SchemaError, match="unknown type"):
        schema.parse({"verbs": {"A.b": {"params": [{"name": "x", "type": "Nope"}]}}})
    with pytest.raises(schema.SchemaError, match=r"Namespace\.verb"):
        schema.parse({"verbs": {"nodot": {}}})
    with pytest.raises(schema.SchemaError, match="duplicate"):
        schema.parse({"verbs": {"A.b": {"params": [{"name": "x", "type": "int"}] * 2}}})


def test_area_files_merge_and_may_not_redefine(tmp_path):
    main = tmp_path / "vdsm-api.yml"
    area = tmp_path / "vdsm-api-virt.yml"
    main.write_text("types:\n  Id: {kind: uuid}\nverbs:\n  A.b: {params: [{name: x, type: Id}]}\n")
    area.write_text("verbs:\n  B.c: {params: [{name: y, type: Id}]}\n")
    merged = schema.load(main, area)
    assert set(merged.verbs) == {"A.b", "B.c"}
    clash = tmp_path / "vdsm-api-clash.yml"
    clash.write_text("verbs:\n  A.b: {}\n")
    with pytest.raises(schema.SchemaError, match=r"'A\.b' is defined twice"):
        schema.load(main, clash)


def test_shipped_schema_loads_and_describes_every_verb():
    loaded = schema.load()
    assert "Host.getCapabilities" in loaded.verbs
    for verb in loaded.verbs.values():
        assert verb.description, verb.name


def test_skeleton_for_help():
    loaded = schema.parse(DOC)
    assert loaded.skeleton("list[Conn]") == [{"id": "<UUID>", "port": "<int>"}]
    assert loaded.skeleton("Color") == "<Color: red|green>"

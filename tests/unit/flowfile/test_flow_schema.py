"""flow.schema.json: valid draft 2020-12, in step with the compiler and the limits, and its errors
translated into plain language at the right place."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.core import prompts
from engine.flowfile import compiler, limits, schema
from engine.flowfile.api import compile_source
from engine.flowfile.loader import load_document

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_PATH = ROOT / "engine" / "flowfile" / "flow.schema.json"
FLOWS = sorted((ROOT / "flows").glob("*.yaml"))


def defs() -> dict[str, Any]:
    return schema.schema()["$defs"]


def test_the_schema_is_valid_draft_2020_12_and_ships_as_package_data() -> None:
    data = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert data == schema.schema()
    assert data["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(data)


# ---- schema and compiler agree -----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(compiler.NODE_KEYS))
def test_schema_and_compiler_accept_the_same_options_for_each_node_type(kind: str) -> None:
    definition = defs()[kind]
    assert set(definition["properties"]) == compiler.NODE_KEYS[kind]
    assert set(definition["required"]) == compiler.NODE_REQUIRED[kind]
    assert definition["properties"]["type"]["const"] == kind


def test_schema_and_compiler_agree_on_node_types() -> None:
    node = defs()["node"]
    assert set(node["properties"]["type"]["enum"]) == set(compiler.NODE_KEYS) == set(compiler.NODE_REQUIRED)
    dispatched = {rule["if"]["properties"]["type"]["const"]: rule["then"]["$ref"] for rule in node["allOf"]}
    assert dispatched == {kind: f"#/$defs/{kind}" for kind in compiler.NODE_KEYS}
    assert set(compiler.NODE_KEYS) == set(schema.node_kinds())


@pytest.mark.parametrize(
    ("definition", "keys", "required"),
    [
        (None, compiler.TOP_KEYS, compiler.TOP_REQUIRED),
        ("voice", compiler.VOICE_KEYS, frozenset()),
        ("speech_part", compiler.SPEECH_KEYS, frozenset({"text"})),
        ("audio_part", compiler.AUDIO_KEYS, frozenset({"audio"})),
        ("retry", compiler.RETRY_KEYS, compiler.RETRY_REQUIRED),
        ("case", compiler.CASE_KEYS, compiler.CASE_REQUIRED),
    ],
)
def test_schema_and_compiler_agree_on_the_other_mappings(definition: str | None, keys: frozenset[str],
                                                         required: frozenset[str]) -> None:
    part = schema.schema() if definition is None else defs()[definition]
    assert set(part["properties"]) == keys
    assert set(part.get("required", ())) == required


def test_the_compiler_refuses_to_read_an_option_its_type_does_not_declare() -> None:
    doc = load_document("start: a\nnodes:\n  a: {type: play, say: hi, next: a}\n", "f.yaml")
    source_map = compiler.SourceMap(doc)
    node_source = compiler.NodeSource("a", "play", None, ("nodes", "a"))  # type: ignore[arg-type]
    reader = compiler._NodeReader(compiler._Compiler(doc, source_map), "a", "play", doc.data["nodes"]["a"],
                                  ("nodes", "a"), node_source)
    with pytest.raises(KeyError, match="play nodes have no option 'timeout'"):
        reader.get("timeout")


def test_defaults_in_the_schema_are_the_compilers() -> None:
    for name, value in compiler.DEFAULTS.items():
        kind, option = name.split(".")
        definition = defs()["retry" if kind == "retry" else kind]["properties"][option]
        if "default" in definition:
            assert definition["default"] == value, name
        else:  # documented in the description instead (e.g. into: recording_url)
            assert str(value) in definition["description"], name


def _object_schemas(node: Any, where: str = "") -> list[tuple[str, dict]]:
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append((where, node))
        for key, value in node.items():
            found.extend(_object_schemas(value, f"{where}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_object_schemas(value, f"{where}/{index}"))
    return found


def test_every_mapping_with_named_options_refuses_unknown_ones() -> None:
    for where, part in _object_schemas(schema.schema()):
        if where in ("/$defs/node", "/$defs/transfer/if", "/$defs/node/allOf"):
            continue
        if where.endswith("/if"):
            continue  # the discriminator's condition, not a mapping definition
        assert part.get("additionalProperties") is False, where


def _description(definition: dict) -> str | None:
    if "description" in definition:
        return definition["description"]
    if "$ref" in definition:  # editors show the referenced definition's description
        return _description(defs()[definition["$ref"].rsplit("/", 1)[1]])
    return None


def test_every_option_has_a_description_for_editors() -> None:
    for kind in compiler.NODE_KEYS:
        for option, definition in defs()[kind]["properties"].items():
            assert _description(definition), f"{kind}.{option}"
    for option, definition in schema.schema()["properties"].items():
        assert _description(definition), option


def test_schema_patterns_match_the_limits() -> None:
    phone = defs()["phone"]["pattern"]
    assert phone == "^" + limits.PHONE_RE.pattern + "$"
    assert defs()["language"]["pattern"] == "^" + limits.LANGUAGE_RE.pattern + "$"
    assert defs()["tag"]["maxLength"] == limits.TAG_MAX
    assert defs()["conference"]["properties"]["numbers"]["maxItems"] == limits.CONFERENCE_MAX_NUMBERS
    assert prompts.CONFERENCE_MAX_NUMBERS == limits.CONFERENCE_MAX_NUMBERS  # checked at call time
    assert prompts.E164.pattern == limits.PHONE_RE.pattern
    assert defs()["http"]["properties"]["timeout"]["maximum"] == limits.HTTP_TIMEOUT_MAX
    assert defs()["http"]["properties"]["method"]["enum"] == list(limits.HTTP_METHODS)
    assert defs()["collect"]["properties"]["max_length"]["maximum"] == limits.DIGITS_MAX
    assert defs()["gender"]["enum"] == list(limits.GENDERS)
    assert defs()["variable"]["pattern"] == "^" + limits.VARIABLE_RE.pattern + "$"
    for tag in limits.LANGUAGES:
        assert limits.LANGUAGE_RE.fullmatch(tag), tag


# ---- the fast path agrees with jsonschema ------------------------------------------------------


def _nodes_of(paths: list[Path]) -> list[dict]:
    nodes = []
    for path in paths:
        doc = load_document(path.read_bytes(), str(path))
        if isinstance(doc.data, dict) and isinstance(doc.data.get("nodes"), dict):
            nodes.extend(n for n in doc.data["nodes"].values() if isinstance(n, dict))
    return nodes


_ODD_VALUES = [None, 0, -1, 2.5, 11, 300, "", "x", "+6561234567", "room:R1", True, [], ["x"], {}, {"then": "x"},
               "09:00-18:00", [{"text": "hi", "language": "EN"}], [{"audio": "a.mp3", "gender": "male"}]]


def _mutations(node: dict) -> list[dict]:
    out = [node]
    for key in node:
        if key == "type":
            continue
        removed = dict(node)
        del removed[key]
        out.append(removed)
        for value in _ODD_VALUES:
            changed = copy.deepcopy(node)
            changed[key] = value
            out.append(changed)
    out.append({**node, "timout": 5})
    return out


def test_quick_validation_gives_the_same_verdict_as_jsonschema() -> None:
    nodes = _nodes_of(FLOWS + sorted((ROOT / "tests" / "flows_bad").glob("*.yaml")))
    spec = importlib.util.spec_from_file_location("bench_check_flows", ROOT / "bench" / "check_flows.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    nodes.extend(load_document(bench.make_flow(20), "bench.yaml").data["nodes"].values())
    full = Draft202012Validator(schema.schema())
    node_schema = {**schema.schema(), "$ref": "#/$defs/node"}
    node_schema = {k: v for k, v in node_schema.items() if k not in ("properties", "required",
                                                                      "additionalProperties", "type")}
    node_validator = full.evolve(schema=node_schema)
    checked = 0
    for node in nodes:
        for variant in _mutations(node):
            expected = not any(True for _ in node_validator.iter_errors(variant))
            assert schema.quick_valid(variant, defs()["node"]) is expected, variant
            checked += 1
    assert checked > 2000


def test_quick_validation_refuses_keywords_it_does_not_know() -> None:
    with pytest.raises(KeyError, match="oneOf"):
        schema.quick_valid("x", {"oneOf": [{"type": "string"}]})


# ---- the whole schema, as editors and check-jsonschema use it ----------------------------------


@pytest.mark.parametrize("path", FLOWS, ids=lambda p: p.name)
def test_example_flows_are_valid_against_the_whole_schema(path: Path) -> None:
    doc = load_document(path.read_bytes(), str(path))
    assert list(Draft202012Validator(schema.schema()).iter_errors(doc.data)) == []


def test_the_whole_schema_finds_the_same_node_problems_as_per_node_validation() -> None:
    validator = Draft202012Validator(schema.schema())
    for name in ("unknown_key", "wrong_type", "missing_required", "unknown_type", "too_many_numbers",
                 "malformed_number"):
        path = ROOT / "tests" / "flows_bad" / f"{name}.yaml"
        doc = load_document(path.read_bytes(), str(path))
        whole = {tuple(e.absolute_path) for e in validator.iter_errors(doc.data)}
        _, ours = schema.validate(doc)
        assert whole == ours, name


def test_check_jsonschema_accepts_the_example_flows() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(SCHEMA_PATH), *map(str, FLOWS)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- wording -----------------------------------------------------------------------------------


def problems(source: str) -> list[str]:
    _, findings = compile_source(source, "f.yaml")
    return [str(f) for f in findings]


def test_unknown_top_level_option_suggests_the_right_one() -> None:
    assert problems("strat: a\nstart: a\nnodes:\n  a: {type: hangup}\n") == [
        "f.yaml:1:1: error: unknown option 'strat' at the top of the flow — did you mean 'start'?"
    ]


def test_unknown_option_that_belongs_to_another_node_type_says_so() -> None:
    assert problems("start: a\nnodes:\n  a:\n    type: hangup\n    options: {}\n") == [
        "f.yaml:5:5: error: unknown option 'options' in hangup 'a' ('options' is an option of menu)"
    ]


def test_unknown_option_inside_a_retry_names_where() -> None:
    assert problems("start: m\nnodes:\n  m:\n    type: menu\n    say: hi\n    options: {\"1\": b}\n"
                    "    no_input: {then: b, trys: 2}\n    invalid: {then: b}\n  b: {type: hangup}\n") == [
        "f.yaml:7:25: error: unknown option 'trys' in 'no_input' of menu 'm' — did you mean 'tries'?"
    ]


def test_enum_values_get_a_case_insensitive_suggestion() -> None:
    assert problems("start: h\nnodes:\n  h:\n    type: http\n    url: https://x.example/a\n    method: post\n"
                    "    next: b\n    failed: b\n  b: {type: hangup}\n") == [
        "f.yaml:6:13: error: 'method' in http 'h' must be one of GET, POST, PUT, PATCH, DELETE, not the text "
        "\"post\" — did you mean 'POST'?"
    ]


def test_a_node_that_is_not_a_mapping() -> None:
    assert problems("start: a\nnodes:\n  a: hangup\n") == [
        "f.yaml:3:6: error: node 'a' must be a mapping (name: value lines), not the text \"hangup\""
    ]


def test_a_node_without_a_type() -> None:
    assert problems("start: a\nnodes:\n  a: {say: hi}\n") == [
        "f.yaml:3:3: error: node 'a' has no 'type'; add one of: play, menu, collect, record, monitor, hold, "
        "unhold, transfer, hangup, dial, conference, http, set, branch, hours, goto, voipnow_invite"
    ]


def test_menu_keys_must_be_digits_star_or_hash() -> None:
    assert problems("start: m\nnodes:\n  m:\n    type: menu\n    say: hi\n    options: {\"1a\": b}\n"
                    "    no_input: {then: b}\n    invalid: {then: b}\n  b: {type: hangup}\n") == [
        "f.yaml:6:15: error: '1a' in 'options' in menu 'm' a menu key must be digits, * or # (in quotes: \"1\")"
    ]


def test_transfer_with_continue_needs_failed() -> None:
    assert problems("start: t\nnodes:\n  t: {type: transfer, to: \"+6561234567\", on_failure: continue}\n") == [
        "f.yaml:3:3: error: transfer 't' needs 'failed' because on_failure is continue (where the call goes when "
        "the transfer fails)"
    ]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_length", "0", "'max_length' in collect 'c' must be between 1 and 255, not 0"),
        ("max_length", "256", "'max_length' in collect 'c' must be between 1 and 255, not 256"),
        ("timeout", "0", "'timeout' in collect 'c' must be at least 1, not 0"),
        ("sensitive", '"true"', "'sensitive' in collect 'c' must be true or false, not the text \"true\""),
        ("into", "2fa", "'into' in collect 'c' must be a variable name: a letter, then letters, digits or _, not "
                        "the text \"2fa\""),
        ("say", "{text: hi}", "'say' in collect 'c' must be text, or a list whose items are text, {text: ..., "
                              "language: ..., gender: ...} or {audio: https://.../file.mp3}, not a mapping"),
    ],
)
def test_values_out_of_range_or_of_the_wrong_kind(option: str, value: str, message: str) -> None:
    options = {"say": "hi", "into": "pin", "max_length": "4", "no_input": "{then: b}", "invalid": "{then: b}",
               "next": "b", option: value}
    lines = "".join(f"    {k}: {v}\n" for k, v in options.items())
    found = problems(f"start: c\nnodes:\n  c:\n    type: collect\n{lines}  b: {{type: hangup}}\n")
    assert len(found) == 1 and found[0].endswith(f"error: {message}"), found


def test_tag_longer_than_hoiio_accepts() -> None:
    assert problems(f"start: b\nnodes:\n  b: {{type: hangup, tag: {'x' * 257}}}\n") == [
        "f.yaml:3:26: error: 'tag' in hangup 'b' is 257 characters long; at most 256 are allowed"
    ]


def test_http_timeout_above_ten_seconds() -> None:
    assert problems("start: h\nnodes:\n  h: {type: http, url: \"https://x.example\", timeout: 11, next: b, "
                    "failed: b}\n  b: {type: hangup}\n") == [
        "f.yaml:3:54: error: 'timeout' in http 'h' must be more than 0 and at most 10, not 11"
    ]


def test_an_empty_file_and_a_file_that_is_not_a_mapping() -> None:
    assert problems("") == ["f.yaml:1:1: error: the file is empty; a flow needs at least start: and nodes:"]
    assert problems("- a\n- b\n") == [
        "f.yaml:1:1: error: a flow file must be a mapping of options such as start: and nodes:"
    ]


def test_a_missing_start_is_reported_at_the_top() -> None:
    assert problems("nodes:\n  a: {type: hangup}\n") == [
        "f.yaml:1:1: error: the flow needs 'start' (the first node of the call)"
    ]

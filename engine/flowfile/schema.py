"""Structural validation against ``flow.schema.json``, reported in plain language.

The JSON Schema (draft 2020-12, shipped as package data) is what editors use for completion and
inline help, and what this module validates flows with, so the two cannot disagree. ``jsonschema``'s
own messages ("'timout' was unexpected") are translated into findings positioned at the offending
key or value, naming the node, with "did you mean ...?" suggestions and the schema's own
``description`` / ``errorMessage`` / ``patternErrorMessage`` texts (the latter two are the VS Code
keywords, so editors show the same words).

Nodes are validated one by one against their type's definition (``#/$defs/<type>``), which is what
the schema's ``if``/``then`` dispatch does, only without trying sixteen ``if``s per node. Most nodes
are valid, and ``jsonschema`` costs about half a millisecond per node, so each node first goes
through ``quick_valid``, a small evaluator of the keywords this schema uses; only the nodes it
rejects are handed to ``jsonschema`` for its detailed errors. ``quick_valid`` refuses keywords it
does not know, and a test holds its verdicts equal to ``jsonschema``'s.

May import ``jsonschema``, ``engine.flowfile.loader`` and ``engine.flowfile.findings``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from engine.flowfile.findings import Finding
from engine.flowfile.loader import Document, Path

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SCHEMA_FILE = "flow.schema.json"


@cache
def schema() -> dict[str, Any]:
    """The flow schema (parsed once)."""
    text = resources.files("engine.flowfile").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _root() -> Draft202012Validator:
    # jsonschema is imported only when a flow has a problem to explain (valid flows never need it),
    # and without check_schema(): validating against the meta-schema costs a quarter of a second;
    # the test suite does it once instead
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


@cache
def _validator(definition: str) -> Draft202012Validator:
    """A validator for one of the schema's ``$defs``; ``evolve`` keeps the root's resolver, so the
    definition's ``#/$defs/...`` references still resolve."""
    return _root().evolve(schema=schema()["$defs"][definition])


@cache
def node_kinds() -> tuple[str, ...]:
    return tuple(schema()["$defs"]["node"]["properties"]["type"]["enum"])


@cache
def _top_schema() -> dict[str, Any]:
    """The top level with every node accepted as is (nodes are validated one by one)."""
    full = schema()
    nodes = dict(full["properties"]["nodes"])
    nodes["additionalProperties"] = True
    return {**full, "properties": {**full["properties"], "nodes": nodes}}


@cache
def _top() -> Draft202012Validator:
    return _root().evolve(schema=_top_schema())


# ---- the fast path -----------------------------------------------------------------------------

_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description", "default", "errorMessage",
                          "patternErrorMessage"})
_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _same(a: Any, b: Any) -> bool:
    """JSON equality as jsonschema sees it: true is not 1."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def quick_valid(instance: Any, subschema: dict[str, Any] | bool) -> bool:
    """True when ``instance`` is valid against ``subschema`` (references resolved in this schema).

    Implements the keywords ``flow.schema.json`` uses and raises ``KeyError`` for any other, so a
    schema change cannot make it silently accept what ``jsonschema`` would refuse."""
    if subschema is True:
        return True
    if subschema is False:
        return False
    for keyword, value in subschema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "$ref":
            if not quick_valid(instance, _resolve(value)):
                return False
        elif keyword == "type":
            types = value if isinstance(value, list) else [value]
            if not any(_TYPES[t](instance) for t in types):
                return False
        elif keyword == "properties":
            if isinstance(instance, dict):
                for key, sub in value.items():
                    if key in instance and not quick_valid(instance[key], sub):
                        return False
        elif keyword == "additionalProperties":
            if isinstance(instance, dict):
                known = subschema.get("properties", {})
                for key, item in instance.items():
                    if key not in known and not quick_valid(item, value):
                        return False
        elif keyword == "required":
            if isinstance(instance, dict) and any(key not in instance for key in value):
                return False
        elif keyword == "propertyNames":
            if isinstance(instance, dict) and not all(quick_valid(key, value) for key in instance):
                return False
        elif keyword == "items":
            if isinstance(instance, list) and not all(quick_valid(item, value) for item in instance):
                return False
        elif keyword == "allOf":
            if not all(quick_valid(instance, sub) for sub in value):
                return False
        elif keyword == "if":
            branch = subschema.get("then" if quick_valid(instance, value) else "else", True)
            if not quick_valid(instance, branch):
                return False
        elif keyword in ("then", "else"):
            continue  # evaluated with "if"
        elif keyword == "enum":
            if not any(_same(instance, option) for option in value):
                return False
        elif keyword == "const":
            if not _same(instance, value):
                return False
        elif keyword == "pattern":
            if isinstance(instance, str) and not _regex(value).search(instance):
                return False
        elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if _TYPES["number"](instance) and not _in_range(keyword, instance, value):
                return False
        elif keyword in ("minLength", "maxLength"):
            if isinstance(instance, str) and not _within(keyword, len(instance), value):
                return False
        elif keyword in ("minItems", "maxItems"):
            if isinstance(instance, list) and not _within(keyword, len(instance), value):
                return False
        elif keyword in ("minProperties", "maxProperties"):
            if isinstance(instance, dict) and not _within(keyword, len(instance), value):
                return False
        elif keyword == "uniqueItems":
            if value and isinstance(instance, list):
                if not all(isinstance(item, str) for item in instance):
                    return False  # not worth implementing: let jsonschema decide
                if len(set(instance)) != len(instance):
                    return False
        else:
            raise KeyError(f"quick_valid does not implement the schema keyword {keyword!r}")
    return True


def _in_range(keyword: str, number: float, bound: float) -> bool:
    if keyword == "minimum":
        return number >= bound
    if keyword == "maximum":
        return number <= bound
    if keyword == "exclusiveMinimum":
        return number > bound
    return number < bound


def _within(keyword: str, size: int, bound: int) -> bool:
    return size >= bound if keyword.startswith("min") else size <= bound


def _resolve(reference: str) -> dict[str, Any]:
    prefix = "#/$defs/"
    if not reference.startswith(prefix):
        raise KeyError(f"quick_valid resolves only {prefix}... references, not {reference!r}")
    return schema()["$defs"][reference[len(prefix):]]


def validate(doc: Document) -> tuple[list[Finding], set[Path]]:
    """Findings for every schema violation, and the paths where they occurred."""
    data = doc.data
    if data is None:
        finding = Finding(doc.file, 1, 1, "error", "the file is empty; a flow needs at least start: and nodes:",
                          code="empty-flow")
        return [finding], {()}
    errors: list[ValidationError] = [] if quick_valid(data, _top_schema()) else list(_top().iter_errors(data))
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if isinstance(nodes, dict):
        kinds = set(node_kinds())
        definitions = schema()["$defs"]
        for node_id, node in nodes.items():
            kind = node.get("type") if isinstance(node, dict) else None
            definition = kind if isinstance(kind, str) and kind in kinds else "node"
            if quick_valid(node, definitions[definition]):
                continue
            for error in _validator(definition).iter_errors(node):
                error.path.extendleft(reversed(("nodes", node_id)))
                errors.append(error)
    findings: list[Finding] = []
    paths: set[Path] = set()
    seen: set[tuple[int, int, str]] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        for finding in _translate(doc, error, path):
            key = (finding.line, finding.col, finding.message)
            if key not in seen:
                seen.add(key)
                findings.append(finding)
        paths.add(path)
    return findings, paths


# ---- wording -----------------------------------------------------------------------------------

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping (name: value lines)",
    "null": "empty",
}


def _actual(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f'the text "{shown}"'
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _field(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += ("." if out else "") + part
    return out


def owner_of(doc: Document, path: Path) -> tuple[str, str | None, Path]:
    """(description of the node or "the flow", node id, path inside it)."""
    if len(path) >= 2 and path[0] == "nodes":
        node_id = str(path[1])
        node = doc.data["nodes"].get(node_id) if isinstance(doc.data, dict) else None
        kind = node.get("type") if isinstance(node, dict) else None
        kind = kind if isinstance(kind, str) and kind in node_kinds() else "node"
        return f"{kind} '{node_id}'", node_id, path[2:]
    return "the flow", None, path


def describe(doc: Document, path: Path) -> tuple[str, str | None]:
    """("'timeout' in menu 'main'", "main") for a path."""
    owner, node_id, inner = owner_of(doc, path)
    if not inner:
        return owner, node_id
    if owner == "the flow":
        return f"'{_field(inner)}'", None
    return f"'{_field(inner)}' in {owner}", node_id


def suggest(word: str, choices: Iterable[str]) -> str:
    """' — did you mean 'x'?' or ''."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f" — did you mean '{lowered[word.lower()]}'?"
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" — did you mean '{match[0]}'?" if match else ""


def _translate(doc: Document, error: ValidationError, path: Path) -> Iterator[Finding]:
    file = doc.file
    schema_ = error.schema if isinstance(error.schema, dict) else {}
    validator = error.validator
    label, node_id = describe(doc, path)

    def at(position: tuple[int, int], message: str, code: str) -> Finding:
        return Finding(file, position[0], position[1], "error", message, node=node_id, code=code)

    if "propertyNames" in error.relative_schema_path or "propertyNames" in error.schema_path:
        name = error.instance
        hint = schema_.get("patternErrorMessage") or "is not allowed here"
        where = "" if label == "'nodes'" else f" in {label}"
        yield at(doc.key((*path, name)), f"'{name}'{where} {hint}".replace(" in the flow", ""), "bad-name")
        return
    if validator == "additionalProperties":
        known = list(schema_.get("properties", {}))
        extras = [k for k in error.instance if k not in schema_.get("properties", {})]
        owner, _, inner = owner_of(doc, path)
        where = ("at the top of the flow" if owner == "the flow" and not inner
                 else f"in {owner}" if not inner
                 else f"in '{_field(inner)}'" if owner == "the flow" else f"in '{_field(inner)}' of {owner}")
        for key in extras:
            hint = suggest(str(key), known)
            if not hint:
                others = sorted(kind for kind in node_kinds()
                                if key in schema()["$defs"][kind]["properties"] and kind != owner.split(" ")[0])
                if inner == () and owner != "the flow" and others:
                    hint = f" ('{key}' is an option of {', '.join(others)})"
            yield at(doc.key((*path, key)), f"unknown option '{key}' {where}{hint}", "unknown-key")
        return
    if validator == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        properties = schema_.get("properties", {})
        for key in error.validator_value:
            if key in present:
                continue
            description = properties.get(key, {}).get("description", "")
            if key == "type":
                message = f"{label} has no 'type'; add one of: {', '.join(node_kinds())}"
            else:
                about = description.rstrip(".")
                about = about[:1].lower() + about[1:]
                message = f"{label} needs '{key}'" + (f" ({about})" if about else "")
                if key == "failed" and present.get("on_failure") == "continue":
                    message = (f"{label} needs 'failed' because on_failure is continue (where the call goes "
                               "when the transfer fails)")
            position = doc.key(path) if path else (1, 1)
            yield at(position, message, "missing-key")
        return
    value = error.instance
    position = doc.pos(path)
    if validator == "type":
        custom = schema_.get("errorMessage")
        expected = error.validator_value
        if custom:
            yield at(position, f"{label} {custom}, not {_actual(value)}", "wrong-type")
            return
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in (expected if isinstance(expected, list) else [expected]))
        if value is None:
            yield at(position, f"{label} is empty; write {words}", "wrong-type")
        elif label == "the flow":
            yield at(position, "a flow file must be a mapping of options such as start: and nodes:", "wrong-type")
        else:
            yield at(position, f"{label} must be {words}, not {_actual(value)}", "wrong-type")
        return
    if validator in ("enum", "const"):
        allowed = error.validator_value if validator == "enum" else [error.validator_value]
        if path and path[-1] == "type" and len(path) == 3:
            hint = suggest(str(value), allowed)
            yield at(position, f"unknown node type '{value}' for node '{path[1]}'{hint}", "unknown-type")
            return
        hint = suggest(str(value), [str(a) for a in allowed])
        choices = ", ".join(str(a) for a in allowed)
        yield at(position, f"{label} must be one of {choices}, not {_actual(value)}{hint}", "bad-value")
        return
    if validator == "pattern":
        custom = schema_.get("patternErrorMessage") or schema_.get("errorMessage") or "has the wrong form"
        yield at(position, f"{label} {custom}, not {_actual(value)}", "bad-value")
        return
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low = schema_.get("minimum")
        high = schema_.get("maximum")
        if schema_.get("exclusiveMinimum") is not None:
            message = f"{label} must be more than {schema_['exclusiveMinimum']}"
            if high is not None:
                message += f" and at most {high}"
        elif low is not None and high is not None:
            message = f"{label} must be between {low} and {high}"
        elif low is not None:
            message = f"{label} must be at least {low}"
        else:
            message = f"{label} must be at most {high}"
        yield at(position, f"{message}, not {value}", "out-of-range")
        return
    if validator == "maxLength":
        yield at(position, f"{label} is {len(value)} characters long; at most {error.validator_value} are allowed",
                 "too-long")
        return
    if validator in ("minLength", "minProperties"):
        yield at(position, f"{label} can't be empty", "empty-value")
        return
    if validator == "minItems":
        count = error.validator_value
        yield at(position, f"{label} needs at least {count} item{'s' if count != 1 else ''}", "empty-value")
        return
    if validator == "maxItems":
        yield at(position, f"{label} can have at most {error.validator_value} items; it has {len(value)}",
                 "too-many")
        return
    if validator == "uniqueItems":
        yield at(position, f"{label} lists the same value more than once", "duplicate-value")
        return
    yield at(position, f"{label}: {error.message}", "schema")  # pragma: no cover - keywords not used

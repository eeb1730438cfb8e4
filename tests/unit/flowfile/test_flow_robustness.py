"""Whatever an author types, checking gives findings, never an exception."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.flowfile import compile_source

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "flows").glob("*.yaml"))
           + sorted((ROOT / "tests" / "flows_bad").glob("*.yaml"))]
TYPING = list(":\t\"'[]{}-#&*!|>%@` \n0123456789yn+~,?")

edit = st.tuples(st.integers(min_value=0), st.sampled_from(["insert", "delete", "replace"]), st.sampled_from(TYPING))


def apply(source: str, edits: list[tuple[int, str, str]]) -> str:
    chars = list(source)
    for position, operation, char in edits:
        index = position % max(len(chars), 1)
        if operation == "insert" or not chars:
            chars.insert(index, char)
        elif operation == "delete":
            del chars[index]
        else:
            chars[index] = char
    return "".join(chars)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SOURCES), st.lists(edit, min_size=1, max_size=6))
def test_typing_mistakes_give_findings_not_exceptions(source: str, edits: list[tuple[int, str, str]]) -> None:
    flow, findings = compile_source(apply(source, edits), "typo.yaml")
    assert not any(f.code == "internal" for f in findings), findings
    assert all(f.file == "typo.yaml" and f.message for f in findings)
    assert (flow is None) == any(f.severity == "error" for f in findings)


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=False, allow_infinity=False, width=16),
    st.sampled_from(["", "x", "main", "+6561234567", "room:", "{{ x }}", "{{ ''.__class__ }}", "{{", "mon",
                     "09:00-18:00", "2026-02-30", "Asia/Nowhere", "GET", "continue"]),
    st.lists(st.sampled_from(["a", "+6561234567", "09:00-10:00"]), max_size=3),
    st.fixed_dictionaries({"then": st.sampled_from(["end", "x"])}),
    st.fixed_dictionaries({"text": st.just("hi"), "language": st.sampled_from(["en", "EN", "xx-YY"])}),
)
KEYS = st.sampled_from(["type", "say", "next", "to", "then", "options", "timeout", "no_input", "invalid", "into",
                        "max_length", "weekly", "holidays", "timezone", "cases", "values", "url", "failed",
                        "numbers", "room", "force", "music", "typo"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SOURCES[:5]), st.lists(st.tuples(st.integers(min_value=0), KEYS, VALUES), min_size=1,
                                               max_size=4))
def test_wrong_values_anywhere_give_findings_not_exceptions(source: str, changes: list) -> None:
    data = yaml.safe_load(source)
    nodes = list(data["nodes"].values())
    for index, key, value in changes:
        nodes[index % len(nodes)][key] = value
    _, findings = compile_source(yaml.safe_dump(data, sort_keys=False), "values.yaml")
    assert not any(f.code == "internal" for f in findings), findings

"""The YAML reader: positions, YAML 1.2 values, refused YAML 1.1 surprises, friendly syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.flowfile import loader
from engine.flowfile.loader import MAX_BYTES, MAX_DEPTH, Document, load_document, resolve_plain

ROOT = Path(__file__).resolve().parents[3]


def messages(doc: Document) -> list[str]:
    return [str(f) for f in doc.findings]


def test_values_and_keys_keep_their_one_based_line_and_column() -> None:
    doc = load_document("start: main\nnodes:\n  main:\n    type: play\n    say: [hi, {audio: x}]\n", "f.yaml")
    assert doc.findings == []
    assert doc.data == {"start": "main", "nodes": {"main": {"type": "play", "say": ["hi", {"audio": "x"}]}}}
    assert doc.pos(("start",)) == (1, 8)
    assert doc.key(("start",)) == (1, 1)
    assert doc.key(("nodes", "main")) == (3, 3)
    assert doc.pos(("nodes", "main", "type")) == (4, 11)
    assert doc.pos(("nodes", "main", "say", 0)) == (5, 11)
    assert doc.pos(("nodes", "main", "say", 1, "audio")) == (5, 23)
    # a path that does not exist falls back to the closest enclosing value
    assert doc.pos(("nodes", "main", "next")) == doc.pos(("nodes", "main"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True), ("false", False), ("True", True), ("FALSE", False),
        ("~", None), ("null", None), ("", None),
        ("0", 0), ("42", 42), ("-7", -7), ("2.5", 2.5), ("-0.5", -0.5), ("1e3", 1000.0),
        ("2026-12-25", "2026-12-25"),  # dates stay text (YAML 1.1 would make a date object)
        ("09:00-18:00", "09:00-18:00"), ("room:R1", "room:R1"), ("hello world", "hello world"),
        (".inf", ".inf"), ("-", "-"), ("1.2.3", "1.2.3"),
    ],
)
def test_plain_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    assert resolve_plain(text) == (value, None)
    assert type(resolve_plain(text)[0]) is type(value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("confirm: no", 'no must be in quotes: write "no" for text, or true/false for a yes/no option (older '
                        "YAML reads it as false)"),
        ("confirm: On", 'On must be in quotes: write "On" for text, or true/false for a yes/no option (older '
                        "YAML reads it as true)"),
        ("confirm: y", 'y must be in quotes: write "y" for text, or true/false for a yes/no option (older YAML '
                       "reads it as true)"),
        ("confirm: OFF", 'OFF must be in quotes: write "OFF" for text, or true/false for a yes/no option (older '
                         "YAML reads it as false)"),
    ],
)
def test_yaml_1_1_booleans_are_refused_with_the_quoted_form(line: str, message: str) -> None:
    doc = load_document(line + "\n", "f.yaml")
    col = line.index(":") + 3
    assert messages(doc) == [f"f.yaml:1:{col}: error: {message}"]
    assert not doc.fatal
    # the value is kept as the text written, so later stages can still run
    assert isinstance(doc.data[line.split(":")[0]], str)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0123", "older YAML reads it as the octal number 83"),
        ("089", "YAML may read it as a number and the leading zero is lost"),
        ("+6511111111", "YAML reads it as a number and the + is lost"),
        ("+1.5", "YAML reads it as a number and the + is lost"),
        ("1:30", "older YAML reads it as the number 90"),
        ("9:00", "older YAML reads it as the number 540"),
        ("0x1F", "YAML reads it as the number 31"),
        ("1_000", "YAML reads it as the number 1000"),
    ],
)
def test_numbers_that_change_meaning_must_be_quoted(value: str, reason: str) -> None:
    doc = load_document(f"pin: {value}\n", "f.yaml")
    assert messages(doc) == [f'f.yaml:1:6: error: {value} must be in quotes: write "{value}" ({reason})']
    assert doc.data == {"pin": value}


def test_quoted_values_are_always_text() -> None:
    doc = load_document("a: 'yes'\nb: \"0123\"\nc: \"+6511111111\"\nd: '1:30'\n\"1\": x\n", "f.yaml")
    assert doc.findings == []
    assert doc.data == {"a": "yes", "b": "0123", "c": "+6511111111", "d": "1:30", "1": "x"}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("1", 'key 1 must be in quotes: write "1": (YAML reads it as a number, not as text)'),
        ("2.5", 'key 2.5 must be in quotes: write "2.5": (YAML reads it as a number, not as text)'),
        ("yes", 'key yes must be in quotes: write "yes": (older YAML reads it as true)'),
        ("true", 'key true must be in quotes: write "true": (YAML reads it as true)'),
        ("~", 'key ~ must be in quotes: write "~": (YAML reads it as empty)'),
        ("012", 'key 012 must be in quotes: write "012": (older YAML reads it as the octal number 10)'),
    ],
)
def test_mapping_keys_must_be_text(key: str, message: str) -> None:
    doc = load_document(f"options:\n  {key}: sales\n", "f.yaml")
    assert messages(doc) == [f"f.yaml:2:3: error: {message}"]
    assert doc.data == {"options": {key: "sales"}}


def test_duplicate_keys_name_both_lines_at_any_depth() -> None:
    doc = load_document("start: a\nnodes:\n  a:\n    type: play\n    type: menu\nstart: b\n", "f.yaml")
    assert messages(doc) == [
        "f.yaml:5:5: error: 'type' is written twice here (first on line 4); YAML would silently use only the "
        "last one, so keep just one",
        "f.yaml:6:1: error: 'start' is written twice here (first on line 1); YAML would silently use only the "
        "last one, so keep just one",
    ]
    assert doc.data == {"start": "a", "nodes": {"a": {"type": "play"}}}  # the first one is kept


def test_the_same_key_in_different_mappings_is_fine() -> None:
    doc = load_document("a: {next: x}\nb: {next: z}\n", "f.yaml")
    assert doc.findings == []


def test_merge_keys_are_refused() -> None:
    doc = load_document("a:\n  <<: {b: 1}\n", "f.yaml")
    assert messages(doc) == [
        "f.yaml:2:3: error: merge keys (<<) are not allowed in flow files; write the options out in full"
    ]


def test_python_tags_are_refused_before_anything_is_built() -> None:
    doc = load_document("a: !!python/object/apply:os.system ['echo hacked']\n", "f.yaml")
    assert doc.fatal
    assert messages(doc) == [
        "f.yaml:1:4: error: YAML tags (!!python/object/apply:os.system) are not allowed in flow files; remove it"
    ]


def test_ten_thousand_brackets_give_a_clean_error() -> None:
    doc = load_document("a: " + "[" * 10_000, "f.yaml")
    assert doc.fatal
    assert messages(doc) == [f"f.yaml:1:{4 + MAX_DEPTH - 1}: error: the file is nested more than {MAX_DEPTH} "
                             "levels deep"]


def test_nesting_up_to_the_limit_is_accepted() -> None:
    depth = MAX_DEPTH - 1  # the outer mapping is one level
    doc = load_document("a: " + "[" * depth + "]" * depth + "\n", "f.yaml")
    assert doc.findings == []


def test_files_over_512_kib_are_refused_unread() -> None:
    source = b"a: '" + b"x" * MAX_BYTES + b"'\n"
    doc = load_document(source, "big.yaml")
    assert messages(doc) == ["big.yaml:1:1: error: the file is 513 KiB; a flow file may be at most 512 KiB"]
    assert doc.fatal


def test_non_utf8_files_are_refused() -> None:
    doc = load_document(b"a: 1\nb: caf\xe9\n", "f.yaml")
    assert messages(doc) == ["f.yaml:2:1: error: the file is not UTF-8 text; save it as UTF-8"]


def test_a_byte_order_mark_is_accepted() -> None:
    doc = load_document("\ufeffa: 1\n".encode(), "f.yaml")
    assert doc.findings == [] and doc.data == {"a": 1}


def test_one_document_per_file() -> None:
    doc = load_document("a: 1\n---\nb: 2\n", "f.yaml")
    assert messages(doc) == [
        "f.yaml:2:1: error: a flow file holds one YAML document; remove the second '---' and what follows it"
    ]


def test_an_empty_file_has_no_data_and_no_findings() -> None:
    doc = load_document(b"", "f.yaml")
    assert doc.data is None and doc.findings == [] and not doc.fatal


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("nodes:\n\tmain: 1\n", "2:1"),
        ("nodes:\n  main:\n\t  type: play\n", "3:1"),
        ("nodes:\n  main:\n    type: play\n  \tsay: hi\n", "4:3"),
        ("a: 1\n\tb: 2\n", "2:1"),
    ],
)
def test_tab_indentation_gets_one_friendly_line(source: str, where: str) -> None:
    doc = load_document(source, "f.yaml")
    assert messages(doc) == [f"f.yaml:{where}: error: tabs can't be used for indenting in YAML; use spaces"]


def test_tabs_inside_values_are_fine() -> None:
    doc = load_document('say: "a\tb"\n', "f.yaml")
    assert doc.findings == [] and doc.data == {"say": "a\tb"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("say: Note: closed today\n", "1:10: error: a ':' can't be used here; put text that contains ': ' in quotes"),
        ('a: "never closed\nb: 2\n', "1:4: error: the file ends inside a quoted text or a [ ] / { } list"),
        ("a: [1, 2\nb: 3\n", "1:4: error: a [ ] list is not closed properly; check the commas and the ']'"),
        ("a: {b: 1", "1:4: error: a { } mapping is not closed properly; check the commas and the '}'"),
        ("a:\n  b: 1\n c: 2\n", "3:2: error: this line's indentation doesn't line up with the lines above it"),
        ("a: @home\n", "1:4: error: a value can't start with @ or `; put it in quotes"),
        ('a: "x" y\n', "1:8: error: unexpected text after a value; put the whole value in quotes"),
    ],
)
def test_syntax_errors_are_one_line_with_a_position(source: str, message: str) -> None:
    doc = load_document(source, "f.yaml")
    assert doc.fatal
    assert messages(doc) == [f"f.yaml:{message}"]


def test_control_characters_are_reported_with_their_position() -> None:
    doc = load_document("a: 1\nb: x\x07y\n", "f.yaml")
    assert messages(doc) == ["f.yaml:2:5: error: the file contains a character YAML doesn't allow (#x0007)"]


@pytest.mark.parametrize("path", sorted((ROOT / "flows").glob("*.yaml")), ids=lambda p: p.name)
def test_libyaml_and_pure_python_parsers_read_flows_identically(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fast, pure = Document(str(path)), Document(str(path))
    loader._read(loader.FastFlowLoader, text, fast)
    loader._read(loader.FlowLoader, text, pure)
    assert fast.data == pure.data
    assert fast.value_pos == pure.value_pos
    assert fast.key_pos == pure.key_pos


def test_the_loader_is_a_safe_loader() -> None:
    import yaml

    assert issubclass(loader.FlowLoader, yaml.SafeLoader)

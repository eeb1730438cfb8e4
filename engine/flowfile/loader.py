"""Reading flow YAML: plain data plus the line and column of every key and value.

Flow files are written by people who are not programmers, and YAML has traps for them. This module
turns a file into plain JSON-like data (dict, list, str, int, float, bool, None) while

* keeping the 1-based line and column of every value and every mapping key (``Document.pos``,
  ``Document.key_pos``), so later stages can point at the exact spot;
* refusing anchors and aliases (``&x`` / ``*x``: the "billion laughs" YAML bomb), explicit tags
  (``!!python/object``), duplicate keys (YAML silently keeps the last one), nesting deeper than
  ``MAX_DEPTH`` and files larger than ``MAX_BYTES``;
* resolving plain scalars by YAML 1.2 rules, and refusing, with the quoted form to write instead,
  the plain values whose meaning differs between YAML versions or silently loses information:
  ``yes``/``no``/``on``/``off``/``y``/``n``, ``0123``, ``+6561234567``, ``1:30``, ``0x1F``, ``1_000``,
  and mapping keys that are not text (menu option ``1:`` must be ``"1":``);
* turning YAML syntax errors (tab indentation above all) into one friendly line with a position.

Composition is done here, from the parser's event stream, without recursion (a file of 10,000 ``[``
cannot exhaust the stack) and without PyYAML's constructors (nothing is ever instantiated from a
tag). libyaml parses when available; on a syntax error the pure-Python parser re-reads the file so
the message is the same on every installation.

May import PyYAML and ``engine.flowfile.findings``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from engine.flowfile.findings import Finding

MAX_BYTES = 512 * 1024
MAX_DEPTH = 40

Path = tuple[str | int, ...]
Position = tuple[int, int]


class FlowLoader(yaml.SafeLoader):
    """PyYAML's safe loader, used only for its scanner and parser: ``Document`` composition
    replaces the composer and constructor (positions kept, YAML 1.1 surprises refused)."""


if yaml.__with_libyaml__:  # pragma: no branch - depends on the PyYAML build

    class FastFlowLoader(yaml.CSafeLoader):
        """Same as ``FlowLoader`` with libyaml's parser (about ten times faster)."""

else:  # pragma: no cover
    FastFlowLoader = FlowLoader  # type: ignore[misc,assignment]


@dataclass
class Document:
    """A flow file read into plain data, with positions."""

    file: str
    data: Any = None
    #: path of a value (("nodes", "main", "options", "1")) -> (line, col) where the value starts
    value_pos: dict[Path, Position] = field(default_factory=dict)
    #: path of a mapping entry -> (line, col) of its key
    key_pos: dict[Path, Position] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    #: True when the data could not be read at all (syntax error, YAML bomb, ...)
    fatal: bool = False

    def pos(self, path: Path) -> Position:
        """Where the value at ``path`` starts; the nearest enclosing value when it does not exist."""
        while path:
            found = self.value_pos.get(path)
            if found:
                return found
            path = path[:-1]
        return self.value_pos.get((), (1, 1))

    def key(self, path: Path) -> Position:
        """Where the key of the entry at ``path`` is written (the value's position at the top)."""
        while path:
            found = self.key_pos.get(path)
            if found:
                return found
            path = path[:-1]
        return self.value_pos.get((), (1, 1))


class _Fatal(Exception):
    def __init__(self, line: int, col: int, message: str, code: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message, self.code = line, col, message, code


# ---- plain scalars -----------------------------------------------------------------------------

_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_YAML11_BOOL = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), False),
}
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:\.[0-9]+|(?:0|[1-9][0-9]*)(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_PLUS_NUMBER = re.compile(r"\+\.?[0-9][0-9_.:eE+-]*")
_LEADING_ZERO = re.compile(r"-?0[0-9_]+(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?")
_OTHER_INT = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|[0-9][0-9_]*_[0-9_]*)")


def _quote_problem(text: str) -> str | None:
    """Why a plain (unquoted) scalar must be quoted, or None when its meaning is unambiguous."""
    if text in _YAML11_BOOL:
        return f"older YAML reads it as {str(_YAML11_BOOL[text]).lower()}"
    if _SEXAGESIMAL.fullmatch(text):
        sign = -1 if text.startswith("-") else 1
        total = 0.0
        for part in text.lstrip("+-").replace("_", "").split(":"):
            total = total * 60 + float(part)
        number = sign * total
        shown = int(number) if number == int(number) else number
        return f"older YAML reads it as the number {shown}"
    if _PLUS_NUMBER.fullmatch(text):
        return "YAML reads it as a number and the + is lost"
    if _LEADING_ZERO.fullmatch(text):
        digits = text.lstrip("-").replace("_", "")
        if digits.isdigit() and set(digits) <= set("01234567"):
            return f"older YAML reads it as the octal number {int(digits, 8)}"
        return "YAML may read it as a number and the leading zero is lost"
    if _OTHER_INT.fullmatch(text):
        try:
            return f"YAML reads it as the number {int(text.replace('_', ''), 0)}"
        except ValueError:
            return "YAML may read it as a number"
    return None


def resolve_plain(text: str) -> tuple[Any, str | None]:
    """The value of a plain scalar (YAML 1.2 core rules), or the text and why it must be quoted."""
    if text in _TRUE:
        return True, None
    if text in _FALSE:
        return False, None
    if text in _NULL:
        return None, None
    first = text[0]
    # only text that starts like a number or a YAML 1.1 boolean can be anything but a string
    if first.isdigit() or first in "+-.:" or text in _YAML11_BOOL:
        problem = _quote_problem(text)
        if problem:
            return text, problem
        if _INT.fullmatch(text):
            return int(text), None
        if _FLOAT.fullmatch(text) and any(c.isdigit() for c in text):
            return float(text), None
    return text, None


# ---- syntax errors -----------------------------------------------------------------------------

_SYNTAX_HINTS = (
    ("mapping values are not allowed", "a ':' can't be used here; put text that contains ': ' in quotes"),
    ("could not find expected ':'", "expected 'name: value' here; a ':' is missing or the indentation is off"),
    ("found unexpected end of stream", "the file ends inside a quoted text or a [ ] / { } list"),
    ("expected <block end>, but found '<scalar>'", "unexpected text after a value; put the whole value in quotes"),
    ("expected <block end>", "this line's indentation doesn't line up with the lines above it"),
    ("expected ',' or ']'", "a [ ] list is not closed properly; check the commas and the ']'"),
    ("expected ',' or '}'", "a { } mapping is not closed properly; check the commas and the '}'"),
    ("found unknown escape character", "unknown escape sequence in double quotes; use single quotes instead"),
    ("did not find expected '-' indicator", "a list item ('- ...') is indented differently from the others"),
    ("did not find expected key", "this line's indentation doesn't line up with the lines above it"),
    ("found unexpected ':'", "a ':' can't be used here; put the text in quotes"),
    ("expected a comment or a line break", "unexpected text after a quoted value; quote the whole value"),
    ("found character '@' that cannot start any token", "a value can't start with @ or `; put it in quotes"),
    ("found character '`' that cannot start any token", "a value can't start with @ or `; put it in quotes"),
    ("expected the node content", "a value is missing here"),
)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "this is not valid YAML"
    for needle, hint in _SYNTAX_HINTS:
        if needle in problem:
            return hint
    return f"this is not valid YAML: {problem}"


def _tab_position(lines: list[str], upto_line: int) -> Position | None:
    """The first tab used for indentation on the error line, else on the closest line above it."""
    for index in range(min(upto_line, len(lines) - 1), -1, -1):
        line = lines[index]
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            return index + 1, indent.index("\t") + 1
        if index < upto_line - 1 and line.strip() and "\t" not in line:
            break  # an ordinary line between: the tab is not the cause
    return None


# ---- composition -------------------------------------------------------------------------------

_NO_KEY = object()


class _Frame:
    __slots__ = ("container", "path", "key", "key_path", "first_line")

    def __init__(self, container: dict | list, path: Path) -> None:
        self.container = container
        self.path = path
        self.key: Any = _NO_KEY
        self.key_path: Path = ()
        self.first_line: dict[str, int] = {}


def _compose(loader: yaml.SafeLoader | yaml.CSafeLoader, doc: Document) -> None:
    """Build ``doc.data`` from the event stream; raise ``_Fatal`` for what cannot be read."""
    get_event, check_event = loader.get_event, loader.check_event
    get_event()  # stream start
    if check_event(StreamEndEvent):
        return  # empty file
    get_event()  # document start
    stack: list[_Frame] = []
    value_pos, key_pos, findings = doc.value_pos, doc.key_pos, doc.findings
    root: Any = None
    while True:
        event = get_event()
        mark = event.start_mark
        line, col = mark.line + 1, mark.column + 1
        kind = type(event)
        if kind is AliasEvent:
            raise _Fatal(line, col, f"aliases (*{event.anchor}) are not allowed in flow files; write the "
                         "value out in full", "yaml-alias")
        if kind in (MappingEndEvent, SequenceEndEvent):
            stack.pop()
            if stack:
                continue
            break
        if event.anchor is not None:
            raise _Fatal(line, col, f"anchors (&{event.anchor}) are not allowed in flow files; write the "
                         "value out in full", "yaml-alias")
        if event.tag is not None and event.tag != "!":
            shown = event.tag.replace("tag:yaml.org,2002:", "!!")
            raise _Fatal(line, col, f"YAML tags ({shown}) are not allowed in flow files; remove it", "yaml-tag")
        top = stack[-1] if stack else None
        if top is not None and top.key is _NO_KEY and type(top.container) is dict:
            # a mapping key
            if kind is not ScalarEvent:
                raise _Fatal(line, col, "a key must be a simple name, not a list or mapping", "yaml-key")
            key = event.value
            if event.implicit[0]:
                value, problem = resolve_plain(key)
                if problem is None and not isinstance(value, str):
                    if value is None:
                        problem = "YAML reads it as empty"
                    elif isinstance(value, bool):
                        problem = f"YAML reads it as {str(value).lower()}"
                    else:
                        problem = "YAML reads it as a number, not as text"
                if problem is not None:
                    shown = key if key else "(empty)"
                    findings.append(Finding(doc.file, line, col, "error",
                                            f'key {shown} must be in quotes: write "{key}": ({problem})',
                                            code="yaml-quote"))
                if key == "<<":
                    findings.append(Finding(doc.file, line, col, "error",
                                            "merge keys (<<) are not allowed in flow files; write the options "
                                            "out in full", code="yaml-merge"))
            first = top.first_line.get(key)
            if first is not None:
                findings.append(Finding(doc.file, line, col, "error",
                                        f"'{key}' is written twice here (first on line {first}); YAML would "
                                        "silently use only the last one, so keep just one",
                                        code="yaml-duplicate-key"))
                # the duplicate's value is read (to find its own problems) but not kept
                top.key = None
                top.key_path = (*top.path, f"\0duplicate {line}:{col}")
            else:
                top.first_line[key] = line
                top.key = key
                top.key_path = (*top.path, key)
                key_pos[top.key_path] = (line, col)
            continue
        # a value: where does it go?
        if top is None:
            path: Path = ()
        elif type(top.container) is list:
            path = (*top.path, len(top.container))
        else:
            path = top.key_path
        if kind is ScalarEvent:
            if event.implicit[0]:
                value, problem = resolve_plain(event.value)
                if problem is not None:
                    text = event.value
                    advice = f'write "{text}"'
                    if text in _YAML11_BOOL:
                        advice += " for text, or true/false for a yes/no option"
                    findings.append(Finding(doc.file, line, col, "error",
                                            f"{text} must be in quotes: {advice} ({problem})", code="yaml-quote"))
            else:
                value = event.value
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            if len(stack) >= MAX_DEPTH:
                raise _Fatal(line, col, f"the file is nested more than {MAX_DEPTH} levels deep", "yaml-depth")
            value = {} if kind is MappingStartEvent else []
        else:  # pragma: no cover - the parser produces nothing else inside a document
            raise _Fatal(line, col, "unexpected YAML content", "yaml-syntax")
        value_pos[path] = (line, col)
        if top is None:
            root = value
        elif type(top.container) is list:
            top.container.append(value)
        else:
            if top.key is not None:
                top.container[top.key] = value
            top.key = _NO_KEY
        if kind is not ScalarEvent:
            stack.append(_Frame(value, path))
        elif top is None:
            break
    doc.data = root
    if not check_event(DocumentEndEvent):  # pragma: no cover - the parser guarantees it
        raise _Fatal(1, 1, "unexpected YAML content", "yaml-syntax")
    get_event()
    if not check_event(StreamEndEvent):
        event = loader.peek_event()
        raise _Fatal(event.start_mark.line + 1, event.start_mark.column + 1,
                     "a flow file holds one YAML document; remove the second '---' and what follows it",
                     "yaml-multiple-documents")


def _read(loader_class: type, text: str, doc: Document) -> None:
    loader = loader_class(text)
    try:
        _compose(loader, doc)
    finally:
        loader.dispose()


def load_document(source: bytes | str, file: str) -> Document:
    """Read YAML source (bytes as stored on disk, or text) into a ``Document``. Never raises for
    bad input: problems are in ``Document.findings`` (``fatal`` when there is no usable data)."""
    doc = Document(file)
    size = len(source.encode("utf-8") if isinstance(source, str) else source)
    if size > MAX_BYTES:
        return _fail(doc, 1, 1, f"the file is {-(-size // 1024)} KiB; a flow file may be at most "
                     f"{MAX_BYTES // 1024} KiB", "file-too-large")
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = source[: exc.start].count(b"\n") + 1
            return _fail(doc, line, 1, "the file is not UTF-8 text; save it as UTF-8", "file-encoding")
    else:
        text = source
    try:
        _read(FastFlowLoader, text, doc)
    except _Fatal as exc:
        return _fail(doc, exc.line, exc.col, exc.message, exc.code)
    except yaml.MarkedYAMLError as fast_error:
        # re-read with the pure-Python parser: its messages are what the friendly texts expect
        retry = Document(file)
        try:
            _read(FlowLoader, text, retry)
        except _Fatal as exc:
            return _fail(doc, exc.line, exc.col, exc.message, exc.code)
        except yaml.MarkedYAMLError as exc:
            return _syntax_failure(doc, text, exc)
        except yaml.YAMLError:  # pragma: no cover - a reader error found only by the pure parser
            pass
        return _syntax_failure(doc, text, fast_error)  # pragma: no cover - libyaml-only error
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return _fail(doc, line, col, f"the file contains a character YAML doesn't allow (#x{ord(char):04x})",
                     "yaml-syntax")
    except yaml.YAMLError as exc:  # pragma: no cover - defensive: any other parser failure
        return _fail(doc, 1, 1, f"this is not valid YAML: {exc}", "yaml-syntax")
    except RecursionError:  # pragma: no cover - composition is iterative; defensive
        return _fail(doc, 1, 1, f"the file is nested more than {MAX_DEPTH} levels deep", "yaml-depth")
    if not doc.value_pos:
        doc.value_pos[()] = (1, 1)
    return doc


def _fail(doc: Document, line: int, col: int, message: str, code: str) -> Document:
    doc.findings.append(Finding(doc.file, line, col, "error", message, code=code))
    doc.fatal = True
    doc.data = None
    return doc


def _syntax_failure(doc: Document, text: str, exc: yaml.MarkedYAMLError) -> Document:
    mark = exc.problem_mark or exc.context_mark
    if exc.context_mark and exc.problem and ("end of stream" in exc.problem or "expected ','" in exc.problem):
        mark = exc.context_mark  # where the unclosed quote or bracket was opened
    line = mark.line + 1 if mark else 1
    col = mark.column + 1 if mark else 1
    lines = text.splitlines()
    tab = _tab_position(lines, line - 1) if lines else None
    if tab is not None or (exc.problem and "'\\t'" in exc.problem):
        if tab is not None:
            line, col = tab
        return _fail(doc, line, col, "tabs can't be used for indenting in YAML; use spaces", "yaml-tab")
    return _fail(doc, line, col, _syntax_message(exc), "yaml-syntax")

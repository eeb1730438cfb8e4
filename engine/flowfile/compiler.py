"""Compiling checked YAML data into the ``engine.core.flow`` model.

Input is a ``Document`` (plain data plus positions) that has been through the schema; output is the
immutable ``Flow`` the interpreter walks, and a ``SourceMap`` recording where every exit target,
template and prompt was written, which is what the semantic checks report against.

Nodes whose data broke the schema are not compiled (they are listed in ``SourceMap.broken``): the
schema has already said what is wrong with them, and guessing their meaning would only add noise.
A template with a syntax error is reported here and replaced by a placeholder so that the rest of
the node (its exits, above all) can still be checked.

The option names each node type accepts are declared once (``NODE_KEYS``/``NODE_REQUIRED``) and the
readers refuse to read anything else, so a test can hold them equal to the schema's ``properties``
and ``required``. Defaults live in ``DEFAULTS`` (documented in docs/flows.md).

May import ``engine.core.flow``, ``engine.flowfile.{loader,findings,templating,schema}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

from engine.core.flow import (
    NODE_KINDS,
    Audio,
    Branch,
    Case,
    Collect,
    Conference,
    Dial,
    Flow,
    Goto,
    Hangup,
    Hold,
    Hours,
    Http,
    Interval,
    Menu,
    Monitor,
    Node,
    Play,
    Pos,
    Prompt,
    Record,
    RenderError,
    Retry,
    Say,
    Set,
    Transfer,
    Unhold,
    Voice,
    VoipNowInvite,
)
from engine.flowfile.findings import Finding
from engine.flowfile.limits import NODE_ID_MAX, NODE_ID_RE, TIME_RANGE_RE, WEEKDAYS
from engine.flowfile.loader import Document, Path
from engine.flowfile.schema import describe
from engine.flowfile.templating import JinjaExpression, JinjaTemplate, TemplateSyntaxProblem

# ---- what each part of a flow accepts (held equal to flow.schema.json by a test) ----------------

TOP_KEYS = frozenset({"description", "numbers", "start", "on_error", "voice", "inputs", "vars", "nodes"})
TOP_REQUIRED = frozenset({"start", "nodes"})
VOICE_KEYS = frozenset({"language", "gender"})
SPEECH_KEYS = frozenset({"text", "language", "gender"})
AUDIO_KEYS = frozenset({"audio"})
RETRY_KEYS = frozenset({"say", "tries", "then"})
RETRY_REQUIRED = frozenset({"then"})
CASE_KEYS = frozenset({"when", "then"})
CASE_REQUIRED = frozenset({"when", "then"})

NODE_KEYS: dict[str, frozenset[str]] = {
    "play": frozenset({"type", "say", "next", "tag"}),
    "menu": frozenset({"type", "say", "repeat", "options", "timeout", "no_input", "invalid", "tag"}),
    "collect": frozenset({"type", "say", "repeat", "into", "min_length", "max_length", "pattern", "sensitive",
                          "timeout", "no_input", "invalid", "next", "tag"}),
    "record": frozenset({"type", "say", "max_duration", "into", "next", "tag"}),
    "monitor": frozenset({"type", "say", "into", "next", "tag"}),
    "hold": frozenset({"type", "music", "next"}),
    "unhold": frozenset({"type", "next", "tag"}),
    "transfer": frozenset({"type", "to", "say", "caller_id", "ring_time", "room_profile", "on_failure", "failed",
                           "tag"}),
    "hangup": frozenset({"type", "say", "force", "tag"}),
    "dial": frozenset({"type", "say", "caller_id", "max_duration", "answered", "unanswered", "busy", "failed",
                       "tag"}),
    "conference": frozenset({"type", "numbers", "room", "caller_id", "next", "failed"}),
    "http": frozenset({"type", "url", "method", "headers", "body", "timeout", "save", "next", "failed"}),
    "set": frozenset({"type", "values", "next"}),
    "branch": frozenset({"type", "cases", "otherwise"}),
    "hours": frozenset({"type", "timezone", "weekly", "holidays", "open", "closed", "holiday"}),
    "goto": frozenset({"type", "to"}),
    "voipnow_invite": frozenset({"type", "number", "conference_number", "pin", "wait_for_pickup", "caller_id", "next",
                                 "failed"}),
}
NODE_REQUIRED: dict[str, frozenset[str]] = {
    "play": frozenset({"type", "say", "next"}),
    "menu": frozenset({"type", "say", "options", "no_input", "invalid"}),
    "collect": frozenset({"type", "say", "into", "max_length", "no_input", "invalid", "next"}),
    "record": frozenset({"type", "say", "next"}),
    "monitor": frozenset({"type", "next"}),
    "hold": frozenset({"type", "next"}),
    "unhold": frozenset({"type", "next"}),
    "transfer": frozenset({"type", "to"}),  # and failed when on_failure is continue
    "hangup": frozenset({"type"}),
    "dial": frozenset({"type", "answered"}),
    "conference": frozenset({"type", "numbers", "room", "next"}),
    "http": frozenset({"type", "url", "next", "failed"}),
    "set": frozenset({"type", "values", "next"}),
    "branch": frozenset({"type", "cases", "otherwise"}),
    "hours": frozenset({"type", "timezone", "weekly", "open", "closed"}),
    "goto": frozenset({"type", "to"}),
    "voipnow_invite": frozenset({"type", "number", "next"}),
}

#: "node type.option" -> the value used when the option is left out (also the schema's ``default``)
DEFAULTS: dict[str, Any] = {
    "menu.timeout": 5,
    "collect.timeout": 10,
    "collect.min_length": 1,
    "collect.sensitive": False,
    "retry.tries": 3,
    "record.max_duration": 120,
    "record.into": "recording_url",
    "monitor.into": "monitor_url",
    "transfer.on_failure": "hangup",
    "hangup.force": False,
    "http.method": "GET",
    "http.timeout": 3,
}

#: node types that run inside the engine (the others send a Hoiio block)
ENGINE_KINDS = frozenset(kind for kind, cls in NODE_KINDS.items() if not cls.is_block)


# ---- where things were written -----------------------------------------------------------------


@dataclass
class TemplateUse:
    """A template or condition, where it was written, and how to name it in a message."""

    node: str | None
    label: str  # "'say' in play 'welcome'"
    template: JinjaTemplate | JinjaExpression | _BrokenTemplate
    pos: Pos


@dataclass
class PromptUse:
    """A prompt as written, or as it becomes one Hoiio ``msg``.

    ``role`` says which checks apply: "prompt" (its parts and its length), "parts" (a retry's
    ``say``: its parts only) or "message" (a retry's ``say`` joined to the repeated question, which
    is sent as one ``msg``: its length only).
    """

    node: str | None
    label: str
    parts: Prompt
    pos: Pos
    #: per part: option ("text", "audio", "language", ...) -> where it was written
    part_pos: list[dict[str, Pos]] = field(default_factory=list)
    role: str = "prompt"


@dataclass
class NodeSource:
    id: str
    kind: str
    pos: Pos  # the node's name
    path: Path
    exits: dict[str, Pos] = field(default_factory=dict)  # exit name (as in Node.exits()) -> target position


@dataclass
class SourceMap:
    doc: Document
    nodes: dict[str, NodeSource] = field(default_factory=dict)  # every node with a known type
    broken: set[str] = field(default_factory=set)  # named in the file but not compiled
    templates: list[TemplateUse] = field(default_factory=list)
    prompts: list[PromptUse] = field(default_factory=list)
    #: variable -> where it is set (vars, inputs, set, collect/record/monitor into, http save)
    defined: dict[str, list[Pos]] = field(default_factory=dict)
    #: top-level options the schema rejected (their values are not used)
    broken_top: set[str] = field(default_factory=set)

    def pos(self, path: Path) -> Pos:
        line, col = self.doc.pos(path)
        return Pos(self.doc.file, line, col)

    def key_pos(self, path: Path) -> Pos:
        line, col = self.doc.key(path)
        return Pos(self.doc.file, line, col)


class _BrokenTemplate:
    """Stands in for a template with a syntax error (already reported); fails if ever rendered."""

    def __init__(self, source: str) -> None:
        self.source = source

    def variables(self) -> frozenset[str]:
        return frozenset()

    def unsafe_constructs(self) -> list[str]:
        return []

    def literal_text(self) -> str:
        return ""

    def render(self, context: Mapping[str, Any]) -> str:
        raise RenderError(f"template {self.source!r} has a syntax error")

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        raise RenderError(f"condition {self.source!r} has a syntax error")


# ---- compiling ---------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, doc: Document, source_map: SourceMap) -> None:
        self.doc = doc
        self.map = source_map
        self.findings: list[Finding] = []

    # templates

    def template(self, source: str, path: Path, node: str | None, *, expression: bool = False) -> Any:
        label, _ = describe(self.doc, path)
        pos = self.map.pos(path)
        try:
            made: Any = JinjaExpression(source) if expression else JinjaTemplate(source)
        except TemplateSyntaxProblem as exc:
            what = "condition" if expression else "template"
            self.findings.append(Finding(pos.file, pos.line, pos.col, "error",
                                         f"{what} error in {label}: {exc.message}; check the {{{{ }}}} and "
                                         "{% %} pairs", node=node, code="template-syntax"))
            made = _BrokenTemplate(source)
        self.map.templates.append(TemplateUse(node, label, made, pos))
        return made

    def define(self, name: str, path: Path, *, as_key: bool = False) -> None:
        """Record that ``name`` is set at ``path`` (the key's position when it is a mapping key)."""
        pos = self.map.key_pos(path) if as_key else self.map.pos(path)
        self.map.defined.setdefault(name, []).append(pos)

    def prompt(self, value: Any, path: Path, node: str | None, *, role: str = "prompt") -> Prompt:
        """A prompt from its YAML form (text, or a list of text / {text...} / {audio...})."""
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        parts: list[Say | Audio] = []
        part_pos: list[dict[str, Pos]] = []
        for index, item in enumerate(items):
            item_path = (*path, index) if isinstance(value, list) else path
            if isinstance(item, dict) and "audio" in item:
                parts.append(Audio(self.template(str(item["audio"]), (*item_path, "audio"), node)))
                part_pos.append({"audio": self.map.pos((*item_path, "audio"))})
            elif isinstance(item, dict):
                text_path = (*item_path, "text")
                parts.append(Say(self.template(str(item["text"]), text_path, node),
                                 language=item.get("language"), gender=item.get("gender")))
                part_pos.append({key: self.map.pos((*item_path, key)) for key in SPEECH_KEYS if key in item})
            else:
                parts.append(Say(self.template(str(item), item_path, node)))
                part_pos.append({"text": self.map.pos(item_path)})
        prompt = tuple(parts)
        label, _ = describe(self.doc, path)
        self.map.prompts.append(PromptUse(node, label, prompt, self.map.pos(path), part_pos, role))
        return prompt

    # flow

    def flow(self, name: str, version: str, source: str) -> Flow:
        data = self.doc.data if isinstance(self.doc.data, dict) else {}
        top = {key: value for key, value in data.items() if key not in self.map.broken_top}
        for index, var in enumerate(top.get("inputs") or []):
            self.define(var, ("inputs", index))
        variables: dict[str, Any] = {}
        for var, value in (top.get("vars") or {}).items():
            self.define(var, ("vars", var), as_key=True)
            variables[var] = self.template(_text(value), ("vars", var), None)
        voice_data = top.get("voice") or {}
        nodes: dict[str, Node] = {}
        for node_id, node_data in (top.get("nodes") or {}).items():
            built = self.node(node_id, node_data)
            if built is not None:
                nodes[node_id] = built
        return Flow(
            name=name,
            start=top.get("start") or "",
            nodes=nodes,
            numbers=tuple(top.get("numbers") or ()),
            on_error=top.get("on_error"),
            voice=Voice(language=voice_data.get("language"), gender=voice_data.get("gender")),
            vars=variables,
            description=top.get("description") or "",
            version=version,
            source=source,
            inputs=tuple(str(v) for v in (top.get("inputs") or []) if isinstance(v, str)),
        )

    def node(self, node_id: str, data: Any) -> Node | None:
        path: Path = ("nodes", node_id)
        kind = data.get("type") if isinstance(data, dict) else None
        if not isinstance(kind, str) or kind not in NODE_KEYS:
            self.map.broken.add(node_id)
            return None
        source = NodeSource(node_id, kind, self.map.key_pos(path), path)
        self.map.nodes[node_id] = source
        if node_id in self.map.broken:
            return None
        reader = _NodeReader(self, node_id, kind, data, path, source)
        return _BUILDERS[kind](reader)


_DIRECT_EXITS = ("next", "failed", "answered", "unanswered", "busy", "open", "closed", "holiday", "otherwise")


def raw_exits(kind: str, data: dict) -> list[tuple[str, str, Path]]:
    """(exit name, target, path inside the node) for every target written in a node's raw data,
    whatever else is wrong with it: lets a node the schema rejected still have its targets checked."""
    out: list[tuple[str, str, Path]] = []
    keys = NODE_KEYS[kind]
    for key in _DIRECT_EXITS:
        if key in keys and isinstance(data.get(key), str):
            out.append((key, data[key], (key,)))
    if kind == "goto" and isinstance(data.get("to"), str):
        out.append(("next", data["to"], ("to",)))
    if "options" in keys and isinstance(data.get("options"), dict):
        out.extend((f"key {k}", t, ("options", k)) for k, t in data["options"].items() if isinstance(t, str))
    for key, exit_name in (("no_input", "no input"), ("invalid", "invalid")):
        retry = data.get(key)
        if key in keys and isinstance(retry, dict) and isinstance(retry.get("then"), str):
            out.append((exit_name, retry["then"], (key, "then")))
    if "cases" in keys and isinstance(data.get("cases"), list):
        for index, case in enumerate(data["cases"]):
            if isinstance(case, dict) and isinstance(case.get("then"), str):
                out.append((f"case {index + 1}", case["then"], ("cases", index, "then")))
    return out


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _NodeReader:
    """Reads one node's options, refusing any option its type does not declare in ``NODE_KEYS``."""

    def __init__(self, compiler: _Compiler, node_id: str, kind: str, data: dict, path: Path,
                 source: NodeSource) -> None:
        self.c = compiler
        self.id = node_id
        self.kind = kind
        self.data = data
        self.path = path
        self.source = source

    def _check(self, key: str) -> None:
        if key not in NODE_KEYS[self.kind]:  # a programming error, caught by the tests
            raise KeyError(f"{self.kind} nodes have no option {key!r}")

    def get(self, key: str, default: Any = None) -> Any:
        self._check(key)
        value = self.data.get(key)
        if value is None:
            return DEFAULTS.get(f"{self.kind}.{key}", default)
        return value

    def common(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "pos": self.source.pos}
        if "tag" in NODE_KEYS[self.kind]:
            out["tag"] = self.get("tag")
        return out

    def target(self, key: str, exit_name: str | None = None) -> Any:
        value = self.get(key)
        if value is not None:
            self.source.exits[exit_name or key] = self.c.map.pos((*self.path, key))
        return value

    def prompt(self, key: str) -> Prompt:
        self._check(key)
        return self.c.prompt(self.data.get(key), (*self.path, key), self.id)

    def template(self, key: str) -> Any:
        self._check(key)
        return self.c.template(_text(self.data[key]), (*self.path, key), self.id)

    def templates(self, key: str) -> dict[str, Any]:
        self._check(key)
        return {name: self.c.template(_text(value), (*self.path, key, name), self.id)
                for name, value in (self.data.get(key) or {}).items()}

    def into(self, key: str = "into") -> str:
        var = self.get(key)
        if key in self.data:
            self.c.define(var, (*self.path, key))
        else:  # the default variable is set all the same
            self.c.map.defined.setdefault(var, []).append(self.source.pos)
        return var

    def retry(self, key: str, exit_name: str, question: Prompt, again: Prompt | None) -> Retry:
        self._check(key)
        data = self.data[key]
        path = (*self.path, key)
        say = self.c.prompt(data.get("say"), (*path, "say"), self.id, role="parts")
        if say:
            # the retry message is spoken together with the repeated question: one msg
            label, _ = describe(self.c.doc, (*path, "say"))
            self.c.map.prompts.append(PromptUse(self.id, label, say + (again or question),
                                                self.c.map.pos((*path, "say")), role="message"))
        then = data["then"]
        self.source.exits[exit_name] = self.c.map.pos((*path, "then"))
        return Retry(say=say, tries=data.get("tries") or DEFAULTS["retry.tries"], then=then)


def _play(r: _NodeReader) -> Node:
    return Play(**r.common(), prompt=r.prompt("say"), next=r.target("next"))


def _questions(r: _NodeReader) -> tuple[Prompt, Prompt | None]:
    prompt = r.prompt("say")
    repeat = r.prompt("repeat") if r.data.get("repeat") is not None else None
    return prompt, repeat


def _menu(r: _NodeReader) -> Node:
    prompt, repeat = _questions(r)
    options: dict[str, str] = {}
    for key, target in r.get("options").items():
        options[key] = target
        r.source.exits[f"key {key}"] = r.c.map.pos((*r.path, "options", key))
    return Menu(**r.common(), prompt=prompt, repeat_prompt=repeat, options=options, timeout=r.get("timeout"),
                no_input=r.retry("no_input", "no input", prompt, repeat),
                invalid=r.retry("invalid", "invalid", prompt, repeat))


def _collect(r: _NodeReader) -> Node:
    prompt, repeat = _questions(r)
    return Collect(**r.common(), prompt=prompt, repeat_prompt=repeat, var=r.into(),
                   min_length=r.get("min_length"), max_length=r.get("max_length"), pattern=r.get("pattern"),
                   sensitive=r.get("sensitive"), timeout=r.get("timeout"),
                   no_input=r.retry("no_input", "no input", prompt, repeat),
                   invalid=r.retry("invalid", "invalid", prompt, repeat), next=r.target("next"))


def _record(r: _NodeReader) -> Node:
    return Record(**r.common(), prompt=r.prompt("say"), max_duration=r.get("max_duration"), var=r.into(),
                  next=r.target("next"))


def _monitor(r: _NodeReader) -> Node:
    return Monitor(**r.common(), prompt=r.prompt("say"), var=r.into(), next=r.target("next"))


def _hold(r: _NodeReader) -> Node:
    return Hold(**r.common(), music=r.prompt("music"), next=r.target("next"))


def _unhold(r: _NodeReader) -> Node:
    return Unhold(**r.common(), next=r.target("next"))


def _transfer(r: _NodeReader) -> Node:
    return Transfer(**r.common(), to=r.template("to"), prompt=r.prompt("say"), caller_id=r.get("caller_id"),
                    ring_time=r.get("ring_time"), room_profile=r.get("room_profile"),
                    on_failure=r.get("on_failure"), failed=r.target("failed"))


def _hangup(r: _NodeReader) -> Node:
    return Hangup(**r.common(), prompt=r.prompt("say"), force=r.get("force"))


def _dial(r: _NodeReader) -> Node:
    return Dial(**r.common(), prompt=r.prompt("say"), caller_id=r.get("caller_id"),
                max_duration=r.get("max_duration"), answered=r.target("answered"),
                unanswered=r.target("unanswered"), busy=r.target("busy"), failed=r.target("failed"))


def _conference(r: _NodeReader) -> Node:
    # a list: one number per item; one text: the numbers it lists, split when the call gets there
    r._check("numbers")
    numbers: Any = r.data["numbers"]
    if isinstance(numbers, list):
        numbers = tuple(r.c.template(_text(number), (*r.path, "numbers", index), r.id)
                        for index, number in enumerate(numbers))
    else:
        numbers = r.template("numbers")
    return Conference(**r.common(), numbers=numbers, room=r.template("room"), caller_id=r.get("caller_id"),
                      next=r.target("next"), failed=r.target("failed"))


def _voipnow_invite(r: _NodeReader) -> Node:
    def optional(key: str) -> Any:
        return r.template(key) if r.data.get(key) is not None else None

    return VoipNowInvite(**r.common(), number=r.template("number"), conference_number=optional("conference_number"),
                         pin=optional("pin"), wait_for_pickup=r.get("wait_for_pickup"), caller_id=r.get("caller_id"),
                         next=r.target("next"), failed=r.target("failed"))


def _http(r: _NodeReader) -> Node:
    save = dict(r.get("save") or {})
    for var in save:
        r.c.define(var, (*r.path, "save", var), as_key=True)
    body = r.templates("body") if r.data.get("body") is not None else None
    return Http(**r.common(), method=r.get("method"), url=r.template("url"), headers=r.templates("headers"),
                body=body, timeout=float(r.get("timeout")), save=save, next=r.target("next"),
                failed=r.target("failed"))


def _set(r: _NodeReader) -> Node:
    values = r.templates("values")
    for var in values:
        r.c.define(var, (*r.path, "values", var), as_key=True)
    return Set(**r.common(), values=values, next=r.target("next"))


def _branch(r: _NodeReader) -> Node:
    cases = []
    for index, case in enumerate(r.get("cases")):
        path = (*r.path, "cases", index)
        when = r.c.template(_text(case["when"]), (*path, "when"), r.id, expression=True)
        r.source.exits[f"case {index + 1}"] = r.c.map.pos((*path, "then"))
        cases.append(Case(when=when, then=case["then"]))
    return Branch(**r.common(), cases=tuple(cases), otherwise=r.target("otherwise"))


def weekday_span(key: str) -> list[int]:
    """``"mon-fri"`` -> [0, 1, 2, 3, 4]; a span that wraps (``"sat-mon"``) goes round the week."""
    first, _, last = key.partition("-")
    start = WEEKDAYS.index(first)
    end = WEEKDAYS.index(last) if last else start
    return [(start + offset) % 7 for offset in range((end - start) % 7 + 1)]


def parse_time_range(text: str) -> Interval | None:
    """``"09:00-18:00"`` -> Interval; None when malformed or when it does not end after it starts."""
    match = TIME_RANGE_RE.fullmatch(text)
    if match is None:
        return None
    start = time(int(match.group(1)), int(match.group(2)))
    end = time.max if match.group(5) else time(int(match.group(3)), int(match.group(4)))
    return Interval(start, end) if end > start else None


def _hours(r: _NodeReader) -> Node:
    weekly: dict[int, list[Interval]] = {}
    for key, value in r.get("weekly").items():
        ranges = value if isinstance(value, list) else [value]
        intervals = [interval for interval in map(parse_time_range, ranges) if interval is not None]
        for day in weekday_span(key):
            weekly.setdefault(day, []).extend(intervals)
    holidays = set()
    for text in r.get("holidays") or ():
        with contextlib.suppress(ValueError):  # a date that does not exist is reported by the checks
            holidays.add(date.fromisoformat(text))
    return Hours(**r.common(), timezone=r.get("timezone"),
                 weekly={day: tuple(sorted(ivs, key=lambda i: i.start)) for day, ivs in sorted(weekly.items())},
                 holidays=frozenset(holidays), open=r.target("open"), closed=r.target("closed"),
                 holiday=r.target("holiday"))


def _goto(r: _NodeReader) -> Node:
    return Goto(**r.common(), to=r.target("to", "next"))


_BUILDERS = {
    "play": _play, "menu": _menu, "collect": _collect, "record": _record, "monitor": _monitor,
    "hold": _hold, "unhold": _unhold, "transfer": _transfer, "hangup": _hangup, "dial": _dial,
    "conference": _conference, "http": _http, "set": _set, "branch": _branch, "hours": _hours,
    "goto": _goto, "voipnow_invite": _voipnow_invite,
}


def compile_document(doc: Document, schema_paths: set[Path], *, name: str, version: str,
                     source: str) -> tuple[Flow, SourceMap, list[Finding]]:
    """Build the model from a schema-checked document. ``schema_paths`` are where the schema found
    problems: nodes under them are left out (listed in ``SourceMap.broken``)."""
    source_map = SourceMap(doc)
    for path in schema_paths:
        if len(path) >= 2 and path[0] == "nodes":
            source_map.broken.add(str(path[1]))
        elif path == ("nodes",) and isinstance(doc.data.get("nodes"), dict):
            # a node name the schema refused (propertyNames): leave such nodes out
            source_map.broken.update(n for n in doc.data["nodes"] if not _good_node_name(n))
        elif path:
            source_map.broken_top.add(str(path[0]))
    compiler = _Compiler(doc, source_map)
    flow = compiler.flow(name, version, source)
    return flow, source_map, compiler.findings


def _good_node_name(name: str) -> bool:
    return len(name) <= NODE_ID_MAX and NODE_ID_RE.fullmatch(name) is not None


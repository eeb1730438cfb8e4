"""Replay case files: reading (with line numbers in every error), writing, and rewriting the
expectations of an existing file in place.

A case is one call: the flow it runs on, a fixed clock, the notifications Hoiio posts (in order),
what the provider answers to the blocks sent, and what the engine is expected to send back::

    flow: auto_attendant
    now: "2026-11-23T02:00:00Z"          # the engine's clock for the whole call (ISO 8601, UTC)
    steps:
      - notify: {ivr_block: answer, call_state: ringing}
        expect:
          - endpoint: ivr/middle/play
            params:
              msg: Thank you for calling Acme.
      - notify: {ivr_block: play, call_state: ongoing}
        provider: {ivr/middle/gather: error_msg_invalid_xml}
        expect: [...]
    expect_call: {status: ended, outcome: hung up by flow}

Optional top-level keys: ``description``, ``session``, ``txn_ref``, ``caller``, ``called``, ``dest``,
``caller_id``, ``tag``, ``vars`` (outbound inputs), ``http`` (answers for the flow's http steps, by
URL), ``expect_call``. A step is ``notify:`` (fields as Hoiio posts them, all strings),
``start: outbound`` (place the outbound call) or ``monitor:`` (the monitor recording is ready);
``docs/replay.md`` describes every key.

Rewriting (``update_expectations``) replaces only the ``expect:`` of each step and ``expect_call:``,
so comments and the layout of everything else stay as the author wrote them.

May import PyYAML, ``engine.core.actions`` and ``engine.providers.hoiio.wire`` (parameter order);
nothing web, storage or network.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from engine.core.actions import BLOCK_ENDPOINTS
from engine.providers.hoiio.wire import BLOCK_PARAMS, CALL_PARAMS

__all__ = [
    "CASE_SUFFIXES",
    "Case",
    "CaseError",
    "Step",
    "case_files",
    "dump_value",
    "inline",
    "load_case",
    "parse_case",
    "render_blocks",
    "render_case",
    "update_expectations",
]

CASE_SUFFIXES = (".yaml", ".yml")
TOP_KEYS = ("description", "flow", "session", "txn_ref", "caller", "called", "dest", "caller_id", "tag",
            "now", "vars", "http", "steps", "expect_call")
STEP_KINDS = ("notify", "start", "monitor")
STEP_KEYS = (*STEP_KINDS, "provider", "expect")
CALL_KEYS = ("status", "outcome", "vars")
HTTP_KEYS = ("status", "json", "error")
#: Provider answers that are not a Hoiio status but a transport failure the harness simulates.
TRANSPORT_ANSWERS = ("timeout", "connection_refused")

_KIND_OF_ENDPOINT = {endpoint: kind for kind, endpoint in BLOCK_ENDPOINTS.items()}
_WIDE = 1 << 30  # never let PyYAML fold a line


class CaseError(ValueError):
    """A case file that cannot be read; the message names the file and line."""


@dataclass
class Step:
    kind: str  # "notify" | "start" | "monitor"
    fields: dict[str, str | None] = field(default_factory=dict)  # notify/monitor fields, in order
    provider: dict[str, list[Any]] = field(default_factory=dict)  # endpoint -> answers, in order
    expect: list[dict[str, Any]] | None = None  # None: the step has no ``expect`` key yet
    line: int = 0  # 1-based line of the step in its file


@dataclass
class Case:
    flow: str
    now: datetime
    steps: list[Step]
    path: Path | None = None
    description: str | None = None
    session: str | None = None
    txn_ref: str | None = None
    caller: str | None = None
    called: str | None = None
    dest: str | None = None
    caller_id: str | None = None
    tag: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    http: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    expect_call: dict[str, Any] | None = None
    text: str = ""  # the source, for rewriting in place

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else f"<{self.flow}>"

    @property
    def outbound(self) -> bool:
        return bool(self.steps) and self.steps[0].kind == "start"

    def where(self, line: int | None = None) -> str:
        return f"{self.name}:{line}" if line else self.name


# ------------------------------------------------------------------------------------------ reading
def case_files(paths: Sequence[str | Path]) -> list[Path]:
    """Every case file named, folders searched recursively, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in CASE_SUFFIXES and p.is_file()))
        else:
            found.append(path)
    return found


def load_case(path: str | Path) -> Case:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaseError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"{path}: can't read the file: {exc}") from None
    return parse_case(text, path)


def parse_case(text: str, path: str | Path | None = None) -> Case:
    where = str(path) if path is not None else "<case>"
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CaseError(f"{where}{line}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise CaseError(f"{where}: a replay case is a mapping with at least flow, now and steps")

    def fail(message: str, node: yaml.Node | None = None) -> CaseError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return CaseError(f"{where}{line}: {message}")

    top = _key_nodes(root)
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise fail(f"unknown key {unknown[0]!r}{_suggest(unknown[0], TOP_KEYS)}; allowed: {', '.join(TOP_KEYS)}",
                   top.get(unknown[0]))
    for required in ("flow", "now", "steps"):
        if required not in data:
            raise fail(f"{required} is required")
    flow = data["flow"]
    if not isinstance(flow, str) or not flow:
        raise fail("flow must be the name of a flow (its file name without .yaml)", top.get("flow"))
    now = _parse_now(data["now"])
    if now is None:
        raise fail('now must be an ISO 8601 time in UTC such as "2026-11-23T02:00:00Z"', top.get("now"))

    case = Case(flow=flow, now=now, steps=[], path=Path(path) if path is not None else None, text=text)
    for name in ("description", "session", "txn_ref", "caller", "called", "dest", "caller_id", "tag"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise fail(f'{name} must be text (quote it: {name}: "{value}")', top.get(name))
        setattr(case, name, value)
    if data.get("vars") is not None:
        if not isinstance(data["vars"], dict) or not all(isinstance(k, str) for k in data["vars"]):
            raise fail("vars must be a mapping of variable names to values", top.get("vars"))
        case.vars = dict(data["vars"])
    if data.get("http") is not None:
        case.http = _parse_http(data["http"], top.get("http"), fail)
    if data.get("expect_call") is not None:
        case.expect_call = _parse_expect_call(data["expect_call"], top.get("expect_call"), fail)

    steps_node = top.get("steps")
    if not isinstance(data["steps"], list) or not data["steps"]:
        raise fail("steps must be a list with at least one step", steps_node)
    item_nodes = steps_node.value if isinstance(steps_node, yaml.SequenceNode) else []
    for index, raw in enumerate(data["steps"]):
        node = item_nodes[index] if index < len(item_nodes) else steps_node
        case.steps.append(_parse_step(raw, node, index, fail))
    for index, step in enumerate(case.steps):
        if step.kind == "start" and index != 0:
            raise fail("start: outbound can only be the first step", item_nodes[index])
    if case.outbound and not case.dest:
        raise fail("an outbound case (start: outbound) needs dest: the number the call is placed to")
    return case


def _parse_step(raw: Any, node: yaml.Node, index: int, fail: Any) -> Step:
    where = f"step {index + 1}"
    if not isinstance(raw, dict):
        raise fail(f"{where} must be a mapping with notify:, start: or monitor:", node)
    keys = _key_nodes(node)
    unknown = [k for k in raw if k not in STEP_KEYS]
    if unknown:
        raise fail(f"{where}: unknown key {unknown[0]!r}{_suggest(unknown[0], STEP_KEYS)}; "
                   f"allowed: {', '.join(STEP_KEYS)}", keys.get(unknown[0], node))
    kinds = [k for k in STEP_KINDS if k in raw]
    if len(kinds) != 1:
        raise fail(f"{where} needs exactly one of notify:, start: or monitor:", node)
    kind = kinds[0]
    step = Step(kind=kind, line=node.start_mark.line + 1)
    if kind == "start":
        if raw["start"] != "outbound":
            raise fail(f"{where}: the only start is 'start: outbound'", keys.get("start", node))
    else:
        fields = raw[kind] if raw[kind] is not None else {}
        if not isinstance(fields, dict):
            raise fail(f"{where}: {kind} must be a mapping of Hoiio fields", keys.get(kind, node))
        for name, value in fields.items():
            if not isinstance(name, str):
                raise fail(f"{where}: field names must be text", keys.get(kind, node))
            if value is not None and not isinstance(value, str):
                raise fail(f"{where}: {name} must be text as Hoiio sends it (quote it: {name}: \"{value}\")",
                           keys.get(kind, node))
        step.fields = dict(fields)
    if raw.get("provider") is not None:
        provider = raw["provider"]
        if not isinstance(provider, dict):
            raise fail(f"{where}: provider must map an endpoint (ivr/end/transfer) to the answer(s)",
                       keys.get("provider", node))
        for endpoint, answers in provider.items():
            if endpoint not in _KIND_OF_ENDPOINT and endpoint not in CALL_PARAMS:
                known = (*BLOCK_ENDPOINTS.values(), *CALL_PARAMS)
                raise fail(f"{where}: {endpoint!r} is not a Hoiio endpoint{_suggest(str(endpoint), known)}",
                           keys.get("provider", node))
            listed = answers if isinstance(answers, list) else [answers]
            for answer in listed:
                if not isinstance(answer, str) and not (isinstance(answer, dict) and isinstance(
                        answer.get("status"), str)):
                    raise fail(f"{where}: a provider answer is a status such as error_dest_invalid, "
                               "or a mapping with a status", keys.get("provider", node))
            step.provider[endpoint] = listed
    if "expect" in raw:
        step.expect = _parse_expect(raw["expect"], keys.get("expect", node), where, fail)
    return step


def _parse_expect(raw: Any, node: yaml.Node | None, where: str, fail: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise fail(f"{where}: expect is a list of blocks ({{endpoint, params}})", node)
    blocks = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("endpoint"), str) or set(item) - {
                "endpoint", "params"}:
            raise fail(f"{where}: each expected block is {{endpoint: ..., params: {{...}}}}", node)
        params = item.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise fail(f"{where}: block params are text exactly as sent (quote numbers: max_digits: \"1\")", node)
        blocks.append({"endpoint": item["endpoint"], "params": {str(k): v for k, v in params.items()}})
    return blocks


def _parse_http(raw: Any, node: yaml.Node | None, fail: Any) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(raw, dict):
        raise fail("http maps a URL to its answer {status, json}", node)
    out: dict[str, list[dict[str, Any]]] = {}
    for url, answers in raw.items():
        listed = answers if isinstance(answers, list) else [answers]
        for answer in listed:
            if not isinstance(answer, dict) or set(answer) - set(HTTP_KEYS):
                raise fail(f"http answer for {url}: a mapping with status (a number, or null for no response), "
                           "json and error", node)
            status = answer.get("status")
            if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
                raise fail(f"http answer for {url}: status must be an HTTP status number or null", node)
        out[str(url)] = [dict(a) for a in listed]
    return out


def _parse_expect_call(raw: Any, node: yaml.Node | None, fail: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or set(raw) - set(CALL_KEYS):
        raise fail(f"expect_call is a mapping with {', '.join(CALL_KEYS)}", node)
    if "vars" in raw and raw["vars"] is not None and not isinstance(raw["vars"], dict):
        raise fail("expect_call.vars maps variable names to their expected values", node)
    return dict(raw)


def _parse_now(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _key_nodes(node: yaml.Node | None) -> dict[Any, yaml.Node]:
    """Key -> the node of its value (for line numbers)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ------------------------------------------------------------------------------------------ writing
def format_now(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


def _scalar_line(key: str, value: Any) -> str:
    """``key: value`` as one line of block YAML (correctly quoted)."""
    return yaml.safe_dump({key: value}, default_flow_style=False, width=_WIDE, allow_unicode=True,
                          sort_keys=False).rstrip("\n")


def inline(value: Any) -> str:
    """A mapping or list in flow style on one line (``{a: b, c: '1'}``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=_WIDE, allow_unicode=True, sort_keys=False)
    return text.strip().removesuffix("...").strip()


def dump_value(key: str, value: Any, indent: int, *, inline_limit: int = 100) -> list[str]:
    """``key: value`` as block YAML lines at ``indent``; small mappings and lists stay on one line."""
    pad = " " * indent
    if isinstance(value, dict | list) and value:
        flat = inline(value)
        if len(flat) + len(key) + indent + 2 <= inline_limit and (
                isinstance(value, list) or all(not isinstance(v, dict | list) for v in value.values())):
            return [f"{pad}{_scalar_line(key, None).removesuffix(' null')} {flat}"]
        lines = [f"{pad}{_scalar_line(key, None).removesuffix(' null')}"]
        if isinstance(value, dict):
            for k, v in value.items():
                lines.extend(dump_value(str(k), v, indent + 2, inline_limit=inline_limit))
        else:
            for item in value:
                if isinstance(item, dict) and item:
                    sub: list[str] = []
                    for k, v in item.items():
                        sub.extend(dump_value(str(k), v, indent + 4, inline_limit=inline_limit))
                    sub[0] = f"{pad}  - " + sub[0][indent + 4:]
                    lines.extend(sub)
                else:
                    lines.append(f"{pad}  - {inline(item) if isinstance(item, dict | list) else _bare(item)}")
        return lines
    return [pad + _scalar_line(key, value)]


def _bare(value: Any) -> str:
    return _scalar_line("k", value)[3:]


def wire_order(endpoint: str, params: Mapping[str, str]) -> dict[str, str]:
    """Parameters in the order Hoiio documents them (unknown ones last, sorted)."""
    kind = _KIND_OF_ENDPOINT.get(endpoint)
    layout = BLOCK_PARAMS.get(kind, ()) if kind else CALL_PARAMS.get(endpoint, ())
    ordered = {name: params[name] for name in layout if name in params}
    ordered.update({name: params[name] for name in sorted(params) if name not in ordered})
    return ordered


def render_blocks(blocks: Sequence[Mapping[str, Any]], indent: int, key: str = "expect") -> list[str]:
    """An ``expect:`` list: one block per item, one parameter per line (diff-friendly)."""
    pad = " " * indent
    if not blocks:
        return [f"{pad}{key}: []"]
    lines = [f"{pad}{key}:"]
    for block in blocks:
        lines.append(f"{pad}  - {_scalar_line('endpoint', block['endpoint'])}")
        params = wire_order(block["endpoint"], block.get("params") or {})
        if not params:
            lines.append(f"{pad}    params: {{}}")
            continue
        lines.append(f"{pad}    params:")
        lines.extend(f"{pad}      {_scalar_line(k, v)}" for k, v in params.items())
    return lines


def render_expect_call(expect_call: Mapping[str, Any], indent: int = 0) -> list[str]:
    return dump_value("expect_call", dict(expect_call), indent)


def render_step(step: Step, indent: int = 2) -> list[str]:
    pad = " " * indent
    body: list[str] = []
    if step.kind == "start":
        body.append(f"{pad}  start: outbound")
    else:
        body.extend(dump_value(step.kind, dict(step.fields), indent + 2, inline_limit=116))
    if step.provider:
        provider = {k: (v[0] if len(v) == 1 else v) for k, v in step.provider.items()}
        body.extend(dump_value("provider", provider, indent + 2, inline_limit=116))
    body.extend(render_blocks(step.expect or [], indent + 2))
    body[0] = f"{pad}- " + body[0][indent + 2:]
    return body


def render_case(case: Case, *, header: Sequence[str] = ()) -> str:
    """The whole case as YAML, in the canonical layout (used by ``ivr export``)."""
    lines = [f"# {h}" if h else "#" for h in header]
    for name in ("description", "flow", "session", "txn_ref", "caller", "called", "dest", "caller_id", "tag"):
        value = getattr(case, name)
        if value is not None:
            lines.append(_scalar_line(name, value))
    lines.append(_scalar_line("now", format_now(case.now)))
    if case.vars:
        lines.extend(dump_value("vars", case.vars, 0))
    if case.http:
        lines.append("http:")
        for url, answers in case.http.items():
            lines.extend(dump_value(url, answers[0] if len(answers) == 1 else answers, 2))
    lines.append("steps:")
    for step in case.steps:
        lines.extend(render_step(step))
    if case.expect_call is not None:
        lines.extend(render_expect_call(case.expect_call))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ rewriting
def update_expectations(text: str, expects: Sequence[Sequence[Mapping[str, Any]]],
                        expect_call: Mapping[str, Any] | None) -> str:
    """``text`` with each step's ``expect:`` (and ``expect_call:``) replaced; everything else, comments
    included, is kept. ``expects[i]`` belongs to step ``i``."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = text.splitlines()
    edits: list[tuple[int, int, list[str]]] = []  # [start, end) line ranges, in document order
    top = dict((k.value, (k, v)) for k, v in root.value)
    steps_node = top["steps"][1]
    if not isinstance(steps_node, yaml.SequenceNode) or steps_node.flow_style:
        raise CaseError("steps must be written as a block list (one '- ' per step) to be updated in place")
    if len(steps_node.value) != len(expects):
        raise CaseError("the file changed while it was replayed")
    for item, blocks in zip(steps_node.value, expects, strict=True):
        if not isinstance(item, yaml.MappingNode) or item.flow_style or not item.value:
            raise CaseError(f"line {item.start_mark.line + 1}: write the step as a block mapping to update it")
        indent = item.value[0][0].start_mark.column
        rendered = render_blocks(blocks, indent)
        found = next(((k, v) for k, v in item.value if k.value == "expect"), None)
        if found is not None:
            line = found[0].start_mark.line
            rendered[0] = lines[line][:found[0].start_mark.column] + rendered[0][indent:]
            edits.append((line, _last_line(found[1], lines) + 1, rendered))
        else:
            end = _last_line(item, lines) + 1
            edits.append((end, end, rendered))
    if expect_call is not None:
        rendered = render_expect_call(expect_call)
        if "expect_call" in top:
            key, value = top["expect_call"]
            edits.append((key.start_mark.line, _last_line(value, lines) + 1, rendered))
        else:
            end = _last_line(root, lines) + 1
            edits.append((end, end, rendered))
    # bottom-up; of two insertions at one line the later one goes in first (and so ends up last)
    for _, (start, end, new) in sorted(enumerate(edits), key=lambda e: (e[1][0], e[0]), reverse=True):
        lines[start:end] = new
    return "\n".join(lines) + "\n"


def _last_line(node: yaml.Node, lines: list[str]) -> int:
    """0-based index of the last line holding ``node``'s content (not the comments after it)."""
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(node, yaml.MappingNode) else last
    end = node.end_mark
    last_line = end.line if end.column > 0 else end.line - 1
    return max(min(last_line, len(lines) - 1), node.start_mark.line)


def blocks_text(blocks: Sequence[Mapping[str, Any]]) -> list[str]:
    """Blocks as the lines a diff compares (the file's own layout, without indentation)."""
    return render_blocks(blocks, 0)[1:] if blocks else ["[]"]

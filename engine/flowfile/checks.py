"""Semantic checks: what the schema cannot see.

Run on a compiled ``Flow`` and its ``SourceMap``; every finding points at the key or value the author
must change. In order:

* targets: every exit, ``start`` and ``on_error`` name an existing node ("did you mean ...?");
* the graph: unreachable nodes (warning), endless loops through engine-only nodes (no block to wait
  on), menus and collects the caller can never leave, hold not followed by unhold, dial anywhere but
  at the start;
* templates: variables used but never set, unsafe constructs (``{{ ''.__class__ }}``);
* Hoiio's limits (``engine.flowfile.limits``): message length counted on the generated markup, room
  IDs, phone numbers, languages, audio addresses;
* values: time zones, opening hours, holiday dates, regular expressions.

Everything is linear in the size of the flow (a 2,000-node flow is checked in milliseconds).

May import ``engine.core``, ``engine.flowfile.{compiler,findings,limits,loader,schema,templating}``.
"""

from __future__ import annotations

import re
import zoneinfo
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import date
from functools import cache

from engine.core.flow import (
    Audio,
    Collect,
    Conference,
    Dial,
    Flow,
    Hangup,
    Hold,
    Hours,
    Http,
    Menu,
    Node,
    Pos,
    Say,
    Transfer,
    Unhold,
    VoipNowInvite,
)
from engine.core.prompts import speech, split_numbers
from engine.flowfile import limits
from engine.flowfile.compiler import (
    ENGINE_KINDS,
    PromptUse,
    SourceMap,
    parse_time_range,
    raw_exits,
    weekday_span,
)
from engine.flowfile.findings import Finding, Severity
from engine.flowfile.limits import TIME_RANGE_RE, WEEKDAYS
from engine.flowfile.schema import suggest
from engine.flowfile.templating import GLOBAL_NAMES

_EXIT_PHRASES = {
    "next": "goes next to",
    "no input": "sends no input to",
    "invalid": "sends invalid input to",
    "failed": "sends failures to",
    "answered": "sends answered calls to",
    "unanswered": "sends unanswered calls to",
    "busy": "sends busy calls to",
    "open": "sends open hours to",
    "closed": "sends closed hours to",
    "holiday": "sends holidays to",
    "otherwise": "sends everything else to",
}


def exit_phrase(kind: str, exit_name: str) -> str:
    """How a message says that a node of ``kind`` sends calls through ``exit_name``."""
    if exit_name.startswith("key "):
        return f"sends key {exit_name[4:]} to"
    if exit_name.startswith("case "):
        return f"sends case {exit_name[5:]} to"
    if kind == "goto":
        return "goes to"
    return _EXIT_PHRASES.get(exit_name, f"sends {exit_name} to")


def name(node: Node) -> str:
    return f"{node.kind} '{node.id}'"


class _Report:
    def __init__(self, source_map: SourceMap) -> None:
        self.map = source_map
        self.findings: list[Finding] = []

    def add(self, pos: Pos, severity: Severity, message: str, code: str, node: str | None = None) -> None:
        self.findings.append(Finding(pos.file, pos.line, pos.col, severity, message, node=node, code=code))

    def error(self, pos: Pos, message: str, code: str, node: str | None = None) -> None:
        self.add(pos, "error", message, code, node)

    def warning(self, pos: Pos, message: str, code: str, node: str | None = None) -> None:
        self.add(pos, "warning", message, code, node)

    def at(self, node: Node, *path: str | int) -> Pos:
        return self.map.pos(("nodes", node.id, *path))


def check_flow(flow: Flow, source_map: SourceMap) -> list[Finding]:
    """Every semantic finding for a compiled flow."""
    report = _Report(source_map)
    targets_ok = _check_targets(flow, report)
    if targets_ok and not source_map.broken:
        _check_graph(flow, report)
    _check_dial_position(flow, report)
    _check_variables(flow, report)
    _check_templates(report)
    _check_prompts(flow, report)
    for node in flow.nodes.values():
        checker = _NODE_CHECKS.get(node.kind)
        if checker is not None:
            checker(node, report)
    _check_flow_options(flow, report)
    return report.findings


# ---- targets -----------------------------------------------------------------------------------


def _check_targets(flow: Flow, report: _Report) -> bool:
    """Report exits to missing nodes; True when start and every exit lead somewhere."""
    known = report.map.nodes.keys() | report.map.broken
    ok = True
    for node in flow.nodes.values():
        source = report.map.nodes[node.id]
        for exit_name, target in node.exits().items():
            if target in known:
                continue
            ok = False
            report.error(source.exits.get(exit_name, source.pos),
                         f"{name(node)} {exit_phrase(node.kind, exit_name)} '{target}', which does not exist"
                         + suggest(target, known), "missing-target", node.id)
    # nodes the schema rejected were not compiled, but the targets they name can still be checked
    nodes = report.map.doc.data.get("nodes") or {}
    for node_id in sorted(report.map.broken & report.map.nodes.keys()):
        source = report.map.nodes[node_id]
        for exit_name, target, inner in raw_exits(source.kind, nodes[node_id]):
            if target not in known:
                report.error(report.map.pos((*source.path, *inner)),
                             f"{source.kind} '{node_id}' {exit_phrase(source.kind, exit_name)} '{target}', which "
                             "does not exist" + suggest(target, known), "missing-target", node_id)
    has_nodes = bool(report.map.doc.data.get("nodes")) and isinstance(report.map.doc.data["nodes"], dict)
    if has_nodes and "start" not in report.map.broken_top and flow.start and flow.start not in known:
        ok = False
        report.error(report.map.pos(("start",)), f"the flow starts at '{flow.start}', which does not exist"
                     + suggest(flow.start, known), "missing-start")
    if flow.start not in flow.nodes:
        ok = False  # missing (reported above) or not compiled: the graph has no root
    if "on_error" not in report.map.broken_top and flow.on_error and flow.on_error not in known:
        ok = False
        report.error(report.map.pos(("on_error",)),
                     f"on_error sends errors to '{flow.on_error}', which does not exist"
                     + suggest(flow.on_error, known), "missing-target")
    return ok


def _check_dial_position(flow: Flow, report: _Report) -> None:
    for node in flow.nodes.values():
        if isinstance(node, Dial) and node.id != flow.start:
            report.error(node.pos or report.at(node), f"{name(node)} must be the start node: a dial places the "
                         "outbound call, so it can only come first", "dial-not-start", node.id)
        for exit_name, target in node.exits().items():
            if isinstance(flow.nodes.get(target), Dial):
                report.error(report.map.nodes[node.id].exits.get(exit_name, report.at(node)),
                             f"{name(node)} {exit_phrase(node.kind, exit_name)} dial '{target}', but a dial can only "
                             "start a call", "dial-not-start", node.id)


# ---- the graph ---------------------------------------------------------------------------------


def _check_graph(flow: Flow, report: _Report) -> None:
    nodes = flow.nodes
    edges = {node_id: list(dict.fromkeys(node.exits().values())) for node_id, node in nodes.items()}
    roots = [flow.start] + ([flow.on_error] if flow.on_error else [])
    reachable = _reach(roots, edges)
    for node_id, node in nodes.items():
        if node_id not in reachable:
            report.warning(node.pos or report.at(node), f"{name(node)} can never be reached: nothing leads to "
                           "it from the start or from on_error; remove it or send a call to it", "unreachable",
                           node_id)
    _check_engine_loops(nodes, edges, reachable, report)
    _check_way_out(nodes, edges, reachable, report)
    _check_hold(flow, roots, report)
    _check_dial_exits(flow, report)


def _reach(roots: Iterable[str], edges: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    queue = deque(root for root in roots if root in edges)
    seen.update(queue)
    while queue:
        for target in edges[queue.popleft()]:
            if target not in seen and target in edges:
                seen.add(target)
                queue.append(target)
    return seen


def _strongly_connected(vertices: Iterable[str], edges: dict[str, list[str]]) -> Iterator[list[str]]:
    """Tarjan's algorithm, iterative (a long chain of nodes must not exhaust the stack)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for root in vertices:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            vertex, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[vertex] = min(low[vertex], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[vertex])
            if low[vertex] == index[vertex]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == vertex:
                        break
                yield component


def _cycle_through(first: str, members: set[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest cycle from ``first`` back to itself inside one strongly connected component."""
    parent: dict[str, str] = {}
    queue = deque([first])
    while queue:
        vertex = queue.popleft()
        for child in edges[vertex]:
            if child == first:
                path = [vertex]
                while path[-1] != first:
                    path.append(parent[path[-1]])
                return [*reversed(path), first]
            if child in members and child not in parent:
                parent[child] = vertex
                queue.append(child)
    return [first, first]  # pragma: no cover - a component always has a cycle through each member


def _check_engine_loops(nodes: dict[str, Node], edges: dict[str, list[str]], reachable: set[str],
                        report: _Report) -> None:
    """Loops made only of engine nodes never wait for the caller: the engine would spin until its
    step limit and hand the call to the error handler."""
    engine = {node_id for node_id in reachable if nodes[node_id].kind in ENGINE_KINDS}
    engine_edges = {node_id: [t for t in edges[node_id] if t in engine] for node_id in engine}
    order = sorted(engine, key=lambda n: _sort_key(nodes[n]))
    for component in _strongly_connected(order, engine_edges):
        members = set(component)
        if len(component) == 1 and component[0] not in engine_edges[component[0]]:
            continue
        first = min(component, key=lambda n: _sort_key(nodes[n]))
        cycle = _cycle_through(first, members, engine_edges)
        shown = " → ".join(name(nodes[n]) for n in cycle[:8]) + (" → ..." if len(cycle) > 8 else "")
        report.error(nodes[first].pos or report.at(nodes[first]),
                     f"endless loop: {shown} never waits for the caller; put a step that talks to the caller "
                     "(play, menu, ...) in the loop, or give it a way out", "endless-loop", first)


def _sort_key(node: Node) -> tuple[int, int, str]:
    return (node.pos.line, node.pos.col, node.id) if node.pos else (0, 0, node.id)


def _check_way_out(nodes: dict[str, Node], edges: dict[str, list[str]], reachable: set[str],
                   report: _Report) -> None:
    """A menu (or collect) from which no path reaches a hangup or transfer keeps the caller forever."""
    incoming: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for node_id, targets in edges.items():
        for target in targets:
            incoming[target].append(node_id)
    can_end = {node_id for node_id, node in nodes.items() if isinstance(node, Hangup | Transfer)}
    queue = deque(can_end)
    while queue:
        for source in incoming[queue.popleft()]:
            if source not in can_end:
                can_end.add(source)
                queue.append(source)
    for node_id in sorted(reachable - can_end, key=lambda n: _sort_key(nodes[n])):
        node = nodes[node_id]
        if isinstance(node, Menu | Collect):
            report.error(node.pos or report.at(node),
                         f"{name(node)} has no way out: whatever the caller does, the call never reaches a "
                         "hangup or a transfer; send no_input or invalid to a goodbye or an operator",
                         "no-way-out", node_id)


def _check_hold(flow: Flow, roots: list[str], report: _Report) -> None:
    """Hoiio accepts nothing but unhold while a call is on hold, and refuses unhold when it is not.
    Walk the flow remembering which hold (if any) the caller is on."""
    nodes = flow.nodes
    seen: set[tuple[str, str | None]] = set()
    queue: deque[tuple[str, str | None]] = deque((root, None) for root in roots if root in nodes)
    reported: set[tuple[str, str]] = set()
    while queue:
        state = queue.popleft()
        if state in seen:
            continue
        seen.add(state)
        node_id, held_by = state
        node = nodes[node_id]
        if node.is_block:
            if held_by is not None and not isinstance(node, Unhold) and (held_by, node_id) not in reported:
                reported.add((held_by, node_id))
                hold = nodes[held_by]
                report.error(hold.pos or report.at(hold), f"after {name(hold)} the call reaches {name(node)} "
                             "before an unhold; while a caller is on hold only unhold can come next",
                             "hold-unhold", held_by)
            if held_by is None and isinstance(node, Unhold) and ("", node_id) not in reported:
                reported.add(("", node_id))
                report.error(node.pos or report.at(node), f"{name(node)} can be reached when the caller is not "
                             "on hold; put a hold before it or remove it", "hold-unhold", node_id)
            held_by = node_id if isinstance(node, Hold) else None
        for target in dict.fromkeys(node.exits().values()):
            queue.append((target, held_by))


def _check_dial_exits(flow: Flow, report: _Report) -> None:
    dial = flow.nodes.get(flow.start)
    if not isinstance(dial, Dial):
        return
    for exit_name in ("unanswered", "busy", "failed"):
        target = dial.exits().get(exit_name)
        node = flow.nodes.get(target or "")
        if node is not None and node.is_block and not isinstance(node, Hangup):
            report.warning(report.map.nodes[dial.id].exits[exit_name],
                           f"{name(dial)} {exit_phrase(dial.kind, exit_name)} {name(node)}, but nobody is on the line "
                           "then; use steps such as http or set (to record the result), or leave it out",
                           "dial-exit", dial.id)


# ---- templates and variables -------------------------------------------------------------------


def _check_variables(flow: Flow, report: _Report) -> None:
    defined = set(report.map.defined) | set(limits.BUILTIN_VARIABLES)
    choices = sorted(defined)
    for use in report.map.templates:
        for var in sorted(use.template.variables() - GLOBAL_NAMES - defined):
            hint = suggest(var, choices) or (" (set it with vars:, inputs:, a set node, or a collect's into:)")
            report.error(use.pos, f"variable '{var}' in {use.label} is never set{hint}", "undefined-variable",
                         use.node)
    for var, positions in report.map.defined.items():
        for pos in positions:
            if var in limits.BUILTIN_VARIABLES:
                report.error(pos, f"'{var}' is set by the engine on every call and can't be changed; choose "
                             "another name", "builtin-variable")
            elif var in limits.RESERVED_NAMES:
                report.error(pos, f"'{var}' can't be a variable name: templates read it as a keyword",
                             "reserved-variable")


def _check_templates(report: _Report) -> None:
    for use in report.map.templates:
        for problem in use.template.unsafe_constructs():
            report.error(use.pos, f"unsafe template in {use.label}: {problem}", "unsafe-template", use.node)


# ---- prompts -----------------------------------------------------------------------------------


def _check_prompts(flow: Flow, report: _Report) -> None:
    voice = flow.voice
    if voice.language and "voice" not in report.map.broken_top:
        _check_language(voice.language, report.map.pos(("voice", "language")), None, report)
    for use in report.map.prompts:
        if use.role != "message":
            _check_parts(use, report)
        if use.role != "parts":
            _check_length(use, flow, report)


def _check_language(tag: str, pos: Pos, node: str | None, report: _Report) -> None:
    problem = limits.language_problem(tag)
    if problem:
        severity, why = problem
        report.add(pos, severity, f"language '{tag}': {why}", "language", node)


def _check_parts(use: PromptUse, report: _Report) -> None:
    for part, positions in zip(use.parts, use.part_pos, strict=True):
        if isinstance(part, Audio):
            url = part.url
            if getattr(url, "is_constant", False):
                problem = limits.audio_url_problem(url.source)
                if problem:
                    report.error(positions["audio"], f"audio '{url.source}' in {use.label} can't be played: "
                                 f"{problem}", "audio-url", use.node)
            continue
        assert isinstance(part, Say)
        literal = part.text.literal_text() if hasattr(part.text, "literal_text") else ""
        if "<" in literal or ">" in literal:
            report.error(positions["text"], f"{use.label} contains < or >, which Hoiio reads as markup; write "
                         "{audio: ...} for sound files and language:/gender: for voices instead", "markup",
                         use.node)
        if part.language and "language" in positions:
            _check_language(part.language, positions["language"], use.node, report)


def message_length(parts: Iterable[Say | Audio], flow: Flow) -> tuple[int, bool]:
    """Length of the ``msg`` markup a prompt becomes (``engine.core.prompts``), counting only the
    fixed text of templates; True when variables will make it longer."""
    pieces: list[str] = []
    grows = False
    for part in parts:
        template = part.url if isinstance(part, Audio) else part.text
        literal = template.literal_text() if hasattr(template, "literal_text") else ""
        if template.variables():
            grows = True
        if isinstance(part, Audio):
            pieces.append(f"<url>{literal.strip()}</url>")
        elif literal.strip() or template.variables():
            pieces.append(speech(literal.strip(), part.language or flow.voice.language,
                                 part.gender or flow.voice.gender))
    return len(" ".join(pieces)), grows


def _check_length(use: PromptUse, flow: Flow, report: _Report) -> None:
    length, grows = message_length(use.parts, flow)
    if length <= limits.MSG_SAFE:
        return
    size = f"at least {length}" if grows else str(length)
    what = f"{use.label} is {size} characters long as Hoiio markup"
    if length > limits.MSG_MAX:
        report.error(use.pos, f"{what}; Hoiio accepts at most {limits.MSG_MAX}: split it over two nodes",
                     "msg-too-long", use.node)
    else:
        report.warning(use.pos, f"{what}; older Hoiio documentation allows only {limits.MSG_SAFE}, so keep it "
                       f"under {limits.MSG_SAFE} to be safe", "msg-long", use.node)


# ---- per node type -----------------------------------------------------------------------------


def _constant(template: object) -> str | None:
    return template.source if getattr(template, "is_constant", False) else None  # type: ignore[attr-defined]


def _check_transfer(node: Node, report: _Report) -> None:
    assert isinstance(node, Transfer)
    to = _constant(node.to)
    if to is None:
        return
    pos = report.at(node, "to")
    if to.startswith(limits.ROOM_PREFIX):
        room = to[len(limits.ROOM_PREFIX):]
        if room and not limits.is_room_id(room):
            report.error(pos, f"room ID '{room}' in {name(node)} may use only letters, digits, '.' and '_', up "
                         "to 32 characters", "room-id", node.id)
        return
    if not limits.is_phone(to):
        report.error(pos, f"'to' in {name(node)} must be a phone number in international format, in quotes "
                     f"(\"{limits.PHONE_EXAMPLE}\"), or a conference room (\"room:R1\"), not \"{to}\"",
                     "phone-number", node.id)
    elif node.room_profile is not None:
        report.warning(report.at(node, "room_profile"), f"room_profile in {name(node)} does nothing: it applies "
                       "only to transfers into a conference room", "room-profile", node.id)


def _check_conference(node: Node, report: _Report) -> None:
    """Fixed numbers must be what conference/call accepts: 1 to 8 different phone numbers (a list
    holds one per item, a text lists them separated by commas and/or spaces). Numbers with
    variables are checked when the call reaches the node (bad ones take the failed exit)."""
    assert isinstance(node, Conference)
    if isinstance(node.numbers, tuple):
        seen: set[str] = set()
        for index, number in enumerate(node.numbers):
            value = _constant(number)
            if value is None:
                continue
            pos = report.at(node, "numbers", index)
            if not limits.is_phone(value):
                several = len(split_numbers(value)) > 1
                hint = (" (a list item holds one number; to list several in one text, write numbers: "
                        "\"+6561234567, +6561234568\" without [ ])" if several else "")
                report.error(pos, f"'{value}' in {name(node)} is not a phone number in international format; "
                             f"write it in quotes like \"{limits.PHONE_EXAMPLE}\"{hint}", "phone-number", node.id)
            elif value in seen:
                report.error(pos, f"'numbers' in {name(node)} lists {value} twice; Hoiio dials each number "
                             "once", "duplicate-value", node.id)
            seen.add(value)
    else:
        text = _constant(node.numbers)
        if text is not None:
            _check_numbers_text(node, split_numbers(text), report)
    room = _constant(node.room)
    if room is not None and not limits.is_room_id(room):
        hint = " (write it without 'room:')" if room.startswith(limits.ROOM_PREFIX) else ""
        report.error(report.at(node, "room"), f"room ID '{room}' in {name(node)} may use only letters, digits, "
                     f"'.' and '_', up to 32 characters{hint}", "room-id", node.id)


def _check_numbers_text(node: Conference, numbers: list[str], report: _Report) -> None:
    pos = report.at(node, "numbers")
    label = f"'numbers' in {name(node)}"
    bad = next((number for number in numbers if not limits.is_phone(number)), None)
    if not numbers:
        report.error(pos, f"{label} lists no phone numbers; give 1 to {limits.CONFERENCE_MAX_NUMBERS}, separated "
                     f"by commas (\"{limits.PHONE_EXAMPLE}, +6561234568\")", "empty-value", node.id)
    elif bad is not None:
        report.error(pos, f"{label} lists '{bad}', which is not a phone number in international format; write "
                     f"each number like {limits.PHONE_EXAMPLE} (a + then 8 to 15 digits, no spaces), separated by "
                     "commas", "phone-number", node.id)
    elif len(numbers) > limits.CONFERENCE_MAX_NUMBERS:
        report.error(pos, f"{label} lists {len(numbers)} phone numbers; Hoiio dials at most "
                     f"{limits.CONFERENCE_MAX_NUMBERS} into a room", "too-many", node.id)
    else:
        twice = next((number for index, number in enumerate(numbers) if number in numbers[:index]), None)
        if twice is not None:
            report.error(pos, f"{label} lists {twice} twice; Hoiio dials each number once", "duplicate-value",
                         node.id)


def _check_voipnow_invite(node: Node, report: _Report) -> None:
    """Fixed values must pass the rules VoipNow (and ``POST /api/conferences/voipnow/invites``)
    applies; values with variables are checked when the call reaches the node."""
    assert isinstance(node, VoipNowInvite)
    number = _constant(node.number)
    if number is not None and not limits.VOIPNOW_NUMBER_RE.fullmatch(number):
        report.error(report.at(node, "number"), f"'number' in {name(node)} must be a phone number in "
                     f"international format (\"{limits.PHONE_EXAMPLE}\") or a VoipNow extension number (\"211\", "
                     f"\"0003*211\"), not \"{number}\"", "voipnow-number", node.id)
    for option, pattern, rule in (("conference_number", limits.VOIPNOW_CONFERENCE_NUMBER_RE, "1 to 10 digits"),
                                  ("pin", limits.VOIPNOW_PIN_RE, "1 to 16 digits")):
        template = getattr(node, option)
        value = _constant(template) if template is not None else None
        if value is not None and not pattern.fullmatch(value):
            report.error(report.at(node, option), f"'{option}' in {name(node)} must be {rule}, not \"{value}\"",
                         f"voipnow-{option.replace('_', '-')}", node.id)


def _check_hangup(node: Node, report: _Report) -> None:
    assert isinstance(node, Hangup)
    if node.force and node.prompt:
        report.error(report.at(node, "force"), f"{name(node)} has force: true, which hangs up at once, so its "
                     "'say' would never be heard; remove one of them", "force-with-say", node.id)


def _check_collect(node: Node, report: _Report) -> None:
    assert isinstance(node, Collect)
    if node.min_length > node.max_length:
        report.error(report.at(node, "min_length"), f"min_length ({node.min_length}) in {name(node)} is larger "
                     f"than max_length ({node.max_length})", "bad-length", node.id)
    if node.pattern is None:
        return
    pos = report.at(node, "pattern")
    try:
        re.compile(node.pattern)
    except re.error as exc:
        report.error(pos, f"'pattern' in {name(node)} is not a valid regular expression: {exc}", "bad-pattern",
                     node.id)
        return
    if _NESTED_REPEAT.search(node.pattern):
        report.warning(pos, f"'pattern' in {name(node)} repeats a group that itself repeats, which can take "
                       "very long to match; write it without the nested repeat (e.g. [0-9]+)", "slow-pattern",
                       node.id)


# a group containing + or * (or {n,}) that is itself repeated: the classic catastrophic backtracking
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*(?:[+*]|\{\d*,\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d*,\d*\})")


def _check_http(node: Node, report: _Report) -> None:
    assert isinstance(node, Http)
    url = node.url.source
    if not url.startswith(("http://", "https://", "{{")):
        report.error(report.at(node, "url"), f"'url' in {name(node)} must start with http:// or https://",
                     "http-url", node.id)


@cache
def _timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _timezone_exists(name_: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name_)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _check_hours(node: Node, report: _Report) -> None:
    assert isinstance(node, Hours)
    if not _timezone_exists(node.timezone):
        report.error(report.at(node, "timezone"), f"unknown time zone '{node.timezone}' in {name(node)}"
                     + (suggest(node.timezone, _timezones()) or "; write a name such as Asia/Singapore"),
                     "timezone", node.id)
    data = report.map.doc.data["nodes"][node.id]
    days_seen: dict[int, str] = {}
    for key, value in data["weekly"].items():
        first, _, last = key.partition("-")
        key_pos = report.map.key_pos(("nodes", node.id, "weekly", key))
        if last and WEEKDAYS.index(last) < WEEKDAYS.index(first):
            rest = "mon" if last == "mon" else f"mon-{last}"
            head = first if first == "sun" else f"{first}-sun"
            report.error(key_pos, f"'{key}' in {name(node)} runs backwards: days go in week order (mon ... sun); "
                         f"write it as two entries, {head} and {rest}", "bad-hours", node.id)
            continue
        for day in weekday_span(key):
            if day in days_seen:
                report.error(key_pos, f"{_DAY_NAMES[day]} is in both '{days_seen[day]}' and '{key}' in "
                             f"{name(node)}; give each day its hours once", "bad-hours", node.id)
                break
            days_seen[day] = key
        ranges = value if isinstance(value, list) else [value]
        intervals = []
        for index, text in enumerate(ranges):
            path = ("nodes", node.id, "weekly", key) + ((index,) if isinstance(value, list) else ())
            interval = parse_time_range(text)
            if interval is None and TIME_RANGE_RE.fullmatch(text):
                start, _, end = text.partition("-")
                report.error(report.map.pos(path), f"'{text}' in {name(node)} ends before it starts; for hours "
                             f"past midnight write '{start}-24:00' on one day and '00:00-{end}' on the next",
                             "bad-hours", node.id)
            elif interval is not None:
                intervals.append((interval, text, path))
        intervals.sort(key=lambda item: item[0].start)
        for (before, before_text, _), (after, after_text, path) in zip(intervals, intervals[1:], strict=False):
            if after.start < before.end:
                report.error(report.map.pos(path), f"'{after_text}' overlaps '{before_text}' on '{key}' in "
                             f"{name(node)}", "bad-hours", node.id)
    seen_dates: set[str] = set()
    holidays = data.get("holidays") or []
    for index, text in enumerate(holidays):
        pos = report.map.pos(("nodes", node.id, "holidays", index))
        try:
            date.fromisoformat(text)
        except ValueError:
            report.error(pos, f"'{text}' in {name(node)} is not a real date (YYYY-MM-DD)", "bad-date", node.id)
            continue
        if text in seen_dates:
            report.warning(pos, f"'{text}' is listed twice in {name(node)}", "duplicate-date", node.id)
        seen_dates.add(text)
    if node.holiday and not holidays:
        report.warning(report.map.nodes[node.id].exits["holiday"], f"{name(node)} has a 'holiday' exit but no "
                       "holidays listed, so it is never used", "unused-exit", node.id)


_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_NODE_CHECKS = {
    "transfer": _check_transfer,
    "conference": _check_conference,
    "voipnow_invite": _check_voipnow_invite,
    "hangup": _check_hangup,
    "collect": _check_collect,
    "http": _check_http,
    "hours": _check_hours,
}


# ---- flow options ------------------------------------------------------------------------------


def _check_flow_options(flow: Flow, report: _Report) -> None:
    data = report.map.doc.data if isinstance(report.map.doc.data, dict) else {}
    if flow.outbound:
        if flow.numbers:
            report.warning(report.map.pos(("numbers",)), "this flow starts with a dial (an outbound call), so "
                           "incoming calls to its numbers can't run it; move the numbers to an inbound flow",
                           "outbound-numbers")
    elif data.get("inputs") and "inputs" not in report.map.broken_top and flow.start in flow.nodes:
        report.warning(report.map.pos(("inputs",)), "inputs are given only when an outbound call is placed, "
                       "but this flow does not start with a dial; use vars: for values known in advance",
                       "inbound-inputs")

"""A stored call turned back into a replay case (``ivr export SESSION``).

Read from ``db.timeline(session)``: every notification's raw body (as received, so exactly what
Hoiio posted) becomes a step, without the engine's own ``step``/``sig``/``ref`` parameters; the blocks
queued after it, until the next notification, become its ``expect`` (parameters in wire order), and
a block Hoiio refused becomes a ``provider:`` answer of that step. The clock is fixed at the moment
the call started. An outbound call starts with ``start: outbound`` and its inputs as ``vars``.

The flow is compiled from the source stored for the exact version the call ran on (else taken from
the flows folder). When the call went through ``http`` steps, their answers are not stored; they are
rebuilt from the call's path (``next``: HTTP 200 with the saved values, ``failed``: HTTP 503) and their
URLs learnt by playing the case once through the harness, so the exported case takes the same way.
Notifications refused for a bad signature or forged step are left out (re-signed they would be
accepted); the header says how many.

May import ``engine.replay``, ``engine.flowfile``, ``engine.registry``, ``engine.storage``,
``engine.core`` and the standard library.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from engine.core.actions import HttpCall
from engine.core.events import HttpResult
from engine.core.flow import Flow, Http
from engine.flowfile import compile_source
from engine.registry import FlowRegistry
from engine.replay.case import Case, Step, render_case, wire_order

__all__ = ["ExportError", "export_call", "export_text"]

OUR_PARAMS = frozenset({"step", "sig", "ref"})
DEFAULT_FIELDS = ("session", "txn_ref", "from", "to", "dest")


class ExportError(Exception):
    """The call cannot be exported (unknown session, ...); the message is for the person asking."""


def _provider_answer(block: Any) -> str:
    if block.status == "unknown" or block.provider_status == "error_timeout":
        return "timeout"
    if block.provider_status == "error_connection":
        return "connection_refused"
    return block.provider_status or "success_ok"


def _fields_of(row: Any) -> dict[str, str]:
    body = bytes(row.body or b"").decode("utf-8", errors="replace")
    fields: dict[str, str] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        if name not in OUR_PARAMS:
            fields.setdefault(name, value)
    for name, value in parse_qsl(row.query_string or "", keep_blank_values=True):
        if name not in OUR_PARAMS and name not in fields:
            fields[name] = value
    return fields


def _stored_flow(db: Any, name: str, version: str, flows_dir: str | Path | None) -> Flow | None:
    with db.reading() as tx:
        source = tx.get_flow_source(name, version)
    if source:
        flow, _findings = compile_source(source, f"{name}.yaml", name=name)
        if flow is not None:
            return flow
    if flows_dir is not None and Path(flows_dir).is_dir():
        registry = FlowRegistry.load(flows_dir, strict=False)
        return registry.get(name)
    return None


def export_call(db: Any, session: str, *, flows_dir: str | Path | None = None) -> tuple[Case, list[str]]:
    """The case for one stored call, and header lines saying where it came from."""
    call = db.get_call(session)
    if call is None:
        raise ExportError(f"no call with session {session!r} in {db.display_url}")
    state = call.state or {}
    flow = _stored_flow(db, call.flow, call.flow_version, flows_dir)
    outbound = call.direction == "outbound"
    started = call.created_at if call.created_at.tzinfo else call.created_at.replace(tzinfo=UTC)
    case = Case(flow=call.flow, now=started.astimezone(UTC).replace(microsecond=0), steps=[])
    header = [f"Call {session} on flow {call.flow} (version {call.flow_version}), exported from "
              f"{db.display_url}.", f"Outcome when stored: {call.status}, {call.outcome or 'no outcome yet'}."]

    raw_steps: list[tuple[Step, dict[str, str]]] = []
    refused = 0
    side_calls = 0
    current: Step | None = None
    if outbound:
        current = Step(kind="start", expect=[])
        raw_steps.append((current, {}))
    answers: dict[int, list[tuple[str, str]]] = {}  # id(step) -> (endpoint, answer) in order
    for entry in db.timeline(session):
        row = entry.row
        if entry.kind == "notification":
            if row.route == "(claim)":
                continue
            if row.outcome == "refused":
                refused += 1
                continue
            kind = "monitor" if "/hoiio/monitor" in row.route else "notify"
            current = Step(kind=kind, expect=[])
            raw_steps.append((current, _fields_of(row)))
        elif entry.kind == "block":
            if current is None:  # a block before any notification: only an outbound dial can be
                current = Step(kind="start", expect=[])
                raw_steps.insert(0, (current, {}))
            current.expect.append({"endpoint": row.endpoint, "params": wire_order(row.endpoint, dict(row.params))})
            answers.setdefault(id(current), []).append((row.endpoint, _provider_answer(row)))
        else:
            side_calls += 1
    for step, _fields in raw_steps:
        listed = answers.get(id(step), [])
        for endpoint in dict.fromkeys(e for e, _ in listed):
            mine = [a for e, a in listed if e == endpoint]
            if any(a != "success_ok" for a in mine):
                while mine and mine[-1] == "success_ok":
                    mine.pop()  # the default answer needs no saying
                step.provider[endpoint] = mine
    if refused:
        header.append(f"{refused} notification(s) refused when received (bad signature or step) are left out.")
    if side_calls:
        header.append(f"{side_calls} side call(s) (conference/call) are not part of the case.")

    first = next((fields for step, fields in raw_steps if step.kind == "notify"), {})
    hoiio_session = str((state.get("call") or {}).get("session") or first.get("session") or session)
    case.session = hoiio_session
    case.txn_ref = first.get("txn_ref") or call.txn_ref or (state.get("call") or {}).get("txn_ref")
    case.caller = first.get("from") or None
    case.called = first.get("to") or None
    if outbound:
        call_facts = state.get("call") or {}
        case.dest = call.dest or call_facts.get("dest")
        case.caller_id = call_facts.get("caller_id")
        case.tag = call_facts.get("tag")
        case.vars = _inputs(db, call, flow, state)
    else:
        case.dest = None

    defaults = _defaults(case, flow, outbound)
    for step, fields in raw_steps:
        if step.kind == "start":
            continue
        if step.kind == "monitor":
            step.fields = {k: v for k, v in fields.items() if not (k == "session" and v == case.session)}
            continue
        kept: dict[str, str | None] = {}
        for name, value in fields.items():
            if name in DEFAULT_FIELDS and defaults.get(name) == value:
                continue
            kept[name] = value
        for name in DEFAULT_FIELDS:  # a field the harness would add, that Hoiio did not send
            if name not in fields and defaults.get(name) is not None:
                kept[name] = None
        step.fields = kept
    case.steps = [step for step, _ in raw_steps]
    case.expect_call = {"status": call.status, "outcome": call.outcome}
    if flow is not None:
        case.http = _http_answers(case, flow, state)
    return case, header


def export_text(db: Any, session: str, *, flows_dir: str | Path | None = None) -> str:
    case, header = export_call(db, session, flows_dir=flows_dir)
    return render_case(case, header=header)


def _defaults(case: Case, flow: Flow | None, outbound: bool) -> dict[str, str | None]:
    from engine.replay.harness import DEFAULT_CALLER, DEFAULT_SESSION

    session = case.session or DEFAULT_SESSION
    txn_ref = case.txn_ref or f"AA-{session}"
    if outbound:
        return {"session": session, "txn_ref": txn_ref, "from": case.caller, "to": case.called, "dest": case.dest}
    called = case.called
    if called is None and flow is not None and flow.numbers:
        called = flow.numbers[0]
    return {"session": session, "txn_ref": txn_ref, "from": case.caller or DEFAULT_CALLER, "to": called,
            "dest": case.dest}


def _inputs(db: Any, call: Any, flow: Flow | None, state: Mapping[str, Any]) -> dict[str, Any]:
    """The outbound call's inputs: the flow's declared ``inputs`` as they were when it ended."""
    import yaml

    final = dict(state.get("vars") or {})
    with db.reading() as tx:
        source = tx.get_flow_source(call.flow, call.flow_version)
    declared: list[str] | None = None
    if source:
        try:
            data = yaml.safe_load(source)
            if isinstance(data, dict) and isinstance(data.get("inputs"), list):
                declared = [str(name) for name in data["inputs"]]
        except yaml.YAMLError:
            declared = None
    if declared is not None:
        return {name: final[name] for name in declared if name in final}
    if flow is None:
        return final
    assigned = set(flow.vars)
    for node in flow.nodes.values():
        assigned.update(getattr(node, "values", {}) or {})
        assigned.update(getattr(node, "save", {}) or {})
        var = getattr(node, "var", None)
        if var:
            assigned.add(var)
    return {name: value for name, value in final.items() if name not in assigned}


def _document(save: Mapping[str, str], values: Mapping[str, Any]) -> Any:
    """A JSON answer holding ``values[var]`` at each dotted path of ``save``."""
    root: dict[str, Any] = {}
    for var, path in save.items():
        keys = path.split(".")
        here: Any = root
        for key, following in zip(keys, [*keys[1:], None], strict=True):
            if following is None:
                _put(here, key, values.get(var))
                break
            child = [] if following.isdigit() else {}
            existing = _get(here, key)
            if existing is None:
                _put(here, key, child)
                existing = child
            here = existing
    return root


def _get(container: Any, key: str) -> Any:
    if isinstance(container, list):
        index = int(key)
        return container[index] if index < len(container) else None
    return container.get(key)


def _put(container: Any, key: str, value: Any) -> None:
    if isinstance(container, list):
        index = int(key)
        while len(container) <= index:
            container.append(None)
        container[index] = value
    else:
        container[key] = value


def _http_answers(case: Case, flow: Flow, state: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    final = dict(state.get("vars") or {})
    planned: list[tuple[str, dict[str, Any]]] = []
    for node_id, exit_name in state.get("path") or ():
        node = flow.nodes.get(node_id)
        if isinstance(node, Http) and exit_name in ("next", "failed"):
            if exit_name == "next":
                planned.append((node_id, {"status": 200, "json": _document(node.save, final)}))
            else:
                planned.append((node_id, {"status": 503}))
    if not planned:
        return {}
    from engine.replay.harness import Replayer

    learnt: dict[str, list[dict[str, Any]]] = {}
    queue = list(planned)

    def answer(call: HttpCall) -> HttpResult | None:
        if not queue or queue[0][0] != call.node:
            return None
        _node, reply = queue.pop(0)
        learnt.setdefault(call.url, []).append(reply)
        return HttpResult(call.step, reply.get("status"), reply.get("json"), None)

    registry = FlowRegistry(Path(tempfile.gettempdir()))
    registry.current[flow.name] = flow
    registry.versions[(flow.name, flow.version)] = flow
    with Replayer(registry.folder, registry=registry) as replayer:
        app = replayer.open_app()
        try:
            app.http_fallback = answer
            app.play(Case(**{**case.__dict__, "http": {}}))
        finally:
            app.close()
    return learnt


"""Small builders for flows and events in interpreter tests.

Nodes get sensible defaults so a test spells out only what it is about; templates are the real
sandboxed ``JinjaTemplate`` / ``JinjaExpression``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from engine.core import flow as f
from engine.core.actions import Block
from engine.core.events import Billing, HttpResult, Notification, ProviderRejected, SideCallResult
from engine.core.interpreter import Step, start, step
from engine.core.state import CallState
from engine.flowfile.templating import JinjaExpression, JinjaTemplate

NOW = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Singapore
CALL = {"from": "+6591234567", "to": "+6531234567", "txn_ref": "AA-C-1"}
SESSION = "S100"


def t(source: str) -> JinjaTemplate:
    return JinjaTemplate(source)


def say(*parts: str | f.Say | f.Audio) -> f.Prompt:
    """A prompt: plain strings become ``Say`` parts."""
    return tuple(f.Say(t(p)) if isinstance(p, str) else p for p in parts)


def audio(url: str) -> f.Audio:
    return f.Audio(t(url))


def retry(then: str, tries: int = 3, text: str | None = None) -> f.Retry:
    return f.Retry(say=say(text) if text else (), tries=tries, then=then)


def play(id: str, text: str = "Hello.", next: str = "bye", **kw: Any) -> f.Play:
    return f.Play(id=id, prompt=say(text), next=next, **kw)


def menu(id: str, options: dict[str, str], text: str = "Press 1.", **kw: Any) -> f.Menu:
    kw.setdefault("repeat_prompt", None)
    kw.setdefault("timeout", 5)
    kw.setdefault("no_input", retry("bye"))
    kw.setdefault("invalid", retry("bye"))
    return f.Menu(id=id, prompt=say(text), options=options, **kw)


def collect(id: str, var: str = "account", next: str = "bye", text: str = "Enter it.", **kw: Any) -> f.Collect:
    kw.setdefault("repeat_prompt", None)
    kw.setdefault("min_length", 1)
    kw.setdefault("max_length", 8)
    kw.setdefault("pattern", None)
    kw.setdefault("sensitive", False)
    kw.setdefault("timeout", 10)
    kw.setdefault("no_input", retry("bye"))
    kw.setdefault("invalid", retry("bye"))
    return f.Collect(id=id, prompt=say(text), var=var, next=next, **kw)


def record(id: str, next: str = "bye", **kw: Any) -> f.Record:
    kw.setdefault("prompt", say("Leave a message."))
    kw.setdefault("max_duration", 120)
    kw.setdefault("var", "recording_url")
    return f.Record(id=id, next=next, **kw)


def monitor(id: str, next: str = "bye", **kw: Any) -> f.Monitor:
    kw.setdefault("prompt", say("This call is recorded."))
    kw.setdefault("var", "monitor_url")
    return f.Monitor(id=id, next=next, **kw)


def hold(id: str, next: str, music: f.Prompt = ()) -> f.Hold:
    return f.Hold(id=id, music=music, next=next)


def unhold(id: str, next: str = "bye", **kw: Any) -> f.Unhold:
    return f.Unhold(id=id, next=next, **kw)


def transfer(id: str, to: str = "+6561234567", **kw: Any) -> f.Transfer:
    kw.setdefault("prompt", ())
    kw.setdefault("caller_id", None)
    kw.setdefault("ring_time", None)
    kw.setdefault("room_profile", None)
    kw.setdefault("on_failure", "continue" if kw.get("failed") else "hangup")
    kw.setdefault("failed", None)
    return f.Transfer(id=id, to=t(to), **kw)


def hangup(id: str = "bye", text: str | None = "Goodbye.", force: bool = False, **kw: Any) -> f.Hangup:
    return f.Hangup(id=id, prompt=say(text) if text else (), force=force, **kw)


def dial(id: str = "call", answered: str = "greet", **kw: Any) -> f.Dial:
    kw.setdefault("prompt", ())
    kw.setdefault("caller_id", None)
    kw.setdefault("max_duration", None)
    for name in ("unanswered", "busy", "failed"):
        kw.setdefault(name, None)
    return f.Dial(id=id, answered=answered, **kw)


def conference(id: str, numbers: list[str] | str, room: str = "R1", next: str = "bye", **kw: Any) -> f.Conference:
    """A list: one number per item; a text: the numbers it lists (``numbers: "{{ participants }}"``)."""
    kw.setdefault("caller_id", None)
    kw.setdefault("failed", None)
    listed = t(numbers) if isinstance(numbers, str) else tuple(t(n) for n in numbers)
    return f.Conference(id=id, numbers=listed, room=t(room), next=next, **kw)


def http(id: str, url: str = "https://api.example.com/x", next: str = "bye", failed: str = "bye", **kw: Any) -> f.Http:
    kw.setdefault("method", "GET")
    kw["headers"] = {k: t(v) for k, v in kw.get("headers", {}).items()}
    body = kw.get("body")
    kw["body"] = None if body is None else {k: t(v) for k, v in body.items()}
    kw.setdefault("timeout", 3)
    kw.setdefault("save", {})
    return f.Http(id=id, url=t(url), next=next, failed=failed, **kw)


def set_(id: str, next: str = "bye", **values: str) -> f.Set:
    return f.Set(id=id, values={k: t(v) for k, v in values.items()}, next=next)


def branch(id: str, cases: list[tuple[str, str]], otherwise: str = "bye") -> f.Branch:
    return f.Branch(id=id, cases=tuple(f.Case(JinjaExpression(w), then) for w, then in cases), otherwise=otherwise)


def hours(
    id: str,
    weekly: dict[int, list[tuple[str, str]]],
    timezone: str = "Asia/Singapore",
    holidays: tuple[str, ...] = (),
    open: str = "open_msg",
    closed: str = "closed_msg",
    holiday: str | None = None,
) -> f.Hours:
    def clock(text: str) -> time:
        return time.max if text == "24:00" else time.fromisoformat(text)

    return f.Hours(
        id=id,
        timezone=timezone,
        weekly={day: tuple(f.Interval(clock(a), clock(b)) for a, b in spans) for day, spans in weekly.items()},
        holidays=frozenset(date.fromisoformat(d) for d in holidays),
        open=open,
        closed=closed,
        holiday=holiday,
    )


def goto(id: str, to: str) -> f.Goto:
    return f.Goto(id=id, to=to)


def make_flow(*nodes: f.Node, start: str | None = None, **kw: Any) -> f.Flow:
    """A flow of ``nodes`` (the first is the start) plus a ``bye`` hangup unless one is given."""
    by_id = {n.id: n for n in nodes}
    by_id.setdefault("bye", hangup("bye"))
    kw["vars"] = {k: t(v) for k, v in kw.get("vars", {}).items()}
    kw.setdefault("version", "v1")
    return f.Flow(name=kw.pop("name", "test"), start=start or nodes[0].id, nodes=by_id, **kw)


# --- events -----------------------------------------------------------------------------------------


def begin(flow: f.Flow, **kw: Any) -> Step:
    kw.setdefault("session", SESSION)
    kw.setdefault("call", CALL)
    kw.setdefault("now", NOW)
    return start(flow, **kw)


def notify(state: CallState, block: str = "", call_state: str = "ongoing", **kw: Any) -> Notification:
    """A notification for the step in progress (override ``step`` to make a stale one)."""
    kw.setdefault("step", state.step)
    kw.setdefault("session", state.session)
    return Notification(block=block or (state.waiting or ""), call_state=call_state, **kw)


BILLING = Billing(date="2026-03-04 10:01:00", duration="1", currency="SGD", rate="0.02", debit="0.02")


def ended(state: CallState, **kw: Any) -> Notification:
    kw.setdefault("billing", BILLING)
    return notify(state, call_state="ended", **kw)


def feed(flow: f.Flow, state: CallState, event: Any, now: datetime = NOW) -> Step:
    return step(flow, state, event, now=now)


def http_result(state: CallState, status: int | None = 200, json: Any = None, **kw: Any) -> HttpResult:
    return HttpResult(step=kw.pop("step", state.step), status=status, json=json, **kw)


def side_result(state: CallState, ok: bool = True, status: str = "success_ok") -> SideCallResult:
    return SideCallResult(step=state.step, ok=ok, status=status)


def rejected(state: CallState, status: str, **kw: Any) -> ProviderRejected:
    return ProviderRejected(step=kw.pop("step", state.step), status=status)


def golden(s: Step) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """The Hoiio blocks of a step as (kind, params) pairs, for exact comparisons."""
    return [(a.kind, a.params) for a in s.actions if isinstance(a, Block)]

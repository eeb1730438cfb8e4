"""The terminal side of ``ivr try``: what the caller hears, the questions, the summary.

``Console`` shows the simulation's events and answers its questions, either by asking the person
at the terminal (``input``) or from a script (``--keys``). Colour (``click.style``) only when asked,
normally when standard output is a terminal. Nothing here knows about HTTP, databases or threads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from engine.authoring.simulator import (
    HANGUP,
    BlockEvent,
    CallResult,
    Event,
    Heard,
    HttpEvent,
    KeysQuestion,
    NoteEvent,
    PassEvent,
    RefusedEvent,
    SideCallEvent,
    TransferQuestion,
    menu_options,
)
from engine.core.flow import Collect, Node

KEY_CHARS = set("0123456789*#")

#: typed answer -> transfer outcome
TRANSFER_ANSWERS = {
    "": "answered", "a": "answered", "answered": "answered", "answer": "answered", "y": "answered",
    "b": "busy", "busy": "busy",
    "n": "unanswered", "no answer": "unanswered", "unanswered": "unanswered", "noanswer": "unanswered",
    "f": "failed", "failed": "failed", "fail": "failed",
}
TRANSFER_WORDS = {"answered": "answered", "busy": "busy", "unanswered": "no answer", "failed": "failed"}


def _can_encode(text: str) -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class Console:
    """Shows a simulated call and answers its questions.

    ``keys``: scripted answers for the Gathers (``None`` = silence); once they run out the caller
    hangs up. Without ``keys`` the person at the terminal is asked (``read`` reads one line).
    ``transfers``: how the first Transfers end, in order; then the person is asked (scripted: answered).
    """

    def __init__(self, *, color: bool = False, keys: Sequence[str | None] | None = None,
                 transfers: Sequence[str] = (), echo: Callable[[str], None] | None = None,
                 read: Callable[[str], str] | None = None, echo_input: bool = False) -> None:
        self.color = color
        self.scripted = keys is not None
        self.keys = list(keys or [])
        self.transfers = list(transfers)
        self._echo = echo or (lambda line: click.echo(line, color=color))
        self._read = read or input
        self.echo_input = echo_input  # show what was read (input from a pipe is not echoed)
        fancy = _can_encode("🔊▶☎●✓✗→…·─")
        self.g = {
            "say": "🔊" if fancy else ">", "audio": "▶" if fancy else ">", "phone": "☎" if fancy else "*",
            "rec": "●" if fancy else "*", "ok": "✓" if fancy else "+", "no": "✗" if fancy else "x",
            "arrow": "→" if fancy else "->", "dot": "·" if fancy else "|", "rule": "─" if fancy else "-",
            "web": "⇄" if fancy else "<>",
        }
        self._http_hint_shown = False

    # ---------------------------------------------------------------- output
    def style(self, text: str, **styles: Any) -> str:
        return click.style(text, **styles) if self.color else text

    def line(self, text: str = "") -> None:
        self._echo(text)

    def banner(self, title: str, detail: str) -> None:
        self.line(self.style(title, bold=True))
        if detail:
            self.line(self.style(detail, dim=True))

    def _header(self, node: Node | None, detail: str = "") -> None:
        if node is None:
            return
        text = self.style(node.id, fg="cyan", bold=True) + self.style(f" ({node.kind}{detail})", fg="cyan")
        self.line(text)

    def _heard(self, part: Heard) -> None:
        if part.audio is not None:
            self.line(f"  {self.g['audio']} plays {self.style(part.audio, fg='magenta')}")
            return
        voice = " ".join(v for v in (part.language, part.gender) if v)
        shown = f"  {self.g['say']} " + self.style(f"\"{part.text}\"", fg="green")
        if voice:
            shown += "  " + self.style(voice, dim=True)
        self.line(shown)

    def note(self, text: str, *, warning: bool = False) -> None:
        if warning:
            self.line("  " + self.style(f"! {text}", fg="yellow"))
        else:
            self.line("  " + self.style(text, dim=True))

    def show(self, event: Event) -> None:
        if isinstance(event, BlockEvent):
            self._block(event)
        elif isinstance(event, RefusedEvent):
            self.note(f"Hoiio refused the {event.kind} block ({event.status}); the engine takes it from here",
                      warning=True)
        elif isinstance(event, HttpEvent):
            self._http(event)
        elif isinstance(event, SideCallEvent):
            self._side_call(event)
        elif isinstance(event, PassEvent):
            arrow = f" {self.g['arrow']} "
            line = f"{event.node.id} ({event.node.kind}){arrow}[{event.exit}]"
            if event.target:
                line += f"{arrow}{event.target}"
            self.line(self.style(line, fg="cyan", dim=True))
        elif isinstance(event, NoteEvent):
            if event.level == "warning":
                self.note(event.text, warning=True)
            elif event.text.startswith("engine: "):
                self.note(event.text)
            else:
                self.line("  " + self.style(event.text, fg="yellow"))

    def _block(self, event: BlockEvent) -> None:
        params = event.params
        kind = event.kind
        if kind in ("transfer", "dial"):
            detail = f" to {params.get('dest', '')}"
        elif kind in ("hold", "unhold") and event.node is not None and event.node.kind != kind:
            detail = f", {kind}"
        else:
            detail = ""
        self._header(event.node, detail)
        if kind == "dial":
            self.line(f"  {self.g['phone']} Calling {params.get('dest', '')}"
                      + (f" from {params['caller_id']}" if params.get("caller_id") else ""))
            if event.parts:
                self.line("  " + self.style("once answered:", dim=True))
        for part in event.parts:
            self._heard(part)
        if kind == "record":
            self.line(f"  {self.g['rec']} Recording the caller (up to {params.get('max_duration', '?')} s); "
                      "here the caller leaves a short message")
        elif kind == "monitor":
            self.line(f"  {self.g['rec']} The rest of the call is recorded")
        elif kind == "hold":
            self.line("  " + self.style("On hold" + ("" if event.parts else " (Hoiio's music)"), dim=True))
        elif kind == "unhold":
            self.line("  " + self.style("Off hold", dim=True))
        elif kind == "hangup":
            forced = params.get("force") == "enabled"
            self.line(f"  {self.g['phone']} The flow hangs up" + (" at once" if forced else ""))

    def _side_call(self, event: SideCallEvent) -> None:
        self._header(event.node)
        params = event.params
        if event.api == "conference/call":
            numbers = ", ".join(n for n in params.get("dest", "").split(",") if n)
            what = f"dials {numbers} into conference room {params.get('room', '')}"
        else:
            what = event.api + " " + ", ".join(f"{k}={v}" for k, v in params.items() if k != "notify_url")
        self.line(f"  {self.g['phone']} {what} {self.g['arrow']} {event.status}")

    def _http(self, event: HttpEvent) -> None:
        self._header(event.node)
        body = ""
        if event.body not in (None, {}, ""):
            body = " " + json.dumps(event.body, ensure_ascii=False)
        self.line(f"  {self.g['web']} {event.method} {event.url}{body}")
        answer = f"{event.status}" if event.status is not None else "no answer"
        if event.response not in (None, ""):
            answer += " " + json.dumps(event.response, ensure_ascii=False)
        if event.error:
            answer += f" ({event.error})"
        if event.simulated:
            answer += " (simulated"
            if not self._http_hint_shown:
                answer += "; --http URL=STATUS:JSON sets the answer"
                self._http_hint_shown = True
            answer += ")"
        self.line(f"    {self.g['arrow']} {answer}")

    # ---------------------------------------------------------------- questions
    def ask_keys(self, question: KeysQuestion) -> str | None:
        node = question.node
        options = menu_options(node)
        if options:
            choices = f" {self.g['dot']} ".join(f"{key} {target}" for key, target in options)
            self.line("  " + self.style("Choices: ", bold=True) + choices)
        elif isinstance(node, Collect):
            count = (f"{node.max_length}" if node.min_length == node.max_length
                     else f"{node.min_length} to {node.max_length}")
            self.line("  " + self.style(f"Key in {count} digits for {node.var}, then # (or just Enter)", bold=True))
        if self.scripted:
            return self._scripted_keys(node)
        hint = self.style("Enter alone = no input, h = hang up", dim=True)
        while True:
            typed = self._ask(f"  keys ({hint})> " if self.color else "  keys (Enter alone = no input, "
                              "h = hang up)> ").strip()
            if typed.lower() in ("h", "hangup", "hang up", "q"):
                return self._hanging_up()
            keys = typed.replace(" ", "").replace(",", "")
            if all(c in KEY_CHARS for c in keys):
                if not keys:
                    self.note(f"(no input: the caller says nothing for {question.timeout} s)")
                    return None
                return keys
            self.note("Type the keys the caller presses: 0-9, * and #; Enter alone for silence, h to hang up",
                      warning=True)

    def _ask(self, prompt: str) -> str:
        typed = self._read(prompt)
        if self.echo_input:
            self.line(typed)
        return typed

    def _hanging_up(self) -> str:
        self.line("  " + self.style("The caller hangs up", fg="yellow"))
        return HANGUP

    def _scripted_keys(self, node: Node | None) -> str | None:
        if not self.keys:
            self.line("  " + self.style("No more --keys: the caller hangs up", fg="yellow"))
            return HANGUP
        keys = self.keys.pop(0)
        secret = isinstance(node, Collect) and node.sensitive
        shown = ("*" * len(keys) if secret else keys) if keys else "(no input)"
        self.line(f"  keys> {self.style(shown, bold=True)}")
        return keys or None

    def ask_transfer(self, question: TransferQuestion) -> str:
        ring = f" for up to {question.ring_time} s" if question.ring_time else ""
        what = question.dest
        if what.startswith("room:"):
            what = f"conference room {what[5:] or '(new)'}"
        self.line(f"  {self.g['phone']} Ringing {what}{ring}.")
        if self.transfers:
            outcome = self.transfers.pop(0)
            self.line(f"  transfer> {self.style(TRANSFER_WORDS[outcome], bold=True)}  "
                      + self.style("(from --transfer)", dim=True))
            return self._transfer_said(outcome)
        if self.scripted:
            self.line(f"  transfer> {self.style('answered', bold=True)}  "
                      + self.style("(--transfer busy|unanswered|failed to change)", dim=True))
            return self._transfer_said("answered")
        prompt = "  How does it end? [a]nswered, [b]usy, [n]o answer, [f]ailed, h = hang up (Enter = answered)> "
        while True:
            typed = self._ask(prompt).strip().lower()
            if typed in ("h", "hangup", "hang up", "q"):
                return self._hanging_up()
            outcome = TRANSFER_ANSWERS.get(typed)
            if outcome:
                return self._transfer_said(outcome)
            self.note("Answer a, b, n or f (or h to hang up)", warning=True)

    def _transfer_said(self, outcome: str) -> str:
        if outcome == "answered":
            self.line(f"  {self.g['ok']} " + self.style("Answered: the caller is connected; the flow's part of "
                                                        "the call is over", fg="green"))
        else:
            self.line(f"  {self.g['no']} " + self.style(f"{TRANSFER_WORDS[outcome].capitalize()}: the transfer "
                                                        "fails", fg="yellow"))
        return outcome

    # ---------------------------------------------------------------- the end
    def summary(self, result: CallResult) -> None:
        rule = self.g["rule"] * 3
        self.line("")
        self.line(self.style(f"{rule} Summary {rule}", bold=True))
        arrow = f" {self.g['arrow']} "
        label = lambda text: self.style(f"{text:<11}", bold=True)  # noqa: E731
        self.line(label("Path:") + result.path_text.replace(" → ", arrow))
        visited = result.visited
        total = len(result.flow.nodes)
        self.line(label("Visited:") + (", ".join(visited) or "(none)") + f"  ({len(visited)} of {total} nodes)")
        shown = result.shown_vars()
        if shown:
            first = True
            for name, value in shown.items():
                self.line((label("Variables:") if first else " " * 11) + f"{name} = {value}")
                first = False
        else:
            self.line(label("Variables:") + "(none)")
        facts = {k: v for k, v in result.call.items() if k in ("from", "to", "dest", "transfer_status", "dial_status")
                 and v}
        if facts:
            self.line(label("Call:") + ", ".join(f"{k} {v}" for k, v in facts.items()))
        outcome = result.outcome or ("still active" if result.status == "active" else result.status)
        self.line(label("Outcome:") + self.style(outcome, bold=True))
        for note in result.notes:
            self.line(label("Note:") + note)

"""The compiled flow model: what the interpreter walks.

Built by ``engine.flowfile`` from YAML; immutable. Every node knows its source position so that
runtime problems can be reported as ``file:line:col`` just like check-time ones. Every way out of a
node is a named exit with a target (``Node.exits()``), which is what the checker, the graph, the
coverage report and the interpreter all agree on.

Templates and conditions are opaque objects implementing ``Template``/``Expression`` (the Jinja2
sandbox lives in ``engine.flowfile.templating``) so this module stays standard-library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any, Protocol


class Template(Protocol):
    """A prompt or value template. ``render`` raises ``RenderError`` on any failure."""

    source: str

    def render(self, context: Mapping[str, Any]) -> str: ...

    def variables(self) -> frozenset[str]: ...


class Expression(Protocol):
    """A condition such as ``balance > 100``; ``evaluate`` raises ``RenderError`` on failure."""

    source: str

    def evaluate(self, context: Mapping[str, Any]) -> Any: ...

    def variables(self) -> frozenset[str]: ...


class RenderError(Exception):
    """A template or expression failed at call time (undefined variable, budget exceeded, ...)."""


@dataclass(frozen=True)
class Pos:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Say:
    """Text spoken by Hoiio's text-to-speech; language/gender become ``<speech>`` markup."""

    text: Template
    language: str | None = None
    gender: str | None = None


@dataclass(frozen=True)
class Audio:
    """An audio file (http/https, .mp3/.wav/.gsm) played through ``<url>`` markup."""

    url: Template


PromptPart = Say | Audio
Prompt = tuple[PromptPart, ...]


@dataclass(frozen=True)
class Retry:
    """What a menu or digit collection does on no input / invalid input.

    ``say`` is spoken before the prompt is repeated; after ``tries`` failures of this kind the call
    goes to ``then``. No-input and invalid-input have separate counters.
    """

    say: Prompt
    tries: int
    then: str


@dataclass(frozen=True, kw_only=True)
class Node:
    id: str
    pos: Pos | None = None
    #: Hoiio ``tag`` for the block (author's reference, <= 256 chars); blocks only.
    tag: str | None = None

    kind = "node"
    #: True when the node sends a Hoiio block (as opposed to running inside the engine).
    is_block = False

    def exits(self) -> dict[str, str]:
        """Exit name -> target node id, for every way out of this node."""
        return {}


@dataclass(frozen=True, kw_only=True)
class Play(Node):
    prompt: Prompt
    next: str
    kind = "play"
    is_block = True

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


@dataclass(frozen=True, kw_only=True)
class Menu(Node):
    prompt: Prompt
    repeat_prompt: Prompt | None  # None: repeat ``prompt``
    options: Mapping[str, str]  # key pressed ("1", "*", "#", "10") -> target
    timeout: int  # seconds
    no_input: Retry
    invalid: Retry
    kind = "menu"
    is_block = True

    def exits(self) -> dict[str, str]:
        out = {f"key {k}": t for k, t in self.options.items()}
        out["no input"] = self.no_input.then
        out["invalid"] = self.invalid.then
        return out


@dataclass(frozen=True, kw_only=True)
class Collect(Node):
    """Collect digits into a variable (account number, PIN, ...)."""

    prompt: Prompt
    repeat_prompt: Prompt | None
    var: str
    min_length: int
    max_length: int  # becomes Hoiio max_digits (1..255)
    pattern: str | None  # full-match regular expression
    sensitive: bool
    timeout: int
    no_input: Retry
    invalid: Retry
    next: str
    kind = "collect"
    is_block = True

    def exits(self) -> dict[str, str]:
        return {"next": self.next, "no input": self.no_input.then, "invalid": self.invalid.then}


@dataclass(frozen=True, kw_only=True)
class Record(Node):
    prompt: Prompt
    max_duration: int  # seconds
    var: str  # variable that receives record_url
    next: str
    kind = "record"
    is_block = True

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


@dataclass(frozen=True, kw_only=True)
class Monitor(Node):
    """Record the rest of the call; the recording URL arrives later into ``var``."""

    prompt: Prompt
    var: str
    next: str
    kind = "monitor"
    is_block = True

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


@dataclass(frozen=True, kw_only=True)
class Hold(Node):
    """Put the caller on hold (``music`` loops). Hoiio sends no notification for hold: the flow
    continues at once, may run engine steps (http, set, ...), and the next block must be unhold."""

    music: Prompt  # empty: Hoiio's default hold music
    next: str
    kind = "hold"
    is_block = True

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


@dataclass(frozen=True, kw_only=True)
class Unhold(Node):
    next: str
    kind = "unhold"
    is_block = True

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


@dataclass(frozen=True, kw_only=True)
class Transfer(Node):
    to: Template  # "+6561234567", "room:R1", "room:" (new room); may use variables
    prompt: Prompt
    caller_id: str | None
    ring_time: int | None
    room_profile: str | None  # "music" | "ringing"
    on_failure: str  # "hangup" | "continue"
    failed: str | None  # required when on_failure == "continue"
    kind = "transfer"
    is_block = True

    def exits(self) -> dict[str, str]:
        return {"failed": self.failed} if self.failed else {}


@dataclass(frozen=True, kw_only=True)
class Hangup(Node):
    prompt: Prompt  # empty: no message
    force: bool
    kind = "hangup"
    is_block = True


@dataclass(frozen=True, kw_only=True)
class Dial(Node):
    """Start of an outbound flow: Hoiio ivr/start/dial to the number given when the call is placed."""

    prompt: Prompt  # played once the callee answers
    caller_id: str | None
    max_duration: int | None
    answered: str
    unanswered: str | None
    busy: str | None
    failed: str | None
    kind = "dial"
    is_block = True

    def exits(self) -> dict[str, str]:
        out = {"answered": self.answered}
        for name in ("unanswered", "busy", "failed"):
            target = getattr(self, name)
            if target:
                out[name] = target
        return out


@dataclass(frozen=True, kw_only=True)
class Conference(Node):
    """Dial more people into a conference room (Hoiio conference/call); the flow continues at once."""

    #: a tuple: one number per item (up to 8); one Template: its text lists the numbers, separated
    #: by commas and/or whitespace (``"{{ participants }}"``), split when the call reaches the node
    numbers: tuple[Template, ...] | Template
    room: Template  # room id, may use variables (e.g. the room the caller was sent to)
    caller_id: str | None
    next: str
    failed: str | None
    kind = "conference"
    is_block = False

    def exits(self) -> dict[str, str]:
        out = {"next": self.next}
        if self.failed:
            out["failed"] = self.failed
        return out


@dataclass(frozen=True, kw_only=True)
class VoipNowInvite(Node):
    """Invite a number into a VoipNow scheduled conference (UAPI conferenceInvite); the flow
    continues at once."""

    number: Template  # E.164 or a VoipNow extension number ("211", "0003*211"); may use variables
    conference_number: Template | None  # the scheduled conference's number (digits); None: asked
    pin: Template | None  # its PIN (digits); None: the callee is asked for it
    wait_for_pickup: int | None  # seconds to ring; None: VoipNow's default (25)
    caller_id: str | None  # "Name <number>" or a number
    next: str
    failed: str | None
    kind = "voipnow_invite"
    is_block = False

    def exits(self) -> dict[str, str]:
        out = {"next": self.next}
        if self.failed:
            out["failed"] = self.failed
        return out


@dataclass(frozen=True, kw_only=True)
class Http(Node):
    """Call the business's own API; 2xx -> ``next`` (saving values), anything else -> ``failed``."""

    method: str  # GET | POST | PUT | PATCH | DELETE
    url: Template
    headers: Mapping[str, Template]
    body: Mapping[str, Template] | None  # sent as JSON (POST/PUT/PATCH) or query (GET)
    timeout: float  # seconds, <= 10
    save: Mapping[str, str]  # variable -> dotted path into the JSON response ("booking.time")
    next: str
    failed: str
    kind = "http"

    def exits(self) -> dict[str, str]:
        return {"next": self.next, "failed": self.failed}


@dataclass(frozen=True, kw_only=True)
class Set(Node):
    values: Mapping[str, Template]
    next: str
    kind = "set"

    def exits(self) -> dict[str, str]:
        return {"next": self.next}


@dataclass(frozen=True)
class Case:
    when: Expression
    then: str


@dataclass(frozen=True, kw_only=True)
class Branch(Node):
    cases: tuple[Case, ...]
    otherwise: str
    kind = "branch"

    def exits(self) -> dict[str, str]:
        out = {f"case {i + 1}": c.then for i, c in enumerate(self.cases)}
        out["otherwise"] = self.otherwise
        return out


@dataclass(frozen=True)
class Interval:
    start: time
    end: time  # exclusive; 24:00 is written as time.max


@dataclass(frozen=True, kw_only=True)
class Hours(Node):
    """Business hours: a weekly schedule in a time zone, plus holidays."""

    timezone: str  # IANA name, e.g. "Asia/Singapore"
    weekly: Mapping[int, tuple[Interval, ...]]  # 0 = Monday ... 6 = Sunday; missing day = closed
    holidays: frozenset[date]
    open: str
    closed: str
    holiday: str | None  # None: holidays go to ``closed``
    kind = "hours"

    def exits(self) -> dict[str, str]:
        out = {"open": self.open, "closed": self.closed}
        if self.holiday:
            out["holiday"] = self.holiday
        return out


@dataclass(frozen=True, kw_only=True)
class Goto(Node):
    to: str
    kind = "goto"

    def exits(self) -> dict[str, str]:
        return {"next": self.to}


NODE_KINDS: dict[str, type[Node]] = {
    cls.kind: cls
    for cls in (
        Play, Menu, Collect, Record, Monitor, Hold, Unhold, Transfer, Hangup, Dial,
        Conference, Http, Set, Branch, Hours, Goto, VoipNowInvite,
    )
}


@dataclass(frozen=True)
class Voice:
    language: str | None = None
    gender: str | None = None


@dataclass(frozen=True)
class Flow:
    name: str  # the file name without .yaml; used in URLs
    start: str
    nodes: Mapping[str, Node]
    numbers: tuple[str, ...] = ()  # Hoiio numbers whose incoming calls run this flow
    on_error: str | None = None  # flow-wide error handler node
    voice: Voice = field(default_factory=Voice)  # default text-to-speech voice
    vars: Mapping[str, Template] = field(default_factory=dict)  # initial variables
    description: str = ""
    version: str = ""  # content hash of the source file
    source: str = ""  # file path
    inputs: tuple[str, ...] = ()  # variables the caller of an outbound flow must supply

    @property
    def outbound(self) -> bool:
        return isinstance(self.nodes.get(self.start), Dial)

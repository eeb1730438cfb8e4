"""What changed between two versions of a flow, in words.

Both versions are compiled (``engine.flowfile.api.compile_source``) and compared node by node, so
the diff is about behaviour, not about YAML layout: re-indenting a file or reordering keys changes
its version hash but yields no change here. A change reads like::

    main_menu: key 3 now goes to billing (was sales)
    the welcome prompt changed from "Welcome to Acme." to "Welcome to Acme Florist."
    node billing added (play)

Used by ``ivr versions FLOW --diff OLD NEW`` and by the dashboard's flow page. May import
``engine.core`` and ``engine.flowfile``; standard library otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time
from typing import Any

from engine.core.flow import Audio, Flow, Node, Retry, Say

__all__ = ["Change", "VersionError", "compile_version", "diff_flows", "diff_sources", "find_version", "prompt_text"]

#: Fields holding the target of an exit: their changes are reported through ``Node.exits()``.
_EXIT_FIELDS = frozenset({"next", "failed", "answered", "unanswered", "busy", "open", "closed", "holiday",
                          "otherwise", "options"})
#: Fields holding what the caller hears, and how to call them in a sentence.
_PROMPT_FIELDS = {"prompt": "prompt", "repeat_prompt": "repeat prompt", "music": "hold music"}
_RETRY_FIELDS = {"no_input": "no-input", "invalid": "invalid-input"}
_NEVER_COMPARED = frozenset({"id", "pos"})
_LABELS = {"to": "destination", "var": "variable", "values": "value of", "save": "saved variable"}
_QUOTE_LIMIT = 80


class VersionError(Exception):
    """A stored version cannot be compared (it does not compile any more)."""


@dataclass(frozen=True)
class Change:
    """One difference between two versions of a flow.

    ``kind`` is one of ``node-added``, ``node-removed``, ``node-type``, ``exit-retargeted``,
    ``exit-added``, ``exit-removed``, ``prompt``, ``setting`` and ``flow`` (flow-wide settings);
    ``node`` is the node concerned (None for flow-wide changes); ``text`` is the sentence."""

    kind: str
    node: str | None
    text: str

    def __str__(self) -> str:
        return self.text


# ---------------------------------------------------------------------------------------- entry points
def compile_version(source: str | bytes, name: str, version: str = "") -> Flow:
    """Compile a stored version's source; ``VersionError`` with the first error when it does not."""
    from engine.flowfile.api import compile_source

    flow, findings = compile_source(source, f"{name}.yaml", name=name)
    if flow is None:
        errors = [f for f in findings if f.severity == "error"]
        first = f": {errors[0].message}" if errors else ""
        label = f"version {version} of " if version else ""
        raise VersionError(f"{label}flow {name!r} does not compile{first}")
    return flow


def find_version(entries: Sequence[Mapping[str, Any]], ref: str) -> Mapping[str, Any]:
    """The stored version ``ref`` names among ``entries`` (``db.flow_versions(flow)``, newest first):
    a version hash or a unique prefix of one, ``latest`` (the newest) or ``previous`` (the one before)."""
    ref = ref.strip()
    if ref in ("latest", "previous"):
        index = 0 if ref == "latest" else 1
        if len(entries) <= index:
            raise VersionError(f"there is no {ref} version: {len(entries)} version(s) stored")
        return entries[index]
    exact = [e for e in entries if e["version"] == ref]
    if exact:
        return exact[0]
    matches = [e for e in entries if ref and str(e["version"]).startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise VersionError(f"no stored version {ref!r}")
    raise VersionError(f"{ref!r} names {len(matches)} versions; give more of the hash")


def diff_sources(old_source: str | bytes, new_source: str | bytes, name: str, *,
                 old_version: str = "", new_version: str = "") -> list[Change]:
    """The changes from one stored source to another (both compiled)."""
    return diff_flows(compile_version(old_source, name, old_version), compile_version(new_source, name, new_version))


def diff_flows(old: Flow, new: Flow) -> list[Change]:
    """Every behavioural difference from ``old`` to ``new``: flow-wide settings first, then the
    nodes in the order of the new flow (removed nodes last)."""
    changes = _flow_changes(old, new)
    for node_id, node in new.nodes.items():
        before = old.nodes.get(node_id)
        if before is None:
            exits = ", ".join(f"{name} to {target}" for name, target in node.exits().items())
            where = f", {exits}" if exits else ""
            changes.append(Change("node-added", node_id, f"node {node_id} added ({node.kind}{where})"))
        else:
            changes.extend(_node_changes(before, node))
    for node_id, node in old.nodes.items():
        if node_id not in new.nodes:
            changes.append(Change("node-removed", node_id, f"node {node_id} removed (was a {node.kind})"))
    return changes


# ---------------------------------------------------------------------------------------- flow-wide
def _flow_changes(old: Flow, new: Flow) -> list[Change]:
    out: list[Change] = []
    if old.start != new.start:
        out.append(Change("flow", None, f"calls now start at {new.start} (was {old.start})"))
    for number in new.numbers:
        if number not in old.numbers:
            out.append(Change("flow", None, f"number {number} now runs this flow"))
    for number in old.numbers:
        if number not in new.numbers:
            out.append(Change("flow", None, f"number {number} no longer runs this flow"))
    if old.on_error != new.on_error:
        out.append(Change("flow", None, f"errors now go to {new.on_error or 'the built-in apology'} "
                                        f"(was {old.on_error or 'the built-in apology'})"))
    if _plain(old.voice) != _plain(new.voice):
        out.append(Change("flow", None, f"the default voice changed from {_voice(old)} to {_voice(new)}"))
    out.extend(Change("flow", None, text) for text in _mapping_changes(
        _plain(old.vars), _plain(new.vars), lambda k: f"variable {k}", verb="now starts as"))
    if old.description != new.description:
        out.append(Change("flow", None, f"the description changed from {_quote(old.description)} to "
                                        f"{_quote(new.description)}"))
    return out


def _voice(flow: Flow) -> str:
    parts = [p for p in (flow.voice.language, flow.voice.gender) if p]
    return " ".join(parts) if parts else "Hoiio's default"


# ---------------------------------------------------------------------------------------- nodes
def _node_changes(old: Node, new: Node) -> list[Change]:
    node_id = new.id
    out: list[Change] = []
    if old.kind != new.kind:
        out.append(Change("node-type", node_id, f"node {node_id} is now a {new.kind} (was a {old.kind})"))
    out.extend(_exit_changes(node_id, old.exits(), new.exits()))
    if old.kind != new.kind:
        # Different node types: only what the caller hears is worth comparing field by field.
        for name, label in _PROMPT_FIELDS.items():
            if hasattr(old, name) and hasattr(new, name):
                out.extend(_prompt_change(node_id, label, getattr(old, name), getattr(new, name)))
        return out
    for field in dataclasses.fields(new):
        name = field.name
        if name in _NEVER_COMPARED or name in _EXIT_FIELDS:
            continue
        before, after = getattr(old, name), getattr(new, name)
        if name in _PROMPT_FIELDS:
            out.extend(_prompt_change(node_id, _PROMPT_FIELDS[name], before, after))
        elif name in _RETRY_FIELDS and isinstance(after, Retry) and isinstance(before, Retry):
            out.extend(_retry_changes(node_id, _RETRY_FIELDS[name], before, after))
        elif name == "cases":
            out.extend(_case_changes(node_id, before, after))
        elif name == "to" and new.kind == "goto":
            continue  # an exit (reported by _exit_changes)
        elif name == "weekly" and new.kind == "hours":
            out.extend(_weekly_changes(node_id, before, after))
        elif isinstance(after, frozenset | set) and isinstance(before, frozenset | set):
            out.extend(_set_changes(node_id, name, before, after))
        else:
            out.extend(_setting_changes(node_id, name, before, after))
    return out


def _exit_changes(node_id: str, old: Mapping[str, str], new: Mapping[str, str]) -> list[Change]:
    out: list[Change] = []
    for name, target in new.items():
        if name not in old:
            out.append(Change("exit-added", node_id, f"{node_id}: {_exit_label(name)} added, goes to {target}"))
        elif old[name] != target:
            out.append(Change("exit-retargeted", node_id,
                              f"{node_id}: {_exit_label(name)} now goes to {target} (was {old[name]})"))
    for name, target in old.items():
        if name not in new:
            out.append(Change("exit-removed", node_id,
                              f"{node_id}: {_exit_label(name)} removed (went to {target})"))
    return out


def _exit_label(name: str) -> str:
    if name.startswith("key ") or name.startswith("case "):
        return name
    return f"exit {name!r}" if " " not in name else name


def _prompt_change(node_id: str, label: str, old: Any, new: Any) -> list[Change]:
    before, after = prompt_text(old), prompt_text(new)
    if before == after:
        return []
    if not before:
        return [Change("prompt", node_id, f"the {node_id} {label} is new: {_quote(after)}")]
    if not after:
        return [Change("prompt", node_id, f"the {node_id} {label} was removed (was {_quote(before)})")]
    return [Change("prompt", node_id, f"the {node_id} {label} changed from {_quote(before)} to {_quote(after)}")]


def _retry_changes(node_id: str, label: str, old: Retry, new: Retry) -> list[Change]:
    out = _prompt_change(node_id, f"{label} message", old.say, new.say)
    if old.tries != new.tries:
        out.append(Change("setting", node_id, f"{node_id}: {label} tries changed from {old.tries} to {new.tries}"))
    return out


def _case_changes(node_id: str, old: Sequence[Any], new: Sequence[Any]) -> list[Change]:
    out: list[Change] = []
    for index, case in enumerate(new):
        if index < len(old) and old[index].when.source != case.when.source:
            out.append(Change("setting", node_id, f"{node_id}: case {index + 1} condition changed from "
                                                  f"`{old[index].when.source}` to `{case.when.source}`"))
        elif index >= len(old):
            out.append(Change("setting", node_id, f"{node_id}: case {index + 1} is new: when "
                                                  f"`{case.when.source}`"))
    return out


def _weekly_changes(node_id: str, old: Mapping[int, Any], new: Mapping[int, Any]) -> list[Change]:
    """Opening hours per day; consecutive days with the same change are told once (Monday-Friday)."""
    changed: list[tuple[int, str, str]] = []
    for day in range(7):
        before, after = _show(_plain(old.get(day, ()))), _show(_plain(new.get(day, ())))
        if before != after:
            changed.append((day, before, after))
    out: list[Change] = []
    index = 0
    while index < len(changed):
        first, before, after = changed[index]
        last = first
        while (index + 1 < len(changed) and changed[index + 1][0] == last + 1
               and changed[index + 1][1:] == (before, after)):
            index += 1
            last = changed[index][0]
        days = _DAYS[first] if first == last else f"{_DAYS[first]}-{_DAYS[last]}"
        out.append(Change("setting", node_id, f"{node_id}: hours on {days} changed from {before} to {after}"))
        index += 1
    return out


def _set_changes(node_id: str, name: str, old: Any, new: Any) -> list[Change]:
    label = _LABELS.get(name, name.replace("_", " ")).rstrip("s")
    added = sorted(_plain(v) for v in new - old)
    removed = sorted(_plain(v) for v in old - new)
    out = [Change("setting", node_id, f"{node_id}: {label} {v} added") for v in added]
    out.extend(Change("setting", node_id, f"{node_id}: {label} {v} removed") for v in removed)
    return out


def _setting_changes(node_id: str, name: str, old: Any, new: Any) -> list[Change]:
    before, after = _plain(old), _plain(new)
    if before == after:
        return []
    label = _LABELS.get(name, name.replace("_", " "))
    if isinstance(before, dict) and isinstance(after, dict):
        return [Change("setting", node_id, f"{node_id}: {text}") for text in _mapping_changes(
            before, after, lambda k: f"{label} {k}")]
    return [Change("setting", node_id, f"{node_id}: {label} changed from {_show(before)} to {_show(after)}")]


def _mapping_changes(old: Mapping[str, Any], new: Mapping[str, Any], label, verb: str = "changed to") -> list[str]:
    out: list[str] = []
    for key, value in new.items():
        if key not in old:
            out.append(f"{label(key)} added: {_show(value)}")
        elif old[key] != value:
            if verb == "changed to":
                out.append(f"{label(key)} changed from {_show(old[key])} to {_show(value)}")
            else:
                out.append(f"{label(key)} {verb} {_show(value)} (was {_show(old[key])})")
    for key, value in old.items():
        if key not in new:
            out.append(f"{label(key)} removed (was {_show(value)})")
    return out


# ---------------------------------------------------------------------------------------- values
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def prompt_text(prompt: Any) -> str:
    """What a prompt says, as one line: spoken text as written, audio files as ``[audio URL]``."""
    if prompt is None:
        return ""
    parts = prompt if isinstance(prompt, tuple | list) else (prompt,)
    words: list[str] = []
    for part in parts:
        if isinstance(part, Say):
            words.append(" ".join(part.text.source.split()))
        elif isinstance(part, Audio):
            words.append(f"[audio {part.url.source}]")
    return " ".join(w for w in words if w)


def _plain(value: Any) -> Any:
    """A comparable, printable form of a compiled value (templates by their source)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "source") and not dataclasses.is_dataclass(value):
        return value.source  # Template / Expression
    if isinstance(value, Say | Audio):
        return prompt_text((value,))
    if isinstance(value, time):
        return "24:00" if value == time.max else value.strftime("%H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name not in _NEVER_COMPARED}
    if isinstance(value, Mapping):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, int) and 0 <= key < 7:
        return _DAYS[key]  # Hours.weekly
    return str(key)


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        if all(isinstance(v, dict) and set(v) == {"start", "end"} for v in value):
            return ", ".join(f"{v['start']}-{v['end']}" for v in value) or "closed"
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _quote(text: str) -> str:
    text = " ".join(str(text).split())
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 1].rstrip() + "…"
    return f'"{text}"'

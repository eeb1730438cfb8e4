"""Session state: an immutable value the storage layer persists as JSON.

``STATE_VERSION`` is bumped when the shape changes; ``CallState.from_dict`` upgrades older shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

STATE_VERSION = 1

# status values
ACTIVE = "active"  # waiting for a notification (or an engine-side result)
ENDED = "ended"  # the call is over; nothing more will be sent


@dataclass(frozen=True)
class CallState:
    flow: str
    version: str  # flow version (content hash) the call started on
    session: str
    node: str | None  # node whose block/step is in progress
    step: int = 0  # step number of the last action issued; notifications must carry it
    waiting: str | None = None  # block kind, "http" or "side" being waited on; None when idle
    status: str = ACTIVE
    vars: Mapping[str, Any] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()  # variable names never to log or show
    no_input: int = 0  # counters for the current menu/collect node
    invalid: int = 0
    on_hold: bool = False
    errors: int = 0  # how many times the error handler ran for this call
    outcome: str | None = None  # how the call ended: "transfer", "hangup", "caller hung up", ...
    path: tuple[tuple[str, str], ...] = ()  # (node, exit) in order: coverage and summaries
    call: Mapping[str, str] = field(default_factory=dict)  # from / to / dest / txn_ref
    billing: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (what ``dataclasses.asdict`` gives, without its deep copy of every
        value: values here are JSON values, and containers are copied)."""
        d = {name: getattr(self, name) for name in _FIELDS}
        d["vars"] = _copy(self.vars)
        d["call"] = dict(self.call)
        d["billing"] = dict(self.billing)
        d["sensitive"] = sorted(self.sensitive)
        d["path"] = [list(p) for p in self.path]
        d["state_version"] = STATE_VERSION
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CallState:
        d = dict(d)
        d.pop("state_version", None)
        d["sensitive"] = frozenset(d.get("sensitive", ()))
        d["path"] = tuple(tuple(p) for p in d.get("path", ()))
        return cls(**d)

    def evolve(self, **changes: Any) -> CallState:
        return replace(self, **changes)


_FIELDS = tuple(f.name for f in fields(CallState))


def _copy(value: Any) -> Any:
    """Containers copied (mappings to dicts, lists and tuples kept as such), other values as they are."""
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    return value

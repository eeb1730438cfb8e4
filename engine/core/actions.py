"""Actions the interpreter asks the outside world to perform.

A ``Block`` is one Hoiio IVR request *without* ``app_id``, ``access_token``, ``session`` or
``notify_url``: the service adds those (the notify URL carries ``step`` so the reply can be matched).
Parameters are exactly the documented ones, as strings, in a stable order (golden-testable).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BLOCK_ENDPOINTS: dict[str, str] = {
    "dial": "ivr/start/dial",
    "play": "ivr/middle/play",
    "gather": "ivr/middle/gather",
    "record": "ivr/middle/record",
    "monitor": "ivr/middle/monitor",
    "hold": "ivr/middle/hold",
    "unhold": "ivr/middle/unhold",
    "transfer": "ivr/end/transfer",
    "hangup": "ivr/end/hangup",
}

#: Blocks after which Hoiio posts a notification we wait for before sending anything else.
AWAITED_BLOCKS = frozenset({"dial", "play", "gather", "record", "monitor", "unhold", "transfer", "hangup"})


@dataclass(frozen=True)
class Block:
    kind: str  # key of BLOCK_ENDPOINTS
    params: tuple[tuple[str, str], ...]
    step: int  # the step number the notification for this block will carry
    node: str  # flow node that produced it

    @property
    def endpoint(self) -> str:
        return BLOCK_ENDPOINTS[self.kind]

    @property
    def awaits_notification(self) -> bool:
        return self.kind in AWAITED_BLOCKS

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name)


@dataclass(frozen=True)
class HttpCall:
    """Call the business's API (flow ``http`` node); answer with ``HttpResult(step=...)``."""

    step: int
    node: str
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    params: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 3.0


@dataclass(frozen=True)
class SideCall:
    """A provider request outside the IVR session (e.g. conference/call to dial people into a room).
    Answer with ``SideCallResult(step=...)``."""

    step: int
    node: str
    api: str  # e.g. "conference/call"
    params: tuple[tuple[str, str], ...]


Action = Block | HttpCall | SideCall

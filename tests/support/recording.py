"""A recording stand-in for Hoiio's HTTP API, mounted as a requests transport adapter.

The real ``HoiioClient`` runs on top of it, so what is recorded is exactly what would go on the wire.
It is the replay harness's transport with a few conveniences for assertions.
"""

from __future__ import annotations

from engine.replay.harness import RecordingTransport


class RecordingAdapter(RecordingTransport):
    def answer(self, endpoint: str, *answers: str | dict | BaseException) -> None:
        """Queue answers for an endpoint such as ``ivr/middle/gather``: a status, a whole JSON answer,
        or an exception the transport raises (a timeout, a refused connection)."""
        self.script({endpoint: answers})

    def endpoints(self) -> list[str]:
        return [e for e, _ in self.requests]

    def last(self) -> tuple[str, dict[str, str]]:
        return self.requests[-1]

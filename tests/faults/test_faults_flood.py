"""A flood of duplicated and forged notifications while real calls run.

The engine runs under gunicorn (2 gthread workers x 4 threads) on PostgreSQL. Real callers (the fake
Hoiio) go through auto_attendant while attacker threads, who see every notification on the wire
(URL, body, signature), post:

* exact copies (a provider redelivering, or a replay), also with extra query-string parameters that
  try to override the signed body (``session``, ``call_state``, ``digits``, ``ivr_block``...);
* the body with a wrong, missing or truncated ``X-Hoiio-Signature``;
* the notify URL with a forged ``step`` (same ``sig``), or another call's ``step``/``sig``;
* oversized bodies, undecodable bytes and control characters (signed and unsigned), GETs.

None of it advances a call: every real call takes exactly the path an undisturbed call takes, every
answer is JSON with a 2xx/4xx status (never 5xx) and the audit is clean. A second test lets the
attacker win the race: its altered copy of each notification arrives before the original.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
import requests
from fault_support import (
    ACME_MAIN,
    APP_ID,
    FORM,
    HOST,
    RECOVERY,
    TOKEN,
    Server,
    audit,
    describe,
    is_json,
    query_of,
    start_gunicorn,
    wait_until,
)

from engine.fakes import CallerScript, FakeHoiio, NotificationRecord
from engine.fakes.hoiio import default_transport
from engine.providers.hoiio.signature import SIGNATURE_HEADER, sign_body
from engine.storage import Database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CALLS = 8
MAX_ATTACKS = 480
ATTACKERS = 6
#: (script, blocks the fake carries out, the engine's outcome)
SCRIPTS = (
    (CallerScript(keys=["1"]), ("play", "gather", "transfer"), "transferred"),
    (CallerScript(keys=["7", "0"]), ("play", "gather", "gather", "record", "hangup"), "hung up by flow"),
)
OVERRIDES = {"session": "S999999", "call_state": "ended", "digits": "3", "ivr_block": "hangup", "tag": "x",
             "txn_ref": "AA-EVIL", "from": "+6590000000"}  # fmt: skip

Hook = Callable[[str, bytes, Mapping[str, str]], None]


@pytest.fixture(scope="module")
def hook() -> dict[str, Hook | None]:
    """``hook["before"](url, body, headers)`` runs before the fake posts each notification."""
    return {"before": None}


@pytest.fixture(scope="module")
def fake(hook: dict[str, Hook | None]) -> Iterator[FakeHoiio]:
    def transport(url: str, body: bytes, headers: Mapping[str, str]) -> int:
        before = hook["before"]
        if before is not None:
            before(url, body, headers)
        return default_transport(url, body, headers)

    fake = FakeHoiio(APP_ID, TOKEN, call_limit=10_000, notify_delay=0.3, transport=transport)
    fake.start(HOST, 0)
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake: FakeHoiio, pg_url: str, flows_dir: Path) -> Iterator[Server]:
    assert fake.base_url is not None
    server = start_gunicorn(tmp_path_factory.mktemp("logs"), api_url=fake.base_url, database_url=pg_url,
                            flows=flows_dir, name="gunicorn-flood", extra_env=RECOVERY)  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------ attacks


def _with_query(url: str, extra: Mapping[str, str] | None = None, **replace: str) -> str:
    parts = urlsplit(url)
    query = {**query_of(url), **replace}
    text = urlencode(query) + (("&" + urlencode(extra)) if extra else "")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, text, ""))


def _headers(body: bytes, signature: str | None = "sign") -> dict[str, str]:
    headers = {"Content-Type": FORM}
    if signature == "sign":
        headers[SIGNATURE_HEADER] = sign_body(body, TOKEN)
    elif signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return headers


def _flip(signature: str) -> str:
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")


def attack(kind: str, n: NotificationRecord, other: NotificationRecord, rng: random.Random) -> tuple[str, str, bytes,
                                                                                                      dict[str, str]]:
    """(method, url, body, headers) of one attack built from a real notification ``n`` (``other``:
    a real notification of another call)."""
    body = n.body.encode()
    if kind == "copy":
        return "POST", n.url, body, _headers(body, n.signature)
    if kind == "copy_query_override":
        extra = dict(rng.sample(sorted(OVERRIDES.items()), 3))
        return "POST", _with_query(n.url, extra), body, _headers(body, n.signature)
    if kind == "bad_signature":
        return "POST", n.url, body, _headers(body, _flip(n.signature))
    if kind == "short_signature":
        return "POST", n.url, body, _headers(body, n.signature[:12])
    if kind == "no_signature":
        return "POST", n.url, body, _headers(body, None)
    if kind == "forged_step":
        step = int(query_of(n.url).get("step", "0") or 0)
        return "POST", _with_query(n.url, step=str(step + rng.choice((1, 2, -1)))), body, _headers(body, n.signature)
    if kind == "other_calls_step":
        q = query_of(other.url)
        forged = _with_query(n.url, step=q.get("step", "1"), sig=q.get("sig", ""))
        return "POST", forged, body, _headers(body, n.signature)
    if kind == "oversized":
        big = body + b"&pad=" + b"9" * 70_000
        return "POST", n.url, big, _headers(big)
    if kind == "undecodable_signed":
        bad = body + b"&digits=\xff\xfe"
        return "POST", n.url, bad, _headers(bad)
    if kind == "undecodable_unsigned":
        return "POST", n.url, b"\xff\xfe\x00" + body, _headers(body, n.signature)
    if kind == "control_chars_signed":
        bad = body + b"&tag=%00%1b%5B31m"
        return "POST", n.url, bad.replace(b"%00", b"\x00"), _headers(bad.replace(b"%00", b"\x00"))
    if kind == "get":
        return "GET", n.url, b"", {}
    raise AssertionError(kind)


#: kind -> the answers it may get. A copy may win the race against the original (then it is the one
#: that advances the call, and the original is the duplicate): "ok" or "ignored", both 200.
EXPECTED = {
    "copy": {200}, "copy_query_override": {200}, "bad_signature": {403}, "short_signature": {403},
    "no_signature": {403}, "forged_step": {400, 403}, "other_calls_step": {403}, "oversized": {413},
    "undecodable_signed": {400}, "undecodable_unsigned": {403}, "control_chars_signed": {400}, "get": {405},
}  # fmt: skip


def post(method: str, url: str, body: bytes, headers: Mapping[str, str]) -> requests.Response:
    return requests.request(method, url, data=body or None, headers=dict(headers), timeout=15, allow_redirects=False)


def _expected_path(i: int) -> tuple[tuple[str, ...], str]:
    _script, heard, outcome = SCRIPTS[i % len(SCRIPTS)]
    return heard, outcome


# ------------------------------------------------------------------------------------------ tests


def test_flood_of_duplicates_and_forgeries(fake: FakeHoiio, server: Server, pg_db: Database) -> None:
    url = f"{server.url}/hoiio/answer"
    sessions = [fake.incoming_call(url, caller=f"+65933000{i:02d}", to=ACME_MAIN, script=SCRIPTS[i % len(SCRIPTS)][0])
                for i in range(CALLS)]  # fmt: skip
    stop = threading.Event()
    answers: list[tuple[str, int, bool, str]] = []
    lock = threading.Lock()

    def attacker(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            with lock:
                if len(answers) >= MAX_ATTACKS:
                    return
            seen = [n for n in fake.notifications if n.session in sessions and "step=" in n.url]
            if len(seen) < 2:
                time.sleep(0.02)
                continue
            recent = seen[-6:]  # mostly the notifications of steps in progress: the ones that race
            n = rng.choice(recent if rng.random() < 0.7 else seen)
            others = [m for m in seen if m.session != n.session]
            kind = rng.choice(sorted(EXPECTED))
            if not others and kind == "other_calls_step":
                continue
            other = rng.choice(others or seen)
            response = post(*attack(kind, n, other, rng))
            with lock:
                answers.append((kind, response.status_code, is_json(response), response.text[:200]))

    started = time.monotonic()
    with ThreadPoolExecutor(ATTACKERS) as pool:
        futures = [pool.submit(attacker, seed) for seed in range(ATTACKERS)]
        try:
            wait_until(lambda: all(fake.sessions[s].ended for s in sessions), 60, "the real calls to end", 0.1)
        finally:
            stop.set()
            for future in futures:
                future.result(timeout=30)
    elapsed = time.monotonic() - started

    # After the calls: every real notification once more, plain and with overrides: all ignored.
    rng = random.Random(99)
    for n in [n for n in fake.notifications if n.session in sessions]:
        for kind in ("copy", "copy_query_override"):
            response = post(*attack(kind, n, n, rng))
            assert response.status_code == 200 and response.json()["status"] == "ignored", (kind, response.text)

    by_kind = Counter(kind for kind, *_ in answers)
    assert len(by_kind) == len(EXPECTED), f"not every attack was tried: {by_kind}"
    for kind, code, json_body, text in answers:
        assert code in EXPECTED[kind], (kind, code, text)
        assert json_body, (kind, code, text)
    # the real notifications were all answered 200 (as "ok", or "ignored" when a copy was faster)
    for n in fake.notifications:
        if n.session in sessions:
            assert n.http_status == 200, (n.url, n.http_status, n.error)
    for i, sid in enumerate(sessions):
        heard, outcome = _expected_path(i)
        story = describe(pg_db, fake, sid)
        assert fake.sessions[sid].block_names == heard, story
        row = pg_db.get_call(sid)
        assert row is not None and row.status == "ended" and row.outcome == outcome, story
        assert row.txn_ref == fake.sessions[sid].txn_ref and row.caller == f"+65933000{i:02d}", story
    report = audit(pg_db, fake, sessions, settle=5)
    assert not report.problems, str(report)
    assert server.get("/livez", timeout=2).status_code == 200
    print(f"\n{len(answers)} attacks ({dict(by_kind)}) during {CALLS} calls in {elapsed:.1f} s")


def test_attacker_wins_the_race(fake: FakeHoiio, server: Server, pg_db: Database, hook: dict) -> None:
    """Before the fake posts each notification of one call, the attacker posts its altered copies:
    forged ones (refused), and the genuine body with query parameters that try to override it (then
    the genuine body is what counts, and the original arrives as a duplicate)."""
    answers: list[tuple[str, int, str]] = []
    rng = random.Random(7)

    def before(url: str, body: bytes, headers: Mapping[str, str]) -> None:
        if "step=" not in url:
            return
        n = NotificationRecord(time=0, url=url, body=body.decode(), fields={}, signature=headers[SIGNATURE_HEADER])
        for kind in ("forged_step", "bad_signature", "copy_query_override"):
            response = post(*attack(kind, n, n, rng))
            answers.append((kind, response.status_code, response.text[:200]))

    hook["before"] = before
    try:
        sid = fake.incoming_call(f"{server.url}/hoiio/answer", to=ACME_MAIN,
                                 script=CallerScript(keys=["7", "0"]))  # fmt: skip
        fake.wait_until_ended(sid, timeout=20)
    finally:
        hook["before"] = None
    story = describe(pg_db, fake, sid)
    assert fake.sessions[sid].block_names == ("play", "gather", "gather", "record", "hangup"), story
    row = pg_db.get_call(sid)
    assert row is not None and row.outcome == "hung up by flow", story
    overrides = [a for a in answers if a[0] == "copy_query_override"]
    assert len(overrides) == 5, answers
    for kind, code, text in answers:
        assert code == (200 if kind == "copy_query_override" else 403), (kind, code, text)
    # each genuine body advanced the call (through the attacker's copy); the originals were duplicates
    assert all('"status":"ok"' in text.replace(" ", "") for _, _, text in overrides), overrides
    assert all(n.http_status == 200 for n in fake.notifications if n.session == sid)
    assert row.txn_ref == fake.sessions[sid].txn_ref and row.caller == "+6591234567", story
    report = audit(pg_db, fake, [sid], settle=2)
    assert not report.problems, str(report)


def test_spliced_notification_does_not_advance_a_call(fake: FakeHoiio, server: Server, pg_db: Database,
                                                      hook: dict) -> None:  # fmt: skip
    """Before each notification of a call reaches the engine, the attacker posts the call's previous
    genuine notification (its signed body: the answer, then the play, ...) to this notification's
    genuine URL (its signed step). Both halves are authentic; together they are forged."""
    previous: dict[str, tuple[bytes, str]] = {}
    answers: list[tuple[str, int, str]] = []

    def before(url: str, body: bytes, headers: Mapping[str, str]) -> None:
        sid = dict(pair.split("=", 1) for pair in body.decode().split("&") if "=" in pair).get("session", "")
        if "step=" in url and sid in previous:
            old_body, old_signature = previous[sid]
            response = post("POST", url, old_body, _headers(old_body, old_signature))
            answers.append((url, response.status_code, response.text[:300]))
        previous[sid] = (body, headers[SIGNATURE_HEADER])

    hook["before"] = before
    sid = ""
    try:
        sid = fake.incoming_call(f"{server.url}/hoiio/answer", to=ACME_MAIN, script=CallerScript(keys=["1"]))
        wait_until(lambda: len(answers) >= 2 or fake.sessions[sid].ended, 20, "two spliced notifications")
    finally:
        hook["before"] = None
        if sid and not fake.sessions[sid].ended:
            fake.hangup_caller(sid)
    assert answers
    for url, code, text in answers:
        assert code >= 400 or '"status":"ignored"' in text.replace(" ", ""), (url, code, text)


def test_unsigned_query_parameters_are_not_taken(fake: FakeHoiio, server: Server, pg_db: Database,
                                                 hook: dict) -> None:  # fmt: skip
    """The attacker's copy of the call's first notification (the genuine signed body, plus
    ``dest=`` in the query string) arrives before the original."""
    answers: list[tuple[int, str]] = []

    def before(url: str, body: bytes, headers: Mapping[str, str]) -> None:
        if "step=1&" in url and not answers:
            forged = _with_query(url, {"dest": "+6599999999"})
            response = post("POST", forged, body, _headers(body, headers[SIGNATURE_HEADER]))
            answers.append((response.status_code, response.text[:300]))

    hook["before"] = before
    try:
        sid = fake.incoming_call(f"{server.url}/hoiio/answer", to=ACME_MAIN, script=CallerScript(keys=["1"]))
        fake.wait_until_ended(sid, timeout=20)
    finally:
        hook["before"] = None
    assert answers, "the attacker never saw the first notification"
    row = pg_db.get_call(sid)
    assert row is not None and row.outcome == "transferred", describe(pg_db, fake, sid)
    assert row.state["call"].get("dest") != "+6599999999", row.state["call"]

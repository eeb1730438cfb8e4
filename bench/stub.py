"""Provider stub for the benchmarks: a minimal Hoiio (REST API + callers) in a process of its own.

It plays both sides of the provider, on loopback:

* **the REST API**: every block POSTed to ``/open/ivr/...`` is answered at once with
  ``{"status": "success_ok"}``;
* **the callers**: right after answering a block it posts the notification that block leads to, to
  the block's ``notify_url``, signed with ``X-Hoiio-Signature`` (HMAC-SHA256 of the body keyed with
  the access token), with the fields Hoiio sends: a ``play`` or ``record`` finished (``ongoing``), a
  ``gather`` got the digits (``--digits``, default 1), a ``transfer`` was answered (``ended``, with
  billing), a ``hangup`` ended the call. When a call has ended a new one starts (``/hoiio/answer``),
  so the number of calls in progress stays at ``--calls``.

Turnaround, measured here with one clock: from the moment a notification starts to go out to the
moment the block it causes has been read by the stub. The last notification of a call (``ended``)
causes no block: its response time is reported apart (``final``).

Modes:

* ``closed``: every call posts its next notification as soon as it has its block: throughput.
* ``paced``: a pacer posts ``--rate`` notifications per second, taken in turn from the calls whose
  next notification is ready (each of the ``--calls`` calls waits its turn, like a caller listening
  to a prompt). How late the pacer was, and how long a notification waited for a free sender, are
  reported, so a server (or stub) that cannot keep up is seen.

Two ``--target`` servers (each with its own ``--to``) are compared at the same moment: calls alternate
between them, the pacing is shared, and the result has figures per target, so that both sides of a
ratio see the same load on the machine.

Targets: ``blocks`` (the server answers a notification by POSTing the next block: the engine, the
hand-written handler) or ``echo`` (the server only answers the request: the bare reference, whose
HTTP response stands for the block).

``--serve-mirror PORT`` runs instead a minimal raw-socket server that plays the engine's part (posts
play, gather, transfer to the stub, then answers): the stub's own ceiling is measured against it.

Design: threads and raw sockets (no HTTP library on the hot path): one thread per incoming
connection for the REST API side; a pool of sender threads for notifications, each opening a new
connection per notification (as nginx does towards gunicorn in ``deploy/nginx.conf``) unless
``--keepalive``. Prints one JSON object on stdout at the end.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import json
import math
import os
import queue
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

SIGNATURE_HEADER = "X-Hoiio-Signature"
OK_BODY = b'{"status": "success_ok"}'
OK_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(OK_BODY)).encode()
    + b"\r\n\r\n"
    + OK_BODY
)
_MAX_LINE = 65536


# ------------------------------------------------------------------------------------------ raw HTTP
def read_headers(rfile) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    while True:
        line = rfile.readline(_MAX_LINE)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()


def read_body(rfile, headers: dict[bytes, bytes]) -> bytes:
    length = headers.get(b"content-length")
    if length is not None:
        n = int(length)
        return rfile.read(n) if n else b""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks = []
        while True:
            size = int(rfile.readline(_MAX_LINE).split(b";")[0], 16)
            if size == 0:
                read_headers(rfile)  # trailers
                return b"".join(chunks)
            chunks.append(rfile.read(size))
            rfile.readline(_MAX_LINE)
    return rfile.read()


def read_request(rfile) -> tuple[bytes, bytes, dict[bytes, bytes], bytes] | None:
    line = rfile.readline(_MAX_LINE)
    if not line or line in (b"\r\n", b"\n"):
        return None
    method, target, _ = line.split(b" ", 2)
    headers = read_headers(rfile)
    return method, target, headers, read_body(rfile, headers)


class Poster:
    """POSTs form bodies to one host, over one connection reused (``keepalive``) or a new one each time."""

    def __init__(self, host: str, port: int, *, keepalive: bool) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.sock: socket.socket | None = None
        self.rfile = None
        self.retries = 0

    def _connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=65536)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.rfile.close()
                self.sock.close()
            except OSError:
                pass
        self.sock = self.rfile = None

    def post(self, target: str, body: bytes, extra_headers: str = "") -> tuple[int, bytes]:
        head = (
            f"POST {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUser-Agent: hoiio-bench-stub\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n{extra_headers}"
            + ("" if self.keepalive else "Connection: close\r\n")
            + "\r\n"
        )
        request = head.encode("latin-1") + body
        reused = self.sock is not None
        if not reused:
            self._connect()
        try:
            self.sock.sendall(request)
            line = self.rfile.readline(_MAX_LINE)
            if not line:
                raise ConnectionResetError("connection closed before the response")
        except OSError:
            self.close()
            if not reused:
                raise
            # A kept-alive connection the server had closed (idle timeout, worker recycled) and
            # nothing read back: send once more on a new connection, as HTTP clients do.
            self.retries += 1
            self._connect()
            self.sock.sendall(request)
            line = self.rfile.readline(_MAX_LINE)
            if not line:
                self.close()
                raise ConnectionResetError("connection closed before the response") from None
        status = int(line.split(b" ", 2)[1])
        headers = read_headers(self.rfile)
        data = read_body(self.rfile, headers)
        if not self.keepalive or headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, data


def listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


def serve_forever(sock: socket.socket, handle_connection) -> None:
    def accept_loop() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handle_connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, name="accept", daemon=True).start()


# ------------------------------------------------------------------------------------------ stats
def summary(samples: list[float]) -> dict[str, float | int | None]:
    """n, p50, p99, max and mean in milliseconds (nearest-rank percentiles)."""
    if not samples:
        return {"n": 0, "p50": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(samples)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] * 1000

    return {"n": n, "p50": rank(0.50), "p99": rank(0.99), "max": ordered[-1] * 1000,
            "mean": sum(ordered) / n * 1000}


# ------------------------------------------------------------------------------------------ the callers
KNOWN_BLOCKS = frozenset({"play", "gather", "record", "monitor", "unhold", "transfer", "hangup"})


def caller_notification(kind: str, base: list[tuple[str, str]], tag: str, *, digits: str,
                        billing: list[tuple[str, str]], record_url: str) -> tuple[list[tuple[str, str]], bool]:
    """The notification Hoiio posts once a block of this kind is over (the caller heard a play,
    pressed ``digits`` at a gather, was transferred and talked: ``ended``), and whether it ends the
    call. ``base`` holds ivr_block, session, txn_ref, from and to, in Hoiio's order."""
    if kind in ("transfer", "hangup"):
        extra = [("transfer_status", "answered")] if kind == "transfer" else []
        return [*base, ("call_state", "ended"), ("tag", tag), *extra, *billing], True
    fields = [*base, ("call_state", "ongoing"), ("tag", tag)]
    if kind == "gather":
        fields.append(("digits", digits))
    elif kind == "record":
        fields.append(("record_url", record_url))
    return fields, False


def billing_fields() -> list[tuple[str, str]]:
    return [("date", (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")),
            ("duration", "1"), ("currency", "SGD"), ("rate", "0.030"), ("debit", "0.030")]


# ------------------------------------------------------------------------------------------ the stub
class Call:
    __slots__ = ("session", "txn_ref", "t_posted", "blocks", "script", "target")

    def __init__(self, session: str, target: int = 0) -> None:
        self.session = session
        self.target = target  # index in --target
        self.txn_ref = f"AA-{session}"
        self.t_posted = 0.0
        self.blocks = 0
        self.script = 0  # echo target: index of the next scripted notification


class Stub:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.targets = [(u.hostname or "127.0.0.1", u.port or 80) for u in map(urlsplit, args.target)]
        self.numbers = args.to if len(args.to) == len(self.targets) else [args.to[0]] * len(self.targets)
        self.answer_path = args.answer_path
        self.token = args.token.encode()
        self.calls: dict[str, Call] = {}
        self.run_id = f"{random.randrange(36**6):06x}"[-6:]
        self.counter = 0
        self.lock = threading.Lock()
        self.send_q: queue.SimpleQueue = queue.SimpleQueue()
        self.ready: collections.deque = collections.deque()
        self.ready_cv = threading.Condition()
        self.stop = threading.Event()
        self.t0 = self.t1 = 0.0  # measurement window (perf_counter)
        self.billing = billing_fields()
        # results (list.append is atomic under the GIL)
        n = len(self.targets)
        self.turnaround: list[list[float]] = [[] for _ in range(n)]  # per target
        self.final: list[list[float]] = [[] for _ in range(n)]
        self.done: list[int] = [0] * n
        self.lateness: list[float] = []
        self.queue_delay: list[float] = []
        self.errors: collections.Counter = collections.Counter()
        self.blocks_by_kind: collections.Counter = collections.Counter()
        self.posters: list[Poster] = []

    # -------------------------------------------------------------- calls and notifications
    def in_window(self, t: float) -> bool:
        return self.t0 <= t < self.t1

    def new_call(self) -> None:
        with self.lock:
            self.counter += 1
            session = f"B{self.run_id}{self.counter:07d}"
            target = self.counter % len(self.targets)  # calls alternate between the targets
        call = Call(session, target)
        self.calls[session] = call
        fields = [("ivr_block", "answer"), ("session", session), ("txn_ref", call.txn_ref),
                  ("from", self.args.caller), ("to", self.numbers[target]), ("call_state", "ringing")]
        self.dispatch((call, self.answer_path, fields, False))

    def next_notification(self, call: Call, kind: str, tag: str) -> tuple[list[tuple[str, str]], bool]:
        base = [("ivr_block", kind), ("session", call.session), ("txn_ref", call.txn_ref),
                ("from", self.args.caller), ("to", self.numbers[call.target])]
        fields, final = caller_notification(kind, base, tag, digits=self.args.digits, billing=self.billing,
                                            record_url=f"http://127.0.0.1/recordings/{call.session}.mp3")
        if kind not in KNOWN_BLOCKS:
            self.errors[f"unexpected block {kind}"] += 1
        return fields, final

    def dispatch(self, job: tuple) -> None:
        if self.stop.is_set():
            return
        if self.args.mode == "paced":
            with self.ready_cv:
                self.ready.append(job)
                self.ready_cv.notify()
        else:
            self.send_q.put((job, time.perf_counter()))

    # -------------------------------------------------------------- the REST API side
    def handle_connection(self, conn: socket.socket) -> None:
        serve_connection(conn, self.answer_block)

    def answer_block(self, conn: socket.socket, request: tuple) -> None:
        now = time.perf_counter()
        _method, target, _headers, body = request
        params = dict(parse_qsl(body.decode("utf-8")))
        kind = target.rsplit(b"/", 1)[-1].decode()
        call = self.calls.get(params.get("session", ""))
        if call is not None:
            call.blocks += 1
        conn.sendall(OK_RESPONSE)
        self.on_block(call, kind, params, now)

    def on_block(self, call: Call | None, kind: str, params: dict[str, str], now: float) -> None:
        if call is None:  # a call given up earlier, or a block resent by the engine's recovery pass
            self.errors["stray blocks (unknown session)"] += 1
            return
        if self.in_window(now):
            self.turnaround[call.target].append(now - call.t_posted)
            self.blocks_by_kind[kind] += 1
        notify = params.get("notify_url")
        if not notify:
            self.errors[f"{kind} block without notify_url"] += 1
            self.calls.pop(call.session, None)
            self.new_call()
            return
        parts = urlsplit(notify)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        fields, final = self.next_notification(call, kind, params.get("tag", ""))
        self.dispatch((call, path, fields, final))

    # -------------------------------------------------------------- the callers' side
    ECHO_SCRIPT = (("play", ""), ("gather", "main-menu"), ("transfer", "sales"))

    def sender(self) -> None:
        posters = [Poster(host, port, keepalive=self.args.keepalive) for host, port in self.targets]
        self.posters.extend(posters)
        echo = self.args.target_kind == "echo"
        while True:
            item = self.send_q.get()
            if item is None or self.stop.is_set():
                return
            (call, path, fields, final), queued_at = item
            body = urlencode(fields).encode()
            signature = hmac.new(self.token, body, hashlib.sha256).hexdigest()
            blocks_before = call.blocks
            t_post = time.perf_counter()
            call.t_posted = t_post
            if self.args.mode == "paced" and self.in_window(t_post):
                self.queue_delay.append(t_post - queued_at)
            try:
                status, _ = posters[call.target].post(path, body, f"{SIGNATURE_HEADER}: {signature}\r\n")
            except OSError as exc:
                if not self.stop.is_set():
                    self.errors[f"post failed: {type(exc).__name__}"] += 1
                    self.calls.pop(call.session, None)
                    self.new_call()
                continue
            t_done = time.perf_counter()
            if self.in_window(t_done):
                if status == 200:
                    self.done[call.target] += 1
                else:
                    self.errors[f"HTTP {status}"] += 1
            if final:
                if self.in_window(t_done):
                    self.final[call.target].append(t_done - t_post)
                self.calls.pop(call.session, None)
                self.new_call()
            elif echo:
                if self.in_window(t_done):
                    self.turnaround[call.target].append(t_done - t_post)
                kind, tag = self.ECHO_SCRIPT[call.script]
                call.script += 1
                fields, final = self.next_notification(call, kind, tag)
                self.dispatch((call, f"/hoiio/notify?step={call.script}&sig=x", fields, final))
            elif status != 200 or call.blocks == blocks_before:
                # no block came for this notification: the call cannot go on; replace it
                if self.in_window(t_done):
                    self.errors["no block for a notification"] += 1
                self.calls.pop(call.session, None)
                self.new_call()

    def pacer(self) -> None:
        interval = 1.0 / self.args.rate
        due = time.perf_counter()
        while not self.stop.is_set():
            due += interval
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            with self.ready_cv:
                while not self.ready and not self.stop.is_set():
                    self.ready_cv.wait(0.05)
                if self.stop.is_set():
                    return
                job = self.ready.popleft()
            now = time.perf_counter()
            if self.in_window(now):
                self.lateness.append(max(0.0, now - due))
            if now - due > 1.0:
                due = now  # far behind (nothing was ready): do not burst to catch up
            self.send_q.put((job, now))

    # -------------------------------------------------------------- run
    def run(self) -> dict:
        args = self.args
        sock = listen(args.port)
        serve_forever(sock, self.handle_connection)
        senders = args.senders or (2 * args.calls + 2 if args.mode == "closed" else 64)
        for _ in range(senders):
            threading.Thread(target=self.sender, daemon=True).start()
        if args.mode == "paced":
            threading.Thread(target=self.pacer, daemon=True).start()
        start = time.perf_counter()
        self.t0 = start + args.warmup
        self.t1 = self.t0 + args.duration
        cpu0 = None
        for _ in range(args.calls):
            self.new_call()
        while True:
            now = time.perf_counter()
            if cpu0 is None and now >= self.t0:
                cpu0 = time.process_time()
                print("window-start", flush=True)  # the runner samples the server's CPU here
            if now >= self.t1:
                break
            time.sleep(min(0.05, max(0.0, (self.t0 if cpu0 is None else self.t1) - now)))
        cpu = time.process_time() - (cpu0 or 0.0)
        print("window-end", flush=True)
        self.stop.set()
        window = self.t1 - self.t0
        every = [x for samples in self.turnaround for x in samples]
        return {
            "mode": args.mode,
            "target_kind": args.target_kind,
            "calls": args.calls,
            "rate": args.rate if args.mode == "paced" else None,
            "window_s": window,
            "notifications": sum(self.done),
            "throughput": sum(self.done) / window,
            "turnaround_ms": summary(every),
            "final_ms": summary([x for samples in self.final for x in samples]),
            "per_target": [
                {"target": url, "notifications": done, "throughput": done / window, "turnaround_ms": summary(turn),
                 "final_ms": summary(final),
                 "samples_ms": [round(x * 1000, 3) for x in turn] if args.samples else None}
                for url, done, turn, final in zip(args.target, self.done, self.turnaround, self.final, strict=True)
            ],
            "lateness_ms": summary(self.lateness),
            "queue_delay_ms": summary(self.queue_delay),
            "errors": dict(self.errors),
            "retries": sum(p.retries for p in self.posters),
            "blocks_by_kind": dict(self.blocks_by_kind),
            "stub_cpu_s": cpu,
            "stub_cpu_pct": 100 * cpu / window,
            "calls_in_progress_end": len(self.calls),
            "senders": senders,
            "samples_ms": [round(x * 1000, 3) for x in every] if args.samples else None,
        }


# ------------------------------------------------------------------------------------------ servers
def serve_connection(conn: socket.socket, answer: Callable[[socket.socket, tuple], None]) -> None:
    """Every request of one connection, kept alive until the client closes it or asks
    ``Connection: close``: ``answer(conn, request)``, ``request`` as ``read_request`` returns it."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rfile = conn.makefile("rb", buffering=65536)
    try:
        while True:
            request = read_request(rfile)
            if request is None:
                return
            answer(conn, request)
            if request[2].get(b"connection", b"").lower() == b"close":
                return
    except OSError:
        return
    finally:
        rfile.close()
        conn.close()


def serve_requests(port: int, answer: Callable[[socket.socket, tuple], None]) -> None:
    """Listen on ``port``, answer every request of every connection (``serve_connection``), print
    ``ready`` once listening, then serve until the process ends."""
    sock = listen(port)
    serve_forever(sock, lambda conn: serve_connection(conn, answer))
    print("ready", flush=True)
    threading.Event().wait()


# ------------------------------------------------------------------------------------------ mirror
def serve_mirror(port: int, api_url: str) -> None:
    """Plays the engine's part as cheaply as Python can: for each notification POST the next block
    of the auto-attendant (play -> gather -> transfer) to the API, then answer 200."""
    api = urlsplit(api_url)
    base = api.path.rstrip("/")
    nxt = {"answer": ("ivr/middle/play", ""), "play": ("ivr/middle/gather", "main-menu"),
           "gather": ("ivr/end/transfer", "sales")}
    pool: queue.SimpleQueue = queue.SimpleQueue()  # kept-alive connections to the API, shared
    reply = b'{"status": "ok"}'
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(reply), reply)

    def answer(conn: socket.socket, request: tuple) -> None:
        _method, target, _headers, body = request
        fields = dict(parse_qsl(body.decode()))
        step = nxt.get(fields.get("ivr_block", ""))
        if step is not None and fields.get("call_state") != "ended":
            n = int(dict(parse_qsl(urlsplit(target.decode()).query)).get("step", "0")) + 1
            params = urlencode({"session": fields["session"], "msg": "x", "tag": step[1],
                                "notify_url": f"http://127.0.0.1:{port}/hoiio/notify?step={n}&sig=x"})
            try:
                poster = pool.get_nowait()
            except queue.Empty:
                poster = Poster(api.hostname or "127.0.0.1", api.port or 80, keepalive=True)
            poster.post(f"{base}/{step[0]}", params.encode())
            pool.put(poster)
        conn.sendall(response)

    serve_requests(port, answer)


def serve_sink(port: int) -> None:
    """Only the REST API: every request is answered ``success_ok`` and nothing else happens
    (the profiler drives the engine itself)."""
    serve_requests(port, lambda conn, _request: conn.sendall(OK_RESPONSE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", help="the server under test (default http://127.0.0.1:8000); "
                        "give it twice to compare two servers at the same time: calls alternate between them "
                        "and the result has figures per target")
    parser.add_argument("--target-kind", choices=("blocks", "echo"), default="blocks")
    parser.add_argument("--answer-path", default="/hoiio/answer")
    parser.add_argument("--port", type=int, default=8001, help="port of the stub's REST API (/open/...)")
    parser.add_argument("--mode", choices=("closed", "paced"), default="closed")
    parser.add_argument("--calls", type=int, default=32, help="calls in progress")
    parser.add_argument("--rate", type=float, default=200.0, help="paced: notifications per second")
    parser.add_argument("--senders", type=int, default=0, help="sender threads (default: 2*calls+2 closed, 64 paced)")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--token", default="bench-token", help="access token that signs notifications")
    parser.add_argument("--caller", default="+6591234567")
    parser.add_argument("--to", action="append", help="the dialled number, which picks the flow (default "
                        "+6531580000); once, or once per --target")
    parser.add_argument("--digits", default="1")
    parser.add_argument("--keepalive", action="store_true", help="reuse connections for notifications")
    parser.add_argument("--linger", type=float, default=1.0, help="seconds to keep answering blocks at the end")
    parser.add_argument("--samples", action="store_true", help="include every turnaround (ms) in the result")
    parser.add_argument("--serve-mirror", type=int, metavar="PORT", help="run the mirror server instead")
    parser.add_argument("--api", default="http://127.0.0.1:8001/open", help="mirror: the stub's REST API")
    parser.add_argument("--serve-sink", type=int, metavar="PORT", help="run only a REST API that answers success_ok")
    args = parser.parse_args(argv)
    args.target = args.target or ["http://127.0.0.1:8000"]
    args.to = args.to or ["+6531580000"]
    sys.setswitchinterval(0.001)  # threads waiting on the GIL after I/O wait less (timestamps)
    if args.serve_mirror:
        serve_mirror(args.serve_mirror, args.api)
        return 0
    if args.serve_sink:
        serve_sink(args.serve_sink)
        return 0
    result = Stub(args).run()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # Keep answering blocks for a moment (posting nothing new), so that notifications still in the
    # server finish at once instead of retrying against a closed port.
    time.sleep(args.linger)
    os._exit(0)  # daemon threads may be blocked in sockets: leave at once


if __name__ == "__main__":
    raise SystemExit(main())

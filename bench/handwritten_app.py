"""Reference: the auto-attendant (flows/auto_attendant.yaml) hand-written as one Flask handler, the way
a developer writes it without the engine: parse the form, read and update one session row with
SQLAlchemy, send the next block with ``requests.post``.

Kept honest: it checks ``X-Hoiio-Signature``, locks the row (``FOR UPDATE`` on PostgreSQL) and sends
after the commit. It leaves out what the engine adds: recording every notification, deduplicating
redeliveries, the outbox and its recovery, signed steps in the notify URL, retries, flows in YAML,
logs and metrics; and the menu's other branches (voicemail, retries), which the benchmark's callers
(who press 1) never take. On SQLite it uses the engine's durability settings (WAL,
``synchronous=NORMAL``), so that the comparison is about the code, not the configuration.

``gunicorn -c deploy/gunicorn.conf.py --pythonpath bench handwritten_app:app`` with the engine's
environment variables (HOIIO_API_URL, HOIIO_APP_ID, HOIIO_ACCESS_TOKEN, IVR_PUBLIC_URL, DATABASE_URL).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime

import requests
import sqlalchemy as sa
from flask import Flask, abort, request
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

API = os.environ["HOIIO_API_URL"].rstrip("/")
APP_ID = os.environ["HOIIO_APP_ID"]
TOKEN = os.environ["HOIIO_ACCESS_TOKEN"]
PUBLIC = os.environ["IVR_PUBLIC_URL"].rstrip("/")
DATABASE_URL = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)

SAY = '<speech language="en-US" gender="female">{}</speech>'
MENU = "For sales, press 1. For support, press 2. For accounts, press 3. To leave a message, press 0."
TEAMS = {"1": ("sales", "+6531580001"), "2": ("support", "+6531580002"), "3": ("accounts", "+6531580003")}


class Base(DeclarativeBase):
    pass


class Call(Base):
    __tablename__ = "hw_calls"
    session: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    node: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    digits: Mapped[str | None] = mapped_column(sa.String(32))
    updated_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True))


engine = sa.create_engine(DATABASE_URL, pool_size=5, max_overflow=10)
if engine.dialect.name == "sqlite":

    @sa.event.listens_for(engine, "connect")
    def _sqlite_settings(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")


def create_schema() -> None:
    Base.metadata.create_all(engine)


app = Flask(__name__)


def send(endpoint: str, session: str, **params: str) -> bool:
    data = {"session": session, **params, "notify_url": f"{PUBLIC}/hoiio/notify",
            "app_id": APP_ID, "access_token": TOKEN}
    reply = requests.post(f"{API}/{endpoint}", data=data, timeout=5)
    return reply.json().get("status") == "success_ok"


@app.post("/hoiio/answer")
@app.post("/hoiio/notify")
def hoiio():
    signature = hmac.new(TOKEN.encode(), request.get_data(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, request.headers.get("X-Hoiio-Signature", "")):
        abort(403)
    form = request.form
    session = form["session"]
    block = None
    with Session(engine) as db, db.begin():
        call = db.get(Call, session, with_for_update=True)
        if call is None:
            call = Call(session=session, node="welcome")
            db.add(call)
            block = ("ivr/middle/play", {"msg": SAY.format("Thank you for calling Acme.")})
        elif form.get("call_state") == "ended":
            call.status = "ended"
        elif call.node == "welcome" or (call.node == "main_menu" and form.get("digits") not in TEAMS):
            call.node = "main_menu"
            block = ("ivr/middle/gather", {"msg": SAY.format(MENU), "max_digits": "1", "timeout": "6",
                                           "attempts": "1", "tag": "main-menu"})
        elif call.node == "main_menu":
            call.digits = form["digits"]
            call.node, dest = TEAMS[call.digits]
            block = ("ivr/end/transfer", {"msg": SAY.format(f"Connecting you to {call.node}."), "dest": dest,
                                          "on_failure": "continue", "ring_time": "25", "tag": call.node})
        call.updated_at = datetime.now(UTC)
    if block is not None:
        send(block[0], session, **block[1])
    return {"status": "ok"}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}

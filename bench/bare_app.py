"""Reference: the ceiling of the stack. A bare Flask endpoint under the same gunicorn settings that
answers every notification with a constant, and does nothing else (no parsing, no database, no
block sent). ``gunicorn -c deploy/gunicorn.conf.py --pythonpath bench bare_app:app``.
"""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.post("/hoiio/<path:_rest>")
def notification(_rest: str):
    return {"status": "ok"}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}

"""Notification signatures.

Hoiio signs each notification: ``X-Hoiio-Signature`` is the hex HMAC-SHA256 of the raw HTTP body,
keyed with the application's access token. The engine signs its own pass-on parameters in each
``notify_url`` (``step``) with a server secret, because the Hoiio signature covers the body only and
anyone could append ``?step=`` to a query string.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Hoiio-Signature"


def sign_body(body: bytes, access_token: str) -> str:
    return hmac.new(access_token.encode(), body, hashlib.sha256).hexdigest()


def verify_body(body: bytes, signature: str | None, access_token: str) -> bool:
    if not signature or not signature.isascii():
        return False
    expected = sign_body(body, access_token)
    return hmac.compare_digest(expected, signature.strip().lower())


def sign_step(secret: str, session: str, step: int) -> str:
    """Short HMAC for the ``step`` pass-on parameter of a notify URL."""
    mac = hmac.new(secret.encode(), f"{session}|{step}".encode(), hashlib.sha256).hexdigest()
    return mac[:32]


def verify_step(secret: str, session: str, step: int, signature: str | None) -> bool:
    if not signature or not signature.isascii():
        return False
    return hmac.compare_digest(sign_step(secret, session, step), signature)

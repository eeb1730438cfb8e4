"""Settings read from the environment, validated once at start-up.

A bad or missing setting raises ``ConfigError`` whose message is one line an operator can act on;
the CLI and the WSGI entry print it and exit instead of showing a traceback.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_API_URL = "https://secure.hoiio.com/open"
DEFAULT_DATABASE_URL = "sqlite:///ivr.sqlite3"
NOTIFY_URL_LIMIT = 4000  # Hoiio's documented maximum length of notify_url


class ConfigError(Exception):
    """A configuration problem, worded for the person starting the server."""


def _flag(value: str | None, default: bool, name: str) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (got {value!r})")


def _http_url(value: str, name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be a full http:// or https:// URL (got {value!r})")
    return value.rstrip("/")


def _whole(value: str, name: str, what: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise ConfigError(f"{name} must be {what}, {low}-{high} (got {value!r})")
    return int(value)


def db_pool_size(env: Mapping[str, str], threads: int | None = None) -> int:
    """PostgreSQL connections a worker keeps open: ``IVR_DB_POOL_SIZE`` if set; else one per request
    thread (``threads``, or ``IVR_THREADS``, which ``deploy/gunicorn.conf.py`` sets in each worker to
    the threads it runs) and one for the recovery pass; at least 5."""
    pool = (env.get("IVR_DB_POOL_SIZE") or "").strip()
    if pool:
        return _whole(pool, "IVR_DB_POOL_SIZE", "a number of database connections per worker", 1, 200)
    if threads is None:
        given = (env.get("IVR_THREADS") or "").strip()
        if not given:
            return 5
        threads = _whole(given, "IVR_THREADS", "a number of threads per worker", 1, 199)
    return max(5, threads + 1)


def worker_connections(env: Mapping[str, str], threads: int) -> int:
    """Connections a gunicorn worker holds at a time (``worker_connections``): ``IVR_WORKER_CONNECTIONS``
    if set; else one per request thread (``threads``) and one kept-alive connection. A worker with
    every thread busy then leaves new connections in the kernel's queue, to whichever worker frees a
    thread first, instead of queueing them behind its own threads (gunicorn's default is 1000)."""
    given = (env.get("IVR_WORKER_CONNECTIONS") or "").strip()
    if given:
        return _whole(given, "IVR_WORKER_CONNECTIONS", "a number of connections per worker", 1, 100000)
    return threads + 1


@dataclass(frozen=True)
class Settings:
    hoiio_app_id: str
    hoiio_access_token: str
    hoiio_api_url: str = DEFAULT_API_URL
    database_url: str = DEFAULT_DATABASE_URL
    flows_dir: Path = Path("flows")
    public_url: str = "http://127.0.0.1:8000"
    verify_signatures: bool = True
    secret: str = ""  # keys the HMAC on the engine's own notify_url parameters
    max_body_bytes: int = 64 * 1024
    api_token: str | None = None
    admin_token: str | None = None
    http_allow_private: bool = False  # let flow http steps reach private/loopback addresses
    hoiio_allow_nets: tuple[str, ...] = ()  # source networks allowed on /hoiio/*; empty: any
    proxy_hops: int = 0  # reverse proxies in front (nginx: 1): trust that many X-Forwarded-* hops
    reload_check_interval: float = 1.0  # how often a worker looks at the reload stamp (seconds)
    recovery_interval: float = 15.0  # seconds between passes resending interrupted blocks; 0: off
    recovery_after: float = 10.0  # a block with no news for this long is looked at again
    voipnow_url: str | None = None  # VoipNow UnifiedAPI base for conference invites; None: off
    voipnow_token: str | None = None  # its OAuth bearer token
    voipnow_extension: str | None = None  # the Conference extension invites are made from
    #: PostgreSQL connections a worker keeps open: one per request thread and one for the recovery
    #: pass. Fewer, and every notification beyond them opens a connection and closes it again.
    db_pool_size: int = 5

    @property
    def step_secret(self) -> str:
        if self.secret:
            return self.secret
        # Derived, so every worker and every machine of one deployment agree without extra setup.
        seed = f"ivr-notify-url|{self.hoiio_app_id}|{self.hoiio_access_token}".encode()
        return hashlib.sha256(seed).hexdigest()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        values: dict = {}

        def get(name: str) -> str | None:
            raw = env.get(name)
            return raw.strip() if raw is not None and raw.strip() != "" else None

        app_id, token = get("HOIIO_APP_ID"), get("HOIIO_ACCESS_TOKEN")
        values["hoiio_app_id"] = overrides.pop("hoiio_app_id", app_id)
        values["hoiio_access_token"] = overrides.pop("hoiio_access_token", token)
        if not values["hoiio_app_id"] or not values["hoiio_access_token"]:
            raise ConfigError(
                "HOIIO_APP_ID and HOIIO_ACCESS_TOKEN must be set (from the Hoiio developer portal); "
                "to try the engine without an account run `ivr demo`"
            )
        values["hoiio_api_url"] = _http_url(get("HOIIO_API_URL") or DEFAULT_API_URL, "HOIIO_API_URL")
        values["database_url"] = get("DATABASE_URL") or DEFAULT_DATABASE_URL
        if "://" not in values["database_url"]:
            raise ConfigError(
                f"DATABASE_URL must look like sqlite:///ivr.sqlite3 or "
                f"postgresql://user@host/db (got {values['database_url']!r})"
            )
        values["flows_dir"] = Path(get("IVR_FLOWS") or "flows")
        public = get("IVR_PUBLIC_URL")
        if public is None and "public_url" not in overrides:
            raise ConfigError(
                "IVR_PUBLIC_URL must be set to the address at which Hoiio reaches this server, "
                "e.g. https://ivr.example.com"
            )
        if public is not None:
            values["public_url"] = _http_url(public, "IVR_PUBLIC_URL")
        if len(values.get("public_url", "")) > 200:
            raise ConfigError("IVR_PUBLIC_URL is too long: notify URLs must stay under 4000 characters")
        values["verify_signatures"] = _flag(env.get("IVR_VERIFY_SIGNATURES"), True, "IVR_VERIFY_SIGNATURES")
        values["secret"] = get("IVR_SECRET") or ""
        max_body = get("IVR_MAX_BODY_BYTES")
        if max_body is not None:
            if not (max_body.isascii() and max_body.isdigit()) or int(max_body) < 1024:
                raise ConfigError(f"IVR_MAX_BODY_BYTES must be a number of bytes >= 1024 (got {max_body!r})")
            values["max_body_bytes"] = int(max_body)
        values["api_token"] = get("IVR_API_TOKEN")
        values["admin_token"] = get("IVR_ADMIN_TOKEN")
        values["http_allow_private"] = _flag(
            env.get("IVR_HTTP_ALLOW_PRIVATE"), False, "IVR_HTTP_ALLOW_PRIVATE"
        )
        nets = get("IVR_HOIIO_ALLOW_NETS")
        if nets is not None:
            import ipaddress

            parsed = []
            for item in nets.split(","):
                item = item.strip()
                if not item:
                    continue
                try:
                    parsed.append(str(ipaddress.ip_network(item, strict=False)))
                except ValueError:
                    raise ConfigError(f"IVR_HOIIO_ALLOW_NETS: {item!r} is not a network like 203.0.113.0/24") from None
            values["hoiio_allow_nets"] = tuple(parsed)
        hops = get("IVR_PROXY_HOPS")
        if hops is not None:
            values["proxy_hops"] = _whole(hops, "IVR_PROXY_HOPS", "the number of proxies in front", 0, 5)
        after = get("IVR_RECOVERY_AFTER")
        if after is not None:
            try:
                values["recovery_after"] = float(after)
            except ValueError:
                raise ConfigError(f"IVR_RECOVERY_AFTER must be a number of seconds (got {after!r})") from None
        interval = get("IVR_RECOVERY_INTERVAL")
        if interval is not None:
            try:
                values["recovery_interval"] = float(interval)
            except ValueError:
                raise ConfigError(f"IVR_RECOVERY_INTERVAL must be a number of seconds (got {interval!r})") from None
        values["db_pool_size"] = db_pool_size(env)
        voipnow_url = get("VOIPNOW_URL")
        values["voipnow_url"] = _http_url(voipnow_url, "VOIPNOW_URL") if voipnow_url else None
        values["voipnow_token"] = get("VOIPNOW_TOKEN")
        values["voipnow_extension"] = get("VOIPNOW_EXTENSION")
        if voipnow_url and not (values["voipnow_token"] and values["voipnow_extension"]):
            raise ConfigError("VOIPNOW_URL is set: VOIPNOW_TOKEN and VOIPNOW_EXTENSION (a Conference extension, "
                              "e.g. 211) must be set too")
        values.update(overrides)
        if "public_url" in overrides:
            values["public_url"] = _http_url(values["public_url"], "IVR_PUBLIC_URL")
        if not Path(values["flows_dir"]).is_dir():
            raise ConfigError(f"IVR_FLOWS: the flows folder {str(values['flows_dir'])!r} does not exist")
        return cls(**values)

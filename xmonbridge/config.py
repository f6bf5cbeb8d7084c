"""Default configuration; overridden by instance/config.py and XMONBRIDGE_* variables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ConfigError(RuntimeError):
    """A configuration value xmonbridge cannot start with; str() is one line with the fix."""


class Defaults:
    """Built-in defaults, one comment per key."""

    # Signs session cookies; generated into instance/secret_key by `xmonbridge init`.
    SECRET_KEY: str | None = None
    # Encrypts Twilio AUTH TOKENs at rest; generated into instance/fernet.key by `xmonbridge init`.
    FERNET_KEY: str | None = None
    # SQLAlchemy URL; None means instance/xmonbridge.sqlite (DATABASE_URL overrides it).
    SQLALCHEMY_DATABASE_URI: str | None = None
    # `simulate` sends nothing to Twilio; `live` uses the Twilio REST API.
    TWILIO_MODE = "simulate"
    # Twilio REST base URL; tests point it at a fake Twilio on 127.0.0.1.
    TWILIO_API_BASE = "https://api.twilio.com"
    # Seconds to wait for Twilio to accept a connection and to answer.
    TWILIO_CONNECT_TIMEOUT = 5.0
    TWILIO_READ_TIMEOUT = 15.0
    # Bootstrap CSS/JS come from the package, never from a CDN.
    BOOTSTRAP_SERVE_LOCAL = True
    # WTForms built-in messages in Japanese via Meta.locales, not flask-babel.
    WTF_I18N_ENABLED = False
    # Session cookie hardening; Secure is decided per request from the X-MON URL.
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # Failed logins for one name from one client address within LOGIN_WINDOW_SECONDS before
    # that pair is locked for LOGIN_LOCK_SECONDS (`xmonbridge unlock LOGIN` ends it sooner).
    LOGIN_MAX_FAILURES = 5
    LOGIN_WINDOW_SECONDS = 900
    LOGIN_LOCK_SECONDS = 300
    # Reverse proxies in front of xmonbridge whose X-Forwarded-For/-Proto/-Host/-Prefix headers
    # are trusted (Werkzeug ProxyFix). 0 trusts none: the client address is the TCP peer. Set it
    # to the number of proxies, or anyone can pick the address their failed logins count against.
    PROXY_FIX_X_FOR = 0
    # Days a login session may go unused before it ends (its row is pruned at the next login).
    SESSION_MAX_IDLE_DAYS = 14
    # Largest request body accepted, in bytes.
    MAX_CONTENT_LENGTH = 1024 * 1024
    # Rows per page in lists.
    PAGE_SIZE = 50
    # The same notification (setting, type, host, service, problem id) repeated within this many
    # seconds is stored once; 0 stores every repeat.
    ALERT_DEDUPE_SECONDS = 300
    # Largest alert API request body, in bytes.
    API_MAX_CONTENT_LENGTH = 64 * 1024
    # The dispatcher (xmonbridge/dispatch/): a thread in every `serve` worker and in wsgi.py;
    # one of them leads. False starts none (e.g. a server that only takes alerts).
    DISPATCHER_ENABLED = True
    # Seconds between looks at the database when not woken by an alert of this process.
    DISPATCH_POLL_SECONDS = 1.0
    # Seconds a leader's lease lasts; renewed every third of it. Another process takes over
    # at most this long after the leader dies.
    DISPATCH_LEASE_SECONDS = 10
    # Attempts per recipient before a temporary failure stops it.
    DISPATCH_MAX_TRIES = 6
    # Backoff after a temporary failure: doubles from this many seconds, capped, with jitter.
    DISPATCH_BACKOFF_SECONDS = 5.0
    DISPATCH_BACKOFF_MAX_SECONDS = 300.0
    # Seconds to wait before looking up a call or message whose create had an unknown outcome
    # (Twilio lists a call once it has started dialling).
    DISPATCH_LOOKUP_DELAY_SECONDS = 15.0
    # Seconds after ring time (calls) or sending (SMS) before the final status is read from
    # Twilio: without an X-MON URL (no status callbacks), and as a safety net with one.
    DISPATCH_CHECK_GRACE_SECONDS = 30.0
    DISPATCH_CHECK_GRACE_CALLBACK_SECONDS = 600.0
    # GET /healthz (health.py) warns when a delivery has been due this long without being
    # worked, and when the last request to Twilio failed (no success since) this recently.
    HEALTH_WAITING_WARNING_SECONDS = 120
    HEALTH_TWILIO_ERROR_SECONDS = 3600
    # Seconds between the heartbeat checks of the watchdog thread in every `serve` worker
    # (watchdog.py; the texts are set on the ハートビート通知 page). 0 starts no watchdog.
    HEARTBEAT_CHECK_SECONDS = 30.0


# Numbers that must be at least 1 (a zero would lock every login or show empty pages).
# The largest number accepted: a bigger one overflows SQLite's integers inside a request.
_MOST = 2**31 - 1
_POSITIVE = {"LOGIN_MAX_FAILURES", "PAGE_SIZE", "MAX_CONTENT_LENGTH", "API_MAX_CONTENT_LENGTH", "DISPATCH_LEASE_SECONDS", "DISPATCH_MAX_TRIES"}


def check_numbers(config: Mapping[str, Any]) -> None:
    """Raise ConfigError for a numeric setting given as text, a flag or a negative number.

    XMONBRIDGE_* variables are read as JSON, so `abc` or `true` arrive as a string or a bool
    and would otherwise fail later, inside a request.
    """
    for key, default in vars(Defaults).items():
        if key.startswith("_") or isinstance(default, bool) or not isinstance(default, int | float):
            continue
        value = config.get(key)
        whole = isinstance(default, int)
        kinds: tuple[type, ...] = (int,) if whole else (int, float)
        least = 1 if key in _POSITIVE else 0
        if isinstance(value, bool) or not isinstance(value, kinds) or not least <= value <= _MOST:
            what = "a whole number" if whole else "a number"
            raise ConfigError(f"XMONBRIDGE_{key} is {value!r}; set it to {what} from {least} to {_MOST}.")

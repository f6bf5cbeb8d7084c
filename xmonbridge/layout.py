"""What every page shares: menus, the Twilio mode, the pending count, cookie security."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user

from .models import PendingChange, XmonSettings

# Top menu inside Twilio 連携設定, in the manual's order; features append their tab here.
TWILIO_TABS: list[tuple[str, str]] = [
    ("twilio_accounts.index", "Twilio アカウント情報"),
    ("simple_calls.index", "通話設定(シンプル通話)"),
    ("button_calls.index", "通話設定(ボタン操作付き)"),
    ("sms_settings.index", "SMS 通知設定"),
    ("logs.index", "ログ"),
    ("logs.simulated", "シミュレーション発信履歴"),
    ("approvals.index", "承認待ち"),
]

# Tabs shown only in simulate mode.
SIMULATE_ONLY_TABS = {"logs.simulated"}

MODE_LABELS = {"simulate": "シミュレーションモード", "live": "ライブモード"}


def xmon_url() -> str | None:
    """The configured X-MON URL, read once per request."""
    if "xmon_url" not in g:
        g.xmon_url = XmonSettings.get().xmon_url
    return g.xmon_url


class SessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure when the page is served over https.

    That is: the request itself is https, or it came to the host of an https X-MON URL
    (a reverse proxy terminating TLS). An admin who opens the app by another, plain-http
    address inside the network still gets a cookie the browser keeps; a Secure cookie
    there would be dropped and lock them out.
    """

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        # Flask asks get_cookie_secure() even when there is no cookie to write; the alert API
        # and the webhooks never have a session, so skip the X-MON URL query there.
        if not session and not session.modified:
            if session.accessed:
                response.vary.add("Cookie")
            return
        super().save_session(app, session, response)

    def get_cookie_path(self, app: Flask) -> str:
        # Behind a proxy's path prefix (X-Forwarded-Prefix) the cookie stays under that prefix,
        # so the other applications of a shared host name never receive it.
        return app.config.get("SESSION_COOKIE_PATH") or request.script_root or app.config["APPLICATION_ROOT"]

    def get_cookie_secure(self, app: Flask) -> bool:
        if app.config.get("SESSION_COOKIE_SECURE") or request.is_secure:
            return True
        url = xmon_url()
        if not url or not url.startswith("https://"):
            return False
        return urlsplit(url).netloc.lower() == request.host.lower()


@dataclass(frozen=True)
class LayoutUser:
    """What the layout shows of the user on the 500 page (errors.py), read apart from the failed session."""

    is_authenticated: bool
    is_admin: bool
    display_name: str


def _context() -> dict[str, Any]:
    from flask import current_app

    mode = current_app.config["TWILIO_MODE"]
    # errors.py sets g.layout_user on the 500 page: then no query here, the request's
    # session failed and the database may not answer at all.
    user: Any = g.get("layout_user")
    if user is None:
        user = current_user
        pending = PendingChange.pending_count() if current_user.is_authenticated else 0
    else:
        pending = None
    return {
        "layout_user": user,
        "twilio_mode": mode,
        "twilio_mode_label": MODE_LABELS.get(mode, mode),
        "pending_count": pending,
        "twilio_tab_list": [tab for tab in TWILIO_TABS if mode == "simulate" or tab[0] not in SIMULATE_ONLY_TABS],
    }


def init_app(app: Flask) -> None:
    """Install the context processor and the session interface."""
    app.context_processor(_context)
    # {% do %} lets the form macros add aria attributes to a field's keyword arguments.
    app.jinja_env.add_extension("jinja2.ext.do")
    app.session_interface = SessionInterface()

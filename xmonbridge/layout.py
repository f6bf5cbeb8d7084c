"""What every page shares: menus, the Twilio mode, the pending count, cookie security."""

from __future__ import annotations

from typing import Any

from urllib.parse import urlsplit

from flask import Flask, g, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from flask_login import current_user

from .models import PendingChange, XmonSettings

# Top menu inside Twilio 連携設定, in the manual's order; features append their tab here.
TWILIO_TABS: list[tuple[str, str]] = [
    ("twilio_accounts.index", "Twilio アカウント情報"),
    ("simple_calls.index", "通話設定(シンプル通話)"),
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

    def get_cookie_secure(self, app: Flask) -> bool:
        if app.config.get("SESSION_COOKIE_SECURE") or request.is_secure:
            return True
        url = xmon_url()
        if not url or not url.startswith("https://"):
            return False
        return urlsplit(url).netloc.lower() == request.host.lower()


def _context() -> dict[str, Any]:
    from flask import current_app

    mode = current_app.config["TWILIO_MODE"]
    pending = PendingChange.pending_count() if current_user.is_authenticated else 0
    return {
        "twilio_mode": mode,
        "twilio_mode_label": MODE_LABELS.get(mode, mode),
        "pending_count": pending,
        "twilio_tab_list": [tab for tab in TWILIO_TABS if mode == "simulate" or tab[0] not in SIMULATE_ONLY_TABS],
    }


def _error_page(code: int, message: str) -> Any:
    def handler(_error: Exception) -> Any:
        return render_template("error.html", code=code, message=message), code

    return handler


def init_app(app: Flask) -> None:
    """Install the context processor, the session interface and error pages."""
    app.context_processor(_context)
    # {% do %} lets the form macros add aria attributes to a field's keyword arguments.
    app.jinja_env.add_extension("jinja2.ext.do")
    app.session_interface = SessionInterface()
    app.register_error_handler(403, _error_page(403, "この操作を行う権限がありません。"))
    app.register_error_handler(404, _error_page(404, "ページが見つかりません。"))
    app.register_error_handler(
        CSRFError, _error_page(400, "フォームの有効期限が切れたか、不正な送信です。画面を開き直してやり直してください。")
    )
    app.register_error_handler(413, _error_page(413, "送信されたデータが大きすぎます。"))

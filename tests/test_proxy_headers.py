"""X-Forwarded-* headers count only from the configured number of proxies (R14, proxy.py).

What the headers change is what a user sees: the path prefix in links and redirects
(X-Forwarded-Prefix), the Secure flag of the session cookie (X-Forwarded-Proto, or the host
of an https X-MON URL through X-Forwarded-Host). tests/test_nginx_proxy.py shows the same
through a real nginx; test_auth.py the client address (X-Forwarded-For).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import ADMIN_PASSWORD
from tests.factories import make_user, set_xmon_url
from tests.real_server import RealServer
from tests.web_client import WebClient

LOGIN = {"login": "admin", "password": ADMIN_PASSWORD}


def _site(make_app: Any, **config: Any) -> Flask:
    app: Flask = make_app(**config)
    with app.app_context():
        make_user(login="admin", is_admin=True, is_approver=True)
    return app


def _login(app: Flask, headers: dict[str, str]) -> tuple[str, bool]:
    """Log in with these request headers: where it redirects, and whether the cookie is Secure."""
    response = app.test_client().post("/login", data=LOGIN, headers=headers)
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    return response.headers["Location"], "Secure" in cookie.split("; ")


NGINX_HEADERS = {
    "X-Forwarded-For": "203.0.113.5",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "xmon.example.com",
    "X-Forwarded-Prefix": "/xmonbridge",
}


def test_without_a_proxy_no_forwarded_header_counts(make_app: Any) -> None:
    app = _site(make_app)
    assert _login(app, NGINX_HEADERS) == ("/admin/twilio/accounts/", False)


def test_behind_one_proxy_its_headers_count(make_app: Any) -> None:
    app = _site(make_app, PROXY_FIX_X_FOR=1)
    assert _login(app, NGINX_HEADERS) == ("/xmonbridge/admin/twilio/accounts/", True)


def test_the_forwarded_host_makes_the_cookie_secure_for_an_https_xmon_url(make_app: Any) -> None:
    app = _site(make_app, PROXY_FIX_X_FOR=1)
    with app.app_context():
        set_xmon_url("https://xmon.example.com/xmonbridge")
    headers = {"X-Forwarded-Host": "xmon.example.com", "X-Forwarded-Proto": "http"}
    assert _login(app, headers)[1] is True
    assert _login(app, {**headers, "X-Forwarded-Host": "10.0.0.5:8000"})[1] is False


def test_behind_two_proxies_the_nearest_ones_single_values_count(make_app: Any) -> None:
    # A load balancer, then nginx: nginx replaces Proto/Host/Prefix with one value of its own.
    app = _site(make_app, PROXY_FIX_X_FOR=2)
    headers = {**NGINX_HEADERS, "X-Forwarded-For": "198.51.100.7, 203.0.113.5"}
    assert _login(app, headers) == ("/xmonbridge/admin/twilio/accounts/", True)


@pytest.mark.parametrize("key", ["PROXY_FIX_X_PROTO", "PROXY_FIX_X_PREFIX"])
def test_no_more_values_count_than_there_are_proxies(make_app: Any, key: str) -> None:
    # One proxy that appends: the client's own first value must not count, whatever the setting.
    app = _site(make_app, PROXY_FIX_X_FOR=1, **{key: 2})
    headers = {**NGINX_HEADERS, "X-Forwarded-Proto": "https, http", "X-Forwarded-Prefix": "/evil, /xmonbridge"}
    assert _login(app, headers) == ("/xmonbridge/admin/twilio/accounts/", False)


def test_an_appending_chain_is_followed_as_far_as_configured(make_app: Any) -> None:
    app = _site(make_app, PROXY_FIX_X_FOR=2, PROXY_FIX_X_PROTO=2)
    headers = {**NGINX_HEADERS, "X-Forwarded-For": "198.51.100.7, 203.0.113.5", "X-Forwarded-Proto": "https, http"}
    assert _login(app, headers)[1] is True


def test_serve_believes_no_forwarded_proto_without_a_proxy(tmp_path: Path) -> None:
    """gunicorn itself would take X-Forwarded-Proto from 127.0.0.1; `serve` leaves it to ProxyFix."""
    server = RealServer(tmp_path, mode="simulate")
    server.cli("create-user", "admin", "--password", ADMIN_PASSWORD, "--admin", "--approver")
    server.start(workers=1)
    try:
        browser = WebClient(server.base)
        answer = browser.submit("/login", None, LOGIN, {"X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/xmonbridge"})
        assert answer.status == 302 and answer.header("Location") == "/admin/twilio/accounts/"
        cookies = answer.set_cookies()
        assert cookies and not any("Secure" in c.split("; ") for c in cookies)
    finally:
        server.stop()

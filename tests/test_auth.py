"""Login, logout, throttling, access control and CSRF."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import ADMIN_PASSWORD, AuthActions
from tests.factories import make_user


def test_it_logs_in_and_out(client: FlaskClient, admin: object, auth: AuthActions) -> None:
    response = auth.login()
    assert response.status_code == 302
    page = client.get("/admin/users/").get_data(as_text=True)
    assert "ユーザ管理" in page and "ログアウト" in page
    auth.logout()
    assert client.get("/admin/users/").status_code == 302


def test_it_rejects_a_wrong_password_in_japanese(client: FlaskClient, admin: object, auth: AuthActions) -> None:
    page = auth.login(password="wrong-password").get_data(as_text=True)
    assert "ログイン名またはパスワードが正しくありません。" in page
    assert client.get("/admin/users/").status_code == 302


def test_it_refuses_users_who_may_not_log_in(client: FlaskClient, auth: AuthActions) -> None:
    make_user(login="sato", login_disabled=True)
    page = auth.login("sato").get_data(as_text=True)
    assert "ログイン名またはパスワードが正しくありません。" in page
    assert client.get("/home").status_code == 302


def test_it_locks_a_name_after_repeated_failures(app: Flask, client: FlaskClient, admin: object, auth: AuthActions) -> None:
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        auth.login(password="wrong-password")
    page = auth.login(password=ADMIN_PASSWORD).get_data(as_text=True)
    assert "一時的にロックされています" in page
    assert client.get("/admin/users/").status_code == 302


def test_it_ignores_an_external_next_url(client: FlaskClient, admin: object) -> None:
    response = client.post("/login?next=https://evil.example/", data={"login": "admin", "password": ADMIN_PASSWORD})
    assert response.headers["Location"] == "/admin/twilio/accounts/"


def test_it_forbids_admin_pages_to_non_admins(client: FlaskClient, auth: AuthActions) -> None:
    make_user(login="viewer")
    auth.login("viewer")
    assert client.get("/admin/users/").status_code == 403
    assert "この操作を行う権限がありません。" in client.get("/admin/twilio/accounts/").get_data(as_text=True)


def _admin_rules(app: Flask) -> list[tuple[str, str]]:
    rules = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "bootstrap.static") or rule.endpoint.startswith("auth."):
            continue
        url = re.sub(r"<(?:int:)?[a-z_]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            rules.append((method, url))
    return rules


def test_every_admin_route_requires_login(make_app: object) -> None:
    app = make_app()  # type: ignore[operator]
    client = app.test_client()
    rules = _admin_rules(app)
    assert len(rules) >= 12
    for method, url in rules:
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert response.headers["Location"].startswith("/login"), (method, url)


def test_csrf_is_enforced_on_posts(make_app: object) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)  # type: ignore[operator]
    with app.app_context():
        make_user(login="admin", is_admin=True, is_approver=True)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    refused = client.post("/login", data={"login": "admin", "password": ADMIN_PASSWORD})
    assert refused.status_code == 400
    assert "フォームの有効期限が切れたか" in refused.get_data(as_text=True)
    accepted = client.post("/login", data={"login": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})
    assert accepted.status_code == 302
    # A logged-in admin POST without the token changes nothing.
    response = client.post("/admin/xmon-settings/", data={"xmon_url": "https://x.example", "voice": "Polly.Mizuki"})
    assert response.status_code == 400
    assert "https://x.example" not in client.get("/admin/xmon-settings/").get_data(as_text=True)


@pytest.mark.parametrize(
    "url,base_url,secure",
    [
        ("https://xmon.example.com", "http://xmon.example.com", True),  # TLS ends at the proxy
        ("https://xmon.example.com", "https://10.0.0.5", True),
        ("https://xmon.example.com", "http://10.0.0.5:8000", False),  # admin on the inside address
        ("http://xmon.example.com", "http://xmon.example.com", False),
    ],
)
def test_session_cookie_flags_follow_the_xmon_url(
    client: FlaskClient, admin: object, url: str, base_url: str, secure: bool
) -> None:
    from tests.factories import set_xmon_url

    set_xmon_url(url)
    response = client.post(
        "/login", data={"login": "admin", "password": ADMIN_PASSWORD}, base_url=base_url
    )
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("Secure" in cookie) is secure


def test_old_failures_are_forgotten(app: Flask, client: FlaskClient, auth: AuthActions) -> None:
    from datetime import timedelta

    from sqlalchemy import select

    from xmonbridge.extensions import db
    from xmonbridge.models import LoginFailure, utcnow

    auth.login("guess1", "wrong-password")
    db.session.get(LoginFailure, ("guess1", "127.0.0.1")).first_failure_at = utcnow() - timedelta(days=1)  # type: ignore[union-attr]
    db.session.commit()
    auth.login("guess2", "wrong-password")
    db.session.expire_all()
    assert db.session.scalars(select(LoginFailure.login)).all() == ["guess2"]
    page = auth.login("x" * 65, "wrong-password").get_data(as_text=True)
    assert "64 文字" in page or "64文字" in page

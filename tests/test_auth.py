"""Login, logout, throttling, access control and CSRF."""

from __future__ import annotations

import re
from typing import Any

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
        # The alert API takes a bearer token instead (test_alert_api.py); Twilio's webhooks are
        # signature-checked instead (test_webhooks.py); /healthz is public and holds nothing
        # secret (test_healthz.py).
        if rule.endpoint in ("static", "bootstrap.static") or rule.endpoint.startswith(("auth.", "api.", "webhooks.", "healthz.")):
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


def _login_from(client: FlaskClient, address: str, password: str, **headers: str) -> str:
    """POST the login form as admin from address; return the page, or the redirect target."""
    response = client.post(
        "/login", data={"login": "admin", "password": password}, environ_base={"REMOTE_ADDR": address}, headers=headers
    )
    return response.headers["Location"] if response.status_code == 302 else response.get_data(as_text=True)


def _lock(app: Flask, client: FlaskClient, address: str, **headers: str) -> None:
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert "ログイン名またはパスワードが正しくありません。" in _login_from(client, address, "wrong-password", **headers)
    assert "一時的にロックされています" in _login_from(client, address, ADMIN_PASSWORD, **headers)


def test_a_lock_from_one_address_does_not_lock_another(app: Flask, admin: object) -> None:
    _lock(app, app.test_client(), "192.0.2.1")
    assert _login_from(app.test_client(), "192.0.2.2", ADMIN_PASSWORD) == "/admin/twilio/accounts/"
    assert "一時的にロックされています" in _login_from(app.test_client(), "192.0.2.1", ADMIN_PASSWORD)


def test_a_finished_lock_starts_counting_again(app: Flask, client: FlaskClient, admin: object) -> None:
    from datetime import timedelta

    from xmonbridge.extensions import db
    from xmonbridge.models import LoginFailure, utcnow

    _lock(app, client, "192.0.2.1")
    db.session.get(LoginFailure, ("admin", "192.0.2.1")).locked_until = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    db.session.commit()
    # One more mistake after the lock is one failure, not another lock.
    assert "ログイン名またはパスワードが正しくありません。" in _login_from(client, "192.0.2.1", "wrong-password")
    assert _login_from(client, "192.0.2.1", ADMIN_PASSWORD) == "/admin/twilio/accounts/"


def test_a_successful_login_forgets_the_failures(app: Flask, client: FlaskClient, admin: object) -> None:
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        _login_from(client, "192.0.2.1", "wrong-password")
    assert _login_from(client, "192.0.2.1", ADMIN_PASSWORD) == "/admin/twilio/accounts/"
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        _login_from(app.test_client(), "192.0.2.1", "wrong-password")
    assert _login_from(app.test_client(), "192.0.2.1", ADMIN_PASSWORD) == "/admin/twilio/accounts/"


def test_behind_one_proxy_the_forwarded_address_counts(make_app: object) -> None:
    app = make_app(PROXY_FIX_X_FOR=1)  # type: ignore[operator]
    with app.app_context():
        make_user(login="admin", is_admin=True, is_approver=True)
        proxy = "10.0.0.1"  # every request comes through the proxy
        _lock(app, app.test_client(), proxy, **{"X-Forwarded-For": "203.0.113.5"})
        other = _login_from(app.test_client(), proxy, ADMIN_PASSWORD, **{"X-Forwarded-For": "203.0.113.6"})
        assert other == "/admin/twilio/accounts/"
        # A client cannot escape by adding its own header: the proxy appends the real address.
        spoofed = _login_from(app.test_client(), proxy, ADMIN_PASSWORD, **{"X-Forwarded-For": "198.51.100.9, 203.0.113.5"})
        assert "一時的にロックされています" in spoofed


def test_without_proxy_hops_forwarded_headers_are_ignored(app: Flask, admin: object) -> None:
    _lock(app, app.test_client(), "192.0.2.1", **{"X-Forwarded-For": "203.0.113.5"})
    page = _login_from(app.test_client(), "192.0.2.1", ADMIN_PASSWORD, **{"X-Forwarded-For": "203.0.113.6"})
    assert "一時的にロックされています" in page


def test_unlock_command_clears_every_address(app: Flask, admin: object) -> None:
    _lock(app, app.test_client(), "192.0.2.1")
    _lock(app, app.test_client(), "192.0.2.2")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["unlock", "admin"])
    assert result.exit_code == 0 and "unlocked admin" in result.output and "2 addresses" in result.output
    assert _login_from(app.test_client(), "192.0.2.1", ADMIN_PASSWORD) == "/admin/twilio/accounts/"
    assert _login_from(app.test_client(), "192.0.2.2", ADMIN_PASSWORD) == "/admin/twilio/accounts/"
    again = runner.invoke(args=["unlock", "admin"])
    assert again.exit_code == 0 and "nothing to unlock" in again.output


def test_a_first_failure_inserted_in_parallel_is_counted_not_lost(app: Flask) -> None:
    from xmonbridge.auth import throttle
    from xmonbridge.extensions import db
    from xmonbridge.models import LoginFailure, utcnow

    with app.test_request_context():
        # As if a parallel request inserted the counter between our UPDATEs and our INSERT.
        db.session.add(LoginFailure(login="admin", address="192.0.2.1", failures=1, first_failure_at=utcnow()))
        db.session.commit()
        assert throttle._insert("admin", "192.0.2.1", utcnow()) is False
        assert throttle.reserve("admin", "192.0.2.1") is True
        db.session.commit()
        db.session.expire_all()
        assert db.session.get(LoginFailure, ("admin", "192.0.2.1")).failures == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("login,password", [("nobody", "wrong-password"), ("admin", "wrong-password"), ("sato", "x"), ("target", "x")])
def test_every_login_checks_one_hash_of_the_real_kind(
    client: FlaskClient, admin: Any, monkeypatch: pytest.MonkeyPatch, login: str, password: str
) -> None:
    from xmonbridge.auth import routes

    make_user(login="sato", login_disabled=True)
    make_user(login="target", login_disabled=True, password=None)
    checked: list[str] = []
    real = routes.check_password_hash

    def spy(hashed: str, typed: str) -> bool:
        checked.append(hashed)
        return real(hashed, typed)

    monkeypatch.setattr(routes, "check_password_hash", spy)
    page = client.post("/login", data={"login": login, "password": password}).get_data(as_text=True)
    assert "ログイン名またはパスワードが正しくありません。" in page
    # One check, with the method and cost of a real hash: the time does not tell who exists.
    assert len(checked) == 1
    assert checked[0].split("$")[0] == admin.password_hash.split("$")[0]


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "/\\evil.example", "https://evil.example", "/%0d%0aSet-Cookie:x=1", "/\r\n", "/\t/evil.example"],
)
def test_login_redirects_home_instead_of_leaving_the_site(client: FlaskClient, admin: object, target: str) -> None:
    # `/%0d%0a...` reaches the app as CR LF once the query string is decoded.
    from urllib.parse import unquote

    response = client.post("/login", query_string={"next": unquote(target)}, data={"login": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/twilio/accounts/"
    assert "x=1" not in response.headers.get("Set-Cookie", "")


def test_login_follows_a_local_next(client: FlaskClient, admin: object) -> None:
    response = client.post("/login?next=/admin/users/", data={"login": "admin", "password": ADMIN_PASSWORD})
    assert response.headers["Location"] == "/admin/users/"

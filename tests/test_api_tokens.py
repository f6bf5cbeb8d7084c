"""管理者メニュー > API トークン: create (shown once, stored hashed), list, revoke."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import ADMIN_PASSWORD, AuthActions
from tests.factories import make_recipient, make_sms_setting, make_twilio_account, make_user
from xmonbridge.extensions import db
from xmonbridge.models import ApiToken

TOKEN = re.compile(r"xmb_[A-Za-z0-9_-]{43}")


def create(client: FlaskClient, name: str = "X-MON 本番") -> tuple[Any, str]:
    """Press 作成 on 新規作成; return the answer and the token it shows."""
    response = client.post("/admin/api-tokens/new", data={"name": name})
    match = TOKEN.search(response.get_data(as_text=True))
    return response, match.group(0) if match else ""


def post_alert(client: FlaskClient, token: str, setting_id: int) -> int:
    fields = {"kind": "sms", "setting_id": setting_id, "type": "PROBLEM", "host": "web01", "service": "HTTP", "state": "CRITICAL"}
    return client.post("/api/v1/alerts", json=fields, headers={"Authorization": f"Bearer {token}"}).status_code


def rows() -> list[ApiToken]:
    db.session.expire_all()
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id)))


def test_it_requires_an_administrator(app: Flask, client: FlaskClient, auth: AuthActions) -> None:
    for path, method in (("/admin/api-tokens/", "get"), ("/admin/api-tokens/new", "post"), ("/admin/api-tokens/1/revoke", "post")):
        response = getattr(client, method)(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    make_user(login="viewer", is_admin=False)
    auth.login("viewer", ADMIN_PASSWORD)
    for path, method in (("/admin/api-tokens/", "get"), ("/admin/api-tokens/new", "post"), ("/admin/api-tokens/1/revoke", "post")):
        assert getattr(client, method)(path).status_code == 403


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get("/admin/api-tokens/")
    assert "API トークンはありません" in page.get_data(as_text=True)
    assert 'href="/admin/api-tokens/"' in page.get_data(as_text=True)  # the side menu
    response, token = create(client)
    assert response.status_code == 200 and token
    text = response.get_data(as_text=True)
    assert "一度だけ表示され" in text
    assert f"$USER9$={token}" in text
    assert response.headers["Cache-Control"] == "no-store"
    [row] = rows()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.hint == token[:12] and row.name == "X-MON 本番" and row.created_by_login == "admin"
    assert row.last_used_at is None and row.revoked_at is None

    listing = client.get("/admin/api-tokens/").get_data(as_text=True)
    assert token not in listing
    assert token[4:] not in listing
    for shown in ("X-MON 本番", f"{row.hint}…", "admin", "未使用", "有効", "無効化"):
        assert shown in listing
    # Every token is different.
    _, second = create(client, "X-MON 予備")
    assert second and second != token


def test_the_token_works_until_it_is_revoked(client: FlaskClient, logged_in: AuthActions) -> None:
    setting = make_sms_setting(make_twilio_account(), [make_recipient()])
    _, token = create(client)
    assert post_alert(client, token, setting.id) == 202
    [row] = rows()
    assert row.last_used_at is not None
    listing = client.get("/admin/api-tokens/").get_data(as_text=True)
    assert "未使用" not in listing

    response = client.post(f"/admin/api-tokens/{row.id}/revoke", follow_redirects=True)
    text = response.get_data(as_text=True)
    assert "API トークン「X-MON 本番」を無効化しました。" in text
    assert "無効化済み" in text and f"/admin/api-tokens/{row.id}/revoke" not in text
    [row] = rows()
    assert row.revoked_at is not None and row.revoked_by_login == "admin"
    assert post_alert(client, token, setting.id) == 401

    again = client.post(f"/admin/api-tokens/{row.id}/revoke", follow_redirects=True)
    assert "既に無効化されています" in again.get_data(as_text=True)
    assert client.post("/admin/api-tokens/999/revoke").status_code == 404


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "このフィールドは必須です。"),
        ("   ", "このフィールドは必須です。"),
        ("x" * 129, "128"),
        ("監視\x00サーバ", "制御文字は使用できません。"),
    ],
)
def test_a_bad_name_is_refused(client: FlaskClient, logged_in: AuthActions, name: str, message: str) -> None:
    response, token = create(client, name)
    assert response.status_code == 200 and not token
    assert message in response.get_data(as_text=True)
    assert rows() == []


def test_a_name_is_unique_among_valid_tokens(client: FlaskClient, logged_in: AuthActions) -> None:
    create(client, "X-MON 本番")
    response, token = create(client, "X-MON 本番")
    assert not token and "この名称の有効な API トークンが既にあります。" in response.get_data(as_text=True)
    client.post(f"/admin/api-tokens/{rows()[0].id}/revoke")
    _, token = create(client, "X-MON 本番")
    assert token and len(rows()) == 2


def test_revoking_needs_the_csrf_token(make_app: Any) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        admin = make_user(login="admin", is_admin=True, is_approver=True)
        row = ApiToken(name="t", token_hash="0" * 64, created_by_id=admin.id, created_by_login="admin")
        db.session.add(row)
        db.session.commit()
        client = app.test_client()
        login_page = client.get("/login").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page)
        assert csrf
        client.post("/login", data={"login": "admin", "password": ADMIN_PASSWORD, "csrf_token": csrf.group(1)})
        assert client.post(f"/admin/api-tokens/{row.id}/revoke").status_code == 400
        assert rows()[0].revoked_at is None

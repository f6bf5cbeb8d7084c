"""API トークン: create (shown once, stored hashed), list, revoke; administrators only."""

from __future__ import annotations

import hashlib
import re

from flask.testing import FlaskClient
from sqlalchemy import select

from xmonbridge.api_tokens.tokens import hash_token, new_token
from xmonbridge.extensions import db
from xmonbridge.models import ApiToken
from tests.conftest import AuthActions
from tests.factories import PASSWORD, make_user

TOKEN_RE = re.compile(r'<pre class="[^"]*" id="new-token">(xmb_[A-Za-z0-9_-]+)</pre>')


def _create(client: FlaskClient, name: str = "X-MON 本番") -> str:
    response = client.post("/admin/api-tokens/new", data={"name": name})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    match = TOKEN_RE.search(page)
    assert match, page
    assert "二度と表示できません" in page
    return match.group(1)


def test_new_token_shape() -> None:
    token, token_hash, hint = new_token()
    assert token.startswith("xmb_") and len(token) >= 40
    assert token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
    assert hint == token[:8]
    assert new_token()[0] != token


def test_create_shows_the_token_once_and_stores_its_hash(client: FlaskClient, logged_in: AuthActions) -> None:
    token = _create(client)
    row = db.session.scalar(select(ApiToken))
    assert row is not None
    assert row.token_hash == hash_token(token) and row.hint == token[:8]
    assert row.created_by_login == "admin" and row.revoked_at is None
    listing = client.get("/admin/api-tokens/").get_data(as_text=True)
    assert token not in listing
    assert "X-MON 本番" in listing and f"<code>{token[:8]}…</code>" in listing
    assert "有効" in listing and "未使用" in listing and "admin" in listing
    with client.session_transaction() as session:
        assert token not in repr(dict(session))


def test_name_is_required(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.post("/admin/api-tokens/new", data={"name": " "}).get_data(as_text=True)
    assert "このフィールドは必須です。" in page and 'for="name"' in page
    assert db.session.scalar(select(ApiToken)) is None


def test_revoke(client: FlaskClient, logged_in: AuthActions) -> None:
    _create(client, "古いトークン")
    row = db.session.scalar(select(ApiToken))
    assert row is not None
    listing = client.get("/admin/api-tokens/").get_data(as_text=True)
    assert f'action="/admin/api-tokens/{row.id}/revoke"' in listing and "data-confirm=" in listing
    assert client.get(f"/admin/api-tokens/{row.id}/revoke").status_code == 405
    response = client.post(f"/admin/api-tokens/{row.id}/revoke", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "API トークン「古いトークン」を無効化しました。" in page
    assert "無効化済み" in page and f'action="/admin/api-tokens/{row.id}/revoke"' not in page
    db.session.expire_all()
    row = db.session.get(ApiToken, row.id)
    assert row is not None and row.revoked_at is not None and row.revoked_by_login == "admin"
    again = client.post(f"/admin/api-tokens/{row.id}/revoke", follow_redirects=True).get_data(as_text=True)
    assert "既に無効化されています" in again
    assert client.post("/admin/api-tokens/999/revoke").status_code == 404


def test_menu_entry(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get("/admin/api-tokens/").get_data(as_text=True)
    assert '<a href="/admin/api-tokens/">API トークン</a>' in page


def test_administrators_only(client: FlaskClient, auth: AuthActions) -> None:
    make_user(login="viewer")
    assert client.get("/admin/api-tokens/").status_code == 302  # to the login page
    auth.login("viewer", PASSWORD)
    assert client.get("/admin/api-tokens/").status_code == 403
    assert client.post("/admin/api-tokens/new", data={"name": "x"}).status_code == 403
    assert db.session.scalar(select(ApiToken)) is None

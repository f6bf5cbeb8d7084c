"""Error pages (400, 404, 405, 413, 500) in Japanese and in the app's layout; ids out of range."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from xmonbridge.extensions import db
from xmonbridge.models import User
from xmonbridge.routing import IdConverter
from tests.conftest import ADMIN_PASSWORD, AuthActions

TOO_LARGE_ID = "99999999999999999999"


def _page(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _message(response: Any) -> str:
    found = re.search(r'<p id="error-message">(.*?)</p>', _page(response), re.S)
    assert found is not None, _page(response)
    return found.group(1)


@pytest.fixture
def own_app(make_app: Any) -> Flask:
    """An app without a pushed app context (each request gets its own, as in production),
    with an administrator and unexpected exceptions turned into 500 pages."""
    app = make_app(PROPAGATE_EXCEPTIONS=False)
    with app.app_context():
        from tests.factories import make_user

        make_user(login="admin", name="管理 太郎", is_admin=True, is_approver=True)
    return app


def _login(client: FlaskClient) -> None:
    assert client.post("/login", data={"login": "admin", "password": ADMIN_PASSWORD}).status_code == 302


def test_404_is_japanese_with_the_side_menu(client: FlaskClient, logged_in: AuthActions) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert _message(response) == "ページが見つかりません。URL が正しいか確認してください。"
    page = _page(response)
    assert '<html lang="ja">' in page and 'id="side-menu"' in page and 'id="pending-count"' in page


def test_404_without_login_has_no_menu(client: FlaskClient) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404 and "ページが見つかりません。" in _page(response)
    assert 'id="side-menu"' not in _page(response)


def test_405_is_japanese_and_says_what_is_allowed(client: FlaskClient, logged_in: AuthActions, admin: User) -> None:
    response = client.get(f"/admin/users/{admin.id}/delete")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert _message(response) == "この画面ではその操作はできません。画面を開き直してやり直してください。"
    assert 'id="side-menu"' in _page(response)


def test_413_is_japanese(make_app: Any) -> None:
    app = make_app(MAX_CONTENT_LENGTH=1000)
    response = app.test_client().post("/login", data={"login": "admin", "password": "x" * 2000})
    assert response.status_code == 413
    assert _message(response) == "送信されたデータが大きすぎます。"


def test_400_on_a_missing_csrf_token_is_japanese(make_app: Any) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    response = app.test_client().post("/login", data={"login": "admin", "password": "x"})
    assert response.status_code == 400
    assert _message(response) == "フォームの有効期限が切れたか、不正な送信です。画面を開き直してやり直してください。"


def test_500_after_a_failed_commit_rolls_back_and_keeps_the_layout(own_app: Flask) -> None:
    """A failed commit leaves the session unusable: the page must not query it again."""

    def duplicate_user() -> str:
        assert current_user.is_authenticated  # the layout has the user already
        db.session.add(User(login="admin", name=""))
        db.session.commit()
        return "unreachable"

    own_app.add_url_rule("/test/duplicate-user", view_func=duplicate_user)
    client = own_app.test_client()
    _login(client)

    response = client.get("/test/duplicate-user")

    assert response.status_code == 500
    assert _message(response) == "サーバでエラーが発生したため、処理できませんでした。しばらくしてから再度お試しください。"
    page = _page(response)
    assert 'id="side-menu"' in page and "管理 太郎" in page
    assert response.headers["X-Frame-Options"] == "DENY" and "Content-Security-Policy" in response.headers
    # The next request works, on a clean session.
    assert client.get("/admin/users/").status_code == 200
    with own_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_500_before_the_user_is_loaded_keeps_the_layout(own_app: Flask) -> None:
    def fail() -> str:
        raise RuntimeError("boom")

    own_app.add_url_rule("/test/fail", view_func=fail)
    client = own_app.test_client()
    _login(client)
    response = client.get("/test/fail")
    assert response.status_code == 500
    assert _message(response).startswith("サーバでエラーが発生したため")
    assert 'id="side-menu"' in _page(response)
    assert 'id="side-menu"' not in _page(own_app.test_client().get("/test/fail"))  # not logged in


def test_sql_parameters_never_reach_an_error_message(app: Flask, admin: User) -> None:
    db.session.add(User(login="admin", name="", password_hash="scrypt:secret-hash"))
    with pytest.raises(IntegrityError) as caught:
        db.session.commit()
    db.session.rollback()
    assert "scrypt" not in str(caught.value) and "[parameters:" not in str(caught.value)


def _id_routes(app: Flask) -> Iterator[tuple[str, str]]:
    """(URL with every id too large, method) for every rule whose arguments are all ids."""
    for rule in app.url_map.iter_rules():
        converters = rule._converters  # noqa: SLF001 - the only way to see a rule's converters
        if converters and all(isinstance(c, IdConverter) for c in converters.values()):
            url = re.sub(r"<int:\w+>", TOO_LARGE_ID, rule.rule)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield url, method


def test_ids_beyond_64_bits_are_404_on_every_route(client: FlaskClient, logged_in: AuthActions, app: Flask) -> None:
    routes = list(_id_routes(app))
    assert len(routes) >= 15  # users, accounts, both notification settings, approvals, logs
    for url, method in routes:
        response = client.open(url, method=method)
        assert response.status_code == 404, (method, url, response.status_code)


def test_the_largest_64_bit_id_is_an_ordinary_missing_object(client: FlaskClient, logged_in: AuthActions) -> None:
    assert client.get(f"/admin/users/{2**63 - 1}").status_code == 404
    assert client.get(f"/admin/users/{2**63}").status_code == 404

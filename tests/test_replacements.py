"""再生メッセージ置き換え設定 (R6, §5.1.4) of simple calls, through approval."""

from __future__ import annotations

import html
import re
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import func, select

from xmonbridge import replacement_lists, simple_call
from xmonbridge.extensions import db
from xmonbridge.messages import sample_alert
from xmonbridge.models import REPLACEMENT_BUTTON, REPLACEMENT_SIMPLE, PendingChange, ReplacementList
from tests.conftest import AuthActions
from tests.factories import make_user

URL = "/admin/twilio/simple-calls/replacements"


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _content() -> str | None:
    db.session.expire_all()
    row = replacement_lists.find(REPLACEMENT_SIMPLE)
    return row.content if row is not None else None


def _changes() -> int:
    return db.session.scalar(select(func.count()).select_from(PendingChange)) or 0


def _spoken(text: str) -> str:
    db.session.expire_all()
    return simple_call.spoken_text("custom", text, sample_alert())


def test_it_is_reached_from_the_simple_call_list(client: FlaskClient, logged_in: AuthActions) -> None:
    page = _text(client.get("/admin/twilio/simple-calls/"))
    assert f'href="{URL}">再生メッセージ置き換え設定</a>' in page
    page = _text(client.get(URL))
    assert '<label class="form-label" for="content">再生メッセージ置き換え設定</label>' in page
    assert ">再生メッセージ置き換え設定</button>" in page and ">再生メッセージ置き換え設定と承認</button>" in page
    assert "未指定の場合「ティー・アール・エー・エフ・エフ・…」と読み上げられます" in page


def test_bad_lines_are_refused_with_their_numbers(client: FlaskClient, logged_in: AuthActions) -> None:
    content = "TRAFFIC,トラフィック\nDB\n\nA,B,C\n,よみ\nTRAFFIC,とらふぃっく"
    for button in ("submit", "submit_approve"):
        page = _text(client.post(URL, data={"content": content, button: "y"}))
        errors = re.search(r'id="content-error">(.*?)</div>', page, re.S).group(1)  # type: ignore[union-attr]
        assert errors.split("<br>") == [
            "2行目: 「単語,読み方」のように半角カンマ 1 つで区切って入力してください。",
            "4行目: 「単語,読み方」のように半角カンマ 1 つで区切って入力してください。",
            "5行目: 単語と読み方の両方を入力してください。",
            "6行目: 単語「TRAFFIC」は1行目と重複しています。",
        ]
        assert _content() is None and _changes() == 0


def test_an_edit_waits_for_approval(client: FlaskClient, logged_in: AuthActions) -> None:
    client.post(URL, data={"content": "TRAFFIC,トラフィック\r\nDB,データベース", "submit": "y"})
    assert _content() == ""  # an empty list replaces nothing
    assert _spoken("TRAFFIC") == "TRAFFIC"
    approvals = _text(client.get("/admin/twilio/approvals/"))
    assert "再生メッセージ置き換え設定「通話設定(シンプル通話)」の編集" in approvals
    assert "TRAFFIC,トラフィック\nDB,データベース" in approvals
    assert "承認待ちの変更" in _text(client.get(URL))

    change = db.session.scalar(select(PendingChange))
    client.post(f"/admin/twilio/approvals/{change.id}/approve")  # type: ignore[union-attr]
    assert _content() == "TRAFFIC,トラフィック\nDB,データベース"
    assert _spoken("TRAFFIC が DB の上限を超えました") == "トラフィック が データベース の上限を超えました"


def test_approved_at_once_longest_word_first_blank_lines_ignored(client: FlaskClient, logged_in: AuthActions) -> None:
    client.post(URL, data={"content": "DB,データベース\n\n   \nDBSERVER,データベースサーバー\n", "submit_approve": "y"})
    assert _content() == "DB,データベース\n\n   \nDBSERVER,データベースサーバー"
    assert _spoken("DBSERVER の DB") == "データベースサーバー の データベース"
    page = _text(client.get(URL))
    assert "DBSERVER,データベースサーバー" in page and "を変更し、承認しました。" in page
    # Another edit updates the same single row of the scope.
    client.post(URL, data={"content": "DB,ディービー", "submit_approve": "y"})
    assert db.session.scalar(select(func.count()).select_from(ReplacementList)) == 1
    assert _spoken("DBSERVER") == "ディービーSERVER"


def test_button_calls_keep_their_own_list(client: FlaskClient, logged_in: AuthActions) -> None:
    client.post(URL, data={"content": "DB,データベース", "submit_approve": "y"})
    assert replacement_lists.approved(REPLACEMENT_BUTTON).apply("DB") == "DB"
    assert replacement_lists.approved(REPLACEMENT_SIMPLE).apply("DB") == "データベース"


def test_a_non_approver_only_requests(client: FlaskClient, auth: AuthActions) -> None:
    make_user(login="operator", is_admin=True)
    auth.login("operator")
    assert "再生メッセージ置き換え設定と承認" not in _text(client.get(URL))
    assert client.post(URL, data={"content": "DB,データベース", "submit_approve": "y"}).status_code == 403
    assert _changes() == 0
    client.post(URL, data={"content": "DB,データベース", "submit": "y"})
    assert _changes() == 1 and _content() == ""

"""メッセージテンプレート (R8, §5.2.2) and the button-call 再生メッセージ置き換え設定 tab (§5.2.3)."""

from __future__ import annotations

import html
import random
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from xmonbridge import replacement_lists
from xmonbridge.dispatch.engine import Dispatcher
from xmonbridge.extensions import db
from xmonbridge.message_templates.store import messages_for
from xmonbridge.models import (
    REPLACEMENT_BUTTON,
    REPLACEMENT_SIMPLE,
    STATUS_PENDING,
    Notification,
    PendingChange,
    User,
    UserMessageTemplate,
)
from tests.conftest import AuthActions
from tests.dispatch_helpers import FakeClock
from tests.handset import Handset
from tests.factories import make_recipient, make_twilio_account, make_user, set_xmon_url

URL = "/admin/twilio/button-calls/templates/"
REPLACEMENTS = URL + "replacements"
APPROVALS = "/admin/twilio/approvals/"
OPENING = "X-MON からの障害通知です。担当の佐藤です。"
CLOSING = "対応をお願いします。"


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _errors(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error">(.*?)</div>', page, re.S)
    return match.group(1) if match else ""


def _textarea(page: str, field_id: str) -> str:
    match = re.search(rf'<textarea[^>]*id="{field_id}"[^>]*>\r?\n?(.*?)</textarea>', page, re.S)
    return match.group(1) if match else "(no such textarea)"


def _rows(page: str) -> list[str]:
    """The 一覧's rows as text, cells joined by |."""
    body = re.search(r'<table[^>]*id="templates".*?<tbody>(.*?)</tbody>', page, re.S).group(1)  # type: ignore[union-attr]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return ["|".join(re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)) for r in rows]


def _templates() -> list[UserMessageTemplate]:
    db.session.expire_all()
    return list(db.session.scalars(select(UserMessageTemplate)))


def _changes() -> list[PendingChange]:
    db.session.expire_all()
    return list(db.session.scalars(select(PendingChange).where(PendingChange.kind == "message_template")))


def _edit(client: FlaskClient, user: Any, button: str = "submit", opening: str = OPENING, closing: str = CLOSING) -> Any:
    return client.post(f"{URL}{user.id}/edit", data={"opening_message": opening, "closing_message": closing, button: "y"})


def _approve_all(client: FlaskClient) -> None:
    for change in db.session.scalars(select(PendingChange).where(PendingChange.status == STATUS_PENDING)).all():
        assert client.post(f"{APPROVALS}{change.id}/approve").status_code == 302


# --- access ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "1", "1/edit", "replacements"])
def test_it_requires_an_administrator(client: FlaskClient, auth: AuthActions, path: str) -> None:
    make_user(login="admin", is_admin=True)
    response = client.get(URL + path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    make_user(login="plain")
    auth.login("plain")
    assert client.get(URL + path).status_code == 403


def test_an_unknown_user_is_404(client: FlaskClient, logged_in: AuthActions) -> None:
    assert client.get(f"{URL}999").status_code == 404
    assert client.post(f"{URL}999/edit", data={"opening_message": "x", "submit": "y"}).status_code == 404


# --- 一覧 and 詳細表示 ---------------------------------------------------------------------


def test_the_list_shows_users_with_a_phone_and_those_with_a_template(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    kept = make_user(login="kept", name="元担当者")  # no phone any more, but a template
    make_user(login="nophone", name="電話なし")
    db.session.add(UserMessageTemplate(user_id=kept.id, opening_message="あ" * 50, closing_message=""))
    db.session.add(UserMessageTemplate(user_id=sato.id, opening_message="", closing_message=CLOSING))
    db.session.commit()
    page = _text(client.get(URL))
    assert '<a class="nav-link active" aria-current="page" href="/admin/twilio/button-calls/templates/">メッセージテンプレート</a>' in page
    assert f'href="{REPLACEMENTS}">再生メッセージ置き換え設定</a>' in page
    assert _rows(page) == [
        "元担当者|kept|(未設定)|" + "あ" * 40 + "…|(未設定)|詳細表示",
        f"佐藤 翔太|sato|+81-90-0123-0001|(未設定)|{CLOSING}|詳細表示",
    ]
    assert "電話なし" not in page and "admin" not in _rows(page)[0]
    assert f'href="{URL}{sato.id}">詳細表示</a>' in page


def test_the_detail_says_when_nothing_is_set(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    page = _text(client.get(f"{URL}{sato.id}"))
    assert "メッセージテンプレートの詳細" in page
    assert "佐藤 翔太(sato) +81-90-0123-0001" in page
    assert re.search(r'id="opening-message">\(未設定\)</dd>', page)
    assert re.search(r'id="closing-message">\(未設定\)</dd>', page)
    assert "このユーザのメッセージテンプレートは設定されていません。" in page
    assert f'href="{URL}{sato.id}/edit">編集</a>' in page


def test_the_detail_shows_both_messages(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    db.session.add(UserMessageTemplate(user_id=sato.id, opening_message=OPENING + "\n2行目", closing_message=CLOSING))
    db.session.commit()
    page = _text(client.get(f"{URL}{sato.id}"))
    assert f'id="opening-message">{OPENING}\n2行目</dd>' in page
    assert f'id="closing-message">{CLOSING}</dd>' in page
    assert "設定されていません" not in page


# --- 編集 through approval -----------------------------------------------------------------


def test_the_form_has_the_manual_labels_and_states_the_limit(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    make_twilio_account()
    page = _text(client.get(f"{URL}{sato.id}/edit"))
    assert '<label class="form-label" for="opening_message">着信直後に流すメッセージ</label>' in page
    assert '<label class="form-label" for="closing_message">通話終了時に流すメッセージ</label>' in page
    assert "通知メッセージの冒頭に流す内容を指定します。4,096 文字以内の任意のメッセージを指定することができます。" in page
    assert "通知メッセージの終了直前に流す内容を指定します。4,096 文字以内の任意のメッセージを指定することができます。" in page
    assert "0</span> / 4,096 文字" in page
    assert ">編集</button>" in page and ">編集と承認</button>" in page
    # The 「テスト通話」 dialog.
    assert ">テスト通話</button>" in page and ">テスト通話の実行</button>" in page
    assert "テスト通話の使用には発信料が発生します。" in page
    for field_id, label in (("test_account_id", "Twilio アカウント情報"), ("test_from", "Twilio 電話番号(From)"), ("test_user_id", "発信先のユーザ")):
        assert f'<label class="form-label" for="{field_id}">{label}</label>' in page


def test_a_first_edit_waits_for_approval_and_creates_the_row(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    response = _edit(client, sato)
    assert response.status_code == 302 and response.headers["Location"] == f"{URL}{sato.id}"
    assert _templates() == [] and messages_for(sato.id) == ("", "")
    page = _text(client.get(f"{URL}{sato.id}"))
    assert "ユーザ「佐藤 翔太」のメッセージテンプレートの作成を承認待ちにしました。" in page
    assert "このユーザのメッセージテンプレートの承認待ちの変更" in page and OPENING in page
    assert "承認待ち</span>" in _text(client.get(URL))

    # 承認待ち names the user, shows both messages and links to the user's page.
    approvals = _text(client.get(APPROVALS))
    assert "メッセージテンプレート「佐藤 翔太(sato)」の作成" in approvals
    assert "<th scope=\"row\">ユーザ</th><td class=\"text-break diff-value\"></td><td class=\"text-break diff-value\">佐藤 翔太(sato) +81-90-0123-0001</td>" in approvals
    assert f'<td class="text-break diff-value">{OPENING}</td>' in approvals
    assert f'<td class="text-break diff-value">{CLOSING}</td>' in approvals
    assert f'<a class="small ms-2" href="{URL}{sato.id}">設定画面を表示</a>' in approvals

    _approve_all(client)
    [row] = _templates()
    assert row.user_id == sato.id
    assert messages_for(sato.id) == (OPENING, CLOSING)
    page = _text(client.get(f"{URL}{sato.id}"))
    assert f'id="opening-message">{OPENING}</dd>' in page and "承認待ちの変更" not in page


def test_a_later_edit_updates_the_row_and_shows_the_diff(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    _edit(client, sato, "submit_approve")
    assert messages_for(sato.id) == (OPENING, CLOSING)
    page = _text(client.get(f"{URL}{sato.id}"))
    assert "ユーザ「佐藤 翔太」のメッセージテンプレートを作成し、承認しました。" in page

    # The form starts from the approved texts.
    form = _text(client.get(f"{URL}{sato.id}/edit"))
    assert _textarea(form, "opening_message") == OPENING and _textarea(form, "closing_message") == CLOSING

    _edit(client, sato, closing="以上です。")
    [change] = [c for c in _changes() if c.status == STATUS_PENDING]
    assert change.action == "update" and change.target_name == "佐藤 翔太(sato)"
    approvals = _text(client.get(APPROVALS))
    assert "メッセージテンプレート「佐藤 翔太(sato)」の編集" in approvals
    assert (
        '<tr class="diff-changed"><th scope="row">通話終了時に流すメッセージ</th>'
        f'<td class="text-break diff-value">{CLOSING}</td><td class="text-break diff-value">以上です。</td></tr>'
    ) in approvals
    assert f'href="{URL}{sato.id}">設定画面を表示</a>' in approvals
    assert messages_for(sato.id) == (OPENING, CLOSING)
    _approve_all(client)
    assert messages_for(sato.id) == (OPENING, "以上です。")
    assert len(_templates()) == 1

    # Emptying both is an edit too: the user then hears no message of their own.
    _edit(client, sato, "submit_approve", opening="", closing="")
    assert messages_for(sato.id) == ("", "")
    assert "(未設定)|(未設定)" in _rows(_text(client.get(URL)))[0]


def test_nothing_changed_is_refused(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    page = _text(_edit(client, sato, opening="", closing=""))
    assert _errors(page, "opening_message") == "変更された項目がありません。"
    _edit(client, sato, "submit_approve")
    page = _text(_edit(client, sato, opening=OPENING, closing=CLOSING))
    assert _errors(page, "opening_message") == "変更された項目がありません。"
    assert len(_changes()) == 1


def test_a_second_first_edit_waits_for_the_first(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    _edit(client, sato)
    for button in ("submit", "submit_approve"):
        page = _text(_edit(client, sato, button, opening="別の文面"))
        assert "ユーザ「佐藤 翔太」のメッセージテンプレートは作成の承認待ちです。" in _errors(page, "opening_message")
    assert len(_changes()) == 1 and _templates() == []


@pytest.mark.parametrize("field", ["opening_message", "closing_message"])
def test_4096_characters_are_accepted_4097_refused(client: FlaskClient, logged_in: AuthActions, field: str) -> None:
    sato = make_recipient()
    label = "着信直後に流すメッセージ" if field == "opening_message" else "通話終了時に流すメッセージ"
    other = "closing_message" if field == "opening_message" else "opening_message"
    for button in ("submit", "submit_approve"):
        response = client.post(f"{URL}{sato.id}/edit", data={field: "あ" * 4097, other: "", button: "y"})
        page = _text(response)
        assert response.status_code == 200
        assert _errors(page, field) == f"{label}は 4,096 文字以内で入力してください(現在 4,097 文字)。"
        assert "4,097</span> / 4,096 文字" in page
        assert _changes() == [] and _templates() == []
    # A line break the browser sends as CRLF counts as one character: 4,096 in all.
    text = "あ" * 2048 + "\r\n" + "い" * 2047
    client.post(f"{URL}{sato.id}/edit", data={field: text, other: "", "submit_approve": "y"})
    [row] = _templates()
    assert getattr(row, field) == "あ" * 2048 + "\n" + "い" * 2047
    assert len(getattr(row, field)) == 4096


def test_a_non_approver_only_requests(client: FlaskClient, auth: AuthActions) -> None:
    sato = make_recipient()
    make_user(login="operator", is_admin=True)
    auth.login("operator")
    assert ">編集と承認</button>" not in _text(client.get(f"{URL}{sato.id}/edit"))
    assert _edit(client, sato, "submit_approve").status_code == 403
    assert _changes() == []
    _edit(client, sato)
    assert len(_changes()) == 1 and _templates() == []
    approvals = _text(client.get(APPROVALS))
    assert "承認権限を持つユーザの承認を待っています。" in approvals


def test_an_approval_for_a_deleted_user_is_refused(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    _edit(client, sato)
    [change] = _changes()
    db.session.delete(sato)
    db.session.commit()
    approvals = _text(client.get(APPROVALS))
    assert "メッセージテンプレート「佐藤 翔太(sato)」の作成" in approvals
    assert "設定画面を表示" not in approvals
    client.post(f"{APPROVALS}{change.id}/approve")
    assert "対象のユーザが削除されているため、適用できません。" in _text(client.get(APPROVALS))
    assert _templates() == []


def test_messages_for_a_user_without_a_row_are_empty(app: Any) -> None:
    sato = make_recipient()
    assert messages_for(sato.id) == ("", "")
    assert messages_for(12345) == ("", "")
    db.session.add(UserMessageTemplate(user_id=sato.id, opening_message=OPENING))
    db.session.commit()
    assert messages_for(sato.id) == (OPENING, "")


# --- 再生メッセージ置き換え設定 tab ----------------------------------------------------------


def test_the_replacement_tab_refuses_bad_lines_with_their_numbers(client: FlaskClient, logged_in: AuthActions) -> None:
    page = _text(client.get(REPLACEMENTS))
    assert '<a class="nav-link active" aria-current="page" href="/admin/twilio/button-calls/templates/replacements">再生メッセージ置き換え設定</a>' in page
    assert "再生メッセージ置き換え設定(通話設定(ボタン操作付き))" in page
    assert '<label class="form-label" for="content">再生メッセージ置き換え設定</label>' in page
    assert ">再生メッセージ置き換え設定</button>" in page
    for button in ("submit", "submit_approve"):
        page = _text(client.post(REPLACEMENTS, data={"content": "CPU,シーピーユー\nTRAFFIC\nA,,B", button: "y"}))
        assert _errors(page, "content").split("<br>") == [
            "2行目: 「単語,読み方」のように半角カンマ 1 つで区切って入力してください。",
            "3行目: 「単語,読み方」のように半角カンマ 1 つで区切って入力してください。",
        ]
        assert replacement_lists.find(REPLACEMENT_BUTTON) is None
        assert db.session.scalar(select(func.count()).select_from(PendingChange)) == 0


def test_the_replacement_tab_goes_through_approval_apart_from_simple_calls(
    client: FlaskClient, logged_in: AuthActions
) -> None:
    response = client.post(REPLACEMENTS, data={"content": "CPU,シーピーユー", "submit": "y"})
    assert response.status_code == 302 and response.headers["Location"] == REPLACEMENTS
    page = _text(client.get(REPLACEMENTS))
    assert "再生メッセージ置き換え設定(通話設定(ボタン操作付き))の変更を承認待ちにしました。" in page
    assert "承認待ちの変更" in page
    approvals = _text(client.get(APPROVALS))
    assert "再生メッセージ置き換え設定「通話設定(ボタン操作付き)」の編集" in approvals
    assert f'href="{REPLACEMENTS}">設定画面を表示</a>' in approvals
    # The simple-call list's change links to its own page.
    client.post("/admin/twilio/simple-calls/replacements", data={"content": "CPU,プロセッサ", "submit": "y"})
    approvals = _text(client.get(APPROVALS))
    assert 'href="/admin/twilio/simple-calls/replacements">設定画面を表示</a>' in approvals
    # Nothing of the button list shows on the simple-call page, and the reverse.
    assert "CPU,シーピーユー" not in _text(client.get("/admin/twilio/simple-calls/replacements"))
    assert "CPU,プロセッサ" not in _text(client.get(REPLACEMENTS))

    _approve_all(client)
    assert replacement_lists.approved(REPLACEMENT_BUTTON).apply("CPU") == "シーピーユー"
    assert replacement_lists.approved(REPLACEMENT_SIMPLE).apply("CPU") == "プロセッサ"
    page = _text(client.get(REPLACEMENTS))
    assert re.search(r'id="current-replacements">CPU,シーピーユー</pre>', page)


# --- テスト通話: the dialog's choices ---------------------------------------------------------


def test_the_test_dialog_offers_voice_numbers_and_users_with_a_phone(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    suzuki = make_recipient(login="suzuki", name="鈴木 花子", phone="+819001230002")
    make_twilio_account()
    page = _text(client.get(f"{URL}{suzuki.id}/edit"))
    test_from = re.search(r'<select[^>]*id="test_from"[^>]*>(.*?)</select>', page, re.S).group(1)  # type: ignore[union-attr]
    # The simulator's numbers: only voice-capable ones are offered.
    assert "+81-50" in test_from
    users = re.search(r'<select[^>]*id="test_user_id"[^>]*>(.*?)</select>', page, re.S).group(1)  # type: ignore[union-attr]
    assert re.findall(r"<option[^>]*>(.*?)</option>", users) == ["+81-90-0123-0001(佐藤 翔太)", "+81-90-0123-0002(鈴木 花子)"]
    # The user being edited is chosen first.
    assert f'<option selected value="{suzuki.id}">' in users
    assert sato.id != suzuki.id


def test_a_test_without_a_from_number_is_refused_and_keeps_the_text(client: FlaskClient, logged_in: AuthActions) -> None:
    sato = make_recipient()
    account = make_twilio_account()
    data = {
        "opening_message": "保存前の文面",
        "closing_message": "",
        "test_account_id": str(account.id),
        "test_from": "+815099999999",
        "test_user_id": str(sato.id),
        "run_test": "y",
    }
    page = _text(client.post(f"{URL}{sato.id}/edit", data=data))
    assert "入力内容に誤りがあるため、テスト通話を実行できませんでした。" in page
    assert "Twilio 電話番号(From)を一覧から選択してください。" in _errors(page, "test_from")
    assert _textarea(page, "opening_message") == "保存前の文面"
    assert "data-reopen" in page
    assert _changes() == [] and _templates() == []


# --- テスト通話: queued with the unsaved messages, placed by the dispatcher ---------------------


def _test_data(account: Any, user: Any, **overrides: str) -> dict[str, str]:
    data = {
        "opening_message": "テスト用の冒頭メッセージです。",
        "closing_message": "テスト用の終了メッセージです。",
        "test_account_id": str(account.id),
        "test_from": "+815012340001",
        "test_user_id": str(user.id),
        "run_test": "y",
    }
    data.update(overrides)
    return data


def _test_result(page: str) -> str:
    match = re.search(r'<div class="alert [^"]*" id="test-result" role="status">(.*?)</div>', page, re.S)
    return match.group(1) if match else ""


def test_a_test_call_needs_the_xmon_url(client: FlaskClient, logged_in: AuthActions) -> None:
    sato, account = make_recipient(), make_twilio_account()
    page = _text(client.post(f"{URL}{sato.id}/edit", data=_test_data(account, sato)))
    assert "X-MON 設定の X-MON URL が設定されていないため、テスト通話を実行できません。" in _test_result(page)
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_test_call_is_queued_with_the_unsaved_messages(client: FlaskClient, logged_in: AuthActions) -> None:
    sato, account = make_recipient(), make_twilio_account()
    suzuki = make_recipient(login="suzuki", name="鈴木 花子", phone="+819001230002")
    set_xmon_url("https://xmon.example.jp")
    # Edit sato's messages, but call suzuki with them.
    page = _text(client.post(f"{URL}{sato.id}/edit", data=_test_data(account, suzuki)))
    [notification] = db.session.scalars(select(Notification)).all()
    result = _test_result(page)
    assert result.startswith(
        "テスト通話を+81-90-0123-0002に発信します。通話の状況はインシデントで確認できます。"
        "(シミュレーションモードのため、実際には発信されません。)"
    )
    assert f'<a href="/incidents/{notification.alert_id}">インシデントを表示</a>' in result
    # The form keeps what was typed; nothing is saved or waits for approval.
    assert _textarea(page, "opening_message") == "テスト用の冒頭メッセージです。"
    assert _changes() == [] and _templates() == []
    assert messages_for(sato.id) == ("", "")

    assert notification.account_id == account.id and notification.from_number == "+815012340001"
    assert [(d.user_id, d.to_number) for d in notification.deliveries] == [(suzuki.id, "+819001230002")]
    incident = _text(client.get(f"/incidents/{notification.alert_id}"))
    assert "テスト通話" in incident and "鈴木 花子" in incident


@pytest.mark.parametrize(
    "overrides,field_id,message",
    [
        ({"test_user_id": ""}, "test_user_id", "発信先のユーザを、電話番号を設定しているユーザから選択してください。"),
        ({"test_account_id": "999"}, "test_account_id", "Twilio アカウント情報を選択してください。"),
        ({"opening_message": "あ" * 4097}, "opening_message", "4,096 文字以内"),
    ],
)
def test_a_bad_test_queues_nothing(
    client: FlaskClient, logged_in: AuthActions, overrides: dict[str, str], field_id: str, message: str
) -> None:
    sato, account = make_recipient(), make_twilio_account()
    set_xmon_url("https://xmon.example.jp")
    page = _text(client.post(f"{URL}{sato.id}/edit", data=_test_data(account, sato, **overrides)))
    assert message in _errors(page, field_id)
    assert "入力内容に誤りがあるため、テスト通話を実行できませんでした。" in _test_result(page)
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_the_dispatcher_places_the_test_call_and_the_user_hears_the_unsaved_messages(
    live_logged_in: FlaskClient, fake_twilio: Any
) -> None:
    sato, account = make_recipient(), make_twilio_account(cps=100)
    set_xmon_url("https://xmon.example.jp/bridge")
    # The button calls' own replacement list applies to the messages too.
    live_logged_in.post(REPLACEMENTS, data={"content": "CPU,シーピーユー", "submit_approve": "y"})
    page = _text(live_logged_in.get(f"{URL}{sato.id}/edit"))
    # The From list was read from the (fake) Twilio: voice-capable numbers only.
    from_list = re.search(r'id="test_from".*?</select>', page, re.S).group(0)  # type: ignore[union-attr]
    assert re.findall(r'<option[^>]*value="(\+81[0-9]+)"', from_list) == ["+815012340001", "+815012340002"]
    data = _test_data(account, sato, test_from="+815012340002", opening_message="CPU の試験です。", closing_message="試験を終わります。")
    live_logged_in.post(f"{URL}{sato.id}/edit", data=data)
    assert fake_twilio.requests_for("CreateCall") == []  # queued, not placed in the request
    assert messages_for(sato.id) == ("", "")

    Dispatcher(holder="test", clock=FakeClock(), rng=random.Random(7)).run_once()
    handset = Handset(live_logged_in, fake_twilio, "https://xmon.example.jp/bridge")
    call = handset.expect_call("+819001230001")
    assert call.form["From"] == "+815012340002"
    assert call.url.startswith("https://xmon.example.jp/bridge/twilio/voice/")
    heard = handset.answer(call)
    assert heard.text.startswith("シーピーユー の試験です。")
    assert "障害が1件" in heard.text  # the sample fault
    assert "web-server01" in handset.press(call, heard, "1").text
    assert "試験を終わります。" in handset.press(call, heard, "9").text


def test_three_in_a_test_call_acknowledges_nothing_and_says_so(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    from xmonbridge.calls import flow
    from xmonbridge.models import Acknowledgement, Notification

    sato, account = make_recipient(), make_twilio_account(cps=100)
    set_xmon_url("https://xmon.example.jp/bridge")
    data = _test_data(account, sato, test_from="+815012340002", opening_message="試験です。", closing_message="")
    live_logged_in.post(f"{URL}{sato.id}/edit", data=data)
    Dispatcher(holder="test", clock=FakeClock(), rng=random.Random(7)).run_once()
    handset = Handset(live_logged_in, fake_twilio, "https://xmon.example.jp/bridge")
    call = handset.expect_call("+819001230001")
    done = handset.press(call, handset.answer(call), "3")
    assert done.hangup and "テスト通話のため、監視には認知済みを送りません。" in done.text
    assert db.session.scalars(select(Acknowledgement)).all() == []
    db.session.expire_all()
    notification = db.session.scalars(select(Notification)).one()
    assert notification.end_reason == flow.ENDED_BY_TEST_ACK.format(user=sato.display_name)
    assert "監視には認知済みを送っていません" in _text(live_logged_in.get("/incidents/"))


# --- ids are never reused ---------------------------------------------------------------------

USER_FORM = {"name": "", "password": "", "login_disabled": "y", "email": "", "mobile_email": ""}


def _create_user_on_the_web(client: FlaskClient, login: str, phone: str) -> Any:
    response = client.post("/admin/users/new", data={**USER_FORM, "login": login, "name": login, "phone": phone})
    assert response.status_code == 302
    db.session.expire_all()
    return db.session.scalars(select(User).where(User.login == login)).one()


@pytest.mark.parametrize("first", ["pending_create", "pending_edit"])
def test_a_pending_change_of_a_deleted_user_never_lands_on_a_new_user(
    client: FlaskClient, logged_in: AuthActions, first: str
) -> None:
    oldguy = _create_user_on_the_web(client, "oldguy", "+81-90-0123-0009")
    old_id = oldguy.id
    if first == "pending_edit":
        _edit(client, oldguy, "submit_approve", opening="最初の挨拶です。", closing="")
    _edit(client, oldguy, opening="oldguy への案内です。", closing="oldguy の締めです。")
    [old_change] = [c for c in _changes() if c.status == STATUS_PENDING]
    page = _text(client.post(f"/admin/users/{old_id}/delete", follow_redirects=True))
    assert "ユーザ「oldguy」を削除しました。" in page

    newguy = _create_user_on_the_web(client, "newguy", "+81-90-0123-0010")
    assert newguy.id != old_id
    if first == "pending_edit":
        # newguy's own template row does not take the id of oldguy's deleted row either.
        _edit(client, newguy, "submit_approve", opening="newguy の挨拶です。", closing="")
        assert old_change.target_id not in {t.id for t in _templates()}

    page = _text(client.post(f"{APPROVALS}{old_change.id}/approve", follow_redirects=True))
    reason = {
        "pending_create": "対象のユーザが削除されているため、適用できません。",
        "pending_edit": "対象のメッセージテンプレートは既に削除されています。",
    }[first]
    assert reason in page
    expected = ("newguy の挨拶です。", "") if first == "pending_edit" else ("", "")
    assert messages_for(newguy.id) == expected
    assert "oldguy への案内です。" not in _text(client.get(f"{URL}{newguy.id}"))

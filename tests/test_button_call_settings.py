"""通話設定(ボタン操作付き) (R7, §5.2.1): the form, 「上へ」「下へ」, approval and deletion guards."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask import Blueprint, Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import func, select

from xmonbridge.extensions import db
from xmonbridge.models import MODE_ALL, MODE_ROTATION, ButtonCallRecipient, ButtonCallSetting, PendingChange, TwilioAccount, User
from tests.conftest import AuthActions
from tests.factories import make_button_call_setting, make_recipient, make_twilio_account, make_user, set_xmon_url

URL = "/admin/twilio/button-calls/"
NEW = URL + "new"
SATO = "+81-90-0123-0001(佐藤 翔太)"
SUZUKI = "+81-90-0123-0002(鈴木 花子)"
TAKAHASHI = "+81-90-0123-0003(高橋 健)"
VOICEMAIL_WARNING = (
    "Twilioによる電話通知によって留守番電話が作動すると、電話通知が止まらなくなります。"
    "留守番電話が作動しないように電話機の設定を行って頂くか、「呼び出しを行い続ける秒数」項目の値を"
    "留守番電話が作動する時間より短い時間に指定してください。"
)


def _three() -> list[User]:
    return [
        make_recipient(),
        make_recipient("suzuki", "鈴木 花子", "+819001230002"),
        make_recipient("takahashi", "高橋 健", "+819001230003"),
    ]


def _data(account: Any, users: list[Any], **overrides: str) -> dict[str, str]:
    data = {
        "mode": MODE_ROTATION,
        "name": "△△システム担当者への電話連絡",
        "account_id": str(account.id),
        "from_number": "+815012340002",
        "ring_seconds": "60",
        "recall_seconds": "60",
        "max_calls": "0",
    }
    data.update({f"recipients-{i}": str(u.id) for i, u in enumerate(users)})
    data.update(overrides)
    return data


def _settings() -> list[ButtonCallSetting]:
    db.session.expire_all()
    return list(db.session.scalars(select(ButtonCallSetting)))


def _order(setting: ButtonCallSetting) -> list[str]:
    return [r.user.login for r in setting.recipients]


def _pending() -> int:
    """Changes of button-call settings recorded (pending or decided)."""
    query = select(func.count()).select_from(PendingChange).where(PendingChange.kind == "button_call")
    return db.session.scalar(query) or 0


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _errors(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error">(.*?)</div>', page, re.S)
    return match.group(1) if match else ""


def _rows(page: str) -> list[int | None]:
    """The user chosen in each To row, top to bottom."""
    rows = re.findall(r'<select[^>]*id="recipients-\d+"[^>]*>(.*?)</select>', page, re.S)
    chosen = [re.search(r'<option selected value="(\d*)">', row) for row in rows]
    return [int(m.group(1)) if m and m.group(1) else None for m in chosen]


# --- the screens ----------------------------------------------------------------------


def test_its_tab_sits_between_simple_calls_and_sms(client: FlaskClient, logged_in: AuthActions) -> None:
    page = _text(client.get(URL))
    tabs = re.findall(r'class="nav-link[^"]*"[^>]*href="[^"]*">([^<]+)<', page)
    index = tabs.index("通話設定(ボタン操作付き)")
    assert tabs[index - 1 : index + 2] == ["通話設定(シンプル通話)", "通話設定(ボタン操作付き)", "SMS 通知設定"]
    assert re.search(r'<a class="nav-link active" aria-current="page"\s+href="/admin/twilio/button-calls/">通話設定\(ボタン操作付き\)', page)
    assert "承認済みの通話設定(ボタン操作付き)はありません。" in page


def test_the_form_has_the_manuals_labels_and_defaults(client: FlaskClient, logged_in: AuthActions) -> None:
    make_twilio_account()
    make_recipient()
    page = _text(client.get(NEW))
    assert "Twilio 通話設定(ボタン操作付き)の作成" in page
    for field_id, label in [
        ("mode-0", "一斉通知"),
        ("mode-1", "輪番通知"),
        ("name", "名称"),
        ("account_id", "Twilio アカウント情報"),
        ("from_number", "Twilio 電話番号(From)"),
        ("recipients-0", "宛先の電話番号(To)"),
        ("ring_seconds", "呼び出しを行い続ける秒数"),
        ("recall_seconds", "再発信までの間隔(秒)"),
        ("max_calls", "1 ユーザあたりの発信回数の上限"),
        ("machine_detection", "留守番電話の検出"),
    ]:
        assert re.search(rf'<label[^>]*for="{field_id}">{re.escape(label)}</label>', page), label
    assert "<legend" in page and ">通知設定種別</legend>" in page
    assert "一斉通知:登録した全ての宛先に対して電話通知を行う。輪番通知:登録した宛先の上から順番に電話通知を行う。" in page
    # Defaults: 一斉通知, 60 s, 60 s, no cap, no answering-machine detection.
    assert re.search(r'<input checked[^>]*id="mode-0"[^>]*value="all"', page)
    assert not re.search(r'<input checked[^>]*id="mode-1"', page)
    for field_id, value in (("ring_seconds", "60"), ("recall_seconds", "60"), ("max_calls", "0")):
        assert re.search(rf'<input[^>]*id="{field_id}"[^>]*value="{value}"', page), field_id
    assert re.search(r'<input[^>]*id="machine_detection"[^>]*type="checkbox"', page)
    assert not re.search(r'<input[^>]*checked[^>]*id="machine_detection"', page)
    # Each addition beyond X-MON states its default.
    assert "デフォルトは 60 秒です。" in page
    assert "輪番通知では上限に達すると次のユーザに、一斉通知ではそのユーザへの発信を終了します。" in page
    assert "デフォルトは 0 = 上限なし" in page
    assert "Twilio の留守番電話検出(AMD)を使い、留守番電話が応答した通話は応答なしとして扱い再発信します。" in page
    assert "検出には追加料金がかかります。" in page and "デフォルトは使用しない(オフ)です。" in page
    # The manual's sentences.
    assert VOICEMAIL_WARNING in page
    assert "同じ通話設定が設定されたホストやサービスについては、障害及び復旧を一回の通話でまとめて読み上げます。" in page
    assert "Twilioを用いた電話通知を行う際の設定を行います。" in page
    # Voice-capable numbers only (the simulator's third number is SMS only).
    from_list = re.search(r'<select[^>]*id="from_number"[^>]*>(.*?)</select>', page, re.S)
    assert from_list is not None
    assert re.findall(r'value="([^"]+)"', from_list.group(1)) == ["+815012340001", "+815012340002"]
    assert "宛先の追加" in page and ">上へ</button>" in page and ">下へ</button>" in page and ">削除</button>" in page
    # No test call here: the manual puts it on メッセージテンプレート; no message either.
    assert "テスト" not in page and "メッセージの内容" not in page
    assert ">作成</button>" in page and ">作成と承認</button>" in page
    assert "js/notify_settings.js" in page


def test_without_an_account_the_guidance_replaces_the_form(client: FlaskClient, logged_in: AuthActions) -> None:
    for url in (URL, NEW):
        page = _text(client.get(url))
        assert "通話設定(ボタン操作付き)を作成するには、承認済みの Twilio アカウント情報が必要です。" in page
    assert 'id="setting-form"' not in _text(client.get(NEW))


def test_accounts_without_a_bin_url_are_offered(client: FlaskClient, logged_in: AuthActions) -> None:
    # Button calls are answered by xmonbridge's webhooks, not by a TwiML Bin.
    account = make_twilio_account(twiml_bin_url=None)
    page = _text(client.get(NEW))
    assert f'<option selected value="{account.id}">運用チームアカウント</option>' in page


def test_the_form_says_when_the_xmon_url_is_missing(client: FlaskClient, logged_in: AuthActions) -> None:
    make_twilio_account()
    assert "Twilio から X-MON URL に HTTP でアクセスします" in _text(client.get(NEW))
    set_xmon_url("https://xmon.example.com")
    assert "Twilio から X-MON URL に HTTP でアクセスします" not in _text(client.get(NEW))


def test_without_message_templates_the_list_has_no_link(
    app: Flask, client: FlaskClient, admin: User, auth: AuthActions
) -> None:
    # As if the メッセージテンプレート screen were not installed.
    app.view_functions.pop("message_templates.index", None)
    auth.login()
    page = _text(client.get(URL))
    assert "メッセージテンプレート" not in page and ">新規作成</a>" in page


def test_the_list_links_to_message_templates(app: Flask, client: FlaskClient, admin: User, auth: AuthActions) -> None:
    if "message_templates.index" not in app.view_functions:
        stand_in = Blueprint("message_templates", __name__, url_prefix="/admin/twilio/message-templates")
        stand_in.add_url_rule("/", "index", lambda: "メッセージテンプレート")
        app.register_blueprint(stand_in)
    with app.test_request_context():
        target = url_for("message_templates.index")
    auth.login()
    page = _text(client.get(URL))
    assert re.search(rf'<a class="btn[^"]*" href="{re.escape(target)}">メッセージテンプレート</a>', page)


# --- 作成 / 作成と承認 ------------------------------------------------------------------


def test_create_waits_for_approval(client: FlaskClient, logged_in: AuthActions) -> None:
    account, users = make_twilio_account(), _three()
    data = _data(account, users, recall_seconds="120", max_calls="3", machine_detection="y")
    response = client.post(NEW, data={**data, "submit": "y"})
    assert response.headers["Location"] == URL
    assert _settings() == []
    page = _text(client.get(URL))
    assert "通話設定(ボタン操作付き)「△△システム担当者への電話連絡」の作成を承認待ちにしました。" in page
    approvals = _text(client.get("/admin/twilio/approvals/"))
    assert "通話設定(ボタン操作付き)「△△システム担当者への電話連絡」の作成" in approvals
    for text in ("輪番通知", f"{SATO}\n{SUZUKI}\n{TAKAHASHI}", "120 秒", "3 回", "有効", "+81-50-1234-0002"):
        assert text in approvals, text

    change = db.session.scalar(select(PendingChange).where(PendingChange.kind == "button_call"))
    assert change is not None
    client.post(f"/admin/twilio/approvals/{change.id}/approve")
    [setting] = _settings()
    assert (setting.mode, setting.name, setting.account_id, setting.from_number) == (
        MODE_ROTATION,
        "△△システム担当者への電話連絡",
        account.id,
        "+815012340002",
    )
    assert (setting.ring_seconds, setting.recall_seconds, setting.max_calls, setting.machine_detection) == (60, 120, 3, True)
    assert [(r.user.login, r.position) for r in setting.recipients] == [("sato", 0), ("suzuki", 1), ("takahashi", 2)]


def test_create_and_approve_shows_every_field_and_the_commands(client: FlaskClient, logged_in: AuthActions) -> None:
    set_xmon_url("https://xmon.example.com")
    account, users = make_twilio_account(), _three()
    data = _data(account, users[::-1], mode=MODE_ALL, ring_seconds="45")
    response = client.post(NEW, data={**data, "submit_approve": "y"})
    [setting] = _settings()
    assert response.headers["Location"] == f"{URL}{setting.id}"
    page = _text(client.get(response.headers["Location"]))
    assert "通話設定(ボタン操作付き)「△△システム担当者への電話連絡」を作成し、承認しました。" in page
    values = re.search(r'<dl class="row" id="setting-values">(.*?)</dl>', page, re.S)
    assert values is not None
    rows = re.findall(r"<dt[^>]*>(.*?)</dt><dd[^>]*>(.*?)</dd>", values.group(1), re.S)
    assert rows == [
        ("通知設定種別", "一斉通知"),
        ("名称", "△△システム担当者への電話連絡"),
        ("Twilio アカウント情報", "運用チームアカウント"),
        ("Twilio 電話番号(From)", "+81-50-1234-0002"),
        ("宛先の電話番号(To)", f"{TAKAHASHI}\n{SUZUKI}\n{SATO}"),
        ("呼び出しを行い続ける秒数", "45 秒"),
        ("再発信までの間隔(秒)", "60 秒"),
        ("1 ユーザあたりの発信回数の上限", "上限なし"),
        ("留守番電話の検出", "無効"),
    ]
    # R11: the escalation commands post kind=button_call for this setting.
    assert "エスカレーション設定用コマンド" in page
    assert f"command_name    xmonbridge-button-call-{setting.id}-service" in page
    assert f"command_name    xmonbridge-button-call-{setting.id}-host" in page
    assert f"--data-urlencode kind=button_call --data-urlencode setting_id={setting.id}" in page
    assert f"--kind button_call --setting-id {setting.id}" in page
    assert "https://xmon.example.com/api/v1/alerts" in page

    listed = _text(client.get(URL))
    row = re.search(r"<tr>\s*<td>△△システム担当者への電話連絡</td>(.*?)</tr>", listed, re.S)
    assert row is not None
    assert "一斉通知" in row.group(1) and "運用チームアカウント" in row.group(1) and TAKAHASHI in row.group(1)
    assert ">詳細表示</a>" in row.group(1)


def test_a_non_approver_cannot_create_and_approve(client: FlaskClient, auth: AuthActions) -> None:
    make_user(login="operator", is_admin=True)
    auth.login("operator")
    account, users = make_twilio_account(), _three()
    page = _text(client.get(NEW))
    assert "作成と承認" not in page and ">作成</button>" in page
    assert client.post(NEW, data={**_data(account, users), "submit_approve": "y"}).status_code == 403
    assert _settings() == [] and _pending() == 0
    assert client.post(NEW, data={**_data(account, users), "submit": "y"}).status_code == 302
    assert _pending() == 1


def test_only_administrators_see_the_screens(client: FlaskClient, auth: AuthActions) -> None:
    make_user(login="viewer")
    auth.login("viewer")
    for url in (URL, NEW):
        assert client.get(url).status_code == 403
    auth.logout()
    assert client.get(URL).status_code == 302


# --- 上へ / 下へ ----------------------------------------------------------------------


def test_rows_move_up_and_down_without_script(client: FlaskClient, logged_in: AuthActions) -> None:
    account, (sato, suzuki, takahashi) = make_twilio_account(), _three()
    data = _data(account, [sato, suzuki, takahashi], name="入力中")
    page = _text(client.get(NEW))
    # One row: neither button can move it.
    assert re.search(r'name="move_up" value="0"[^>]*disabled', page)
    assert re.search(r'name="move_down" value="0"[^>]*disabled', page)

    page = _text(client.post(NEW, data={**data, "move_up": "2"}))
    assert _rows(page) == [sato.id, takahashi.id, suzuki.id]
    assert 'value="入力中"' in page and "輪番通知" in page
    # The first row cannot go up, the last cannot go down; the others can.
    assert re.search(r'name="move_up" value="0"[^>]*disabled', page)
    assert re.search(r'name="move_down" value="2"[^>]*disabled', page)
    assert not re.search(r'name="move_up" value="1"[^>]*disabled', page)
    assert not re.search(r'name="move_down" value="0"[^>]*disabled', page)

    page = _text(client.post(NEW, data={**data, "move_down": "0"}))
    assert _rows(page) == [suzuki.id, sato.id, takahashi.id]
    # Past either end nothing moves.
    assert _rows(_text(client.post(NEW, data={**data, "move_up": "0"}))) == [sato.id, suzuki.id, takahashi.id]
    assert _rows(_text(client.post(NEW, data={**data, "move_down": "2"}))) == [sato.id, suzuki.id, takahashi.id]
    assert _settings() == [] and _pending() == 0


def test_rows_are_added_and_removed_without_script(client: FlaskClient, logged_in: AuthActions) -> None:
    account, (sato, suzuki, _takahashi) = make_twilio_account(), _three()
    page = _text(client.post(NEW, data={**_data(account, [sato, suzuki]), "add_recipient": "y"}))
    assert _rows(page) == [sato.id, suzuki.id, None]
    page = _text(client.post(NEW, data={**_data(account, [sato, suzuki]), "remove_recipient": "0"}))
    assert _rows(page) == [suzuki.id]
    assert _settings() == [] and _pending() == 0


def test_the_saved_order_is_the_rows_order(client: FlaskClient, logged_in: AuthActions) -> None:
    account, (sato, suzuki, takahashi) = make_twilio_account(), _three()
    # As a browser without the script: 上へ on the third row, then 作成と承認 with the page's rows.
    page = _text(client.post(NEW, data={**_data(account, [sato, suzuki, takahashi]), "move_up": "2"}))
    rows = _rows(page)
    client.post(NEW, data={**_data(account, []), **{f"recipients-{i}": str(u) for i, u in enumerate(rows)}, "submit_approve": "y"})
    [setting] = _settings()
    assert _order(setting) == ["sato", "takahashi", "suzuki"]
    assert [r.position for r in setting.recipients] == [0, 1, 2]


def test_a_new_order_goes_through_approval(client: FlaskClient, logged_in: AuthActions) -> None:
    account, (sato, suzuki, takahashi) = make_twilio_account(), _three()
    setting = make_button_call_setting(account, [sato, suzuki, takahashi], mode=MODE_ROTATION)
    edit = f"{URL}{setting.id}/edit"
    page = _text(client.get(edit))
    assert ">編集</button>" in page and ">編集と承認</button>" in page
    assert _rows(page) == [sato.id, suzuki.id, takahashi.id]
    assert re.search(r'<input checked[^>]*id="mode-1"[^>]*value="rotation"', page)

    reordered = _data(account, [takahashi, sato, suzuki], name=setting.name, from_number="+815012340001")
    assert client.post(edit, data={**reordered, "submit": "y"}).status_code == 302
    assert _order(_settings()[0]) == ["sato", "suzuki", "takahashi"]
    show = _text(client.get(f"{URL}{setting.id}"))
    assert "この通話設定(ボタン操作付き)の承認待ちの変更" in show
    diff = re.search(r'<tr class="diff-changed"><th scope="row">宛先の電話番号\(To\)</th>(.*?)</tr>', show, re.S)
    assert diff is not None
    assert f"{SATO}\n{SUZUKI}\n{TAKAHASHI}" in diff.group(1) and f"{TAKAHASHI}\n{SATO}\n{SUZUKI}" in diff.group(1)
    # Only the order changed: no other row in the diff.
    assert show.count('class="diff-changed"') == 1

    change = db.session.scalar(select(PendingChange).where(PendingChange.kind == "button_call"))
    assert change is not None
    client.post(f"/admin/twilio/approvals/{change.id}/approve")
    assert _order(_settings()[0]) == ["takahashi", "sato", "suzuki"]

    # 編集と承認 applies at once.
    back = _data(account, [suzuki, takahashi], name=setting.name, mode=MODE_ALL, from_number="+815012340001")
    assert client.post(edit, data={**back, "submit_approve": "y"}).headers["Location"] == f"{URL}{setting.id}"
    [saved] = _settings()
    assert (_order(saved), saved.mode) == (["suzuki", "takahashi"], MODE_ALL)


def test_an_edit_that_changes_nothing_is_not_recorded(client: FlaskClient, logged_in: AuthActions) -> None:
    account, users = make_twilio_account(), _three()
    setting = make_button_call_setting(account, users, mode=MODE_ROTATION)
    data = _data(account, users, name=setting.name, from_number="+815012340001")
    page = _text(client.post(f"{URL}{setting.id}/edit", data={**data, "submit": "y"}))
    assert "変更された項目がありません。" in page and _pending() == 0


def test_delete_goes_through_approval(client: FlaskClient, logged_in: AuthActions) -> None:
    account, users = make_twilio_account(), _three()
    setting = make_button_call_setting(account, users, name="担当者への電話連絡")
    show = _text(client.get(f"{URL}{setting.id}"))
    assert ">削除</button>" in show and ">削除と承認</button>" in show
    page = _text(client.post(f"{URL}{setting.id}/delete", follow_redirects=True))
    assert "通話設定(ボタン操作付き)「担当者への電話連絡」の削除を承認待ちにしました。" in page
    assert len(_settings()) == 1
    change = db.session.scalar(select(PendingChange).where(PendingChange.kind == "button_call"))
    assert change is not None
    client.post(f"/admin/twilio/approvals/{change.id}/approve")
    assert _settings() == []
    assert db.session.scalars(select(ButtonCallRecipient)).all() == []
    assert client.get(f"{URL}{setting.id}").status_code == 404


# --- validation: nothing saved --------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,field_id,message",
    [
        ({"name": ""}, "name", "このフィールドは必須です。"),
        ({"mode": "everyone"}, "mode", "通知設定種別は「一斉通知」か「輪番通知」を選択してください。"),
        ({"ring_seconds": "4"}, "ring_seconds", "呼び出しを行い続ける秒数は 5 から 600 までの整数で入力してください。"),
        ({"ring_seconds": "601"}, "ring_seconds", "5 から 600 までの整数"),
        ({"recall_seconds": "9"}, "recall_seconds", "再発信までの間隔(秒)は 10 から 3600 までの整数で入力してください。"),
        ({"recall_seconds": "3601"}, "recall_seconds", "10 から 3600 までの整数"),
        ({"recall_seconds": ""}, "recall_seconds", "このフィールドは必須です。"),
        ({"max_calls": "-1"}, "max_calls", "1 ユーザあたりの発信回数の上限は 0 から 100 までの整数で入力してください。"),
        ({"max_calls": "101"}, "max_calls", "0 から 100 までの整数"),
        ({"max_calls": "1.5"}, "max_calls", "整数"),
        ({"account_id": "999"}, "account_id", "Twilio アカウント情報を一覧から選択してください。"),
        # An SMS-only number, and one the account does not own.
        (
            {"from_number": "+815012340003"},
            "from_number",
            "Twilio アカウント情報「運用チームアカウント」の音声通話に使える電話番号に +81-50-1234-0003 はありません。",
        ),
        ({"from_number": "+815099999999"}, "from_number", "一覧から選択してください(一覧が古い場合は「再取得」を押してください)。"),
    ],
)
def test_bad_input_is_refused_and_nothing_saved(
    client: FlaskClient, logged_in: AuthActions, overrides: dict[str, str], field_id: str, message: str
) -> None:
    account, users = make_twilio_account(), _three()
    for button in ("submit", "submit_approve"):
        response = client.post(NEW, data={**_data(account, users, **overrides), button: "y"})
        assert response.status_code == 200
        page = _text(response)
        errors = _errors(page, field_id) if field_id != "mode" else page
        assert message in errors
        assert _settings() == [] and _pending() == 0


def test_the_mode_is_required(client: FlaskClient, logged_in: AuthActions) -> None:
    account, users = make_twilio_account(), _three()
    data = _data(account, users)
    del data["mode"]
    page = _text(client.post(NEW, data={**data, "submit_approve": "y"}))
    assert "通知設定種別は「一斉通知」か「輪番通知」を選択してください。" in page
    assert _settings() == [] and _pending() == 0


def test_recipients_are_required_and_unique(client: FlaskClient, logged_in: AuthActions) -> None:
    account, (sato, suzuki, _takahashi) = make_twilio_account(), _three()
    page = _text(client.post(NEW, data={**_data(account, []), "submit_approve": "y"}))
    assert "宛先の電話番号(To)を選択してください。" in page
    page = _text(client.post(NEW, data={**_data(account, [sato, suzuki, sato]), "submit_approve": "y"}))
    assert page.count("この宛先は既に選択されています。") == 1
    no_phone = make_user(login="nophone", name="電話なし")
    page = _text(client.post(NEW, data={**_data(account, [no_phone]), "submit_approve": "y"}))
    assert "宛先の電話番号(To)を一覧から選択してください。" in page
    assert "電話なし" not in _text(client.get(NEW))
    assert _settings() == [] and _pending() == 0


def test_names_are_unique_including_pending_creates(client: FlaskClient, logged_in: AuthActions) -> None:
    account, users = make_twilio_account(), _three()
    client.post(NEW, data={**_data(account, users), "submit": "y"})
    page = _text(client.post(NEW, data={**_data(account, users), "submit": "y"}))
    assert "この名称で作成を承認待ちの通話設定(ボタン操作付き)があります。" in _errors(page, "name")
    make_button_call_setting(account, users, name="既存の設定")
    page = _text(client.post(NEW, data={**_data(account, users, name="既存の設定"), "submit_approve": "y"}))
    assert "この名称は既に使われています。" in _errors(page, "name")
    assert _pending() == 1 and len(_settings()) == 1


def test_approval_refuses_a_name_taken_meanwhile(client: FlaskClient, logged_in: AuthActions) -> None:
    account, users = make_twilio_account(), _three()
    client.post(NEW, data={**_data(account, users), "submit": "y"})
    make_button_call_setting(account, users, name="△△システム担当者への電話連絡")
    change = db.session.scalar(select(PendingChange).where(PendingChange.kind == "button_call"))
    assert change is not None
    page = _text(client.post(f"/admin/twilio/approvals/{change.id}/approve", follow_redirects=True))
    assert "名称「△△システム担当者への電話連絡」の通話設定(ボタン操作付き)が既に存在するため、適用できません。" in page
    assert len(_settings()) == 1


# --- accounts and users in use (setting_usage) ------------------------------------------


def test_an_account_in_use_cannot_be_deleted(client: FlaskClient, logged_in: AuthActions) -> None:
    account, users = make_twilio_account(), _three()
    make_button_call_setting(account, users, name="夜間の電話連絡")
    page = _text(client.post(f"/admin/twilio/accounts/{account.id}/delete", data={"approve": "1"}, follow_redirects=True))
    assert (
        "Twilio アカウント情報「運用チームアカウント」は次の設定で使用されているため、削除できません: "
        "通話設定(ボタン操作付き)「夜間の電話連絡」"
    ) in page
    db.session.expire_all()
    assert db.session.get(TwilioAccount, account.id) is not None


def test_a_recipient_cannot_be_deleted_or_lose_the_phone(client: FlaskClient, logged_in: AuthActions) -> None:
    account, (sato, suzuki, takahashi) = make_twilio_account(), _three()
    setting = make_button_call_setting(account, [sato, suzuki, takahashi], name="夜間の電話連絡")
    page = _text(client.post(f"/admin/users/{suzuki.id}/delete", follow_redirects=True))
    assert "ユーザ「suzuki」は次の設定の宛先になっているため、削除できません: 通話設定(ボタン操作付き)「夜間の電話連絡」" in page
    page = _text(client.post(f"/admin/users/{suzuki.id}/edit", data={"login": "suzuki", "phone": ""}))
    assert "次の設定の宛先になっているため、電話番号を空にできません: 通話設定(ボタン操作付き)「夜間の電話連絡」" in page
    db.session.expire_all()
    assert db.session.get(User, suzuki.id).phone == "+819001230002"  # type: ignore[union-attr]

    client.post(f"{URL}{setting.id}/delete", data={"approve": "1"})
    client.post(f"/admin/users/{suzuki.id}/delete")
    db.session.expire_all()
    assert db.session.get(User, suzuki.id) is None


def test_approval_refuses_a_user_who_lost_the_phone(client: FlaskClient, logged_in: AuthActions) -> None:
    account, users = make_twilio_account(), _three()
    client.post(NEW, data={**_data(account, users), "submit": "y"})
    users[2].phone = None
    db.session.commit()
    change = db.session.scalar(select(PendingChange).where(PendingChange.kind == "button_call"))
    assert change is not None
    page = _text(client.post(f"/admin/twilio/approvals/{change.id}/approve", follow_redirects=True))
    assert "宛先のユーザ「高橋 健」に電話番号が設定されていないため、適用できません。" in page
    assert _settings() == []


def test_a_pending_setting_whose_recipient_was_deleted_never_calls_a_new_user(
    client: FlaskClient, logged_in: AuthActions
) -> None:
    account = make_twilio_account()
    oldguy = make_recipient("oldguy", "旧担当", "+819001230009")
    old_id = oldguy.id
    assert client.post(NEW, data={**_data(account, [oldguy]), "submit": "y"}).status_code == 302
    change = db.session.scalar(select(PendingChange).where(PendingChange.kind == "button_call"))
    assert change is not None
    assert "ユーザ「oldguy」を削除しました。" in _text(client.post(f"/admin/users/{old_id}/delete", follow_redirects=True))
    form = {"login": "newguy", "name": "新担当", "password": "", "login_disabled": "y", "phone": "+81-90-0123-0010"}
    assert client.post("/admin/users/new", data={**form, "email": "", "mobile_email": ""}).status_code == 302
    newguy = db.session.scalars(select(User).where(User.login == "newguy")).one()
    assert newguy.id != old_id

    page = _text(client.post(f"/admin/twilio/approvals/{change.id}/approve", follow_redirects=True))
    assert "宛先のユーザが削除されているため、適用できません。" in page
    assert _settings() == []

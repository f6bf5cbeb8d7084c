"""Twilio アカウント情報 (R3) with approval (R4)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from xmonbridge import secretbox
from xmonbridge.extensions import db
from xmonbridge.models import PendingChange, TwilioAccount, TwilioPhoneNumber, User
from tests.conftest import AuthActions
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, BIN_URL, make_twilio_account, make_user, set_xmon_url
from tests.fake_twilio import FakeNumber

VALID = {"name": "運用チームアカウント", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "twiml_bin_url": BIN_URL}


def _accounts() -> list[TwilioAccount]:
    db.session.expire_all()
    return list(db.session.scalars(select(TwilioAccount)))


def _pending() -> int:
    return db.session.scalar(select(func.count()).select_from(PendingChange)) or 0


def test_create_waits_for_approval(client: FlaskClient, logged_in: AuthActions) -> None:
    response = client.post("/admin/twilio/accounts/new", data={**VALID, "submit": "作成"})
    assert response.status_code == 302
    assert _accounts() == []
    page = client.get("/admin/twilio/accounts/").get_data(as_text=True)
    assert "承認待ちにしました" in page
    assert "承認済みの Twilio アカウント情報はありません。" in page


def test_create_and_approve_applies_at_once(client: FlaskClient, logged_in: AuthActions) -> None:
    response = client.post("/admin/twilio/accounts/new", data={**VALID, "submit_approve": "作成と承認"})
    [account] = _accounts()
    assert response.headers["Location"] == f"/admin/twilio/accounts/{account.id}"
    assert account.name == "運用チームアカウント" and account.account_sid == ACCOUNT_SID
    assert account.twiml_bin_url == BIN_URL
    assert secretbox.decrypt(account.auth_token_encrypted) == AUTH_TOKEN


BIN_SHAPE = "TwiML Bin URL は Twilio コンソールに表示される URL(https://handler.twilio.com/twiml/EH と32桁の16進数)を入力してください。"
NEW_BIN = "https://handler.twilio.com/twiml/EH" + "ab" * 16


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("name", "", "このフィールドは必須です。"),
        ("account_sid", "", "このフィールドは必須です。"),
        ("account_sid", "AC123", "ACCOUNT SID は「AC」と32桁の16進数で入力してください。"),
        ("account_sid", "SK" + "0" * 32, "ACCOUNT SID は「AC」と32桁の16進数で入力してください。"),
        ("account_sid", "AC" + "g" * 32, "ACCOUNT SID は「AC」と32桁の16進数で入力してください。"),
        ("auth_token", "", "このフィールドは必須です。"),
        ("auth_token", "0" * 31, "AUTH TOKEN は32桁の16進数で入力してください。"),
        ("auth_token", "z" * 32, "AUTH TOKEN は32桁の16進数で入力してください。"),
        ("twiml_bin_url", "http://handler.twilio.com/twiml/EH1", "https:// で始まる URL を入力してください。"),
        ("twiml_bin_url", "handler.twilio.com", "https:// で始まる URL を入力してください。"),
        ("twiml_bin_url", "https://handler.twilio.com/twiml/EH1", BIN_SHAPE),
        ("twiml_bin_url", "https://handler.twilio.com/twiml/XX" + "0" * 32, BIN_SHAPE),
        ("twiml_bin_url", "https://handler.twilio.com/twiml/EH" + "0" * 33, BIN_SHAPE),
        ("twiml_bin_url", "https://handler.twilio.com/twiml/EH" + "g" * 32, BIN_SHAPE),
        ("twiml_bin_url", "https://evil.example/twiml/EH" + "0" * 32, BIN_SHAPE),
        ("twiml_bin_url", "https://handler.twilio.com.evil.example/twiml/EH" + "0" * 32, BIN_SHAPE),
    ],
)
def test_it_refuses_bad_input_and_saves_nothing(
    client: FlaskClient, logged_in: AuthActions, field: str, value: str, message: str
) -> None:
    for button in ("submit", "submit_approve"):
        page = client.post("/admin/twilio/accounts/new", data={**VALID, field: value, button: "y"}).get_data(
            as_text=True
        )
        assert message in page
        assert f'id="{field}-error"' in page
        assert _accounts() == [] and _pending() == 0
        # The typed token never comes back into the page.
        assert AUTH_TOKEN not in page


def test_names_are_unique(client: FlaskClient, logged_in: AuthActions) -> None:
    make_twilio_account()
    page = client.post("/admin/twilio/accounts/new", data={**VALID, "submit_approve": "y"}).get_data(as_text=True)
    assert "この名称は既に使われています。" in page
    assert len(_accounts()) == 1


def test_a_name_waiting_for_creation_is_taken(client: FlaskClient, logged_in: AuthActions) -> None:
    client.post("/admin/twilio/accounts/new", data={**VALID, "submit": "y"})
    page = client.post("/admin/twilio/accounts/new", data={**VALID, "submit": "y"}).get_data(as_text=True)
    assert "この名称で作成を承認待ちの Twilio アカウント情報があります。" in page
    assert _pending() == 1


def test_edit_with_a_blank_token_keeps_it(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    page = client.get(f"/admin/twilio/accounts/{account.id}/edit").get_data(as_text=True)
    assert AUTH_TOKEN not in page
    token_input = re.search(r'<input[^>]*id="auth_token"[^>]*>', page).group(0)  # type: ignore[union-attr]
    assert 'value=""' in token_input or "value=" not in token_input
    client.post(
        f"/admin/twilio/accounts/{account.id}/edit",
        data={**VALID, "auth_token": "", "twiml_bin_url": NEW_BIN.upper().replace("HTTPS://HANDLER.TWILIO.COM/TWIML/", "https://handler.twilio.com/twiml/"), "submit_approve": "y"},
    )
    [edited] = _accounts()
    # Upper-case hex as copied from elsewhere is stored the way Twilio writes it.
    assert edited.twiml_bin_url == NEW_BIN
    assert secretbox.decrypt(edited.auth_token_encrypted) == AUTH_TOKEN


def test_a_pending_edit_changes_nothing_until_approved(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    new_token = "a" * 32
    client.post(
        f"/admin/twilio/accounts/{account.id}/edit",
        data={**VALID, "name": "新しい名前", "auth_token": new_token, "submit": "y"},
    )
    [unchanged] = _accounts()
    assert unchanged.name == "運用チームアカウント"
    assert secretbox.decrypt(unchanged.auth_token_encrypted) == AUTH_TOKEN

    page = client.get("/admin/twilio/approvals/").get_data(as_text=True)
    assert "変更あり" in page and new_token not in page and AUTH_TOKEN not in page
    assert re.search(r"<th scope=\"row\">名称</th><td[^>]*>運用チームアカウント</td><td[^>]*>新しい名前</td>", page)
    change = db.session.scalar(select(PendingChange))
    assert new_token not in change.payload  # type: ignore[union-attr]

    client.post(f"/admin/twilio/approvals/{change.id}/approve")  # type: ignore[union-attr]
    [approved] = _accounts()
    assert approved.name == "新しい名前"
    assert secretbox.decrypt(approved.auth_token_encrypted) == new_token


def test_reject_discards_the_change(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    client.post(f"/admin/twilio/accounts/{account.id}/edit", data={**VALID, "name": "却下される名前", "submit": "y"})
    change = db.session.scalar(select(PendingChange))
    page = client.post(f"/admin/twilio/approvals/{change.id}/reject", follow_redirects=True).get_data(as_text=True)  # type: ignore[union-attr]
    assert "却下しました" in page
    assert _accounts()[0].name == "運用チームアカウント"
    assert "承認待ちの変更はありません。" in page
    # A rejected change cannot be approved afterwards.
    page = client.post(f"/admin/twilio/approvals/{change.id}/approve", follow_redirects=True).get_data(as_text=True)  # type: ignore[union-attr]
    assert "この変更は既に処理されています。" in page
    assert _accounts()[0].name == "運用チームアカウント"


def test_delete_goes_through_approval(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    client.post(f"/admin/twilio/accounts/{account.id}/delete")
    assert len(_accounts()) == 1
    change = db.session.scalar(select(PendingChange))
    client.post(f"/admin/twilio/approvals/{change.id}/approve")  # type: ignore[union-attr]
    assert _accounts() == []


def test_delete_and_approve_removes_at_once(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    response = client.post(f"/admin/twilio/accounts/{account.id}/delete", data={"approve": "1"})
    assert response.headers["Location"] == "/admin/twilio/accounts/"
    assert _accounts() == []


@pytest.fixture
def operator(client: FlaskClient, auth: AuthActions) -> User:
    """An administrator without 承認権限, logged in."""
    user = make_user(login="operator", is_admin=True)
    make_user(login="admin", is_admin=True, is_approver=True)
    auth.login("operator")
    return user


def test_non_approvers_cannot_see_or_use_approve_buttons(client: FlaskClient, operator: User) -> None:
    page = client.get("/admin/twilio/accounts/new").get_data(as_text=True)
    assert "作成と承認" not in page and ">作成</button>" in page
    assert client.post("/admin/twilio/accounts/new", data={**VALID, "submit_approve": "y"}).status_code == 403
    assert _accounts() == [] and _pending() == 0

    client.post("/admin/twilio/accounts/new", data={**VALID, "submit": "y"})
    change = db.session.scalar(select(PendingChange))
    page = client.get("/admin/twilio/approvals/").get_data(as_text=True)
    assert "運用チームアカウント" in page and ">承認</button>" not in page and ">却下</button>" not in page
    assert client.post(f"/admin/twilio/approvals/{change.id}/approve").status_code == 403  # type: ignore[union-attr]
    assert client.post(f"/admin/twilio/approvals/{change.id}/reject").status_code == 403  # type: ignore[union-attr]
    assert _accounts() == []

    account = make_twilio_account(name="既存")
    page = client.get(f"/admin/twilio/accounts/{account.id}").get_data(as_text=True)
    assert "削除と承認" not in page
    assert client.post(f"/admin/twilio/accounts/{account.id}/delete", data={"approve": "1"}).status_code == 403
    page = client.get(f"/admin/twilio/accounts/{account.id}/edit").get_data(as_text=True)
    assert "編集と承認" not in page


def test_approval_refuses_a_name_taken_meanwhile(client: FlaskClient, logged_in: AuthActions) -> None:
    client.post("/admin/twilio/accounts/new", data={**VALID, "name": "A", "submit": "y"})
    make_twilio_account(name="A")  # e.g. created by a second approver meanwhile
    change = db.session.scalar(select(PendingChange).where(PendingChange.action == "create"))
    page = client.post(f"/admin/twilio/approvals/{change.id}/approve", follow_redirects=True).get_data(as_text=True)  # type: ignore[union-attr]
    assert "名称「A」の Twilio アカウント情報が既に存在するため、適用できません。" in page
    assert sorted(a.name for a in _accounts()) == ["A"]


def test_prerequisite_guidance_until_url_and_phone_exist(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get("/admin/twilio/accounts/").get_data(as_text=True)
    assert "Twilio API 連携の事前準備" in page
    assert 'href="/admin/xmon-settings/"' in page and 'href="/admin/users/"' in page
    set_xmon_url("https://xmon.example.com")
    page = client.get("/admin/twilio/accounts/").get_data(as_text=True)
    assert "Twilio API 連携の事前準備" in page and "X-MON URL が設定されていません" not in page
    make_user(login="sato", phone="+819001230001")
    assert "Twilio API 連携の事前準備" not in client.get("/admin/twilio/accounts/").get_data(as_text=True)


def test_the_help_shows_bin_twiml_with_the_configured_voice(client: FlaskClient, logged_in: AuthActions) -> None:
    client.post("/admin/xmon-settings/", data={"xmon_url": "https://x.example", "voice": "Polly.Takumi"})
    page = client.get("/admin/twilio/accounts/new").get_data(as_text=True)
    snippet = re.search(r'<pre class="twiml" id="twiml-snippet">(.*?)</pre>', page, re.S).group(1)  # type: ignore[union-attr]
    assert "&lt;Say language=&#34;ja-JP&#34; voice=&#34;Polly.Takumi&#34;&gt;{{message}}&lt;/Say&gt;" in snippet
    assert 'data-copy-target="twiml-snippet"' in page


def _crawl(client: FlaskClient, app: Flask) -> dict[str, str]:
    pages = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in ("static", "bootstrap.static"):
            continue
        url = re.sub(r"<(?:int:)?[a-z_]+>", "1", rule.rule)
        response = client.get(url)
        pages[url] = response.get_data(as_text=True)
    return pages


def test_the_auth_token_never_leaves_the_server(app: Flask, client: FlaskClient, logged_in: AuthActions) -> None:
    client.post("/admin/twilio/accounts/new", data={**VALID, "submit_approve": "y"})
    account = _accounts()[0]
    client.post(f"/admin/twilio/accounts/{account.id}/edit", data={**VALID, "auth_token": "b" * 32, "submit": "y"})
    pages = _crawl(client, app)
    assert "/admin/twilio/accounts/1/edit" in pages and "/admin/twilio/approvals/" in pages
    for url, html in pages.items():
        assert AUTH_TOKEN not in html and "b" * 32 not in html, url
    # Nor in the database in clear text, in any table.
    dump = "\n".join(db.session.connection().connection.driver_connection.iterdump())  # type: ignore[union-attr]
    assert AUTH_TOKEN not in dump and "b" * 32 not in dump
    raw = db.session.execute(text("select auth_token_encrypted from twilio_accounts")).scalar_one()
    assert raw.startswith("gAAAA")


def test_upper_case_hex_sid_is_normalised(client: FlaskClient, logged_in: AuthActions) -> None:
    data: dict[str, Any] = {**VALID, "account_sid": "AC" + "0123456789ABCDEF" * 2, "submit_approve": "y"}
    client.post("/admin/twilio/accounts/new", data=data)
    assert _accounts()[0].account_sid == ACCOUNT_SID


# --- the From-number cache follows the account's credentials -------------------------------

NEW_SID = "AC" + "fedcba9876543210" * 2
SIMPLE_CALL_NEW = "/admin/twilio/simple-calls/new"


def _from_options(client: FlaskClient) -> list[str]:
    page = client.get(SIMPLE_CALL_NEW).get_data(as_text=True)
    select_html = re.search(r'<select[^>]*id="from_number".*?</select>', page, re.S)[0]  # type: ignore[index]
    return re.findall(r'<option[^>]*value="([^"]*)"', select_html)


def _cached_numbers(account_id: int) -> int:
    query = select(func.count()).select_from(TwilioPhoneNumber).where(TwilioPhoneNumber.account_id == account_id)
    return db.session.scalar(query) or 0


def test_approved_new_credentials_drop_the_cached_numbers(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    client = live_logged_in
    account = make_twilio_account()
    assert _from_options(client) == ["+815012340001", "+815012340002"]
    fake_twilio.phone_numbers[NEW_SID] = [FakeNumber("+815012340009", voice=True)]
    edit = f"/admin/twilio/accounts/{account.id}/edit"

    client.post(edit, data={**VALID, "account_sid": NEW_SID, "auth_token": "", "submit": "y"})
    assert _cached_numbers(account.id) == 2  # pending: the old account still applies
    change = db.session.scalar(select(PendingChange))
    client.post(f"/admin/twilio/approvals/{change.id}/approve")  # type: ignore[union-attr]
    db.session.expire_all()
    assert _cached_numbers(account.id) == 0 and _accounts()[0].numbers_fetched_at is None
    assert _from_options(client) == ["+815012340009"]  # read again, from the new account
    [_, second] = fake_twilio.requests_for("ListIncomingPhoneNumber")
    assert second.account_sid == NEW_SID

    # A new AUTH TOKEN alone (編集と承認) also drops the cache.
    client.post(edit, data={**VALID, "account_sid": NEW_SID, "auth_token": "b" * 32, "submit_approve": "y"})
    db.session.expire_all()
    assert _cached_numbers(account.id) == 0 and _accounts()[0].numbers_fetched_at is None


def test_other_account_edits_keep_the_cached_numbers(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    client = live_logged_in
    account = make_twilio_account()
    _from_options(client)
    edit = f"/admin/twilio/accounts/{account.id}/edit"
    # The same token typed again is no change (its ciphertext differs, the token does not).
    client.post(edit, data={**VALID, "name": "新しい名前", "submit_approve": "y"})
    db.session.expire_all()
    assert _accounts()[0].name == "新しい名前"
    assert _cached_numbers(account.id) == 2 and _accounts()[0].numbers_fetched_at is not None
    assert len(fake_twilio.requests_for("ListIncomingPhoneNumber")) == 1


def test_the_form_speaks_the_manuals_words(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get("/admin/twilio/accounts/new").get_data(as_text=True)
    assert '"Twilio API連携 - 通話設定" にて、使用します。' in page
    assert "例) 障害発生時、対象の電話に対し音声通話を試みる" in page
    assert "障害が発生した旨のメッセージの発信を行う場合に設定します。" in page
    # The TwiML help says why the bin must be the account's own.
    assert "この Twilio アカウント情報と同じ Twilio アカウントで作成してください。" in page


def test_calls_per_second_defaults_to_one_and_is_shown(client: FlaskClient, logged_in: AuthActions) -> None:
    form = client.get("/admin/twilio/accounts/new").get_data(as_text=True)
    assert '<label class="form-label" for="cps">1 秒あたりの発信・送信数(CPS)</label>' in form
    assert 'value="1"' in form
    client.post("/admin/twilio/accounts/new", data={**VALID, "submit_approve": "作成と承認"})
    [account] = _accounts()
    assert account.cps == 1
    response = client.post(
        f"/admin/twilio/accounts/{account.id}/edit", data={**VALID, "auth_token": "", "cps": "5", "submit_approve": "編集と承認"}
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert _accounts()[0].cps == 5
    assert "1 秒あたりの発信・送信数(CPS)</dt><dd class=\"col-sm-9\">5</dd>" in client.get(f"/admin/twilio/accounts/{account.id}").get_data(as_text=True)


@pytest.mark.parametrize("value", ["0", "101", "-1", "abc", "1.5"])
def test_calls_per_second_out_of_range_saves_nothing(client: FlaskClient, logged_in: AuthActions, value: str) -> None:
    response = client.post("/admin/twilio/accounts/new", data={**VALID, "cps": value, "submit_approve": "作成と承認"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'id="cps-error"' in page
    assert _accounts() == [] and _pending() == 0

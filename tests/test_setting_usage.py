"""Accounts and users that notification settings use cannot be deleted; approval re-checks references."""

from __future__ import annotations

import html
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from xmonbridge.extensions import db
from xmonbridge.models import STATUS_PENDING, PendingChange, SimpleCallSetting, SmsSetting, TwilioAccount, User
from tests.conftest import AuthActions
from tests.factories import make_recipient, make_simple_call_setting, make_sms_setting, make_twilio_account


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _accounts() -> list[TwilioAccount]:
    db.session.expire_all()
    return list(db.session.scalars(select(TwilioAccount)))


def _request_create(client: FlaskClient, account: TwilioAccount, user: User, name: str = "夜間の電話連絡") -> PendingChange:
    data = {
        "name": name,
        "account_id": str(account.id),
        "from_number": "+815012340001",
        "recipients-0": str(user.id),
        "message_template": "fault",
        "ring_seconds": "60",
        "submit": "y",
    }
    assert client.post("/admin/twilio/simple-calls/new", data=data).status_code == 302
    change = db.session.scalar(select(PendingChange).where(PendingChange.status == STATUS_PENDING))
    assert change is not None
    return change


def _approve(client: FlaskClient, change: PendingChange) -> str:
    return _text(client.post(f"/admin/twilio/approvals/{change.id}/approve", follow_redirects=True))


def test_an_account_in_use_cannot_be_deleted(client: FlaskClient, logged_in: AuthActions) -> None:
    account, user = make_twilio_account(), make_recipient()
    make_simple_call_setting(account, [user], name="夜間の電話連絡")
    make_sms_setting(account, [user], name="夜間の SMS")
    reason = (
        "Twilio アカウント情報「運用チームアカウント」は次の設定で使用されているため、削除できません: "
        "通話設定(シンプル通話)「夜間の電話連絡」、SMS 通知設定「夜間の SMS」"
    )
    delete = f"/admin/twilio/accounts/{account.id}/delete"
    page = _text(client.post(delete, data={"approve": "1"}, follow_redirects=True))
    assert reason in page and len(_accounts()) == 1
    # A deletion requested earlier is refused when someone approves it.
    client.post(delete)
    change = db.session.scalar(select(PendingChange).where(PendingChange.status == STATUS_PENDING))
    assert change is not None
    assert reason in _approve(client, change) and len(_accounts()) == 1


def test_a_recipient_cannot_be_deleted(client: FlaskClient, logged_in: AuthActions) -> None:
    account, user = make_twilio_account(), make_recipient()
    setting = make_sms_setting(account, [user], name="夜間の SMS")
    page = _text(client.post(f"/admin/users/{user.id}/delete", follow_redirects=True))
    assert "ユーザ「sato」は次の設定の宛先になっているため、削除できません: SMS 通知設定「夜間の SMS」" in page
    assert db.session.get(User, user.id) is not None
    client.post(f"/admin/twilio/sms-settings/{setting.id}/delete", data={"approve": "1"})
    client.post(f"/admin/users/{user.id}/delete")
    db.session.expire_all()
    assert db.session.get(User, user.id) is None


def test_approval_refuses_a_user_who_lost_the_phone(client: FlaskClient, logged_in: AuthActions) -> None:
    account, user = make_twilio_account(), make_recipient()
    change = _request_create(client, account, user)
    user.phone = None
    db.session.commit()
    assert "宛先のユーザ「佐藤 翔太」に電話番号が設定されていないため、適用できません。" in _approve(client, change)
    assert db.session.scalars(select(SimpleCallSetting)).all() == []


def test_approval_refuses_an_account_without_bin_url(client: FlaskClient, logged_in: AuthActions) -> None:
    account, user = make_twilio_account(), make_recipient()
    change = _request_create(client, account, user)
    account.twiml_bin_url = None
    db.session.commit()
    page = _approve(client, change)
    assert "Twilio アカウント情報「運用チームアカウント」に TwiML Bin URL が設定されていないため、適用できません。" in page
    assert db.session.scalars(select(SimpleCallSetting)).all() == []


def test_approval_refuses_a_name_taken_meanwhile(client: FlaskClient, logged_in: AuthActions) -> None:
    account, user = make_twilio_account(), make_recipient()
    change = _request_create(client, account, user)
    make_simple_call_setting(account, [user], name="夜間の電話連絡")
    page = _approve(client, change)
    assert "名称「夜間の電話連絡」の通話設定(シンプル通話)が既に存在するため、適用できません。" in page
    assert len(db.session.scalars(select(SimpleCallSetting)).all()) == 1
    assert db.session.scalars(select(SmsSetting)).all() == []


def test_approval_refuses_an_account_deleted_meanwhile(client: FlaskClient, logged_in: AuthActions) -> None:
    account, user = make_twilio_account(), make_recipient()
    change = _request_create(client, account, user)
    client.post(f"/admin/twilio/accounts/{account.id}/delete", data={"approve": "1"})
    assert _accounts() == []
    assert "選択された Twilio アカウント情報が削除されているため、適用できません。" in _approve(client, change)
    assert db.session.scalars(select(SimpleCallSetting)).all() == []


def test_a_bin_url_in_use_cannot_be_emptied(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    make_simple_call_setting(account, [make_recipient()], name="夜間の電話連絡")
    data = {"name": account.name, "account_sid": account.account_sid, "twiml_bin_url": "", "submit_approve": "y"}
    page = _text(client.post(f"/admin/twilio/accounts/{account.id}/edit", data=data))
    assert "TwiML Bin URL を空にできません: 通話設定(シンプル通話)「夜間の電話連絡」" in page
    assert _accounts()[0].twiml_bin_url


def test_a_recipient_keeps_a_phone_number(client: FlaskClient, logged_in: AuthActions) -> None:
    user = make_recipient()
    make_sms_setting(make_twilio_account(), [user], name="夜間SMS")
    page = _text(client.post(f"/admin/users/{user.id}/edit", data={"login": user.login, "phone": ""}))
    assert "次の設定の宛先になっているため、電話番号を空にできません: SMS 通知設定「夜間SMS」" in page
    db.session.expire_all()
    assert db.session.get(User, user.id).phone == "+819001230001"  # type: ignore[union-attr]


def test_an_edit_that_changes_nothing_is_not_recorded(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    data = {"name": account.name, "account_sid": account.account_sid, "twiml_bin_url": account.twiml_bin_url, "submit": "y"}
    page = _text(client.post(f"/admin/twilio/accounts/{account.id}/edit", data=data))
    assert "変更された項目がありません。" in page
    assert db.session.scalar(select(PendingChange)) is None

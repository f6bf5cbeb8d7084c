"""SMS 通知設定: a number, an alphanumeric sender ID or a Messaging Service as the sender."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.conftest import AuthActions
from tests.factories import make_recipient, make_sms_setting, make_twilio_account
from tests.fake_twilio import FakeNumber
from xmonbridge.extensions import db
from xmonbridge.models import PendingChange, SmsSetting

URL = "/admin/twilio/sms-settings/"
NEW = URL + "new"
SERVICE = "MG" + "0123456789abcdef" * 2
NO_NUMBER = "この Twilio アカウントには SMS を送信できる電話番号がありません。"


def _data(account: Any, users: list[Any], **overrides: str) -> dict[str, str]:
    data = {
        "name": "携帯への SMS",
        "account_id": str(account.id),
        "sender_kind": "number",
        "from_number": "+815012340001",
        "message_template": "fault",
        "custom_message": "",
    }
    data.update({f"recipients-{i}": str(u.id) for i, u in enumerate(users)})
    data.update(overrides)
    return data


def _settings() -> list[SmsSetting]:
    db.session.expire_all()
    return list(db.session.scalars(select(SmsSetting)))


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _pending() -> int:
    return db.session.scalar(select(func.count()).select_from(PendingChange)) or 0


@pytest.mark.parametrize(
    "kind,field,value,stored",
    [
        ("alphanumeric", "alphanumeric_sender", "XMON", "XMON"),
        ("alphanumeric", "alphanumeric_sender", "X MON 24", "X MON 24"),
        ("service", "messaging_service_sid", SERVICE, SERVICE),
        ("service", "messaging_service_sid", SERVICE.upper().replace("MG", "MG", 1), SERVICE),
    ],
)
def test_each_sender_kind_is_saved(
    client: FlaskClient, logged_in: AuthActions, kind: str, field: str, value: str, stored: str
) -> None:
    account = make_twilio_account()
    user = make_recipient()
    response = client.post(NEW, data={**_data(account, [user], sender_kind=kind, from_number="", **{field: value}), "submit_approve": "y"})
    assert response.status_code == 302, _text(response)
    [setting] = _settings()
    assert setting.from_number == stored
    show = _text(client.get(response.headers["Location"]))
    label = "英数字の送信者 ID" if kind == "alphanumeric" else "Messaging Service SID"
    assert f"{label}: {stored}" in show
    # 編集 shows the same kind and value again.
    edit = _text(client.get(f"{URL}{setting.id}/edit"))
    assert re.search(rf'<input[^>]*checked[^>]*value="{kind}"|<input[^>]*value="{kind}"[^>]*checked', edit)
    assert f'value="{stored}"' in edit


@pytest.mark.parametrize(
    "kind,field,value,message",
    [
        ("alphanumeric", "alphanumeric_sender", "", "英数字の送信者 ID は半角英数字と空白で 11 文字以内"),
        ("alphanumeric", "alphanumeric_sender", "XMONBRIDGE12", "英数字の送信者 ID は半角英数字と空白で 11 文字以内"),
        ("alphanumeric", "alphanumeric_sender", "12345", "英字を 1 文字以上含めて"),
        ("alphanumeric", "alphanumeric_sender", "エックスモン", "英数字の送信者 ID は半角英数字"),
        ("alphanumeric", "alphanumeric_sender", "X-MON", "英数字の送信者 ID は半角英数字"),
        ("service", "messaging_service_sid", "", "Messaging Service SID は「MG」と32桁の16進数で入力してください。"),
        ("service", "messaging_service_sid", "MG123", "Messaging Service SID は「MG」と32桁の16進数で入力してください。"),
        ("service", "messaging_service_sid", "PN" + "0" * 32, "Messaging Service SID は「MG」と32桁の16進数で入力してください。"),
        ("bogus", "alphanumeric_sender", "XMON", "送信元の種類を選択してください。"),
    ],
)
def test_a_bad_sender_is_refused_beside_its_field_and_nothing_saved(
    client: FlaskClient, logged_in: AuthActions, kind: str, field: str, value: str, message: str
) -> None:
    account = make_twilio_account()
    user = make_recipient()
    response = client.post(NEW, data={**_data(account, [user], sender_kind=kind, **{field: value}), "submit_approve": "y"})
    assert response.status_code == 200
    assert message in _text(response)
    assert _settings() == [] and _pending() == 0


def test_a_number_sender_still_works_and_is_checked_against_the_list(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    user = make_recipient()
    refused = client.post(NEW, data={**_data(account, [user], from_number="+819999999999"), "submit_approve": "y"})
    assert "Twilio 電話番号(From)を一覧から選択してください" in _text(refused)
    response = client.post(NEW, data={**_data(account, [user]), "submit_approve": "y"})
    assert response.status_code == 302
    assert _settings()[0].from_number == "+815012340001"
    assert "送信元(From)" in _text(client.get(response.headers["Location"]))


def test_the_approval_diff_names_the_sender(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    user = make_recipient()
    client.post(NEW, data={**_data(account, [user], sender_kind="alphanumeric", alphanumeric_sender="XMON"), "submit": "y"})
    page = _text(client.get("/admin/twilio/approvals/"))
    assert "送信元(From)" in page and "英数字の送信者 ID: XMON" in page


@pytest.mark.parametrize(
    "kind,field,value,form_key",
    [("alphanumeric", "alphanumeric_sender", "XMON", "From"), ("service", "messaging_service_sid", SERVICE, "MessagingServiceSid")],
)
def test_the_send_test_uses_the_sender(
    live_logged_in: FlaskClient, fake_twilio: Any, kind: str, field: str, value: str, form_key: str
) -> None:
    account = make_twilio_account()
    user = make_recipient()
    data = _data(account, [user], sender_kind=kind, **{field: value})
    page = _text(live_logged_in.post(NEW, data={**data, "test_to": str(user.id), "run_test": "y"}))
    assert "送信テストの SMS を" in page
    [request] = fake_twilio.requests_for("CreateMessage")
    assert request.form[form_key] == value
    other = "MessagingServiceSid" if form_key == "From" else "From"
    assert other not in request.form


def test_the_dispatcher_sends_from_a_messaging_service(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    from tests.dispatch_helpers import FakeClock, queue
    from xmonbridge.dispatch.engine import Dispatcher

    account = make_twilio_account(cps=100)
    setting = make_sms_setting(account, [make_recipient()], from_number=SERVICE)
    clock = FakeClock()
    queue(setting, at=clock.now())
    Dispatcher(holder="t", clock=clock).run_once()
    [request] = fake_twilio.requests_for("CreateMessage")
    assert request.form["MessagingServiceSid"] == SERVICE and "From" not in request.form


def test_an_account_without_sms_numbers_says_so_and_what_to_use(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    fake_twilio.phone_numbers["*"] = [FakeNumber("+815012340002", voice=True, sms=False)]
    account = make_twilio_account()
    make_recipient()
    page = _text(live_logged_in.get(NEW))
    assert "未取得です" not in page
    assert NO_NUMBER in page
    assert "「英数字の送信者 ID」か「Messaging Service SID」を選んでください" in page
    data = json.loads(re.search(r'<script type="application/json" id="account-data">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert data[str(account.id)]["numbers"] == []
    assert "SMS を送信できる番号がありません" in data[str(account.id)]["empty"]


def test_an_account_never_read_does_not_claim_it_has_no_sms_number(client: FlaskClient, logged_in: AuthActions) -> None:
    make_twilio_account()
    page = _text(client.get(NEW))
    assert f'id="no-sms-numbers" role="status" hidden' in page


def test_a_recipient_who_is_not_on_a_mobile_is_warned_about_but_saved(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    mobile = make_recipient()
    landline = make_recipient("office", "事務所", "+81312345678")
    data = _data(account, [mobile, landline])
    page = _text(client.post(NEW, data={**data, "add_recipient": "y"}))
    warnings = re.findall(r"<div[^>]*data-mobile-warning( hidden)?[^>]*>", page)
    assert warnings == [" hidden", "", " hidden"]  # the mobile, the landline, the new blank row
    assert "携帯電話の番号ではありません。SMS が届かない可能性があります。" in page
    assert f'data-mobile="0" value="{landline.id}"' in page or f'value="{landline.id}" data-mobile="0"' in page
    response = client.post(NEW, data={**data, "submit_approve": "y"})
    assert response.status_code == 302

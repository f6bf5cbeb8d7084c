"""SMS 通知設定 (R10): the form, approval, segments and 送信テスト."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from xmonbridge.extensions import db
from xmonbridge.messages import sms_segments
from xmonbridge.models import LOG_TEST_SMS, PendingChange, RequestLog, SmsSetting
from tests.conftest import AuthActions
from tests.factories import make_recipient, make_sms_setting, make_twilio_account

URL = "/admin/twilio/sms-settings/"
NEW = URL + "new"
JS = Path(__file__).parents[1] / "xmonbridge" / "static" / "js" / "notify_settings.js"


def _data(account: Any, users: list[Any], **overrides: str) -> dict[str, str]:
    data = {
        "name": "○○システム担当者への SMS",
        "account_id": str(account.id),
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


def _pending() -> int:
    query = select(func.count()).select_from(PendingChange).where(PendingChange.kind == "sms_setting")
    return db.session.scalar(query) or 0


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def _segments(page: str) -> str:
    return re.search(r"<strong data-segments>(\d+)</strong>", page).group(1)  # type: ignore[union-attr]


def _test_result(page: str) -> str:
    match = re.search(r'id="test-result"[^>]*>(.*?)</div>', page, re.S)
    return match.group(1) if match else ""


def test_create_and_approve_and_show(client: FlaskClient, logged_in: AuthActions) -> None:
    # Every approved account is offered, with or without a TwiML Bin URL.
    account = make_twilio_account(twiml_bin_url=None)
    users = [make_recipient(), make_recipient("suzuki", "鈴木 花子", "+819001230002")]
    page = _text(client.get(NEW))
    assert f'<option selected value="{account.id}">運用チームアカウント</option>' in page
    assert "送信テスト" in page and "送信テストの実行" in page and "送信テストの使用には SMS 送信料が発生します。" in page
    assert 'id="twiml_bin_url"' not in page and 'id="ring_seconds"' not in page

    response = client.post(NEW, data={**_data(account, users), "submit_approve": "y"})
    [setting] = _settings()
    assert response.headers["Location"] == f"{URL}{setting.id}"
    assert [r.user_id for r in setting.recipients] == [u.id for u in users]
    show = _text(client.get(response.headers["Location"]))
    assert "+81-90-0123-0001(佐藤 翔太)\n+81-90-0123-0002(鈴木 花子)" in show
    assert "[X-MON 障害] ホスト web-server01 のサービス HTTP" in show
    assert "○○システム担当者への SMS" in _text(client.get(URL))


def test_create_waits_for_approval(client: FlaskClient, logged_in: AuthActions) -> None:
    account, user = make_twilio_account(), make_recipient()
    client.post(NEW, data={**_data(account, [user]), "submit": "y"})
    assert _settings() == [] and _pending() == 1
    assert "SMS 通知設定「○○システム担当者への SMS」の作成" in _text(client.get("/admin/twilio/approvals/"))


@pytest.mark.parametrize("length,accepted", [(64, True), (65, False)])
def test_the_custom_text_is_limited_to_64_characters(
    client: FlaskClient, logged_in: AuthActions, length: int, accepted: bool
) -> None:
    account, user = make_twilio_account(), make_recipient()
    text = "障" * length
    data = _data(account, [user], message_template="custom", custom_message=text)
    page = _text(client.post(NEW, data={**data, "submit_approve": "y"}))
    if accepted:
        [setting] = _settings()
        assert setting.custom_message == text
    else:
        assert "メッセージは 64 文字以内で入力してください(現在 65 文字)。" in page
        assert _settings() == [] and _pending() == 0


def test_an_empty_custom_text_is_refused(client: FlaskClient, logged_in: AuthActions) -> None:
    account, user = make_twilio_account(), make_recipient()
    page = _text(client.post(NEW, data={**_data(account, [user], message_template="custom"), "submit": "y"}))
    assert "「内容を指定する」を選択した場合は、メッセージを入力してください。" in page
    assert _settings() == [] and _pending() == 0


@pytest.mark.parametrize(
    "template,custom,segments",
    [("fault", "", "1"), ("detail", "", "2"), ("custom", "障" * 64, "1"), ("custom", "a" * 64, "1")],
)
def test_the_form_shows_the_segment_count(
    client: FlaskClient, logged_in: AuthActions, template: str, custom: str, segments: str
) -> None:
    account, user = make_twilio_account(), make_recipient()
    data = _data(account, [user], message_template=template, custom_message=custom)
    page = _text(client.post(NEW, data={**data, "refresh_numbers": "y"}))
    assert _segments(page) == segments
    assert "日本語を含むメッセージは 70 文字までが 1 通、それを超えると 67 文字ごとに 1 通" in page
    # Each template option carries its sample's count for the page's script.
    assert re.search(r'<option data-segments="2"[^>]*value="detail">', page)


def test_segments_follow_twilio_ucs2_and_gsm_rules() -> None:
    assert [sms_segments("障" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]
    assert [sms_segments("a" * n) for n in (160, 161)] == [1, 2]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_pages_segment_counter_agrees_with_the_server() -> None:
    texts = ["", "a" * 160, "a" * 161, "障" * 70, "障" * 71, "a{" * 80, "€" * 80, "🚨" * 35, "🚨" * 36, "é" * 170]
    script = (
        f"const m = require({json.dumps(str(JS))});"
        f"console.log(JSON.stringify({json.dumps(texts)}.map(m.smsSegments)))"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True, timeout=30).stdout
    assert json.loads(out) == [sms_segments(t) for t in texts]


def test_a_send_test_reaches_twilio(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    client = live_logged_in
    account, user = make_twilio_account(), make_recipient()
    # Replacements are for speech only: an approved list does not touch SMS text.
    client.post("/admin/twilio/simple-calls/replacements", data={"content": "HTTP,エイチティーティーピー", "submit_approve": "y"})
    data = _data(account, [user])
    page = _text(client.post(NEW, data={**data, "test_to": str(user.id), "run_test": "y"}))
    [message] = fake_twilio.messages()
    body = "[X-MON 障害] ホスト web-server01 のサービス HTTP"
    assert message.form == {"To": "+819001230001", "From": "+815012340001", "Body": body}
    assert f"Message SID: {message.response_body['sid']}" in _test_result(page)
    assert _settings() == [] and _pending() == 0
    [log] = db.session.scalars(select(RequestLog).where(RequestLog.kind == LOG_TEST_SMS)).all()
    assert (log.setting_type, log.setting_name, log.success) == ("sms", data["name"], True)


def test_a_custom_send_test(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    client = live_logged_in
    account, user = make_twilio_account(), make_recipient()
    setting = make_sms_setting(account, [user])
    data = _data(account, [user], name=setting.name, message_template="custom", custom_message="DB サーバ停止")
    client.post(f"{URL}{setting.id}/edit", data={**data, "test_to": str(user.id), "run_test": "y"})
    [message] = fake_twilio.messages()
    assert message.form["Body"] == "DB サーバ停止"
    assert _settings()[0].message_template == "fault"


def test_a_refused_send_test_shows_the_reason(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    client = live_logged_in
    account, user = make_twilio_account(), make_recipient()
    client.get(NEW)
    fake_twilio.fail_next(400, code=21614)
    page = _text(client.post(NEW, data={**_data(account, [user]), "test_to": str(user.id), "run_test": "y"}))
    assert "送信テストに失敗しました。宛先の電話番号は SMS を受信できません" in _test_result(page)
    log = db.session.scalar(select(RequestLog).where(RequestLog.kind == LOG_TEST_SMS))
    assert log is not None and (log.http_status, log.error_code) == (400, 21614)
    assert _settings() == [] and _pending() == 0


def test_a_send_test_with_an_unknown_outcome_is_looked_up(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    client = live_logged_in
    account, user = make_twilio_account(), make_recipient()
    client.get(NEW)
    fake_twilio.dial_at_once = True
    fake_twilio.stall_next(3, operation="CreateMessage", after_create=True)
    client.application.config["TWILIO_READ_TIMEOUT"] = 0.5
    page = _text(client.post(NEW, data={**_data(account, [user]), "test_to": str(user.id), "run_test": "y"}))
    [sent] = fake_twilio.messages_by_sid
    result = _test_result(page)
    assert f"Message SID: {sent}" in result and "Twilio に問い合わせて確認しました" in result
    assert len(fake_twilio.messages()) == 1 and len(fake_twilio.requests_for("ListMessage")) == 1


def test_only_sms_capable_numbers_are_offered(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    account, user = make_twilio_account(), make_recipient()
    page = _text(live_logged_in.get(NEW))
    select_html = re.search(r'<select[^>]*id="from_number".*?</select>', page, re.S)[0]  # type: ignore[index]
    assert re.findall(r'value="([^"]*)"', select_html) == ["+815012340001"]
    page = _text(live_logged_in.post(NEW, data={**_data(account, [user], from_number="+815012340002"), "submit": "y"}))
    assert "Twilio 電話番号(From)を一覧から選択してください。" in page


def test_simulate_mode_sends_nothing(client: FlaskClient, logged_in: AuthActions, fake_twilio: Any) -> None:
    account, user = make_twilio_account(), make_recipient()
    page = _text(client.post(NEW, data={**_data(account, [user]), "test_to": str(user.id), "run_test": "y"}))
    assert re.search(r"Message SID: SM[0-9a-f]{32}", _test_result(page))
    assert fake_twilio.requests == []
    assert _settings() == [] and _pending() == 0


def test_without_accounts_the_page_points_to_them(client: FlaskClient, logged_in: AuthActions) -> None:
    page = _text(client.get(NEW))
    assert "承認済みの Twilio アカウント情報が必要です" in page and 'id="setting-form"' not in page

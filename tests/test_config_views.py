"""What Twilio アカウント情報, 通話設定(シンプル通話) and SMS 通知設定 share (config_views.py, channels.py)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from wtforms.validators import ValidationError

from xmonbridge.config_views import DeleteForm, check_unique_name, name_taken_reason
from xmonbridge.extensions import db
from xmonbridge.models import SimpleCallSetting, TwilioAccount
from xmonbridge.notify_settings.channels import SIMPLE_CALL, SMS
from xmonbridge.notify_settings.kind import SIMPLE_CALL_KIND
from xmonbridge.twilio_accounts.kind import KIND as ACCOUNT_KIND
from tests.conftest import ADMIN_PASSWORD
from tests.factories import make_recipient, make_simple_call_setting, make_twilio_account, make_user

TEMPLATES = Path(__file__).parents[1] / "xmonbridge" / "templates"


def _text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_names_are_checked_alike_for_every_kind(app: Any) -> None:
    account = make_twilio_account(name="A")
    setting = make_simple_call_setting(account, [make_recipient()], name="B")
    with pytest.raises(ValidationError, match="この名称は既に使われています。"):
        check_unique_name(ACCOUNT_KIND, "A", None)
    with pytest.raises(ValidationError, match="この名称は既に使われています。"):
        check_unique_name(SIMPLE_CALL_KIND, "B", None)
    check_unique_name(ACCOUNT_KIND, "A", account)  # its own name
    check_unique_name(SIMPLE_CALL_KIND, "A", None)  # another kind's name
    assert name_taken_reason("Twilio アカウント情報", TwilioAccount, None, {"name": "A"}) == (
        "名称「A」の Twilio アカウント情報が既に存在するため、適用できません。"
    )
    assert name_taken_reason("通話設定(シンプル通話)", SimpleCallSetting, None, {"name": "B"}) == (
        "名称「B」の通話設定(シンプル通話)が既に存在するため、適用できません。"
    )
    assert name_taken_reason("通話設定(シンプル通話)", SimpleCallSetting, setting, {"name": "B"}) is None
    assert name_taken_reason("通話設定(シンプル通話)", SimpleCallSetting, None, {}) is None


@pytest.mark.parametrize("page", ["/admin/twilio/accounts/{a}", "/admin/twilio/simple-calls/{s}"])
def test_delete_buttons_post_through_the_delete_form(make_app: Any, page: str) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        make_user(login="admin", is_admin=True, is_approver=True)
        setting = make_simple_call_setting(make_twilio_account(), [make_recipient()])
        unused = make_twilio_account(name="未使用")
        url = page.format(a=unused.id, s=setting.id)
        client = app.test_client()
        login = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login)[1]  # type: ignore[index]
        client.post("/login", data={"login": "admin", "password": ADMIN_PASSWORD, "csrf_token": token})

        shown = _text(client.get(url))
        assert f'name="{DeleteForm().approve.name}" value="1"' in shown and ">削除と承認</button>" in shown
        assert client.post(url + "/delete", data={"approve": "1"}).status_code == 400  # no token
        token = re.search(r'name="csrf_token" value="([^"]+)"', shown)[1]  # type: ignore[index]
        done = _text(client.post(url + "/delete", data={"csrf_token": token, "approve": "1"}, follow_redirects=True))
        assert "」を削除し、承認しました。" in done
        db.session.remove()


def test_templates_leave_action_names_and_channel_differences_to_the_views() -> None:
    for path in [*TEMPLATES.glob("notify_settings/*.html"), *TEMPLATES.glob("twilio_accounts/*.html")]:
        source = path.read_text()
        assert "'create':" not in source, path
        assert "channel.blueprint ==" not in source and "channel.form_class" not in source, path


def test_channels_name_what_differs_between_their_pages(client: Any, logged_in: Any) -> None:
    assert (SIMPLE_CALL.test_verb, SMS.test_verb) == ("発信", "送信")
    assert (SIMPLE_CALL.replacements_endpoint, SMS.replacements_endpoint) == ("simple_calls.replacements", None)
    assert (SIMPLE_CALL.bin_url_required, SMS.bin_url_required) == (True, False)
    make_twilio_account()
    assert "1 件だけ発信します。" in _text(client.get("/admin/twilio/simple-calls/new"))
    assert "1 件だけ送信します。" in _text(client.get("/admin/twilio/sms-settings/new"))
    assert "再生メッセージ置き換え設定</a>" not in _text(client.get("/admin/twilio/sms-settings/"))

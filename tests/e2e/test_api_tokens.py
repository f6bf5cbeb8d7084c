"""API トークン and the escalation commands (R11) in a real browser, on a real `xmonbridge serve`.

The administrator creates a token (shown once, copied with its button), opens an SMS 通知設定,
copies the curl command block and the resource.cfg line, and the copied command, run the way
Nagios runs it, hands an alert to the server. After 無効化 the same command is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Dialog, Page, expect
from sqlalchemy import select

from tests import nagios_commands
from tests.e2e.test_notify_settings import flash, log_in, side_menu
from tests.factories import make_recipient, make_sms_setting, make_twilio_account, set_xmon_url
from tests.real_server import RealServer
from xmonbridge.extensions import db
from xmonbridge.models import AlertRecord, SmsSetting

ADMIN_PASSWORD = "token-admin-pass-1"
SETTING_NAME = "○○システム担当者への SMS 連絡"
TOKEN_NAME = "X-MON 本番"
TOKEN = re.compile(r"^xmb_[A-Za-z0-9_-]{43}$")
SERVICE_PROBLEM = {
    "NOTIFICATIONTYPE": "PROBLEM",
    "HOSTNAME": "web-server01",
    "HOSTADDRESS": "192.0.2.10",
    "SERVICEDESC": "HTTP",
    "SERVICESTATE": "CRITICAL",
    "SERVICEOUTPUT": "Connection refused",
    "SERVICEPROBLEMID": "41",
    "LASTSERVICEPROBLEMID": "40",
    "TIMET": "1795900000",
}


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """A simulate-mode server whose X-MON URL is its own address, with an SMS 通知設定."""
    server = RealServer(tmp_path_factory.mktemp("api-tokens"), mode="simulate")
    server.cli("create-user", "admin", "--password", ADMIN_PASSWORD, "--admin", "--approver")
    with server.app_context():
        set_xmon_url(server.base)
        make_sms_setting(make_twilio_account(), [make_recipient()], name=SETTING_NAME)
    server.start(workers=1)
    try:
        yield server
    finally:
        server.stop()


def copied(page: Page, button_name: str) -> str:
    """Press a copy button and read what reached the clipboard."""
    page.get_by_role("button", name=button_name, exact=True).click()
    expect(page.get_by_role("button", name=button_name, exact=True)).to_have_text("コピーしました")
    return str(page.evaluate("navigator.clipboard.readText()"))


def alerts(server: RealServer) -> list[tuple[str, str, str]]:
    with server.app_context():
        return [(a.host, a.service, a.token_name) for a in db.session.scalars(select(AlertRecord).order_by(AlertRecord.id))]


def test_token_and_command_block_copied_and_used(page: Page, token_server: RealServer, shot: Any) -> None:
    server = token_server
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    log_in(page, server.base, "admin", ADMIN_PASSWORD)

    # 管理者メニュー → API トークン → 新規作成.
    side_menu(page).get_by_role("link", name="API トークン", exact=True).click()
    expect(page.get_by_role("heading", name="API トークン", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="API トークンはありません。「新規作成」から作成してください。")).to_be_visible()
    page.get_by_role("link", name="新規作成").click()
    page.get_by_role("button", name="作成", exact=True).click()
    expect(page.get_by_text("このフィールドは必須です。")).to_be_visible()
    page.get_by_label("名称", exact=True).fill(TOKEN_NAME)
    page.get_by_role("button", name="作成", exact=True).click()

    expect(page.get_by_role("heading", name="API トークンを作成しました")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("一度だけ表示され")
    token = page.get_by_label("API トークン", exact=True).inner_text().strip()
    assert TOKEN.match(token), token
    assert copied(page, "API トークンをコピー") == token
    assert copied(page, "resource.cfg に追加する行をコピー") == f"$USER9$={token}"
    shot(page, "api_token_created")

    page.get_by_role("link", name="一覧へ戻る").click()
    row = page.get_by_role("row").filter(has_text=TOKEN_NAME)
    expect(row).to_contain_text(token[:12] + "…")
    expect(row).to_contain_text("admin")
    expect(row).to_contain_text("未使用")
    expect(row).to_contain_text("有効")
    assert token not in page.content()

    # The setting's detail page: the command blocks, copied.
    with server.app_context():
        setting_id = db.session.scalars(select(SmsSetting)).one().id
    page.goto(f"{server.base}/admin/twilio/sms-settings/{setting_id}")
    section = page.get_by_role("region", name="エスカレーション設定用コマンド")
    expect(section).to_contain_text("$USER9$=<API トークン>")
    expect(section.get_by_role("link", name="API トークン")).to_have_attribute("href", "/admin/api-tokens/")
    block = section.get_by_label("curl を使う場合のサービス通知用コマンド", exact=True)
    expect(block).to_contain_text(f"command_name    xmonbridge-sms-{setting_id}-service")
    expect(block).to_contain_text(f"{server.base}/api/v1/alerts")
    block.scroll_into_view_if_needed()
    shot(page, "sms_setting_commands")
    text = copied(page, "curl を使う場合のサービス通知用コマンドをコピー")
    assert text == block.inner_text()
    assert text.startswith("# xmonbridge: ") and "define command {" in text and token not in text
    assert copied(page, "resource.cfg に追加する行をコピー") == "$USER9$=<API トークン>"

    # Nagios runs the copied block: the alert arrives, and the token shows its last use.
    result = nagios_commands.run(text, {**SERVICE_PROBLEM, "USER9": token})
    assert result.returncode == 0, result.stderr
    assert alerts(server) == [("web-server01", "HTTP", TOKEN_NAME)]
    page.goto(f"{server.base}/admin/api-tokens/")
    expect(page.get_by_role("row").filter(has_text=TOKEN_NAME)).not_to_contain_text("未使用")

    # 無効化, confirmed in the browser's dialog: the same command is refused from now on.
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("row").filter(has_text=TOKEN_NAME).get_by_role("button", name="無効化").click()
    expect(flash(page)).to_have_text(f"API トークン「{TOKEN_NAME}」を無効化しました。このトークンによる通知は受け付けられません。")
    assert messages and TOKEN_NAME in messages[0]
    row = page.get_by_role("row").filter(has_text=TOKEN_NAME)
    expect(row).to_contain_text("無効化済み")
    expect(row.get_by_role("button", name="無効化")).to_have_count(0)
    shot(page, "api_token_revoked")
    refused = nagios_commands.run(text, {**SERVICE_PROBLEM, "SERVICEPROBLEMID": "42", "USER9": token})
    assert refused.returncode == 22 and "401" in refused.stderr
    assert len(alerts(server)) == 1


def test_a_dismissed_confirmation_revokes_nothing(page: Page, token_server: RealServer) -> None:
    log_in(page, token_server.base, "admin", ADMIN_PASSWORD)
    page.goto(f"{token_server.base}/admin/api-tokens/new")
    page.get_by_label("名称", exact=True).fill("予備")
    page.get_by_role("button", name="作成", exact=True).click()
    # The form page has a 一覧へ戻る link too: wait for the answer to the POST before following it.
    expect(page.get_by_role("heading", name="API トークンを作成しました")).to_be_visible()
    page.get_by_role("link", name="一覧へ戻る").click()
    # The confirmation is the page script's: wait until the list has loaded (scripts included).
    page.wait_for_url(f"{token_server.base}/admin/api-tokens/", wait_until="load")
    dismissed: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dismissed.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    row = page.get_by_role("row").filter(has_text="予備")
    row.get_by_role("button", name="無効化").click()
    assert dismissed and "予備" in dismissed[0]
    # Nothing was posted: the list read again still shows the token as valid.
    page.reload()
    expect(row).to_contain_text("有効")
    expect(row).not_to_contain_text("無効化済み")
    expect(row.get_by_role("button", name="無効化")).to_be_visible()

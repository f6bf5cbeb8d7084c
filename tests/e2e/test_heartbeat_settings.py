"""ハートビート通知 in a real browser: whom the heartbeat texts, 「テスト送信」 and 「設定を反映」.

A live-mode server of its own (against the fake Twilio), so the account and SMS setting
made here are seen by no other test. Every field is found by its label.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import running_server
from tests.e2e.test_notify_settings import (
    FROM_VOICE_SMS,
    SATO,
    SATO_E164,
    add_account,
    fill_setting,
    flash,
    log_in,
    open_twilio,
    side_menu,
)
from tests.fake_twilio import FakeTwilio

Shot = Callable[[Page, str], Path]
SMS_NAME = "ハートビート用 SMS"
USER = "通知先ユーザ"
SETTING = "送信に使う SMS 通知設定"
DISPATCHER = "配信処理が止まってから通知するまでの時間(分)"
TWILIO = "Twilio が要求を拒否し続けてから通知するまでの時間(分)"


@pytest.fixture(scope="module")
def heartbeat_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_twilio_server: FakeTwilio) -> Iterator[str]:
    """The app in live mode against the fake Twilio, with the manual's notification targets."""
    api_base = fake_twilio_server.base_url
    with running_server(request, tmp_path_factory, "heartbeat", mode="live", api_base=api_base, phone_users=True) as base:
        yield base


def open_heartbeat(page: Page) -> None:
    """管理者メニュー → その他設定 → ハートビート通知."""
    side_menu(page).get_by_role("link", name="ハートビート通知").click()
    expect(page.get_by_role("heading", name="ハートビート通知", exact=True)).to_be_visible()


def test_choose_send_a_test_and_apply(
    page: Page, heartbeat_server: str, credentials: dict[str, str], fake_twilio: FakeTwilio, shot: Shot
) -> None:
    log_in(page, heartbeat_server, "admin", credentials["admin"])
    open_heartbeat(page)
    # Off by default, with the default thresholds; no SMS setting exists yet.
    expect(page.get_by_label(USER, exact=True).locator("option:checked")).to_have_text("通知しない")
    expect(page.get_by_label(DISPATCHER, exact=True)).to_have_value("10")
    expect(page.get_by_label(TWILIO, exact=True)).to_have_value("30")
    expect(page.locator("#sms_setting_id-help")).to_contain_text("SMS 通知設定がありません。")
    shot(page, "heartbeat_off")

    # An SMS setting to text through (§4, §6).
    add_account(
        page, "運用チームアカウント", "AC" + secrets.token_hex(16), secrets.token_hex(16),
        "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16),
    )
    open_twilio(page, "SMS 通知設定")
    page.get_by_role("link", name="新規作成").click()
    fill_setting(page, SMS_NAME, FROM_VOICE_SMS, [SATO], "【X-MON】障害です。")
    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_have_text(f"SMS 通知設定「{SMS_NAME}」を作成し、承認しました。")

    open_heartbeat(page)
    page.get_by_label(USER, exact=True).select_option(label=SATO)
    page.get_by_label(DISPATCHER, exact=True).fill("0")
    page.get_by_label(TWILIO, exact=True).fill("45")
    page.get_by_role("button", name="設定を反映").click()
    # Refused: no SMS setting chosen, and 0 minutes; what was typed stays.
    expect(page.locator("#sms_setting_id-error")).to_have_text(
        "通知先ユーザを選んだときは、送信に使う SMS 通知設定を選択してください。"
    )
    expect(page.locator("#dispatcher_minutes-error")).to_have_text("1 から 1440 までの整数(分)で入力してください。")
    expect(page.get_by_label(TWILIO, exact=True)).to_have_value("45")
    expect(page.get_by_label(USER, exact=True).locator("option:checked")).to_have_text(SATO)
    shot(page, "heartbeat_refused")

    # 「テスト送信」 texts the chosen user with the unsaved values.
    page.get_by_label(SETTING, exact=True).select_option(label=SMS_NAME)
    page.get_by_label(DISPATCHER, exact=True).fill("15")
    page.get_by_role("button", name="テスト送信").click()
    outcome = page.get_by_role("status")
    expect(outcome).to_contain_text(f"テスト送信の SMS を {SATO} に送信しました。")
    expect(outcome).to_have_text(re.compile(r"Message SID: SM[0-9a-f]{32}"))
    messages = fake_twilio.messages()
    assert len(messages) == 1
    assert messages[0].form["To"] == SATO_E164
    assert messages[0].form["Body"].startswith("【xmonbridge】ハートビート通知のテストです。配信処理が 15 分止まったとき、Twilio が 45 分")
    shot(page, "heartbeat_test_sent")

    # Not saved by the test: a fresh visit shows it off.
    open_heartbeat(page)
    expect(page.get_by_label(USER, exact=True).locator("option:checked")).to_have_text("通知しない")

    page.get_by_label(USER, exact=True).select_option(label=SATO)
    page.get_by_label(SETTING, exact=True).select_option(label=SMS_NAME)
    page.get_by_label(DISPATCHER, exact=True).fill("15")
    page.get_by_label(TWILIO, exact=True).fill("45")
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("ハートビート通知の設定を反映しました。")
    expect(page.get_by_label(USER, exact=True).locator("option:checked")).to_have_text(SATO)
    expect(page.get_by_label(SETTING, exact=True).locator("option:checked")).to_have_text(SMS_NAME)
    expect(page.get_by_label(DISPATCHER, exact=True)).to_have_value("15")
    expect(page.get_by_label(TWILIO, exact=True)).to_have_value("45")
    expect(page.locator("#heartbeat-state")).to_contain_text("通知中の問題はありません")
    shot(page, "heartbeat_applied")
    assert len(fake_twilio.messages()) == 1

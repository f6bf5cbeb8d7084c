"""電話シミュレータ in a real browser on a real `xmonbridge serve` in simulate mode (B4).

The monitor posts alerts to the alert API; the server's dispatcher places the calls and SMS
with the simulator, and the administrator works them on the phones of the page: a 輪番 button
call rings the first user's phone, 応答 shows the greeting and the summary, 1# the fault's
details, 2# rings the second user's phone, whose 3# acknowledges; the monitor (over HTTP)
receives the acknowledgement and インシデント shows it. An SMS setting's text then appears on
each phone. The X-MON URL is a public name with a path prefix this machine cannot reach: the
page hands Twilio's signed requests to the server itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.factories import (
    make_button_call_setting,
    make_recipient,
    make_sms_setting,
    make_twilio_account,
    set_xmon_url,
)
from tests.real_server import RealServer, wait_for
from tests.test_incidents_button import monitor

ADMIN_PASSWORD = "phone-admin-pass-1"
XMON_URL = "https://xmon.example.jp/bridge"
NAMES = ["佐藤 翔太", "鈴木 花子"]
GREETING = "こちらは運用チームです。"
# The dispatcher polls every second and the page every 1.5 s.
RING_TIMEOUT_MS = 15_000


@pytest.fixture
def phone_server(tmp_path: Path) -> Iterator[tuple[RealServer, str, dict[str, int]]]:
    """A simulate-mode server with two phones, a 輪番 button setting and an SMS setting."""
    server = RealServer(tmp_path, mode="simulate")
    server.cli("create-user", "admin", "--password", ADMIN_PASSWORD, "--admin", "--approver")
    with monitor() as ack_url:
        with server.app_context():
            from xmonbridge.extensions import db
            from xmonbridge.models import ACK_HTTP, UserMessageTemplate, XmonSettings

            set_xmon_url(XMON_URL)
            settings = XmonSettings.for_update()
            settings.ack_mode, settings.ack_http_url = ACK_HTTP, ack_url
            users = [make_recipient("sato", NAMES[0], "+819001230001"), make_recipient("suzuki", NAMES[1], "+819001230002")]
            db.session.add(UserMessageTemplate(user_id=users[0].id, opening_message=GREETING, closing_message=""))
            db.session.commit()
            account = make_twilio_account()
            ids = {
                "button": make_button_call_setting(account, users, mode="rotation", name="当番への電話").id,
                "sms": make_sms_setting(account, users, name="当番への SMS", from_number="XMON").id,
            }
        token = server.make_token()
        server.start(workers=1)
        try:
            yield server, token, ids
        finally:
            server.stop()


def _phone(page: Page, name: str) -> Locator:
    return page.locator("section.phone-card").filter(has=page.get_by_role("heading", name=re.compile(name)))


def _press(phone: Locator, keys: str) -> None:
    for key in keys:
        phone.get_by_role("button", name=key, exact=True).click()


def test_a_rotation_and_an_sms_on_the_simulated_phones(page: Page, phone_server: Any, shot: Any) -> None:
    server, token, ids = phone_server
    page.goto(f"{server.base}/login")
    page.get_by_label("ログイン名", exact=True).fill("admin")
    page.get_by_label("パスワード", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="ログイン", exact=True).click()
    page.get_by_role("navigation", name="サイドメニュー").get_by_role("link", name="電話シミュレータ").click()
    expect(page.get_by_role("heading", name="電話シミュレータ", exact=True)).to_be_visible()
    first, second = _phone(page, NAMES[0]), _phone(page, NAMES[1])
    expect(first.locator(".phone-state")).to_have_text("待機中")
    expect(second.locator(".phone-state")).to_have_text("待機中")
    page.get_by_label("音声を再生").check()  # the browser's speech synthesis reads what follows

    status, answer = server.post_alert(
        token,
        {"kind": "button_call", "setting_id": ids["button"], "type": "PROBLEM", "host": "web01", "service": "HTTP",
         "state": "CRITICAL", "output": "Connection refused", "problem_id": "41"},
    )
    assert status == 202, answer
    alert_id = answer["id"]

    # The first user's phone rings (輪番: only theirs).
    expect(first.locator(".phone-state")).to_have_text("着信中", timeout=RING_TIMEOUT_MS)
    expect(first.locator(".phone-caller")).to_contain_text("+81-50-1234-0001 から着信(当番への電話)")
    expect(second.locator(".phone-state")).to_have_text("待機中")
    shot(page, "phone_sim_ringing")

    first.get_by_role("button", name="応答").click()
    lines = first.locator(".phone-lines")
    expect(lines).to_contain_text(f"「Polly.Mizuki: {GREETING}」")
    expect(lines).to_contain_text("「Polly.Mizuki: 障害が1件、復旧が0件あります。」")
    expect(first.locator(".phone-state")).to_have_text("通話中")
    shot(page, "phone_sim_answered")

    _press(first, "1")
    expect(first.get_by_label("押したボタン")).to_have_value("1")
    _press(first, "#")
    expect(lines).to_contain_text("押したボタン: 1#")
    expect(lines).to_contain_text("障害1件目。ホスト web01 のサービス HTTPがCRITICALです。詳細、Connection refused。")
    shot(page, "phone_sim_details")

    _press(first, "2#")
    expect(lines).to_contain_text("次の担当者に通知します。")
    expect(first.locator(".phone-state")).to_have_text("待機中")
    expect(first.locator(".phone-caller")).to_contain_text("通話完了(completed)")
    expect(second.locator(".phone-state")).to_have_text("着信中", timeout=RING_TIMEOUT_MS)
    shot(page, "phone_sim_next_rings")

    second.get_by_role("button", name="応答").click()
    expect(second.locator(".phone-lines")).to_contain_text("障害が1件、復旧が0件あります。")
    _press(second, "3#")
    expect(second.locator(".phone-lines")).to_contain_text("1件の障害を認知済みにしました。以降の担当者には通知しません。")
    expect(first.locator(".phone-state")).to_have_text("待機中")
    expect(second.locator(".phone-state")).to_have_text("待機中")
    shot(page, "phone_sim_acknowledged")

    # インシデント: the call as the state machine recorded it, and the acknowledgement sent.
    page.goto(f"{server.base}/incidents/{alert_id}")
    calls = page.locator("table.button-calls tbody tr")
    expect(calls).to_have_count(2)
    expect(calls.nth(0).locator(".call-keys")).to_have_text("1# 2#")
    expect(calls.nth(0).locator(".call-end")).to_have_text("2# 次のユーザへ")
    expect(calls.nth(1).locator(".call-end")).to_have_text("3# 認知済み")
    ack = page.locator("table.button-acks tbody tr")
    expect(ack).to_have_count(1)
    expect(ack).to_contain_text(NAMES[1])
    # The dispatcher sends it on its next pass: reload until the page says so.
    wait_for(lambda: page.reload() is not None and ack.locator(".ack-state").inner_text() == "送信済み", 15, "the acknowledgement sent")
    shot(page, "phone_sim_incident")

    # An SMS setting: the text appears on each phone.
    status, answer = server.post_alert(
        token,
        {"kind": "sms", "setting_id": ids["sms"], "type": "PROBLEM", "host": "db01", "service": "PGSQL",
         "state": "CRITICAL", "output": "connection limit reached", "problem_id": "42"},
    )
    assert status == 202, answer
    page.get_by_role("navigation", name="サイドメニュー").get_by_role("link", name="電話シミュレータ").click()
    for phone in (first, second):
        message = phone.locator(".phone-messages .phone-message")
        expect(message).to_have_count(1, timeout=RING_TIMEOUT_MS)
        expect(message).to_contain_text("XMON")
        expect(message.locator(".phone-message-body")).to_contain_text("db01")
        expect(message.locator(".phone-message-body")).to_contain_text("PGSQL")
    shot(page, "phone_sim_sms")


def test_live_mode_rehearses_a_rotation_in_the_page_only(page: Page, tmp_path: Path, fake_twilio: Any, shot: Any) -> None:
    """Live mode: nothing rings from the server; a setting's call is played in the page, nothing placed."""
    server = RealServer(tmp_path, mode="live", api_base=fake_twilio.base_url)
    server.cli("create-user", "admin", "--password", ADMIN_PASSWORD, "--admin", "--approver")
    with server.app_context():
        from xmonbridge.extensions import db
        from xmonbridge.models import UserMessageTemplate

        users = [make_recipient("sato", NAMES[0], "+819001230001"), make_recipient("suzuki", NAMES[1], "+819001230002")]
        db.session.add(UserMessageTemplate(user_id=users[0].id, opening_message=GREETING, closing_message="よろしくお願いします。"))
        db.session.commit()
        make_button_call_setting(make_twilio_account(), users, mode="rotation", name="当番への電話")
    server.start(workers=1)
    try:
        page.goto(f"{server.base}/login")
        page.get_by_label("ログイン名", exact=True).fill("admin")
        page.get_by_label("パスワード", exact=True).fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="ログイン", exact=True).click()
        page.goto(f"{server.base}/admin/phone-simulator/")
        first, second = _phone(page, NAMES[0]), _phone(page, NAMES[1])
        expect(first.locator(".phone-state")).to_have_text("待機中")

        page.get_by_label("通話設定(ボタン操作付き)").select_option(label="当番への電話(輪番通知)")
        page.get_by_role("button", name="リハーサル開始").click()
        expect(first.locator(".phone-state")).to_have_text("着信中")
        expect(first.locator(".phone-caller")).to_contain_text("リハーサル: 当番への電話")
        expect(second.locator(".phone-state")).to_have_text("待機中")
        first.get_by_role("button", name="応答").click()
        expect(first.locator(".phone-lines")).to_contain_text(f"「Polly.Mizuki: {GREETING}」")
        _press(first, "1#")
        expect(first.locator(".phone-lines")).to_contain_text("ホスト web-server01 のサービス HTTPがCRITICALです。")
        _press(first, "2#")
        expect(first.locator(".phone-lines")).to_contain_text("次の担当者に通知します。")
        expect(first.locator(".phone-state")).to_have_text("待機中")
        expect(second.locator(".phone-state")).to_have_text("着信中")
        second.get_by_role("button", name="応答").click()
        _press(second, "3#")
        expect(second.locator(".phone-lines")).to_contain_text("テスト通話のため、監視には認知済みを送りません。")
        expect(second.locator(".phone-state")).to_have_text("待機中")
        shot(page, "phone_sim_rehearsal")
        assert not fake_twilio.requests  # nothing was placed
    finally:
        server.stop()

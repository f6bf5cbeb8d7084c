"""インシデント and ログ in a real browser after a scripted handset worked a 輪番 button call.

The call is worked in the server's own database before `xmonbridge serve` starts (the way
tests/test_incidents_button.py does it: intake, the dispatcher on a hand-moved clock against
the fake Twilio, the handset posting signed webhooks): the first user presses 2#, the second
does not answer, is called again, presses 1# and 3#; of the two acknowledgements, a monitor
over HTTP accepts one and refuses the other. Then an administrator opens インシデント
and ログ on the running server and sees each step; a user who is not an administrator sees the
same call with masked numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.real_server import RealServer
from tests.test_button_calls import NAMES, World
from tests.test_incidents_button import ACK_REFUSED, Rotation, work_a_rotation

ADMIN_PASSWORD = "button-admin-pass-1"
VIEWER_PASSWORD = "button-viewer-pass-2"


@pytest.fixture
def worked(tmp_path: Path, fake_twilio: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A live server whose database holds a worked rotation; yields (server, rotation)."""
    server = RealServer(tmp_path, api_base=fake_twilio.base_url)
    server.cli("create-user", "admin", "--password", ADMIN_PASSWORD, "--admin", "--approver")
    server.cli("create-user", "viewer", "--name", "閲覧 花子", "--password", VIEWER_PASSWORD)
    # The app in this process talks to the fake Twilio too, as the server will.
    monkeypatch.setenv("TWILIO_MODE", "live")
    monkeypatch.setenv("TWILIO_API_BASE", fake_twilio.base_url)
    with server.app_context() as app:
        world = World(app, fake_twilio)
        rotation = work_a_rotation(world)
        # Hand the dispatcher lease over at once (the hand-moved clock ran ahead of the server's).
        world.dispatcher.lease.release(world.clock.now())
        from xmonbridge.extensions import db

        db.session.commit()
    server.start(workers=1)
    try:
        yield server, rotation
    finally:
        server.stop()


def _login(page: Page, server: RealServer, login: str, password: str) -> None:
    page.goto(f"{server.base}/login")
    page.get_by_label("ログイン名", exact=True).fill(login)
    page.get_by_label("パスワード", exact=True).fill(password)
    page.get_by_role("button", name="ログイン", exact=True).click()


def test_incidents_and_logs_show_each_step_of_a_worked_rotation(page: Page, worked: Any, shot: Any) -> None:
    server, rotation = worked
    rotation: Rotation
    n = rotation.notification_id
    _login(page, server, "admin", ADMIN_PASSWORD)
    page.get_by_role("navigation", name="サイドメニュー").get_by_role("link", name="インシデント").click()
    expect(page.get_by_role("heading", name="インシデント", exact=True)).to_be_visible()

    # The list: the call's summary once, under the alert that started it; links under the others.
    rows = page.locator("#incidents tbody tr")
    expect(rows).to_have_count(3)
    starter = page.locator(f'tr[data-alert-id="{rotation.web}"]')
    expect(starter).to_contain_text("輪番通知")
    expect(starter).to_contain_text(f"ボタン操作付き通話 #{n}")
    expect(starter).to_contain_text("障害 2 件・復旧 1 件、発信 3 回、認知済みの通知 2 件(送信済み 1・失敗 1)")
    expect(starter).to_contain_text(f"終了: {NAMES[1]} さんが 3# で障害を認知済みにしたため、通知を終了しました。")
    expect(starter).to_contain_text(f"2. {NAMES[1]}: 発信済み(発信 2 回)")
    for alert_id in (rotation.db, rotation.recovery):
        expect(page.locator(f'tr[data-alert-id="{alert_id}"]').get_by_role("link", name=f"ボタン操作付き通話 #{n} に合流")).to_be_visible()
    shot(page, "incidents_button_list")

    # The recovery that joined the call leads to the call's state.
    page.locator(f'tr[data-alert-id="{rotation.recovery}"]').get_by_role("link", name=f"ボタン操作付き通話 #{n} に合流").click()
    expect(page.get_by_role("heading", name="通知の詳細")).to_be_visible()
    card = page.locator(f"#notification-{n}")
    expect(card.get_by_role("heading", name=f"ボタン操作付き通話 #{n}: 通話設定(ボタン操作付き): 当番への電話")).to_be_visible()
    expect(card).to_contain_text("通知設定種別輪番通知")

    alerts = card.locator("table.button-alerts tbody tr")
    expect(alerts).to_have_count(3)
    expect(alerts.nth(2)).to_contain_text("app01")
    expect(alerts.nth(2)).to_contain_text("復旧(RECOVERY)")

    recipients = card.locator("table.button-recipients tbody tr")
    expect(recipients).to_have_count(3)
    expect(recipients.nth(0)).to_contain_text("2# 次のユーザへ")
    expect(recipients.nth(1)).to_contain_text("+81-90-0123-0002")
    expect(recipients.nth(1)).to_contain_text("3# 認知済み")
    expect(recipients.nth(2)).to_contain_text("取り消し")

    calls = card.locator("table.button-calls tbody tr")
    expect(calls).to_have_count(3)
    expect(calls.nth(0).locator(".call-keys")).to_have_text("2#")
    expect(calls.nth(1).locator(".call-answered")).to_have_text("応答なし")
    expect(calls.nth(1).locator(".call-end")).to_have_text("応答なし")
    expect(calls.nth(1).locator(".call-recall")).to_contain_text("再発信しました")
    expect(calls.nth(2)).to_contain_text("2 回目 再発信")
    expect(calls.nth(2).locator(".call-keys")).to_have_text("1# 3#")
    expect(calls.nth(2).locator(".call-end")).to_have_text("3# 認知済み")

    acks = card.locator("table.button-acks tbody tr")
    expect(acks).to_have_count(2)
    expect(acks.nth(0).locator(".ack-state")).to_have_text("送信済み")
    expect(acks.nth(1).locator(".ack-state")).to_have_text("失敗")
    expect(acks.nth(1).locator(".ack-error")).to_have_text(ACK_REFUSED)
    shot(page, "incident_button_detail")

    # ログ: the keys of each ボタン操作 and its signature check.
    page.goto(f"{server.base}/admin/twilio/logs/")
    page.get_by_label("種別", exact=True).select_option(label="ボタン操作(Webhook)")
    page.get_by_role("button", name="検索").click()
    logs = page.locator("#logs tbody tr")
    expect(logs).to_have_count(3)  # 2#, 1#, 3#
    expect(logs.nth(0).locator(".log-digits")).to_have_text("押されたボタン: 3#")
    expect(logs.nth(0).locator(".log-result")).to_have_text("記録: 3# 認知済み(2 件)")
    shot(page, "logs_button_gather")
    logs.nth(0).get_by_role("link", name="詳細").click()
    expect(page.locator("#log-digits")).to_have_text("3#")
    expect(page.locator("#log-callback-check")).to_have_text("一致しました")
    expect(page.locator("#log-callback-result")).to_have_text("3# 認知済み(2 件)")
    shot(page, "log_button_gather_detail")

    page.goto(f"{server.base}/admin/twilio/logs/")
    page.get_by_role("button", name="ログの見方について").click()
    expect(page.locator("#log-help-button")).to_contain_text("押されたボタン")
    # The modal fades in: wait until it is opaque before the screenshot.
    expect(page.locator("#log-help")).to_have_css("opacity", "1")
    page.locator("#log-help-button").scroll_into_view_if_needed()
    shot(page, "log_help_button")
    page.get_by_role("button", name="閉じる").first.click()

    # Someone who is not an administrator sees the same steps, numbers masked.
    page.get_by_role("button", name="ログアウト").click()
    _login(page, server, "viewer", VIEWER_PASSWORD)
    page.goto(f"{server.base}/incidents/{rotation.web}")
    viewer_card = page.locator(f"#notification-{n}")
    expect(viewer_card.locator("table.button-recipients tbody tr").nth(1)).to_contain_text("+81-**-****-0002")
    expect(viewer_card).not_to_contain_text("+81-90-0123-0002")
    expect(viewer_card.locator("table.button-calls tbody tr")).to_have_count(3)
    shot(page, "incident_button_detail_viewer")

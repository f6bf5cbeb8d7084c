"""インシデント in a real browser, on a real `xmonbridge serve` whose dispatcher calls the fake Twilio.

An alert is stored as intake stores it; the server's dispatcher places its calls, Twilio's
status callbacks (signed over the public X-MON URL, posted to 127.0.0.1 as a reverse proxy
would) bring the outcomes, and the administrator opens インシデント, sees the alert with its
attempts, filters, and opens the detail.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from tests.dispatch_helpers import queue
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    make_alert,
    make_recipient,
    make_simple_call_setting,
    make_twilio_account,
    set_xmon_url,
)
from tests.real_server import RealServer, wait_for
from xmonbridge.extensions import db
from xmonbridge.models import DELIVERY_FAILED, DELIVERY_SENT, OUTCOME_PERMANENT, Delivery, SimpleCallSetting

XMON_URL = "https://alerts.example.jp/xmon"
ADMIN_PASSWORD = "incident-admin-pass-1"


@pytest.fixture(scope="module")
def incident_server(tmp_path_factory: pytest.TempPathFactory, fake_twilio_server: Any) -> Iterator[RealServer]:
    """A live-mode server against the fake Twilio, with an administrator and a simple-call setting."""
    server = RealServer(tmp_path_factory.mktemp("incidents"), api_base=fake_twilio_server.base_url)
    server.cli("create-user", "admin", "--password", ADMIN_PASSWORD, "--admin", "--approver")
    with server.app_context():
        set_xmon_url(XMON_URL)
        users = [
            make_recipient("sato", "佐藤 翔太", "+819001230001"),
            make_recipient("suzuki", "鈴木 花子", "+819001230002"),
        ]
        make_simple_call_setting(make_twilio_account(cps=50), users, name="サーバー担当")
    server.start(workers=1)
    try:
        yield server
    finally:
        server.stop()


def _post_callback(server: RealServer, callback_url: str, params: dict[str, str]) -> int:
    """What Twilio does: sign the URL it was given, POST to it (here: through to 127.0.0.1)."""
    signature = RequestValidator(AUTH_TOKEN).compute_signature(callback_url, params)
    request = urllib.request.Request(
        server.base + callback_url.removeprefix(XMON_URL),
        data=urlencode(params).encode(),
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_incidents_show_an_alert_with_its_attempts(
    page: Page, incident_server: RealServer, fake_twilio: Any, shot: Any
) -> None:
    server = incident_server
    with server.app_context():
        setting = db.session.scalars(select(SimpleCallSetting)).one()
        # An older alert whose two recipients both failed (numbers refused by Twilio).
        make_alert(
            setting,
            host="db-server01",
            service="MySQL",
            deliveries=[
                {
                    "user_name": "佐藤 翔太",
                    "to_number": "+819001230001",
                    "status": DELIVERY_FAILED,
                    "error": "宛先の電話番号が正しくありません。",
                    "attempts": [{"outcome": OUTCOME_PERMANENT, "error_code": 21211}],
                },
                {
                    "user_name": "鈴木 花子",
                    "to_number": "+819001230002",
                    "status": DELIVERY_FAILED,
                    "error": "宛先の電話番号が正しくありません。",
                    "attempts": [{"outcome": OUTCOME_PERMANENT, "error_code": 21211}],
                },
            ],
        )
        notification_id = queue(setting, "ホスト web-server01 のサービス HTTP で障害が発生しました。").id

    # The server's dispatcher places both calls.
    wait_for(lambda: len(fake_twilio.requests_for("CreateCall")) == 2, 15, "two calls at the fake Twilio")

    sids: dict[str, str] = {}

    def both_sent() -> bool:
        with server.app_context():
            rows = db.session.scalars(select(Delivery).where(Delivery.notification_id == notification_id)).all()
            sids.update({row.to_number: row.sid for row in rows})
            return all(row.status == DELIVERY_SENT for row in rows)

    wait_for(both_sent, 15, "both deliveries sent")
    outcomes = {"+819001230001": ("completed", "31"), "+819001230002": ("no-answer", "0")}
    for created in fake_twilio.requests_for("CreateCall"):
        to = created.form["To"]
        sid = sids[to]
        status, duration = outcomes[to]
        params = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "CallStatus": status, "CallDuration": duration}
        # Out of order and twice: ringing after the final status changes nothing.
        assert _post_callback(server, created.form["StatusCallback"], params) == 204
        assert _post_callback(server, created.form["StatusCallback"], dict(params, CallStatus="ringing")) == 204

    # Log in and open インシデント from the side menu.
    page.goto(f"{server.base}/login")
    page.get_by_label("ログイン名", exact=True).fill("admin")
    page.get_by_label("パスワード", exact=True).fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="ログイン", exact=True).click()
    page.get_by_role("navigation", name="サイドメニュー").get_by_role("link", name="インシデント").click()
    expect(page.get_by_role("heading", name="インシデント", exact=True)).to_be_visible()

    rows = page.locator("#incidents tbody tr")
    expect(rows).to_have_count(2)
    newest, older = rows.nth(0), rows.nth(1)
    expect(newest).to_contain_text("web-server01")
    expect(newest).to_contain_text("2 名中 1 名に発信済み、1 名失敗")  # no-answer counts as not reached
    expect(newest).to_contain_text("佐藤 翔太: 発信済み・通話完了(completed)")
    expect(newest).to_contain_text("鈴木 花子: 発信済み・応答なし(no-answer)")
    expect(older).to_contain_text("db-server01")
    expect(older).to_contain_text("全員失敗")
    expect(older).to_have_class("table-danger")
    shot(page, "incidents_list")

    # Filter by host: only the database alert stays.
    page.get_by_label("ホスト", exact=True).fill("db-server")
    page.get_by_role("button", name="検索").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("db-server01")
    expect(page.get_by_label("ホスト", exact=True)).to_have_value("db-server")
    page.get_by_role("link", name="条件をクリア").click()
    expect(rows).to_have_count(2)

    # Filter by setting, then open the detail of the web-server alert.
    page.get_by_label("設定", exact=True).select_option(label="通話設定(シンプル通話): サーバー担当")
    page.get_by_role("button", name="検索").click()
    expect(rows).to_have_count(2)
    newest.get_by_role("link", name="詳細").click()
    expect(page.get_by_role("heading", name="通知の詳細")).to_be_visible()
    detail = page.locator("main")
    expect(detail).to_contain_text("障害(PROBLEM)")
    expect(detail).to_contain_text("+81-90-0123-0001")
    for to, (status, _) in outcomes.items():
        attempt = page.locator(".attempts tbody tr", has_text=sids[to])
        expect(attempt).to_contain_text("発信済み")
        expect(attempt).to_contain_text(f"({status})")
    expect(page.locator(".attempts tbody tr", has_text=sids["+819001230001"])).to_contain_text("31 秒")
    shot(page, "incident_detail")

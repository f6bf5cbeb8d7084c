"""Who may change where approved notifications go, walked in a real browser (manual §3).

An approver sets up an SMS 通知設定 for 佐藤; an administrator without 承認権限 then cannot
change 佐藤's number, an approver can, and 「電話番号の変更履歴」 shows the change, masked.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import running_server
from tests.e2e.test_notify_settings import SATO, add_account, fill_setting, flash, log_in, open_twilio, side_menu

Shot = Callable[[Page, str], Path]
SIM_FROM = "+81-50-1234-0001(シミュレーション番号 1(音声・SMS))"


@pytest.fixture(scope="module")
def phone_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An app in simulate mode with the notification targets 佐藤 and 鈴木."""
    with running_server(request, tmp_path_factory, "phones", phone_users=True) as base:
        yield base


def edit_phone(page: Page, login: str, number: str) -> None:
    """ユーザ管理 → 詳細表示 → 編集: type a new 連絡先電話番号 and save."""
    side_menu(page).get_by_role("link", name="ユーザ管理").click()
    page.get_by_role("row").filter(has_text=login).get_by_role("link", name="詳細表示").click()
    page.get_by_role("link", name="編集", exact=True).click()
    page.get_by_label("連絡先電話番号(Twilio API連携)", exact=True).fill(number)
    page.get_by_role("button", name="編集", exact=True).click()


def test_only_approvers_move_a_recipients_number(
    page: Page, phone_server: str, credentials: dict[str, str], shot: Shot
) -> None:
    log_in(page, phone_server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="X-MON 設定").click()
    page.get_by_label("X-MON URL", exact=True).fill("https://xmon.example.com")
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("X-MON 設定を反映しました。")
    add_account(
        page, "運用チームアカウント", "AC" + secrets.token_hex(16), secrets.token_hex(16),
        "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16),
    )
    open_twilio(page, "SMS 通知設定")
    page.get_by_role("link", name="新規作成").click()
    fill_setting(page, "夜間連絡", SIM_FROM, [SATO], "サーバ障害です。")
    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_have_text("SMS 通知設定「夜間連絡」を作成し、承認しました。")
    page.get_by_role("button", name="ログアウト").click()

    # An administrator without 承認権限 is refused, with the reason under the field.
    log_in(page, phone_server, "operator", credentials["operator"])
    edit_phone(page, "sato", "+81-90-9999-0009")
    field = page.get_by_label("連絡先電話番号(Twilio API連携)", exact=True)
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("電話番号の変更は承認権限を持つユーザのみが行えます: SMS 通知設定「夜間連絡」")).to_be_visible()
    shot(page, "phone_change_refused")
    page.get_by_role("button", name="ログアウト").click()

    # An approver may; the change is in the audit list, masked.
    log_in(page, phone_server, "admin", credentials["admin"])
    edit_phone(page, "sato", "+81-90-9999-0009")
    expect(flash(page)).to_have_text("ユーザ「sato」を編集しました。")
    expect(page.locator("#user-phone")).to_have_text("+81-90-9999-0009")
    side_menu(page).get_by_role("link", name="ユーザ管理").click()
    page.get_by_role("link", name="電話番号の変更履歴").click()
    expect(page.get_by_role("heading", name="電話番号の変更履歴")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="sato").first
    expect(row).to_contain_text("+81-**-****-0001")
    expect(row).to_contain_text("+81-**-****-0009")
    expect(row).to_contain_text("admin")
    assert "9999-0009" not in page.locator("#phone-changes").inner_text()
    shot(page, "phone_changes")

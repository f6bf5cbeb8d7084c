"""An administrator adds a 通話設定(ボタン操作付き) (manual §5.2.1) in a browser, by the manual's labels.

A live-mode server of its own (against the fake Twilio) with three notification targets, so
that the 輪番 order can be chosen among three rows.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import _SERVER_LOGS, _run_cli, _server_env, running_server
from tests.e2e.test_notify_settings import (
    FROM_VOICE_ONLY,
    FROM_VOICE_SMS,
    SATO,
    SUZUKI,
    Shot,
    add_account,
    chosen,
    flash,
    log_in,
    open_twilio,
    side_menu,
    twilio_tab,
)
from tests.fake_twilio import FakeTwilio

TAKAHASHI = "+81-90-0123-0003(高橋 健)"
ACCOUNT_NAME = "ボタン通話用アカウント"
NAME = "△△システム担当者への電話連絡"
VOICEMAIL_WARNING = (
    "Twilioによる電話通知によって留守番電話が作動すると、電話通知が止まらなくなります。"
    "留守番電話が作動しないように電話機の設定を行って頂くか、「呼び出しを行い続ける秒数」項目の値を"
    "留守番電話が作動する時間より短い時間に指定してください。"
)


@pytest.fixture(scope="module")
def button_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_twilio_server: FakeTwilio
) -> Iterator[str]:
    """The app in live mode against the fake Twilio; the manual's two users and a third."""
    api_base = fake_twilio_server.base_url
    with running_server(request, tmp_path_factory, "button-calls", mode="live", api_base=api_base, phone_users=True) as base:
        instance = request.config.stash[_SERVER_LOGS]["button-calls"].parent / "instance"
        env = _server_env(instance, "live", api_base)
        _run_cli(["create-user", "takahashi", "--name", "高橋 健", "--phone", "+81-90-0123-0003", "--no-login"], env)
        yield base


def test_add_a_rotation_setting_in_the_chosen_order(
    page: Page, button_server: str, credentials: dict[str, str], fake_twilio: FakeTwilio, shot: Shot
) -> None:
    """§5.2.1: 輪番通知 with three users, the third moved up once, then 「作成と承認」."""
    log_in(page, button_server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="X-MON 設定").click()
    page.get_by_label("X-MON URL", exact=True).fill("https://xmon.example.com")
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("X-MON 設定を反映しました。")
    add_account(page, ACCOUNT_NAME, "AC" + secrets.token_hex(16), secrets.token_hex(16), "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16))

    # サイドメニュー → Twilio 連携設定 → 上部メニューの「通話設定(ボタン操作付き)」 → 「新規作成」.
    open_twilio(page, "通話設定(ボタン操作付き)")
    expect(page.get_by_role("heading", name="通話設定(ボタン操作付き)", exact=True)).to_be_visible()
    expect(page.get_by_text("承認済みの通話設定(ボタン操作付き)はありません。")).to_be_visible()
    shot(page, "button_call_list_empty")
    page.get_by_role("link", name="新規作成").click()
    expect(page.get_by_role("heading", name="Twilio 通話設定(ボタン操作付き)の作成")).to_be_visible()
    # The rows' buttons below are the page script's (they also work without it, by reloading).
    page.wait_for_load_state("load")
    expect(page.get_by_text(VOICEMAIL_WARNING)).to_be_visible()
    expect(page.get_by_text("障害及び復旧を一回の通話でまとめて読み上げます。")).to_be_visible()
    expect(page.get_by_role("button", name="テスト通話")).to_have_count(0)

    # 通知設定種別: 一斉通知 by default, with the manual's explanation.
    mode = page.get_by_role("group", name="通知設定種別")
    expect(mode).to_contain_text("輪番通知:登録した宛先の上から順番に電話通知を行う。")
    expect(page.get_by_role("radio", name="一斉通知")).to_be_checked()
    page.get_by_role("radio", name="輪番通知").check()

    page.get_by_label("名称", exact=True).fill(NAME)
    expect(chosen(page.get_by_label("Twilio アカウント情報", exact=True))).to_have_text(ACCOUNT_NAME)
    from_number = page.get_by_label("Twilio 電話番号(From)", exact=True)
    expect(from_number.get_by_role("option")).to_have_text([FROM_VOICE_SMS, FROM_VOICE_ONLY])
    from_number.select_option(label=FROM_VOICE_ONLY)
    for index, recipient in enumerate([SATO, SUZUKI, TAKAHASHI]):
        if index:
            page.get_by_role("button", name="宛先の追加").click()
        label = "宛先の電話番号(To)" + (f" {index + 1}" if index else "")
        page.get_by_label(label, exact=True).select_option(label=recipient)
    expect(page.get_by_label("呼び出しを行い続ける秒数", exact=True)).to_have_value("60")
    expect(page.get_by_label("再発信までの間隔(秒)", exact=True)).to_have_value("60")
    expect(page.get_by_label("1 ユーザあたりの発信回数の上限", exact=True)).to_have_value("0")
    expect(page.get_by_label("留守番電話の検出", exact=True)).not_to_be_checked()
    shot(page, "button_call_form_filled")

    # 「上へ」 on the third row: 高橋 is called second.
    rows = page.locator(".recipient-row")
    expect(rows.first.get_by_role("button", name="上へ")).to_be_disabled()
    expect(rows.last.get_by_role("button", name="下へ")).to_be_disabled()
    rows.nth(2).get_by_role("button", name="上へ").click()
    for index, recipient in enumerate([SATO, TAKAHASHI, SUZUKI]):
        label = "宛先の電話番号(To)" + (f" {index + 1}" if index else "")
        expect(chosen(page.get_by_label(label, exact=True))).to_have_text(recipient)
    # Focus stays on the moved row, whose 「下へ」 is now enabled again.
    expect(rows.nth(1).get_by_role("button", name="上へ")).to_be_focused()
    expect(rows.last.get_by_role("button", name="下へ")).to_be_disabled()
    expect(rows.nth(1).get_by_role("button", name="下へ")).to_be_enabled()
    shot(page, "button_call_form_reordered")

    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_have_text(f"通話設定(ボタン操作付き)「{NAME}」を作成し、承認しました。")
    expect(page.get_by_role("heading", name="通話設定(ボタン操作付き)の詳細")).to_be_visible()
    details = page.locator("#setting-values")
    expect(details).to_contain_text("輪番通知")
    expect(details).to_contain_text("+81-50-1234-0002")
    expect(details).to_contain_text(f"{SATO}\n{TAKAHASHI}\n{SUZUKI}")
    expect(details).to_contain_text("上限なし")
    expect(page.get_by_role("heading", name="エスカレーション設定用コマンド")).to_be_visible()
    expect(page.locator("#escalation-commands")).to_contain_text("kind=button_call")
    shot(page, "button_call_detail")

    twilio_tab(page, "通話設定(ボタン操作付き)").click()
    row = page.get_by_role("row").filter(has_text=NAME)
    expect(row).to_contain_text("輪番通知")
    expect(row).to_contain_text(ACCOUNT_NAME)
    shot(page, "button_call_list")
    # Saving places no call.
    assert fake_twilio.calls() == []

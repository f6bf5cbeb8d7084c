"""An administrator sets a user's messages of button calls (manual §5.2.2) and the button-call
再生メッセージ置き換え設定 (§5.2.3) in a browser, by the manual's labels.

A live-mode server of its own (against the fake Twilio) with the manual's two recipients, so
what this module adds is seen by no other test.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import running_server
from tests.e2e.test_notify_settings import (
    FROM_VOICE_SMS,
    SATO,
    SUZUKI,
    Shot,
    add_account,
    chosen,
    flash,
    log_in,
    open_twilio,
    outcome,
    side_menu,
    twilio_tab,
)
from tests.fake_twilio import FakeTwilio
from tests.real_server import wait_for

ACCOUNT_NAME = "ボタン通話用アカウント"
OPENING = "X-MON からの障害通知です。\nこちらは佐藤さん宛ての通知です。"
CLOSING = "確認後、担当チームへ連絡してください。"
BUTTON_TAB = "通話設定(ボタン操作付き)"
REPLACEMENTS = "CPU,シーピーユー\nHTTP,エイチティーティーピー"


@pytest.fixture(scope="module")
def templates_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_twilio_server: FakeTwilio
) -> Iterator[str]:
    """The app in live mode against the fake Twilio, with the manual's two recipients."""
    api_base = fake_twilio_server.base_url
    with running_server(request, tmp_path_factory, "templates", mode="live", api_base=api_base, phone_users=True) as base:
        yield base


def open_message_templates(page: Page, server: str) -> None:
    """Twilio 連携設定 → 「通話設定(ボタン操作付き)」 → 「メッセージテンプレート」 (§5.2.2).

    Without the 通話設定(ボタン操作付き) screen in this build, the メッセージテンプレート page is opened directly.
    """
    open_twilio(page)
    if twilio_tab(page, BUTTON_TAB).count():
        twilio_tab(page, BUTTON_TAB).click()
        page.get_by_role("link", name="メッセージテンプレート", exact=True).click()
    else:
        page.goto(f"{server}/admin/twilio/button-calls/templates/")
    expect(page.get_by_role("heading", name="メッセージテンプレート", exact=True)).to_be_visible()


def test_messages_of_a_user_and_the_button_replacements(
    page: Page, templates_server: str, fake_twilio: FakeTwilio, credentials: dict[str, str], shot: Shot
) -> None:
    log_in(page, templates_server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="X-MON 設定").click()
    page.get_by_label("X-MON URL", exact=True).fill("https://xmon.example.com")
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("X-MON 設定を反映しました。")
    add_account(page, ACCOUNT_NAME, "AC" + secrets.token_hex(16), secrets.token_hex(16), "")

    # §5.2.2: the list of users → 佐藤 翔太's 「詳細表示」.
    open_message_templates(page, templates_server)
    tabs = page.get_by_role("list", name="通話設定(ボタン操作付き)のメッセージ")
    expect(tabs.get_by_role("link", name="メッセージテンプレート")).to_have_attribute("aria-current", "page")
    rows = page.locator("#templates tbody tr")
    expect(rows).to_have_count(2)
    sato_row = rows.filter(has_text="佐藤 翔太")
    expect(sato_row).to_contain_text("+81-90-0123-0001")
    expect(sato_row).to_contain_text("(未設定)")
    shot(page, "message_templates_list")
    sato_row.get_by_role("link", name="詳細表示").click()
    expect(page.get_by_role("heading", name="メッセージテンプレートの詳細")).to_be_visible()
    expect(page.locator("#opening-message")).to_have_text("(未設定)")
    expect(page.get_by_text("このユーザのメッセージテンプレートは設定されていません。")).to_be_visible()

    # 「編集」: the two messages of table 4, each stating its 4,096-character limit.
    page.get_by_role("link", name="編集", exact=True).click()
    expect(page.get_by_role("heading", name="メッセージテンプレートの編集")).to_be_visible()
    opening = page.get_by_label("着信直後に流すメッセージ", exact=True)
    closing = page.get_by_label("通話終了時に流すメッセージ", exact=True)
    expect(page.get_by_text("通知メッセージの冒頭に流す内容を指定します。4,096 文字以内の任意のメッセージを指定することができます。")).to_be_visible()
    counter = page.locator("#opening_message-count")
    expect(counter).to_have_text("0 / 4,096 文字")
    opening.fill("あ" * 4097)
    expect(counter).to_have_text("4,097 / 4,096 文字")
    expect(counter).to_have_class(re.compile(r"\btext-danger\b"))
    page.get_by_role("button", name="編集と承認").click()
    expect(page.locator("#opening_message-error")).to_have_text(
        "着信直後に流すメッセージは 4,096 文字以内で入力してください(現在 4,097 文字)。"
    )
    expect(flash(page)).to_have_count(0)
    shot(page, "message_template_too_long")

    opening.fill(OPENING)
    closing.fill(CLOSING)
    expect(counter).to_have_text(f"{len(OPENING)} / 4,096 文字")
    expect(counter).not_to_have_class(re.compile(r"\btext-danger\b"))

    # 「テスト通話」: account, From, the user to call, then 「テスト通話の実行」 with the unsaved texts.
    page.get_by_role("button", name="テスト通話", exact=True).click()
    dialog = page.get_by_role("dialog", name="テスト通話")
    expect(dialog).to_be_visible()
    expect(chosen(dialog.get_by_label("Twilio アカウント情報", exact=True))).to_have_text(ACCOUNT_NAME)
    from_list = dialog.get_by_label("Twilio 電話番号(From)", exact=True)
    expect(from_list.get_by_role("option")).to_have_text([FROM_VOICE_SMS, "+81-50-1234-0002(050-1234-0002)"])
    users = dialog.get_by_label("発信先のユーザ", exact=True)
    expect(users.get_by_role("option")).to_have_text([SATO, SUZUKI])
    expect(chosen(users)).to_have_text(SATO)
    expect(dialog).to_contain_text("テスト通話の使用には発信料が発生します。")
    from_list.select_option(label=FROM_VOICE_SMS)
    shot(page, "message_template_test_call_dialog")
    dialog.get_by_role("button", name="テスト通話の実行").click()
    result = outcome(page)
    expect(result).to_contain_text("テスト通話を+81-90-0123-0001に発信します。通話の状況はインシデントで確認できます。")
    expect(opening).to_have_value(OPENING)
    expect(closing).to_have_value(CLOSING)
    shot(page, "message_template_test_call_queued")
    incident = result.get_by_role("link", name="インシデントを表示").get_attribute("href")
    assert incident and re.fullmatch(r"/incidents/\d+", incident)
    # The server's dispatcher places it: a button call to 佐藤 翔太 that fetches its TwiML from the X-MON URL.
    wait_for(lambda: len(fake_twilio.requests_for("CreateCall")) == 1, 15, "the test call at the fake Twilio")
    [call] = fake_twilio.requests_for("CreateCall")
    assert call.form["To"] == "+819001230001" and call.form["From"] == "+815012340001"
    assert call.form["Url"].startswith("https://xmon.example.com/twilio/voice/")

    # 「編集と承認」: the detail now shows both messages.
    page.get_by_role("button", name="編集と承認").click()
    expect(flash(page)).to_have_text("ユーザ「佐藤 翔太」のメッセージテンプレートを作成し、承認しました。")
    expect(page.get_by_role("heading", name="メッセージテンプレートの詳細")).to_be_visible()
    expect(page.locator("#opening-message")).to_have_text(OPENING)
    expect(page.locator("#closing-message")).to_have_text(CLOSING)
    shot(page, "message_template_detail")
    page.get_by_role("link", name="一覧へ戻る").click()
    expect(rows.filter(has_text="佐藤 翔太")).to_contain_text(CLOSING)

    # The test call is an incident of its own.
    page.goto(templates_server + incident)
    expect(page.get_by_text("鈴木 花子")).to_have_count(0)
    expect(page.locator("main")).to_contain_text("佐藤 翔太")
    shot(page, "message_template_test_call_incident")

    # §5.2.3: the 「再生メッセージ置き換え設定」 tab; a bad line is refused with its number.
    open_message_templates(page, templates_server)
    tabs.get_by_role("link", name="再生メッセージ置き換え設定").click()
    expect(page.get_by_role("heading", name="再生メッセージ置き換え設定(通話設定(ボタン操作付き))")).to_be_visible()
    field = page.get_by_label("再生メッセージ置き換え設定", exact=True)
    field.fill("CPU,シーピーユー\nHTTP")
    page.get_by_role("button", name="再生メッセージ置き換え設定", exact=True).click()
    expect(page.locator("#content-error")).to_have_text("2行目: 「単語,読み方」のように半角カンマ 1 つで区切って入力してください。")
    expect(page.locator("#current-replacements")).to_have_text("(未設定)")
    shot(page, "button_replacements_bad_line")

    # 「再生メッセージ置き換え設定」 waits for approval; 承認待ち links back to this tab.
    field.fill(REPLACEMENTS)
    page.get_by_role("button", name="再生メッセージ置き換え設定", exact=True).click()
    expect(flash(page)).to_have_text(
        "再生メッセージ置き換え設定(通話設定(ボタン操作付き))の変更を承認待ちにしました。承認権限を持つユーザの承認後に反映されます。"
    )
    expect(page.locator("#current-replacements")).to_have_text("(未設定)")
    approvals_tab = page.get_by_role("list", name="Twilio 連携設定").get_by_role("link", name=re.compile(r"^承認待ち"))
    approvals_tab.click()
    card = page.locator(".card").filter(has_text="再生メッセージ置き換え設定「通話設定(ボタン操作付き)」の編集")
    expect(card.locator("tr.diff-changed")).to_contain_text("HTTP,エイチティーティーピー")
    shot(page, "button_replacements_pending")
    card.get_by_role("link", name="設定画面を表示").click()
    expect(page.get_by_role("heading", name="再生メッセージ置き換え設定(通話設定(ボタン操作付き))")).to_be_visible()
    expect(page.locator(".pending-change")).to_contain_text("HTTP,エイチティーティーピー")
    approvals_tab.click()
    card.get_by_role("button", name="承認").click()
    expect(flash(page)).to_have_text("再生メッセージ置き換え設定「通話設定(ボタン操作付き)」の編集を承認しました。")
    open_message_templates(page, templates_server)
    tabs.get_by_role("link", name="再生メッセージ置き換え設定").click()
    expect(page.locator("#current-replacements")).to_have_text(REPLACEMENTS)
    expect(page.locator(".pending-change")).to_have_count(0)
    shot(page, "button_replacements_applied")

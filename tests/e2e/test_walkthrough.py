"""A new administrator follows the manual (§2–§4, §5.1.2) in a real browser.

The tests run in file order against one server and build on each other, as the manual's
steps do: log in, see the 事前準備 guidance, set the X-MON URL (§2), add a user with a
phone number (§3), add a Twilio account that waits for approval (§4), then edit it with
「編集と承認」 (§5.1.2). Every locator uses the Japanese labels a user reads.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

Shot = Callable[[Page, str], Path]

BAD_LOGIN = "ログイン名またはパスワードが正しくありません。"
ACCOUNT_NAME = "運用チームアカウント"
ACCOUNT_SID = "AC" + secrets.token_hex(16)
AUTH_TOKEN = secrets.token_hex(16)
BIN_URL = "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16)
BIN_URL_EDITED = "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16)


def side_menu(page: Page) -> Locator:
    """The 管理者メニュー on the left."""
    return page.get_by_role("navigation", name="サイドメニュー")


def twilio_tab(page: Page, name: str) -> Locator:
    """A tab of the top menu inside Twilio 連携設定."""
    return page.get_by_role("list", name="Twilio 連携設定").get_by_role("link", name=name)


def flash(page: Page) -> Locator:
    """The message shown at the top after an action."""
    return page.get_by_role("alert")


def log_in(page: Page, server: str, login: str, password: str) -> None:
    """Log in through the login screen."""
    page.goto(f"{server}/login")
    expect(page.get_by_role("heading", name="ログイン", exact=True)).to_be_visible()
    page.get_by_label("ログイン名", exact=True).fill(login)
    page.get_by_label("パスワード", exact=True).fill(password)
    page.get_by_role("button", name="ログイン", exact=True).click()
    expect(page.get_by_role("button", name="ログアウト")).to_be_visible()


def no_secret(page: Page) -> None:
    """The AUTH TOKEN must never be part of a page, in whatever case."""
    content = page.content().lower()
    assert AUTH_TOKEN not in content, f"AUTH TOKEN leaked into {page.url}"


def test_login(page: Page, server: str, credentials: dict[str, str], shot: Shot) -> None:
    """ログイン: a wrong password is refused in Japanese, the right one opens the admin menu."""
    page.goto(f"{server}/")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.get_by_role("heading", name="ログイン", exact=True)).to_be_visible()
    expect(page.get_by_text("Twilio: シミュレーションモード")).to_be_visible()
    shot(page, "login")

    page.get_by_label("ログイン名", exact=True).fill("admin")
    page.get_by_label("パスワード", exact=True).fill("not-the-password")
    page.get_by_role("button", name="ログイン", exact=True).click()
    expect(page.get_by_text(BAD_LOGIN)).to_be_visible()
    expect(page.get_by_label("ログイン名", exact=True)).to_have_value("admin")
    expect(page.get_by_label("パスワード", exact=True)).to_have_value("")
    expect(page.get_by_role("button", name="ログアウト")).to_have_count(0)
    shot(page, "login_bad_password")

    page.get_by_label("パスワード", exact=True).fill(credentials["admin"])
    page.get_by_role("button", name="ログイン", exact=True).click()
    expect(page.get_by_role("button", name="ログアウト")).to_be_visible()
    menu = side_menu(page)
    for label in ("管理者メニュー", "その他設定", "エスカレーション関連設定"):
        expect(menu).to_contain_text(label)
    for link in ("X-MON 設定", "ユーザ管理", "Twilio 連携設定"):
        expect(menu.get_by_role("link", name=link)).to_be_visible()


def test_twilio_page_asks_for_preparation_first(
    page: Page, server: str, credentials: dict[str, str], shot: Shot
) -> None:
    """§4 before §2/§3: Twilio 連携設定 shows 「Twilio API 連携の事前準備」 with links to both."""
    log_in(page, server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="Twilio 連携設定").click()
    expect(page.get_by_role("heading", name="Twilio 連携設定", exact=True)).to_be_visible()
    guidance = page.locator("#prerequisites")
    expect(guidance.get_by_role("heading", name="Twilio API 連携の事前準備")).to_be_visible()
    expect(guidance.get_by_role("link", name="X-MON 設定")).to_be_visible()
    expect(guidance.get_by_role("link", name="ユーザ管理")).to_be_visible()
    shot(page, "twilio_preparation_guidance")

    guidance.get_by_role("link", name="ユーザ管理").click()
    expect(page.get_by_role("heading", name="ユーザ管理", exact=True)).to_be_visible()
    page.go_back()
    page.locator("#prerequisites").get_by_role("link", name="X-MON 設定").click()
    expect(page.get_by_role("heading", name="X-MON 設定", exact=True)).to_be_visible()


def test_xmon_url_setting(page: Page, server: str, credentials: dict[str, str], shot: Shot) -> None:
    """§2: X-MON 設定 refuses a bad URL next to the field, saves a good one without the slash."""
    log_in(page, server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="X-MON 設定").click()
    expect(page.get_by_role("heading", name="X-MON 設定", exact=True)).to_be_visible()
    url_field = page.get_by_label("X-MON URL", exact=True)
    expect(url_field).to_have_value("")
    expect(page.get_by_label("読み上げ音声", exact=True)).to_have_value("Polly.Mizuki")

    for bad, message in (
        ("ftp://x", "http:// または https:// で始まる URL を入力してください。"),
        ("https://example.com/?q=1", "URL にクエリ(?…)やフラグメント(#…)は含められません。"),
    ):
        url_field.fill(bad)
        page.get_by_role("button", name="設定を反映").click()
        # The message sits right under the field it is about, and the field is marked invalid.
        error = page.locator("#xmon_url ~ .invalid-feedback")
        expect(error).to_have_text(message)
        expect(url_field).to_have_class(re.compile(r"\bis-invalid\b"))
        expect(url_field).to_have_value(bad)
        expect(flash(page)).to_have_count(0)
    shot(page, "xmon_settings_error")

    url_field.fill("https://xmon.example.com/")
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("X-MON 設定を反映しました。")
    page.reload()
    expect(page.get_by_role("heading", name="X-MON 設定", exact=True)).to_be_visible()
    expect(page.get_by_label("X-MON URL", exact=True)).to_have_value("https://xmon.example.com")
    expect(page.locator(".invalid-feedback")).to_have_count(0)
    shot(page, "xmon_settings_saved")


def test_notification_user_with_phone(page: Page, server: str, credentials: dict[str, str], shot: Shot) -> None:
    """§3: a number without country code is refused; +81-90-0123-0001 is stored and shown."""
    log_in(page, server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="ユーザ管理").click()
    expect(page.get_by_role("heading", name="ユーザ管理", exact=True)).to_be_visible()
    page.get_by_role("link", name="新規作成").click()
    expect(page.get_by_role("heading", name="ユーザ新規作成")).to_be_visible()
    expect(page.get_by_role("heading", name="基本設定")).to_be_visible()

    page.get_by_label("ログイン名", exact=True).fill("sato")
    page.get_by_label("表示名", exact=True).fill("佐藤 翔太")
    page.get_by_label("ログインを許可しない", exact=True).check()
    phone_field = page.get_by_label("連絡先電話番号(Twilio API連携)", exact=True)
    phone_field.fill("090-0123-0001")
    page.get_by_role("button", name="作成", exact=True).click()

    error = page.locator("#phone ~ .invalid-feedback")
    expect(error).to_contain_text("国番号")
    expect(phone_field).to_have_class(re.compile(r"\bis-invalid\b"))
    # What was typed is kept, so only the number has to be fixed.
    expect(page.get_by_label("ログイン名", exact=True)).to_have_value("sato")
    expect(page.get_by_label("表示名", exact=True)).to_have_value("佐藤 翔太")
    expect(page.get_by_label("ログインを許可しない", exact=True)).to_be_checked()
    expect(phone_field).to_have_value("090-0123-0001")
    shot(page, "user_form_phone_error")

    phone_field.fill("+81-90-0123-0001")
    page.get_by_role("button", name="作成", exact=True).click()
    expect(flash(page)).to_have_text("ユーザ「sato」を作成しました。")
    expect(page.get_by_role("heading", name="ユーザ詳細: sato")).to_be_visible()
    expect(page.locator("#user-phone")).to_have_text("+81-90-0123-0001")
    expect(page.get_by_text("佐藤 翔太", exact=True)).to_be_visible()
    shot(page, "user_detail")

    side_menu(page).get_by_role("link", name="ユーザ管理").click()
    row = page.get_by_role("row").filter(has_text="sato")
    expect(row).to_contain_text("佐藤 翔太")
    expect(row).to_contain_text("+81-90-0123-0001")
    expect(row).to_contain_text("許可しない")


def test_twilio_account_needs_approval(page: Page, server: str, credentials: dict[str, str], shot: Shot) -> None:
    """§4: an admin without 承認権限 proposes (作成); an approver approves it (承認)."""
    log_in(page, server, "operator", credentials["operator"])
    side_menu(page).get_by_role("link", name="Twilio 連携設定").click()
    expect(page.get_by_role("heading", name="Twilio アカウント情報", exact=True)).to_be_visible()
    expect(page.get_by_text("Twilio API 連携の事前準備")).to_have_count(0)
    no_secret(page)

    page.get_by_role("link", name="新規作成").click()
    expect(page.get_by_role("heading", name="Twilio アカウント情報の追加")).to_be_visible()
    page.get_by_label("名称", exact=True).fill(ACCOUNT_NAME)
    page.get_by_label("ACCOUNT SID", exact=True).fill(ACCOUNT_SID)
    page.get_by_label("AUTH TOKEN", exact=True).fill(AUTH_TOKEN)
    expect(page.get_by_label("AUTH TOKEN", exact=True)).to_have_attribute("type", "password")
    page.get_by_label("TwiML Bin URL", exact=True).fill(BIN_URL)

    help_button = page.get_by_role("button", name="TwiML Bin の設定について")
    expect(help_button).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#twiml-snippet")).to_be_hidden()
    help_button.click()
    expect(help_button).to_have_attribute("aria-expanded", "true")
    # Bootstrap adds `show` once the opening animation has finished.
    expect(page.locator("#twiml-help")).to_have_class(re.compile(r"\bshow\b"))
    snippet = page.locator("#twiml-snippet")
    expect(snippet).to_be_visible()
    expect(snippet).to_contain_text("{{message}}")
    expect(snippet).to_contain_text('language="ja-JP"')
    expect(snippet).to_contain_text('voice="Polly.Mizuki"')
    expect(snippet).to_contain_text("<Say")
    expect(page.get_by_role("button", name="コピー")).to_be_visible()
    no_secret(page)
    shot(page, "twilio_account_form_help_open")

    # No 承認権限: only 「作成」.
    expect(page.get_by_role("button", name="作成と承認")).to_have_count(0)
    page.get_by_role("button", name="作成", exact=True).click()
    expect(flash(page)).to_contain_text(f"Twilio アカウント情報「{ACCOUNT_NAME}」の作成を承認待ちにしました。")
    accounts_table = page.get_by_role("table")
    expect(accounts_table).not_to_contain_text(ACCOUNT_NAME)
    expect(accounts_table).to_contain_text("承認済みの Twilio アカウント情報はありません。")
    no_secret(page)
    shot(page, "twilio_accounts_waiting")

    twilio_tab(page, "承認待ち").click()
    expect(page.get_by_role("heading", name="承認待ち", exact=True)).to_be_visible()
    card = page.locator(".card").filter(has_text=f"「{ACCOUNT_NAME}」の作成")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("申請: operator")
    expect(card.get_by_role("button", name="承認", exact=True)).to_have_count(0)
    expect(card).to_contain_text("承認権限を持つユーザの承認を待っています。")
    no_secret(page)

    page.get_by_role("button", name="ログアウト").click()
    expect(flash(page)).to_have_text("ログアウトしました。")

    log_in(page, server, "admin", credentials["admin"])
    no_secret(page)
    twilio_tab(page, "承認待ち").click()
    card = page.locator(".card").filter(has_text=f"「{ACCOUNT_NAME}」の作成")
    expect(card).to_have_count(1)

    def diff_row(label: str) -> Locator:
        return card.get_by_role("row").filter(has=page.get_by_role("rowheader", name=label, exact=True))

    expect(diff_row("名称")).to_contain_text(ACCOUNT_NAME)
    expect(diff_row("ACCOUNT SID")).to_contain_text(ACCOUNT_SID)
    expect(diff_row("TwiML Bin URL")).to_contain_text(BIN_URL)
    expect(diff_row("AUTH TOKEN").get_by_role("cell").last).to_have_text("設定あり")
    no_secret(page)
    shot(page, "approvals_pending")

    card.get_by_role("button", name="承認", exact=True).click()
    expect(flash(page)).to_have_text(f"Twilio アカウント情報「{ACCOUNT_NAME}」の作成を承認しました。")
    expect(page.get_by_text("承認待ちの変更はありません。")).to_be_visible()
    no_secret(page)

    twilio_tab(page, "Twilio アカウント情報").click()
    row = page.get_by_role("row").filter(has_text=ACCOUNT_NAME)
    expect(row).to_contain_text(ACCOUNT_SID)
    expect(row).to_contain_text(BIN_URL)
    no_secret(page)

    row.get_by_role("link", name="詳細表示").click()
    expect(page.get_by_role("heading", name="Twilio アカウント情報の詳細")).to_be_visible()
    details = page.locator("dl")
    expect(details).to_contain_text(ACCOUNT_NAME)
    expect(details).to_contain_text(ACCOUNT_SID)
    expect(details).to_contain_text(BIN_URL)
    expect(details).to_contain_text("設定済み(表示しません)")
    no_secret(page)
    shot(page, "twilio_account_detail")


def test_edit_and_approve_twiml_bin_url(page: Page, server: str, credentials: dict[str, str], shot: Shot) -> None:
    """§5.1.2: as an approver, 詳細表示 → 編集 → 「編集と承認」 applies the new TwiML Bin URL at once."""
    log_in(page, server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="Twilio 連携設定").click()
    page.get_by_role("row").filter(has_text=ACCOUNT_NAME).get_by_role("link", name="詳細表示").click()
    expect(page.get_by_role("heading", name="Twilio アカウント情報の詳細")).to_be_visible()
    no_secret(page)

    page.get_by_role("link", name="編集", exact=True).click()
    expect(page.get_by_role("heading", name="Twilio アカウント情報の編集")).to_be_visible()
    expect(page.get_by_label("名称", exact=True)).to_have_value(ACCOUNT_NAME)
    expect(page.get_by_label("AUTH TOKEN", exact=True)).to_have_value("")
    url_field = page.get_by_label("TwiML Bin URL", exact=True)
    expect(url_field).to_have_value(BIN_URL)
    expect(page.get_by_role("button", name="編集", exact=True)).to_be_visible()
    no_secret(page)
    url_field.fill(BIN_URL_EDITED)
    shot(page, "twilio_account_edit")

    page.get_by_role("button", name="編集と承認").click()
    expect(flash(page)).to_have_text(f"Twilio アカウント情報「{ACCOUNT_NAME}」を編集し、承認しました。")
    expect(page.get_by_role("heading", name="Twilio アカウント情報の詳細")).to_be_visible()
    details = page.locator("dl")
    expect(details).to_contain_text(BIN_URL_EDITED)
    expect(details).not_to_contain_text(BIN_URL)
    expect(details).to_contain_text("設定済み(表示しません)")
    no_secret(page)
    shot(page, "twilio_account_detail_edited")

    twilio_tab(page, "承認待ち").click()
    expect(page.get_by_text("承認待ちの変更はありません。")).to_be_visible()
    history = page.get_by_role("table")
    expect(history.get_by_role("row").filter(has_text="編集")).to_have_count(1)
    no_secret(page)

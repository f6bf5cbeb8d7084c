"""An administrator sets up phone and SMS notification (manual §5.1.3, §5.1.4, §6, §9) in a browser.

The live-mode tests run in file order against one server whose Twilio is the fake of
tests/fake_twilio.py, and build on each other as the manual's steps do: X-MON URL and a Twilio
account with a TwiML Bin URL, 再生メッセージ置き換え設定 (§5.1.4), 通話設定(シンプル通話) with
「テスト通話」 (§5.1.3), SMS 通知設定 with 「送信テスト」 (§6), then the ログ screen (§9). The last
test is the quick start in simulate mode on a server of its own. Every locator uses the
Japanese labels and button names a user reads.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import Locator, Page, expect

from tests.fake_twilio import FakeTwilio

Shot = Callable[[Page, str], Path]

ACCOUNT_NAME = "運用チームアカウント"
ACCOUNT_SID = "AC" + secrets.token_hex(16)
AUTH_TOKEN = secrets.token_hex(16)
BIN_URL = "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16)

SATO = "+81-90-0123-0001(佐藤 翔太)"
SUZUKI = "+81-90-0123-0002(鈴木 花子)"
SATO_E164 = "+819001230001"
SUZUKI_E164 = "+819001230002"
# The fake's numbers (FakeNumber friendly names) as the From list shows them.
FROM_VOICE_SMS = "+81-50-1234-0001(050-1234-0001)"
FROM_VOICE_ONLY = "+81-50-1234-0002(050-1234-0002)"

REPLACEMENTS = "TRAFFIC,トラフィック\nDB,データベース"
CALL_NAME = "○○システム担当者への電話連絡"
CALL_TEXT = "TRAFFIC の急増により DB の応答が遅れています。担当者は至急確認してください。"
SPOKEN = "トラフィック の急増により データベース の応答が遅れています。担当者は至急確認してください。"
SMS_NAME = "○○システム担当者への SMS 連絡"
SMS_TEXT = "【X-MON】DB サーバの応答が遅れています。至急確認してください。"

CALL_SID = re.compile(r"Call SID: (CA[0-9a-f]{32})")
MESSAGE_SID = re.compile(r"Message SID: (SM[0-9a-f]{32})")
EXPLANATION_21211 = "宛先の電話番号が正しくありません。国番号から始まる番号か確認してください。"


# -- helpers --------------------------------------------------------------------------------


def side_menu(page: Page) -> Locator:
    """The 管理者メニュー on the left."""
    return page.get_by_role("navigation", name="サイドメニュー")


def twilio_tab(page: Page, name: str) -> Locator:
    """A tab of the top menu inside Twilio 連携設定."""
    return page.get_by_role("list", name="Twilio 連携設定").get_by_role("link", name=name, exact=True)


def flash(page: Page) -> Locator:
    """The message shown at the top after an action."""
    return page.get_by_role("alert")


def outcome(page: Page) -> Locator:
    """The outcome of 「発信テストの実行」/「送信テストの実行」, above the form."""
    return page.get_by_role("status")


def log_in(page: Page, server: str, login: str, password: str) -> None:
    """Log in through the login screen."""
    page.goto(f"{server}/login")
    page.get_by_label("ログイン名", exact=True).fill(login)
    page.get_by_label("パスワード", exact=True).fill(password)
    page.get_by_role("button", name="ログイン", exact=True).click()
    expect(page.get_by_role("button", name="ログアウト")).to_be_visible()


def open_twilio(page: Page, tab: str | None = None) -> None:
    """サイドメニュー → Twilio 連携設定, then one of its tabs."""
    side_menu(page).get_by_role("link", name="Twilio 連携設定").click()
    expect(page.get_by_role("heading", name="Twilio 連携設定", exact=True)).to_be_visible()
    if tab is not None:
        twilio_tab(page, tab).click()
        expect(twilio_tab(page, tab)).to_have_attribute("aria-current", "page")


def chosen(select: Locator) -> Locator:
    """The selected option of a select box (for its text)."""
    return select.locator("option:checked")


def no_secret(page: Page) -> None:
    """The AUTH TOKEN must never be part of a page."""
    assert AUTH_TOKEN not in page.content().lower(), f"AUTH TOKEN leaked into {page.url}"


def add_account(page: Page, name: str, sid: str, token: str, bin_url: str) -> None:
    """Twilio アカウント情報 → 新規作成 → 「作成と承認」 (§4, with the TwiML Bin URL of §5.1.2)."""
    open_twilio(page, "Twilio アカウント情報")
    page.get_by_role("link", name="新規作成").click()
    expect(page.get_by_role("heading", name="Twilio アカウント情報の追加")).to_be_visible()
    page.get_by_label("名称", exact=True).fill(name)
    page.get_by_label("ACCOUNT SID", exact=True).fill(sid)
    page.get_by_label("AUTH TOKEN", exact=True).fill(token)
    page.get_by_label("TwiML Bin URL", exact=True).fill(bin_url)
    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_contain_text(f"Twilio アカウント情報「{name}」")
    expect(flash(page)).to_contain_text("承認しました。")
    expect(page.get_by_role("heading", name="Twilio アカウント情報の詳細")).to_be_visible()
    expect(page.locator("dl")).to_contain_text(bin_url)


def set_replacements(page: Page, content: str) -> None:
    """通話設定(シンプル通話) → 「再生メッセージ置き換え設定」 → apply with approval (§5.1.4)."""
    open_twilio(page, "通話設定(シンプル通話)")
    page.get_by_role("link", name="再生メッセージ置き換え設定").click()
    expect(page.get_by_role("heading", name="再生メッセージ置き換え設定(通話設定(シンプル通話))")).to_be_visible()
    page.get_by_label("再生メッセージ置き換え設定", exact=True).fill(content)
    page.get_by_role("button", name="再生メッセージ置き換え設定と承認").click()
    expect(flash(page)).to_have_text("再生メッセージ置き換え設定(通話設定(シンプル通話))を変更し、承認しました。")


def fill_setting(page: Page, name: str, from_label: str, recipients: list[str], text: str | None) -> None:
    """名称, Twilio 電話番号(From), 宛先の電話番号(To) (「宛先の追加」 per extra row), メッセージの内容."""
    page.get_by_label("名称", exact=True).fill(name)
    page.get_by_label("Twilio 電話番号(From)", exact=True).select_option(label=from_label)
    for index, recipient in enumerate(recipients):
        if index:
            page.get_by_role("button", name="宛先の追加").click()
        label = "宛先の電話番号(To)" + (f" {index + 1}" if index else "")
        page.get_by_label(label, exact=True).select_option(label=recipient)
    if text is not None:
        page.get_by_label("メッセージの内容", exact=True).select_option(label="内容を指定する")
        page.get_by_label("指定するメッセージ", exact=True).fill(text)


def run_test(page: Page, button: str, run: str, destination: str) -> None:
    """「テスト通話」/「送信テスト」 → テスト時の宛先の電話番号 → 「…テストの実行」."""
    page.get_by_role("button", name=button, exact=True).click()
    dialog = page.get_by_role("dialog", name=button)
    expect(dialog).to_be_visible()
    dialog.get_by_label("テスト時の宛先の電話番号", exact=True).select_option(label=destination)
    dialog.get_by_role("button", name=run).click()
    expect(outcome(page)).to_be_visible()


# -- live mode, against the fake Twilio ------------------------------------------------------


def test_prepare_xmon_url_and_account(page: Page, live_server: str, credentials: dict[str, str], shot: Shot) -> None:
    """§2 and §4/§5.1.2 in short: X-MON URL, then an account with a TwiML Bin URL (作成と承認)."""
    log_in(page, live_server, "admin", credentials["admin"])
    side_menu(page).get_by_role("link", name="X-MON 設定").click()
    page.get_by_label("X-MON URL", exact=True).fill("https://xmon.example.com")
    page.get_by_role("button", name="設定を反映").click()
    expect(flash(page)).to_have_text("X-MON 設定を反映しました。")

    # The users with phone numbers came from `xmonbridge create-user --phone` (§3).
    open_twilio(page)
    expect(page.get_by_text("Twilio API 連携の事前準備")).to_have_count(0)
    expect(page.get_by_text("Twilio: ライブモード")).to_be_visible()
    add_account(page, ACCOUNT_NAME, ACCOUNT_SID, AUTH_TOKEN, BIN_URL)
    no_secret(page)
    shot(page, "live_account_with_bin_url")


def test_replacements(page: Page, live_server: str, credentials: dict[str, str], shot: Shot) -> None:
    """§5.1.4: a line without a comma is refused with its line number; the manual's example applies."""
    log_in(page, live_server, "admin", credentials["admin"])
    open_twilio(page, "通話設定(シンプル通話)")
    expect(page.get_by_role("heading", name="通話設定(シンプル通話)", exact=True)).to_be_visible()
    page.get_by_role("link", name="再生メッセージ置き換え設定").click()
    expect(page.get_by_role("heading", name="再生メッセージ置き換え設定(通話設定(シンプル通話))")).to_be_visible()
    expect(page.locator("#current-replacements")).to_have_text("(未設定)")
    field = page.get_by_label("再生メッセージ置き換え設定", exact=True)

    field.fill("DB,データベース\nTRAFFIC")
    page.get_by_role("button", name="再生メッセージ置き換え設定と承認").click()
    expect(page.locator("#content-error")).to_have_text(
        "2行目: 「単語,読み方」のように半角カンマ 1 つで区切って入力してください。"
    )
    expect(field).to_have_value("DB,データベース\nTRAFFIC")
    expect(page.locator("#current-replacements")).to_have_text("(未設定)")
    expect(flash(page)).to_have_count(0)
    shot(page, "replacements_bad_line")

    field.fill(REPLACEMENTS)
    page.get_by_role("button", name="再生メッセージ置き換え設定と承認").click()
    expect(flash(page)).to_have_text("再生メッセージ置き換え設定(通話設定(シンプル通話))を変更し、承認しました。")
    expect(page.locator("#current-replacements")).to_have_text(REPLACEMENTS)
    expect(page.get_by_label("再生メッセージ置き換え設定", exact=True)).to_have_value(REPLACEMENTS)
    shot(page, "replacements_applied")


def test_simple_call_test_call_and_create(
    page: Page, live_server: str, fake_twilio: FakeTwilio, credentials: dict[str, str], shot: Shot
) -> None:
    """§5.1.3: fill the form, 「テスト通話」 reaches Twilio with the replaced message, then 作成と承認."""
    log_in(page, live_server, "admin", credentials["admin"])
    open_twilio(page, "通話設定(シンプル通話)")
    expect(page.get_by_text("承認済みの通話設定(シンプル通話)はありません。")).to_be_visible()
    page.get_by_role("link", name="新規作成").click()
    expect(page.get_by_role("heading", name="Twilio 通話設定(シンプル通話)の作成")).to_be_visible()

    account = page.get_by_label("Twilio アカウント情報", exact=True)
    expect(chosen(account)).to_have_text(ACCOUNT_NAME)
    bin_url = page.get_by_label("TwiML Bin URL", exact=True)
    expect(bin_url).to_have_value(BIN_URL)
    expect(bin_url).not_to_be_editable()
    # Voice-capable numbers of the account, read from Twilio (IncomingPhoneNumbers).
    from_number = page.get_by_label("Twilio 電話番号(From)", exact=True)
    expect(from_number.get_by_role("option")).to_have_text([FROM_VOICE_SMS, FROM_VOICE_ONLY])
    expect(page.get_by_label("呼び出しを行い続ける秒数", exact=True)).to_have_value("60")

    fill_setting(page, CALL_NAME, FROM_VOICE_ONLY, [SATO, SUZUKI], CALL_TEXT)
    expect(page.locator("#custom-message-count")).to_have_text(f"{len(CALL_TEXT)} / 350 文字")
    page.get_by_role("button", name="メッセージのサンプル").click()
    expect(page.get_by_role("heading", name="メッセージのサンプル")).to_be_visible()
    expect(page.locator("#message-samples")).to_contain_text("web-server01")
    page.get_by_role("button", name="テスト通話", exact=True).click()
    dialog = page.get_by_role("dialog", name="テスト通話")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("テスト時の宛先の電話番号", exact=True).get_by_role("option")).to_have_text(
        [SATO, SUZUKI]
    )
    expect(dialog).to_contain_text("テスト通話の使用には発信料が発生します。")
    shot(page, "simple_call_test_call_dialog")
    dialog.get_by_label("テスト時の宛先の電話番号", exact=True).select_option(label=SATO)
    dialog.get_by_role("button", name="発信テストの実行").click()

    result = outcome(page)
    expect(result).to_contain_text(f"テスト通話を {SATO} に発信しました。")
    expect(result).to_have_text(CALL_SID)
    sid = CALL_SID.search(result.inner_text()).group(1)  # type: ignore[union-attr]
    # Nothing was saved, and the form kept what was typed.
    expect(page.get_by_label("名称", exact=True)).to_have_value(CALL_NAME)
    expect(chosen(page.get_by_label("宛先の電話番号(To) 2", exact=True))).to_have_text(SUZUKI)
    expect(page.get_by_label("指定するメッセージ", exact=True)).to_have_value(CALL_TEXT)
    shot(page, "simple_call_test_call_done")

    calls = fake_twilio.calls()
    assert len(calls) == 1, [c.form for c in calls]
    call = calls[0]
    assert call.account_sid == ACCOUNT_SID
    assert call.response_status == 201 and call.response_body["sid"] == sid
    assert call.form["To"] == SATO_E164
    assert call.form["From"] == "+815012340002"
    assert call.form["Timeout"] == "60"
    url = urlsplit(call.form["Url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == BIN_URL
    assert parse_qs(url.query, strict_parsing=True) == {"message": [SPOKEN]}

    # A Twilio error (21211) is explained in Japanese on the form.
    fake_twilio.fail_next(400, code=21211, operation="CreateCall")
    run_test(page, "テスト通話", "発信テストの実行", SUZUKI)
    expect(result).to_have_text(f"テスト通話に失敗しました。{EXPLANATION_21211}(Twilio エラー 21211)")
    expect(result).to_have_class(re.compile(r"\balert-danger\b"))
    expect(page.get_by_label("名称", exact=True)).to_have_value(CALL_NAME)
    shot(page, "simple_call_test_call_21211")
    assert [c.form["To"] for c in fake_twilio.calls()] == [SATO_E164, SUZUKI_E164]
    assert fake_twilio.calls()[1].response_status == 400

    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_have_text(f"通話設定(シンプル通話)「{CALL_NAME}」を作成し、承認しました。")
    expect(page.get_by_role("heading", name="通話設定(シンプル通話)の詳細")).to_be_visible()
    details = page.locator("#setting-values")
    expect(details).to_contain_text(BIN_URL)
    expect(details).to_contain_text(SPOKEN)
    expect(details).to_contain_text(f"{SATO}\n{SUZUKI}")
    shot(page, "simple_call_detail")

    twilio_tab(page, "通話設定(シンプル通話)").click()
    row = page.get_by_role("row").filter(has_text=CALL_NAME)
    expect(row).to_contain_text(ACCOUNT_NAME)
    expect(row).to_contain_text(SATO)
    expect(row).to_contain_text("内容を指定する")
    assert len(fake_twilio.calls()) == 2  # saving places no call
    no_secret(page)
    shot(page, "simple_call_list")


def test_sms_setting_send_test_and_create(
    page: Page, live_server: str, fake_twilio: FakeTwilio, credentials: dict[str, str], shot: Shot
) -> None:
    """§6: SMS 通知設定 with the segment count, 「送信テスト」 through Twilio, then 作成と承認."""
    log_in(page, live_server, "admin", credentials["admin"])
    open_twilio(page, "SMS 通知設定")
    expect(page.get_by_role("heading", name="SMS 通知設定", exact=True)).to_be_visible()
    page.get_by_role("link", name="新規作成").click()
    expect(page.get_by_role("heading", name="Twilio SMS 通知設定の作成")).to_be_visible()
    expect(chosen(page.get_by_label("Twilio アカウント情報", exact=True))).to_have_text(ACCOUNT_NAME)
    # SMS offers only the sms-capable number.
    expect(page.get_by_label("Twilio 電話番号(From)", exact=True).get_by_role("option")).to_have_text(
        [FROM_VOICE_SMS]
    )
    expect(page.get_by_label("呼び出しを行い続ける秒数")).to_have_count(0)

    segments = page.locator("#sms-segments [data-segments]")
    template = page.get_by_label("メッセージの内容", exact=True)
    template.select_option(label="障害発生の通知(詳細)")
    expect(segments).to_have_text("2")
    template.select_option(label="障害発生の通知(ホスト名・サービスID)")
    expect(segments).to_have_text("1")

    fill_setting(page, SMS_NAME, FROM_VOICE_SMS, [SATO], None)
    template.select_option(label="内容を指定する")
    text = page.get_by_label("指定するメッセージ", exact=True)
    counter = page.locator("#custom-message-count")
    # Japanese text is UCS-2: up to 70 characters in one SMS; the field stops at 64 (§6).
    text.press_sequentially("障害")
    expect(counter).to_have_text("2 / 64 文字")
    expect(segments).to_have_text("1")
    text.fill("あ" * 64)
    expect(counter).to_have_text("64 / 64 文字")
    expect(segments).to_have_text("1")
    text.press("End")
    text.press_sequentially("い")
    expect(text).to_have_value("あ" * 64)
    text.fill(SMS_TEXT)
    expect(counter).to_have_text(f"{len(SMS_TEXT)} / 64 文字")
    expect(segments).to_have_text("1")
    shot(page, "sms_form_segments")

    run_test(page, "送信テスト", "送信テストの実行", SATO)
    result = outcome(page)
    expect(result).to_contain_text(f"送信テストの SMS を {SATO} に送信しました。")
    expect(result).to_have_text(MESSAGE_SID)
    sid = MESSAGE_SID.search(result.inner_text()).group(1)  # type: ignore[union-attr]
    expect(page.get_by_label("指定するメッセージ", exact=True)).to_have_value(SMS_TEXT)
    expect(page.locator("#sms-segments [data-segments]")).to_have_text("1")
    shot(page, "sms_send_test_done")

    messages = fake_twilio.messages()
    assert len(messages) == 1, [m.form for m in messages]
    message = messages[0]
    assert message.account_sid == ACCOUNT_SID
    assert message.response_status == 201 and message.response_body["sid"] == sid
    assert message.form == {"To": SATO_E164, "From": "+815012340001", "Body": SMS_TEXT}
    assert fake_twilio.calls() == []

    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_have_text(f"SMS 通知設定「{SMS_NAME}」を作成し、承認しました。")
    details = page.locator("#setting-values")
    expect(details).to_contain_text(SMS_TEXT)
    expect(details).to_contain_text("1 通")
    twilio_tab(page, "SMS 通知設定").click()
    expect(page.get_by_role("row").filter(has_text=SMS_NAME)).to_contain_text(SATO)
    assert len(fake_twilio.messages()) == 1
    no_secret(page)
    shot(page, "sms_list")


def test_log_page(page: Page, live_server: str, credentials: dict[str, str], shot: Shot) -> None:
    """§9: every request above is a row of ログ; a filter, 「ログの見方について」 and a 詳細."""
    log_in(page, live_server, "admin", credentials["admin"])
    open_twilio(page, "ログ")
    expect(page.get_by_role("heading", name="ログ", exact=True)).to_be_visible()
    expect(twilio_tab(page, "シミュレーション発信履歴")).to_have_count(0)
    table = page.locator("#logs")
    rows = table.locator("tbody tr")

    def rows_of(kind: str) -> Locator:
        return rows.filter(has=page.get_by_role("cell", name=kind, exact=True))

    # Newest first: 送信テスト, the refused テスト通話, the placed テスト通話, 番号取得.
    expect(rows.first).to_contain_text("送信テスト")
    sent = rows_of("送信テスト")
    expect(sent).to_have_count(1)
    expect(sent).to_contain_text(SMS_NAME)
    expect(sent).to_contain_text("+81-90-0123-0001")
    expect(sent).to_contain_text("201")
    expect(sent).to_contain_text("成功")
    expect(sent.locator("code")).to_have_text(re.compile(r"^SM[0-9a-f]{32}$"))
    calls = rows_of("テスト通話")
    expect(calls).to_have_count(2)
    expect(calls.nth(0)).to_contain_text("21211")
    expect(calls.nth(0)).to_contain_text("400")
    expect(calls.nth(0)).to_contain_text("失敗")
    expect(calls.nth(0)).to_contain_text("+81-90-0123-0002")
    expect(calls.nth(1)).to_contain_text("成功")
    expect(calls.nth(1).locator("code")).to_have_text(re.compile(r"^CA[0-9a-f]{32}$"))
    expect(rows_of("番号取得").first).to_contain_text(ACCOUNT_NAME)
    expect(table).not_to_contain_text("シミュレーション")
    no_secret(page)
    shot(page, "log_all")

    page.get_by_label("種別", exact=True).select_option(label="テスト通話")
    page.get_by_role("button", name="検索").click()
    expect(page.get_by_label("種別", exact=True)).to_have_value("test_call")
    expect(rows).to_have_count(2)
    expect(rows_of("テスト通話")).to_have_count(2)
    page.get_by_label("結果", exact=True).select_option(label="失敗")
    page.get_by_role("button", name="検索").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("21211")
    shot(page, "log_filtered")

    page.get_by_role("button", name="ログの見方について").click()
    help_dialog = page.get_by_role("dialog", name="ログの見方について")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("テスト通話(通話設定の「発信テストの実行」)")
    code_row = help_dialog.get_by_role("row").filter(has=page.get_by_role("rowheader", name="21211", exact=True))
    expect(code_row).to_contain_text(EXPLANATION_21211)
    expect(code_row).to_contain_text("再試行しても成功しない")
    shot(page, "log_help")
    help_dialog.get_by_role("button", name="閉じる").first.click()
    expect(help_dialog).to_be_hidden()

    rows.first.get_by_role("link", name="詳細").click()
    expect(page.get_by_role("heading", name="ログの詳細")).to_be_visible()
    detail = page.locator("#log-detail")
    expect(detail).to_contain_text("テスト通話")
    expect(detail).to_contain_text(CALL_NAME)
    expect(detail).to_contain_text("+81-50-1234-0002")
    expect(page.locator("#log-explanation")).to_contain_text(EXPLANATION_21211)
    expect(page.locator("#log-summary")).to_contain_text("Timeout")
    no_secret(page)
    shot(page, "log_detail")


# -- simulate mode: the quick start ----------------------------------------------------------


def test_quickstart_simulate(page: Page, quickstart_server: str, credentials: dict[str, str], shot: Shot) -> None:
    """Done-when: in simulate mode, account, replacements, simple call and SMS with their tests, ログ."""
    server = quickstart_server
    log_in(page, server, "admin", credentials["admin"])
    expect(page.get_by_text("Twilio: シミュレーションモード")).to_be_visible()
    add_account(page, "シミュレーション用アカウント", "AC" + secrets.token_hex(16), secrets.token_hex(16), BIN_URL)
    set_replacements(page, REPLACEMENTS)

    sim_from = "+81-50-1234-0001(シミュレーション番号 1(音声・SMS))"
    twilio_tab(page, "通話設定(シンプル通話)").click()
    page.get_by_role("link", name="新規作成").click()
    expect(page.get_by_label("TwiML Bin URL", exact=True)).to_have_value(BIN_URL)
    fill_setting(page, CALL_NAME, sim_from, [SATO], CALL_TEXT)
    run_test(page, "テスト通話", "発信テストの実行", SATO)
    expect(outcome(page)).to_have_text(CALL_SID)
    expect(outcome(page)).to_contain_text("シミュレーションモードのため、実際には送られていません。")
    call_sid = CALL_SID.search(outcome(page).inner_text()).group(1)  # type: ignore[union-attr]
    shot(page, "quickstart_test_call")
    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_have_text(f"通話設定(シンプル通話)「{CALL_NAME}」を作成し、承認しました。")

    twilio_tab(page, "SMS 通知設定").click()
    page.get_by_role("link", name="新規作成").click()
    fill_setting(page, SMS_NAME, sim_from, [SATO, SUZUKI], SMS_TEXT)
    run_test(page, "送信テスト", "送信テストの実行", SUZUKI)
    expect(outcome(page)).to_have_text(MESSAGE_SID)
    expect(outcome(page)).to_contain_text("シミュレーションモードのため、実際には送られていません。")
    message_sid = MESSAGE_SID.search(outcome(page).inner_text()).group(1)  # type: ignore[union-attr]
    shot(page, "quickstart_send_test")
    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_have_text(f"SMS 通知設定「{SMS_NAME}」を作成し、承認しました。")

    twilio_tab(page, "ログ").click()
    rows = page.locator("#logs tbody tr")
    for kind, sid in (("テスト通話", call_sid), ("送信テスト", message_sid)):
        row = rows.filter(has=page.get_by_role("cell", name=kind, exact=True))
        expect(row).to_have_count(1)
        expect(row).to_contain_text(sid)
        expect(row).to_contain_text("成功")
        expect(row).to_contain_text("シミュレーション")
    expect(rows.filter(has=page.get_by_role("cell", name="番号取得", exact=True)).first).to_contain_text(
        "シミュレーション"
    )
    shot(page, "quickstart_log")

    twilio_tab(page, "シミュレーション発信履歴").click()
    expect(page.get_by_role("heading", name="シミュレーション発信履歴")).to_be_visible()
    call_row = page.get_by_role("row").filter(has_text=call_sid)
    expect(call_row).to_contain_text(SPOKEN)
    expect(call_row).to_contain_text(BIN_URL)
    expect(call_row).to_contain_text("呼び出し 60 秒")
    expect(call_row).to_contain_text("+81-90-0123-0001")
    sms_row = page.get_by_role("row").filter(has_text=message_sid)
    expect(sms_row).to_contain_text(SMS_TEXT)
    expect(sms_row).to_contain_text("+81-90-0123-0002")
    expect(sms_row).to_contain_text("+81-50-1234-0001")
    shot(page, "quickstart_simulated_history")

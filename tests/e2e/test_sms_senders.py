"""SMS 通知設定 with an account that owns no SMS-capable number: an alphanumeric sender ID instead."""

from __future__ import annotations

import secrets

from playwright.sync_api import Page, expect

from tests.e2e.test_notify_settings import SATO, add_account, flash, log_in, open_twilio
from tests.fake_twilio import FakeNumber, FakeTwilio


def test_a_voice_only_account_offers_an_alphanumeric_sender(
    page: Page, live_server: str, credentials: dict[str, str], fake_twilio: FakeTwilio
) -> None:
    sid = "AC" + secrets.token_hex(16)
    name = "音声専用アカウント"
    fake_twilio.phone_numbers[sid] = [FakeNumber("+815012340002", voice=True, sms=False)]
    log_in(page, live_server, "admin", credentials["admin"])
    add_account(page, name, sid, secrets.token_hex(16), "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16))

    open_twilio(page, "SMS 通知設定")
    page.get_by_role("link", name="新規作成").click()
    page.get_by_label("Twilio アカウント情報", exact=True).select_option(label=name)
    page.get_by_role("button", name="再取得").click()
    notice = page.locator("#no-sms-numbers")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("この Twilio アカウントには SMS を送信できる電話番号がありません。")
    expect(page.get_by_label("Twilio 電話番号(From)", exact=True)).to_contain_text("SMS を送信できる番号がありません")

    page.get_by_role("radio", name="英数字の送信者 ID").check()
    expect(page.get_by_label("Twilio 電話番号(From)", exact=True)).to_be_hidden()
    page.get_by_role("textbox", name="英数字の送信者 ID").fill("XMON")
    page.get_by_label("名称", exact=True).fill("携帯への SMS(送信者 ID)")
    page.get_by_label("宛先の電話番号(To)", exact=True).select_option(label=SATO)
    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_contain_text("承認しました。")
    expect(page.locator("dl")).to_contain_text("英数字の送信者 ID: XMON")

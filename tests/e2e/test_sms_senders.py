"""SMS 通知設定 with an account that owns no SMS-capable number: an alphanumeric sender ID instead.

A live-mode server of its own (against the fake Twilio), with the manual's two recipients on
mobiles and one on a landline, so what this module adds is seen by no other test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import _SERVER_LOGS, _run_cli, _server_env, running_server
from tests.e2e.test_notify_settings import FROM_VOICE_SMS, SATO, add_account, flash, log_in, open_twilio
from tests.fake_twilio import ANY_ACCOUNT, FakeNumber, FakeTwilio, default_phone_numbers

OFFICE = "+81-3-1234-5678(事務所)"
NO_NUMBER = "この Twilio アカウントには SMS を送信できる電話番号がありません。"
NO_NUMBER_OPTION = "SMS を送信できる番号がありません"
NOT_MOBILE = "携帯電話の番号ではありません。SMS が届かない可能性があります。"


@pytest.fixture(scope="module")
def senders_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_twilio_server: FakeTwilio
) -> Iterator[str]:
    """The app in live mode against the fake Twilio; users as the manual's plus a landline."""
    api_base = fake_twilio_server.base_url
    with running_server(request, tmp_path_factory, "sms-senders", mode="live", api_base=api_base, phone_users=True) as base:
        instance = request.config.stash[_SERVER_LOGS]["sms-senders"].parent / "instance"
        env = _server_env(instance, "live", api_base)
        _run_cli(["create-user", "office", "--name", "事務所", "--phone", "+81-3-1234-5678", "--no-login"], env)
        yield base


def test_a_voice_only_account_offers_an_alphanumeric_sender(
    page: Page, senders_server: str, credentials: dict[str, str], fake_twilio: FakeTwilio
) -> None:
    voice_only = "音声専用アカウント"
    voice_only_sid = "AC" + secrets.token_hex(16)
    fake_twilio.phone_numbers[voice_only_sid] = [FakeNumber("+815012340002", voice=True, sms=False)]
    log_in(page, senders_server, "admin", credentials["admin"])
    add_account(page, voice_only, voice_only_sid, secrets.token_hex(16), "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16))

    # The only account: its numbers are read as the form opens, and the page says none can send SMS.
    open_twilio(page, "SMS 通知設定")
    page.get_by_role("link", name="新規作成").click()
    notice = page.locator("#no-sms-numbers")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text(NO_NUMBER)
    expect(notice).to_contain_text("「英数字の送信者 ID」か「Messaging Service SID」を選んでください")
    from_list = page.get_by_label("Twilio 電話番号(From)", exact=True)
    expect(from_list).to_contain_text(NO_NUMBER_OPTION)
    expect(page.get_by_text("未取得です")).to_have_count(0)

    # Keeping 「Twilio 電話番号」 is refused beside the list, with what to use instead.
    page.get_by_label("名称", exact=True).fill("携帯への SMS(送信者 ID)")
    page.get_by_label("宛先の電話番号(To)", exact=True).select_option(label=SATO)
    page.get_by_role("button", name="作成と承認").click()
    expect(page.locator("#from_number-error")).to_contain_text(NO_NUMBER)

    # A recipient on a landline is warned about beside its row (the row added by the script).
    rows = page.locator(".recipient-row")
    expect(rows.nth(0).get_by_text(NOT_MOBILE)).to_be_hidden()
    page.get_by_role("button", name="宛先の追加").click()
    page.get_by_label("宛先の電話番号(To) 2", exact=True).select_option(label=OFFICE)
    expect(rows.nth(1).get_by_text(NOT_MOBILE)).to_be_visible()
    expect(rows.nth(0).get_by_text(NOT_MOBILE)).to_be_hidden()

    page.get_by_role("radio", name="英数字の送信者 ID").check()
    expect(from_list).to_be_hidden()
    page.get_by_role("textbox", name="英数字の送信者 ID").fill("XMON")
    page.get_by_role("button", name="作成と承認").click()
    expect(flash(page)).to_contain_text("承認しました。")
    details = page.locator("dl")
    expect(details).to_contain_text("英数字の送信者 ID: XMON")
    expect(details).to_contain_text(OFFICE)

    # 編集: the sender kind and the warning come back from the server.
    page.get_by_role("link", name="編集", exact=True).click()
    expect(page.get_by_role("radio", name="英数字の送信者 ID")).to_be_checked()
    expect(page.get_by_role("textbox", name="英数字の送信者 ID")).to_have_value("XMON")
    rows = page.locator(".recipient-row")
    expect(rows.nth(1).get_by_text(NOT_MOBILE)).to_be_visible()
    expect(rows.nth(0).get_by_text(NOT_MOBILE)).to_be_hidden()


def test_switching_accounts_tells_never_read_from_no_sms_number(
    page: Page, senders_server: str, credentials: dict[str, str], fake_twilio: FakeTwilio
) -> None:
    # An account with an SMS number comes first in the list; the voice-only one of the test above
    # is read already, so the script knows it has none.
    sid = "AC" + secrets.token_hex(16)
    fake_twilio.phone_numbers[sid] = default_phone_numbers()[ANY_ACCOUNT]
    log_in(page, senders_server, "admin", credentials["admin"])
    add_account(page, "0 通常アカウント", sid, secrets.token_hex(16), "https://handler.twilio.com/twiml/EH" + secrets.token_hex(16))
    open_twilio(page, "SMS 通知設定")
    page.get_by_role("link", name="新規作成").click()
    # Switching accounts is the page script's work: wait until the form has loaded (scripts included).
    page.wait_for_url("**/new", wait_until="load")
    account = page.get_by_label("Twilio アカウント情報", exact=True)
    from_list = page.get_by_label("Twilio 電話番号(From)", exact=True)
    notice = page.locator("#no-sms-numbers")
    expect(from_list).to_contain_text(FROM_VOICE_SMS)
    expect(notice).to_be_hidden()

    account.select_option(label="音声専用アカウント")
    expect(from_list).to_contain_text(NO_NUMBER_OPTION)
    expect(notice).to_be_visible()
    account.select_option(label="0 通常アカウント")
    expect(from_list).to_contain_text(FROM_VOICE_SMS)
    expect(notice).to_be_hidden()

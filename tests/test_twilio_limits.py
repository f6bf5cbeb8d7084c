"""Limits Twilio enforces: the Calls Url (4,000), the SMS Body (1,600), one <Say> (3,000)."""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from twilio.twiml.voice_response import VoiceResponse

from xmonbridge import simple_call, telephony, twiml
from xmonbridge.extensions import db
from xmonbridge.messages import sample_alert
from xmonbridge.models import LOG_TEST_CALL, RequestLog
from xmonbridge.twilio_limits import MAX_SAY, MAX_SMS_BODY, MAX_URL, OMITTED, split_for_say
from tests.factories import ACCOUNT_SID, BIN_URL, make_recipient, make_twilio_account
from tests.test_fake_twilio import CALLS_PATH, _raw_request

NEW = "/admin/twilio/simple-calls/new"
REPLACEMENTS = "/admin/twilio/simple-calls/replacements"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def _test_call(client: FlaskClient, account: Any, user: Any, custom: str) -> str:
    data = {
        "name": "長さの確認",
        "account_id": str(account.id),
        "from_number": "+815012340001",
        "recipients-0": str(user.id),
        "message_template": "custom",
        "custom_message": custom,
        "ring_seconds": "60",
        "test_to": str(user.id),
        "run_test": "y",
    }
    return html.unescape(client.post(NEW, data=data).get_data(as_text=True))


def test_markup_in_a_message_is_heard_as_text(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    account, user = make_twilio_account(), make_recipient()
    custom = '障害 <web&db> "重大" \'A\' 100% a+b'
    page = _test_call(live_logged_in, account, user, custom)
    [call] = fake_twilio.calls()
    sid = call.response_body["sid"]
    assert f"Call SID: {sid}" in page
    # The bin renders, parses and says exactly what was typed.
    assert fake_twilio.spoken[sid] == [custom]


def test_an_overlong_message_is_shortened_to_fit_and_logged(live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    client = live_logged_in
    account, user = make_twilio_account(), make_recipient()
    client.post(REPLACEMENTS, data={"content": "X,エックスサーバーのインターフェース", "submit_approve": "y"})
    custom = "X" * 350  # 350 characters typed, 5,950 spoken after the replacement
    page = _test_call(client, account, user, custom)
    [call] = fake_twilio.calls()
    url = call.form["Url"]
    assert len(url) <= MAX_URL and len(url) > MAX_URL - 9  # as long as it may be, not shorter
    heard = fake_twilio.heard(call.response_body["sid"])
    assert heard.endswith(OMITTED) and ("エックスサーバーのインターフェース" * 350).startswith(heard[: -len(OMITTED)])
    assert parse_qs(urlsplit(url).query)["message"] == [heard]
    assert "Call SID:" in page
    log = db.session.scalar(select(RequestLog).where(RequestLog.kind == LOG_TEST_CALL))
    assert log is not None and json.loads(log.request_summary)["shortened_from"] == 5950
    detail = client.get(f"/admin/twilio/logs/{log.id}").get_data(as_text=True)
    assert "メッセージを短縮しました(元の長さ 5,950 文字)" in detail


def test_the_form_shows_the_call_url_length(client: FlaskClient, logged_in: Any) -> None:
    account = make_twilio_account()
    page = html.unescape(client.get(NEW).get_data(as_text=True))
    lengths = re.findall(r"呼び出し URL の長さ: ([0-9,]+) / 4,000 文字", page)
    assert len(lengths) == 4  # three template samples and the chosen message
    sample = simple_call.spoken_text("fault", "", sample_alert())
    assert f"{len(simple_call.bin_call_url(BIN_URL, sample)):,}" in lengths
    data = {"account_id": str(account.id), "message_template": "custom", "custom_message": "障" * 350, "name": "x"}
    page = html.unescape(client.post(NEW, data=data).get_data(as_text=True))
    expected = len(BIN_URL + "?message=") + 350 * 9
    assert f'id="call-url-length">呼び出し URL の長さ: {expected:,} / 4,000 文字' in page


def test_an_overlong_sms_body_is_cut_at_a_character(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    body = "😀" * 1000  # 2,000 UTF-16 units: each emoji is a surrogate pair
    telephony.send_sms(account, to="+819001230001", from_="+815012340001", body=body)
    [message] = fake_twilio.messages()
    sent = message.form["Body"]
    assert sent == "😀" * 798 + OMITTED and len(sent.encode("utf-16-le")) // 2 <= MAX_SMS_BODY
    [log] = db.session.scalars(select(RequestLog)).all()
    assert json.loads(log.request_summary) == {"Body": sent, "shortened_from": 1000}


def test_a_url_over_the_limit_is_never_sent(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    url = BIN_URL + "?message=" + "a" * MAX_URL
    with pytest.raises(telephony.TwilioError, match="呼び出し URL が長すぎる") as caught:
        telephony.place_call(account, to="+819001230001", from_="+815012340001", url=url, timeout=30)
    assert caught.value.permanent and fake_twilio.calls() == []


def test_fitting_never_splits_an_escape_and_keeps_say_within_its_limit() -> None:
    for text in ("あ" * 1000, "a%&😀" * 1000, "a" * 3500):
        call = simple_call.fit_bin_call(BIN_URL, text)
        assert len(call.url) <= MAX_URL and len(call.spoken.text) <= MAX_SAY
        assert call.spoken.text.endswith(OMITTED) and call.spoken.original_length == len(text)
        assert parse_qs(urlsplit(call.url).query, strict_parsing=True)["message"] == [call.spoken.text]
        assert call.url == BIN_URL + "?message=" + quote(call.spoken.text, safe="")
    short = simple_call.fit_bin_call(BIN_URL, "短い")
    assert not short.spoken.shortened and short.url == simple_call.bin_call_url(BIN_URL, "短い")


def test_long_texts_become_several_say_verbs() -> None:
    sentence = "障害が発生しました。" * 700  # 7,000 characters
    pieces = split_for_say(sentence)
    assert "".join(pieces) == sentence and all(len(p) <= MAX_SAY and p.endswith("。") for p in pieces)
    assert [len(p) for p in split_for_say("a" * 6500)] == [3000, 3000, 500]
    xml = twiml.say(VoiceResponse(), sentence, "Polly.Mizuki").to_xml()
    assert xml.count('<Say language="ja-JP" voice="Polly.Mizuki">') == 3


# --- the fake refuses what Twilio refuses ----------------------------------------------------


def test_the_fake_refuses_an_overlong_url(lenient_server: Any) -> None:
    form = {"To": "+819001230001", "From": "+815012340001", "Url": BIN_URL + "?message=" + "a" * MAX_URL}
    status, body = _raw_request(lenient_server, "POST", CALLS_PATH, form)
    assert (status, body["code"]) == (400, 21205)
    assert lenient_server.calls_by_sid == {}


def test_the_fake_refuses_an_overlong_body(lenient_server: Any) -> None:
    form = {"To": "+819001230001", "From": "+815012340001", "Body": "a" * 1601}
    status, body = _raw_request(lenient_server, "POST", MESSAGES_PATH, form)
    assert (status, body["code"]) == (400, 21617)


def test_the_fake_refuses_an_overlong_say(lenient_server: Any) -> None:
    long_say = f"<Response><Say>{'a' * 3001}</Say></Response>"
    form = {"To": "+819001230001", "From": "+815012340001", "Twiml": long_say}
    status, body = _raw_request(lenient_server, "POST", CALLS_PATH, form)
    assert (status, body["code"]) == (400, 13521)
    # Through the bin: the Url fits, but the bin's one <Say> would be too long when the call runs.
    form = {"To": "+819001230001", "From": "+815012340001", "Url": BIN_URL + "?message=" + "a" * 3500}
    status, _ = _raw_request(lenient_server, "POST", CALLS_PATH, form)
    assert status == 201
    assert any("(error 13521)" in v for v in lenient_server.violations)


def test_the_fake_bin_checks_voice_and_language(lenient_server: Any) -> None:
    lenient_server.bins[BIN_URL] = twiml.bin_snippet("woman").replace("ja-JP", "en-US")
    form = {"To": "+819001230001", "From": "+815012340001", "Url": BIN_URL + "?message=test"}
    assert _raw_request(lenient_server, "POST", CALLS_PATH, form)[0] == 201
    assert any("'woman'> is not one of the offered voices" in v for v in lenient_server.violations)
    assert any("language='en-US'" in v for v in lenient_server.violations)


@pytest.fixture
def lenient_server(fake_twilio_server: Any) -> Any:
    """The run's fake, for requests that are invalid on purpose."""
    fake_twilio_server.reset()
    yield fake_twilio_server
    fake_twilio_server.reset()


def test_a_button_call_twiml_stays_under_64_kb_and_keeps_the_guide() -> None:
    """Long messages, made longer by the replacements, are cut; the keys can still be pressed."""
    from xmonbridge import twiml

    opening = "障害が発生しています。" * 2000  # 22,000 characters, 66 kB as UTF-8
    closing = "対応をお願いします。" * 1500
    xml = twiml.button_call([opening, "障害が1件、復旧が0件あります。", closing], "1と#で詳細", False, "Polly.Mizuki", "https://x/g")
    assert len(xml.encode()) <= 64_000
    assert "障害が1件、復旧が0件あります。" in xml and "1と#で詳細" in xml and 'action="https://x/g"' in xml
    assert twiml.CUT_NOTE in xml
    short = twiml.button_call(["こんにちは。"], "1と#で詳細", False, "Polly.Mizuki", "https://x/g")
    assert twiml.CUT_NOTE not in short and "こんにちは。" in short

"""simple_call: the call's Url and the spoken text."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from xmonbridge import simple_call
from xmonbridge.extensions import db
from xmonbridge.messages import Replacements, sample_alert
from xmonbridge.models import REPLACEMENT_SIMPLE, ReplacementList

BIN = "https://handler.twilio.com/twiml/EH0123"


@pytest.mark.parametrize(
    "bin_url,prefix",
    [
        (BIN, BIN + "?message="),
        (BIN + "?", BIN + "?message="),
        (BIN + "?voice=x", BIN + "?voice=x&message="),
        (BIN + "?voice=x&", BIN + "?voice=x&message="),
    ],
)
def test_the_message_is_one_query_parameter(bin_url: str, prefix: str) -> None:
    text = "障害 a&b=c +d/e #f ?g 100%"
    url = simple_call.bin_call_url(bin_url, text)
    assert url.startswith(prefix)
    assert url[len(prefix):] == "%E9%9A%9C%E5%AE%B3%20a%26b%3Dc%20%2Bd%2Fe%20%23f%20%3Fg%20100%25"
    assert parse_qs(urlsplit(url).query)["message"] == [text]


def test_spoken_text_applies_replacements_to_templates_and_custom_text() -> None:
    replacements = Replacements.parse("HTTP,エイチティーティーピー\nCRITICAL,クリティカル")
    text = simple_call.spoken_text("state", "", sample_alert(), replacements)
    assert text == "X-MON からの障害通知です。ホスト web-server01 のサービス エイチティーティーピー の状態が クリティカル になりました。"
    assert simple_call.spoken_text("custom", "HTTP 停止", sample_alert(), replacements) == "エイチティーティーピー 停止"


def test_spoken_text_uses_the_approved_simple_list(app: Flask) -> None:
    assert simple_call.spoken_text("custom", "DB 停止", sample_alert()) == "DB 停止"
    db.session.add(ReplacementList(scope=REPLACEMENT_SIMPLE, name="通話設定(シンプル通話)", content="DB,データベース"))
    db.session.commit()
    assert simple_call.spoken_text("custom", "DB 停止", sample_alert()) == "データベース 停止"

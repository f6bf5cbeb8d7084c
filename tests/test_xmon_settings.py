"""X-MON 設定 (R1, R15)."""

from __future__ import annotations

import html

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from xmonbridge.extensions import db
from xmonbridge.models import XmonSettings
from tests.conftest import AuthActions


def _stored() -> tuple[str | None, str | None]:
    db.session.expire_all()
    row = db.session.scalar(select(XmonSettings))
    return (row.xmon_url, row.voice) if row else (None, None)


def test_it_saves_a_normalised_url_and_voice(client: FlaskClient, logged_in: AuthActions) -> None:
    response = client.post(
        "/admin/xmon-settings/", data={"xmon_url": " https://xmon.example.com/ ", "voice": "Polly.Takumi"}
    )
    assert response.status_code == 302
    assert _stored() == ("https://xmon.example.com", "Polly.Takumi")
    page = client.get("/admin/xmon-settings/").get_data(as_text=True)
    assert 'value="https://xmon.example.com"' in page
    assert "X-MON 設定を反映しました。" in page
    assert '<label class="form-label" for="xmon_url">X-MON URL</label>' in page


def test_the_default_voice_is_polly_mizuki(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get("/admin/xmon-settings/").get_data(as_text=True)
    assert '<option selected value="Polly.Mizuki">' in page


@pytest.mark.parametrize(
    "url,message",
    [
        ("", "このフィールドは必須です。"),
        ("xmon.example.com", "http:// または https:// で始まる URL を入力してください。"),
        ("ftp://xmon.example.com", "http:// または https:// で始まる URL を入力してください。"),
        ("https://", "URL にホスト名を入力してください。"),
        ("https://xmon.example.com/?a=1", "URL にクエリ(?…)やフラグメント(#…)は含められません。"),
        ("https://xmon.example.com/#top", "URL にクエリ(?…)やフラグメント(#…)は含められません。"),
        ("https://xmon.example.com:99999", "URL の形式が正しくありません。"),
    ],
)
def test_it_refuses_bad_urls_and_saves_nothing(
    client: FlaskClient, logged_in: AuthActions, url: str, message: str
) -> None:
    page = client.post("/admin/xmon-settings/", data={"xmon_url": url, "voice": "Polly.Mizuki"}).get_data(as_text=True)
    assert message in page
    assert 'class="invalid-feedback d-block" id="xmon_url-error"' in page
    assert _stored() == (None, None)


def test_it_refuses_an_unknown_voice(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.post(
        "/admin/xmon-settings/", data={"xmon_url": "https://xmon.example.com", "voice": "woman"}
    ).get_data(as_text=True)
    assert "選択肢が正しくありません。" in page
    assert _stored() == (None, None)


@pytest.mark.parametrize("retired", ["Google.ja-JP-Standard-A", "Google.ja-JP-Neural2-B", "Google.ja-JP-Neural2-C"])
def test_voices_twilio_does_not_offer_are_not_offered(client: FlaskClient, logged_in: AuthActions, retired: str) -> None:
    page = client.get("/admin/xmon-settings/").get_data(as_text=True)
    assert f'value="{retired}"' not in page
    assert 'value="Google.ja-JP-Wavenet-B"' in page and 'value="Polly.Takumi-Neural"' in page
    refused = client.post("/admin/xmon-settings/", data={"xmon_url": "https://xmon.example.com", "voice": retired})
    assert "選択肢が正しくありません。" in refused.get_data(as_text=True)


def test_a_stored_voice_no_longer_offered_falls_back_with_a_notice(
    client: FlaskClient, logged_in: AuthActions
) -> None:
    settings = XmonSettings.for_update()
    settings.xmon_url, settings.voice = "https://xmon.example.com", "Google.ja-JP-Standard-A"
    db.session.commit()
    page = client.get("/admin/xmon-settings/").get_data(as_text=True)
    assert "保存されている読み上げ音声「Google.ja-JP-Standard-A」は Twilio の読み上げ音声に含まれなくなったため" in page
    assert '<option selected value="Polly.Mizuki">' in page
    # What callers hear uses the default too: the TwiML Bin snippet names it.
    help_page = html.unescape(client.get("/admin/twilio/accounts/new").get_data(as_text=True))
    assert 'voice="Polly.Mizuki"' in help_page and "Standard-A" not in help_page
    client.post("/admin/xmon-settings/", data={"xmon_url": "https://xmon.example.com", "voice": "Polly.Takumi"})
    assert _stored() == ("https://xmon.example.com", "Polly.Takumi")
    assert "含まれなくなった" not in client.get("/admin/xmon-settings/").get_data(as_text=True)


def test_reading_the_settings_never_creates_the_row(app: Flask) -> None:
    """Readers (pages, the dispatcher) that commit other work must not all insert the row."""
    from sqlalchemy import func, select

    assert XmonSettings.get().xmon_url is None
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(XmonSettings)) == 0

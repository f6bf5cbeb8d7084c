"""X-MON 設定 (R1, R15), with where acknowledgements go (R12) and the per-number limits (B8)."""

from __future__ import annotations

import html
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from xmonbridge import secretbox
from xmonbridge.acks import sink
from xmonbridge.extensions import db
from xmonbridge.models import ACK_COMMAND_FILE, ACK_HTTP, ACK_NONE, XmonSettings
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


# --- 認知済みの通知先 (R12) and 同じ番号への発信の上限 (B8) ---------------------------------------

URL = "https://xmon.example.com"
TOKEN = "monitor-token-0123456789"


def _form(**values: Any) -> dict[str, Any]:
    """Everything the page posts (the browser sends every field)."""
    data: dict[str, Any] = {
        "xmon_url": URL,
        "voice": "Polly.Mizuki",
        "ack_mode": ACK_NONE,
        "ack_command_file": "",
        "ack_http_url": "",
        "ack_http_token": "",
        "calls_per_15min": "6",
        "calls_per_hour": "20",
    }
    data.update(values)
    return data


def _row() -> XmonSettings | None:
    db.session.expire_all()
    return db.session.scalar(select(XmonSettings))


def _error(page: str, field: str) -> str:
    found = re.search(rf'<div class="invalid-feedback d-block" id="{field}-error">(.*?)</div>', page, re.S)
    assert found, f"no error shown for {field}"
    return html.unescape(found.group(1))


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "rw" / "nagios.cmd"
    path.parent.mkdir()
    os.mkfifo(path)
    return path


def test_the_page_offers_the_sinks_and_limits_with_their_defaults(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get("/admin/xmon-settings/").get_data(as_text=True)
    for field, label in [
        ("ack_command_file", "外部コマンドファイル"),
        ("ack_http_url", "通知先 URL"),
        ("ack_http_token", "通知先のトークン"),
        ("calls_per_15min", "同じ番号への発信の上限(15 分あたり)"),
        ("calls_per_hour", "同じ番号への発信の上限(1 時間あたり)"),
    ]:
        assert f'<label class="form-label" for="{field}">{label}</label>' in page
    assert "<legend class=\"form-label fs-6 mb-1\">認知済みの通知先</legend>" in page
    for number, (value, label) in enumerate([(ACK_NONE, "送らない"), (ACK_COMMAND_FILE, "Nagios の外部コマンドファイルに書き込む"), (ACK_HTTP, "HTTP で POST する")]):
        assert f'<label class="form-check-label" for="ack_mode-{number}">{label}</label>' in page
        assert f'value="{value}"' in page
    assert re.search(r'<input checked[^>]*id="ack_mode-0"', page)
    assert re.search(r'<input[^>]*id="calls_per_15min"[^>]*value="6"', page)
    assert re.search(r'<input[^>]*id="calls_per_hour"[^>]*value="20"', page)
    assert page.count("通信事業者に迷惑電話と判定されて発信元の番号が止められるのを防ぎます。") == 2
    assert "/var/lib/nagios4/rw/nagios.cmd" in page
    # No stored token yet: nothing to remove.
    assert "未設定です。" in page and "ack_http_token_clear" not in page
    assert _row() is None


def test_a_fifo_is_saved_and_acknowledgements_reach_it(
    client: FlaskClient, logged_in: AuthActions, fifo: Path
) -> None:
    response = client.post("/admin/xmon-settings/", data=_form(ack_mode=ACK_COMMAND_FILE, ack_command_file=f" {fifo} "))
    assert response.status_code == 302
    row = _row()
    assert row is not None and (row.ack_mode, row.ack_command_file) == (ACK_COMMAND_FILE, str(fifo))
    page = client.get("/admin/xmon-settings/").get_data(as_text=True)
    assert f'value="{fifo}"' in page and re.search(r'<input checked[^>]*id="ack_mode-1"', page)

    # What the page saved is what the sink writes to.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        request = sink.AckRequest(host="web01", service="HTTP", author="佐藤", comment="電話", at=datetime(2026, 1, 1))
        sink.send(request, XmonSettings.get())
        assert os.read(reader, 4096).decode() == sink.command_line(request)
    finally:
        os.close(reader)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("regular", "が FIFO ではありません"),
        ("missing", "がありません"),
        ("directory", "が FIFO ではありません"),
        ("", "外部コマンドファイルが設定されていません"),
        ("relative", "/ で始まる絶対パスで指定してください"),
    ],
)
def test_a_command_file_that_is_not_a_fifo_saves_nothing(
    client: FlaskClient, logged_in: AuthActions, tmp_path: Path, path: str, message: str
) -> None:
    target = {
        "regular": tmp_path / "nagios.cmd",
        "missing": tmp_path / "nowhere" / "nagios.cmd",
        "directory": tmp_path,
        "": "",
        "relative": "rw/nagios.cmd",
    }[path]
    if path == "regular":
        (tmp_path / "nagios.cmd").write_text("")
    page = client.post(
        "/admin/xmon-settings/", data=_form(ack_mode=ACK_COMMAND_FILE, ack_command_file=str(target))
    ).get_data(as_text=True)
    assert message in _error(page, "ack_command_file")
    assert _row() is None
    if path == "regular":
        assert (tmp_path / "nagios.cmd").read_text() == ""


def test_a_path_for_another_sink_is_kept_but_not_checked(client: FlaskClient, logged_in: AuthActions, tmp_path: Path) -> None:
    """Nagios may be stopped (no FIFO) while acknowledgements go elsewhere: saving still works."""
    missing = tmp_path / "nagios.cmd"
    assert client.post("/admin/xmon-settings/", data=_form(ack_command_file=str(missing))).status_code == 302
    row = _row()
    assert row is not None and (row.ack_mode, row.ack_command_file) == (ACK_NONE, str(missing))
    page = client.post("/admin/xmon-settings/", data=_form(ack_command_file="nagios.cmd")).get_data(as_text=True)
    assert "絶対パス" in _error(page, "ack_command_file")


def test_http_needs_an_http_url(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.post("/admin/xmon-settings/", data=_form(ack_mode=ACK_HTTP)).get_data(as_text=True)
    assert _error(page, "ack_http_url") == "「HTTP で POST する」には通知先 URL が必要です。"
    for url in ("ftp://monitor.example.com/acks", "monitor.example.com/acks", "https://"):
        page = client.post("/admin/xmon-settings/", data=_form(ack_mode=ACK_HTTP, ack_http_url=url)).get_data(as_text=True)
        assert "URL" in _error(page, "ack_http_url")
    assert _row() is None


def test_the_token_is_write_only(client: FlaskClient, logged_in: AuthActions) -> None:
    endpoint = "http://monitor.example.com:8080/api/acks?source=xmonbridge"
    client.post("/admin/xmon-settings/", data=_form(ack_mode=ACK_HTTP, ack_http_url=endpoint, ack_http_token=TOKEN))
    row = _row()
    assert row is not None and row.ack_http_url == endpoint
    assert row.ack_http_token_encrypted and TOKEN not in row.ack_http_token_encrypted
    assert secretbox.decrypt(row.ack_http_token_encrypted) == TOKEN
    page = client.get("/admin/xmon-settings/").get_data(as_text=True)
    assert TOKEN not in page and "設定済み(表示しません)。通知先 URL へのリクエストに Authorization: Bearer ヘッダで付けます。空欄のままにすると変更しません。" in page
    assert "不要なら空欄" not in page
    assert '<label class="form-check-label" for="ack_http_token_clear">保存されているトークンを削除する</label>' in page

    # An empty field keeps it (other changes are saved).
    client.post("/admin/xmon-settings/", data=_form(ack_mode=ACK_HTTP, ack_http_url=endpoint, calls_per_15min="5"))
    row = _row()
    assert row is not None and row.calls_per_15min == 5 and secretbox.decrypt(row.ack_http_token_encrypted or "") == TOKEN
    # Typing a new one and ticking the removal at once is refused.
    page = client.post(
        "/admin/xmon-settings/",
        data=_form(ack_mode=ACK_HTTP, ack_http_url=endpoint, ack_http_token="other-token", ack_http_token_clear="y"),
    ).get_data(as_text=True)
    assert "同時に指定できません" in _error(page, "ack_http_token") and "other-token" not in page
    # The checkbox removes it.
    client.post("/admin/xmon-settings/", data=_form(ack_mode=ACK_HTTP, ack_http_url=endpoint, ack_http_token_clear="y"))
    row = _row()
    assert row is not None and row.ack_http_token_encrypted is None
    assert "未設定です。" in client.get("/admin/xmon-settings/").get_data(as_text=True)


@pytest.mark.parametrize("token", ["two words", "日本語のトークン", "x" * 1025])
def test_a_token_no_header_can_carry_is_refused(client: FlaskClient, logged_in: AuthActions, token: str) -> None:
    page = client.post(
        "/admin/xmon-settings/", data=_form(ack_mode=ACK_HTTP, ack_http_url="https://m.example/acks", ack_http_token=token)
    ).get_data(as_text=True)
    assert _error(page, "ack_http_token")
    assert token not in page and _row() is None


def test_the_limits_are_saved(client: FlaskClient, logged_in: AuthActions) -> None:
    assert client.post("/admin/xmon-settings/", data=_form(calls_per_15min="3", calls_per_hour="3")).status_code == 302
    row = _row()
    assert row is not None and (row.calls_per_15min, row.calls_per_hour) == (3, 3)
    assert client.post("/admin/xmon-settings/", data=_form(calls_per_15min="100", calls_per_hour="500")).status_code == 302
    row = _row()
    assert row is not None and (row.calls_per_15min, row.calls_per_hour) == (100, 500)


@pytest.mark.parametrize(
    ("per_15min", "per_hour", "field", "message"),
    [
        ("0", "20", "calls_per_15min", "1 から 100 までの整数で入力してください。"),
        ("101", "200", "calls_per_15min", "1 から 100 までの整数で入力してください。"),
        ("6", "501", "calls_per_hour", "1 から 500 までの整数で入力してください。"),
        ("6", "0", "calls_per_hour", "1 から 500 までの整数で入力してください。"),
        ("10", "9", "calls_per_hour", "1 時間あたりの上限は 15 分あたりの上限以上にしてください。"),
        ("", "20", "calls_per_15min", "このフィールドは必須です。"),
        ("6", "2.5", "calls_per_hour", ""),
    ],
)
def test_limits_out_of_range_save_nothing(
    client: FlaskClient, logged_in: AuthActions, per_15min: str, per_hour: str, field: str, message: str
) -> None:
    page = client.post(
        "/admin/xmon-settings/", data=_form(calls_per_15min=per_15min, calls_per_hour=per_hour)
    ).get_data(as_text=True)
    shown = _error(page, field)
    assert message in shown
    assert _row() is None


def test_fields_absent_from_a_post_keep_their_values(client: FlaskClient, logged_in: AuthActions, fifo: Path) -> None:
    client.post(
        "/admin/xmon-settings/",
        data=_form(ack_mode=ACK_COMMAND_FILE, ack_command_file=str(fifo), calls_per_15min="4", calls_per_hour="12"),
    )
    client.post("/admin/xmon-settings/", data={"xmon_url": "https://other.example.com", "voice": "Polly.Takumi"})
    row = _row()
    assert row is not None and row.xmon_url == "https://other.example.com"
    assert (row.ack_mode, row.ack_command_file, row.calls_per_15min, row.calls_per_hour) == (ACK_COMMAND_FILE, str(fifo), 4, 12)

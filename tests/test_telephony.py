"""The Twilio gateway against the fake Twilio (live mode) and in simulate mode."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from xmonbridge import from_numbers, telephony
from xmonbridge.extensions import db
from xmonbridge.models import LOG_NUMBERS, LOG_TEST_CALL, RequestLog, SimulatedMessage
from tests.factories import AUTH_TOKEN, BIN_URL, make_twilio_account


def _logs() -> list[RequestLog]:
    db.session.expire_all()
    return list(db.session.scalars(select(RequestLog).order_by(RequestLog.id)))


def test_a_call_reaches_twilio_and_is_logged(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    context = telephony.LogContext(LOG_TEST_CALL, "simple_call", None, "担当者への電話連絡")
    sid = telephony.place_call(account, to="+819001230001", from_="+815012340001", url=BIN_URL, timeout=45, context=context)
    [call] = fake_twilio.calls()
    assert call.form == {"To": "+819001230001", "From": "+815012340001", "Url": BIN_URL, "Timeout": "45"}
    assert call.auth_username == account.account_sid and call.auth_password == AUTH_TOKEN
    [row] = _logs()
    assert (row.kind, row.http_status, row.sid, row.success, row.simulated) == (LOG_TEST_CALL, 201, sid, True, False)
    assert row.destination == "+819001230001" and row.setting_name == "担当者への電話連絡"
    assert json.loads(row.request_summary) == {"Url": BIN_URL, "Timeout": 45}


@pytest.mark.parametrize(
    "status,code,outcome,text",
    [
        (400, 21211, "permanent", "宛先の電話番号が正しくありません"),
        (401, 20003, "permanent", "Twilio の認証に失敗しました"),
        (429, 20429, "temporary", "Twilio へのリクエストが多すぎます"),
        # A create's 5xx does not say whether the message was sent.
        (500, 20500, "unknown", "発信されたか確認できません"),
    ],
)
def test_errors_are_classified_and_logged(
    live_app: Flask, fake_twilio: Any, status: int, code: int, outcome: str, text: str
) -> None:
    account = make_twilio_account()
    fake_twilio.fail_next(status, code=code)
    with pytest.raises(telephony.TwilioError) as caught:
        telephony.send_sms(account, to="+819001230001", from_="+815012340001", body="テスト")
    assert caught.value.outcome == outcome and caught.value.code == code
    assert caught.value.permanent is (outcome == "permanent")
    assert text in str(caught.value)
    [row] = _logs()
    assert (row.http_status, row.error_code, row.success) == (status, code, False)


def test_a_stalled_read_is_a_temporary_timeout(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    fake_twilio.stall_next(3)
    with pytest.raises(telephony.TwilioError, match="タイムアウト") as caught:
        telephony.list_numbers(account)
    assert caught.value.temporary and not caught.value.permanent
    [row] = _logs()
    assert row.http_status is None and row.error_message == "timeout" and not row.success


def test_a_stalled_create_is_unknown(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    fake_twilio.stall_next(3)
    with pytest.raises(telephony.TwilioError, match="発信されたか確認できません") as caught:
        telephony.place_call(account, to="+819001230001", from_="+815012340001", url=BIN_URL, timeout=60)
    assert caught.value.unknown and not caught.value.permanent
    [row] = _logs()
    assert row.http_status is None and row.error_message == "timeout" and not row.success


def test_numbers_are_cached_and_kept_on_failure(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    from_numbers.refresh(account)
    db.session.commit()
    assert [n.phone_number for n in from_numbers.cached(account.id, voice=True)] == ["+815012340001", "+815012340002"]
    assert [n.phone_number for n in from_numbers.cached(account.id, sms=True)] == ["+815012340001"]
    fake_twilio.fail_next(500)
    with pytest.raises(telephony.TwilioError):
        from_numbers.refresh(account)
    db.session.rollback()
    assert len(from_numbers.cached(account.id)) == 2
    assert [(r.kind, r.success) for r in _logs()] == [(LOG_NUMBERS, True), (LOG_NUMBERS, False)]


def test_no_secret_in_any_log_row(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    telephony.place_call(account, to="+819001230001", from_="+815012340001", url=BIN_URL, timeout=60)
    fake_twilio.fail_next(401, code=20003)
    with pytest.raises(telephony.TwilioError):
        telephony.list_numbers(account)
    for row in _logs():
        values = " ".join(str(getattr(row, c.key)) for c in RequestLog.__table__.columns)
        assert AUTH_TOKEN not in values and account.auth_token_encrypted not in values


def test_simulate_mode_sends_nothing(app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    sid = telephony.place_call(account, to="+819001230001", from_="+815012340001", url=BIN_URL, timeout=60)
    msid = telephony.send_sms(account, to="+819001230001", from_="+815012340001", body="テスト")
    numbers = telephony.list_numbers(account)
    assert sid.startswith("CA") and len(sid) == 34 and msid.startswith("SM")
    assert any(n.voice for n in numbers) and any(n.sms for n in numbers)
    assert telephony.fetch_call(account, sid).status == "queued"
    assert fake_twilio.requests == []
    assert all(row.simulated and row.success for row in _logs())
    placed = db.session.scalars(select(SimulatedMessage).order_by(SimulatedMessage.id)).all()
    assert [(p.channel, p.to_number, p.url or p.body) for p in placed] == [
        ("call", "+819001230001", BIN_URL),
        ("sms", "+819001230001", "テスト"),
    ]


def test_an_unreachable_twilio_is_a_temporary_connection_error(make_app: Any) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = make_app(TWILIO_MODE="live", TWILIO_API_BASE=closed)
    with app.app_context():
        account = make_twilio_account()
        with pytest.raises(telephony.TwilioError, match="Twilio に接続できませんでした") as caught:
            telephony.list_numbers(account)
        assert caught.value.temporary
        with pytest.raises(telephony.TwilioError, match="Twilio に接続できませんでした") as caught:
            telephony.place_call(account, to="+819001230001", from_="+815012340001", url=BIN_URL, timeout=60)
        assert caught.value.temporary  # never sent, so a create is safe to retry too
        rows = _logs()
        assert [r.http_status for r in rows] == [None, None]
        assert all(r.error_message.startswith("connection error:") for r in rows)


def test_simulate_mode_answers_unknown_calls_like_twilio(app: Flask) -> None:
    account = make_twilio_account()
    with pytest.raises(telephony.TwilioError, match="見つかりません") as caught:
        telephony.fetch_call(account, "CA" + "0" * 32)
    assert caught.value.status == 404 and caught.value.code == 20404
    [row] = _logs()
    assert (row.http_status, row.error_code, row.simulated, row.success) == (404, 20404, True, False)


def test_an_undecryptable_token_is_reported_not_crashed(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    account.auth_token_encrypted = "gAAAAA-not-a-valid-token"
    db.session.commit()
    with pytest.raises(telephony.TwilioError, match="AUTH TOKEN を復号できません"):
        telephony.list_numbers(account)


def test_an_account_imported_without_its_token_says_to_enter_it(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    # As `xmonbridge import` creates an account exported without --with-secrets.
    account.auth_token_encrypted = ""
    db.session.commit()
    with pytest.raises(telephony.TwilioError, match="AUTH TOKEN が設定されていません") as caught:
        telephony.place_call(account, to="+819001230001", from_="+815012340001", url=BIN_URL, timeout=45,
                             context=telephony.LogContext(LOG_TEST_CALL, "simple_call", None, "電話連絡"))
    assert caught.value.permanent and fake_twilio.calls() == []
    [row] = _logs()
    assert not row.success


def test_a_refresh_marks_the_account_read_even_without_numbers(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    assert account.numbers_fetched_at is None
    fake_twilio.phone_numbers["*"] = []
    from_numbers.refresh(account)
    db.session.commit()
    assert from_numbers.cached(account.id) == [] and account.numbers_fetched_at is not None


def test_forget_drops_the_cache_and_the_mark(live_app: Flask, fake_twilio: Any) -> None:
    account, other = make_twilio_account(), make_twilio_account(name="別のアカウント")
    for each in (account, other):
        from_numbers.refresh(each)
        db.session.commit()  # the request log is written apart: no write lock may be held
    from_numbers.forget(account)
    db.session.commit()
    assert from_numbers.cached(account.id) == [] and account.numbers_fetched_at is None
    assert len(from_numbers.cached(other.id)) == 2 and other.numbers_fetched_at is not None


def test_gunicorn_waits_longer_than_a_create_and_its_look_up(app: Any) -> None:
    from xmonbridge.cli import worker_timeout

    app.config.update(TWILIO_CONNECT_TIMEOUT=5.0, TWILIO_READ_TIMEOUT=15.0)
    assert worker_timeout(app) > 2 * (5 + 15)
    app.config.update(TWILIO_READ_TIMEOUT=40.0)
    assert worker_timeout(app) > 2 * (5 + 40)

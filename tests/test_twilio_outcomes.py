"""Creates are not idempotent: which failures leave a call or message unknown, and the look-up."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from xmonbridge import telephony
from xmonbridge.extensions import db
from xmonbridge.models import LOG_CALL, LOG_FIND_CALLS, LOG_FIND_MESSAGES, LOG_KINDS, RequestLog, utcnow
from tests.factories import BIN_URL, make_twilio_account

TO, OTHER, FROM = "+819001230001", "+819001230002", "+815012340001"


def _logs() -> list[RequestLog]:
    db.session.expire_all()
    return list(db.session.scalars(select(RequestLog).order_by(RequestLog.id)))


def _call(account: Any, to: str = TO) -> str:
    return telephony.place_call(account, to=to, from_=FROM, url=BIN_URL, timeout=30)


def test_a_500_on_create_is_unknown_and_the_look_up_finds_the_call(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    before = utcnow() - timedelta(seconds=1)
    fake_twilio.fail_next(500, operation="CreateCall", after_create=True)
    with pytest.raises(telephony.TwilioError) as caught:
        _call(account)
    error = caught.value
    assert (error.outcome, error.unknown, error.temporary, error.permanent) == ("unknown", True, False, False)
    assert str(error).startswith("発信されたか確認できません。") and "Twilio Console" in str(error)
    [made] = fake_twilio.calls_by_sid  # Twilio did place it
    fake_twilio.set_call_status(made, "ringing")
    found = telephony.find_calls(account, to=TO, from_=FROM, started_after=before)
    assert [(f.sid, f.to, f.from_, f.status) for f in found] == [(made, TO, FROM, "ringing")]
    [query] = fake_twilio.requests_for("ListCall")
    # Not filtered by StartTime at Twilio: a call still queued has none and must be found too.
    assert query.query["To"] == TO and query.query["From"] == FROM and "StartTime>" not in query.query
    rows = _logs()
    assert [(r.kind, r.http_status, r.success) for r in rows] == [(LOG_CALL, 500, False), (LOG_FIND_CALLS, 200, True)]
    assert rows[1].sid == made and rows[1].destination == TO and LOG_KINDS[LOG_FIND_CALLS] == "通話検索"
    assert json.loads(rows[1].request_summary)["To"] == TO


def test_the_look_up_honours_to_from_and_creation_time_and_finds_queued_calls(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    earlier = _call(account)
    fake_twilio.set_call_status(earlier, "completed", duration=5)
    fake_twilio.calls_by_sid[earlier]["date_created"] = "Tue, 31 Mar 2020 23:00:00 +0000"
    other = _call(account, to=OTHER)
    fake_twilio.set_call_status(other, "ringing")
    queued = _call(account)  # not dialled yet (Twilio queues over the account's CPS): no StartTime
    recent = _call(account)
    fake_twilio.set_call_status(recent, "in-progress")
    found = telephony.find_calls(account, to=TO, from_=FROM, started_after=utcnow() - timedelta(minutes=1))
    assert sorted(f.sid for f in found) == sorted([recent, queued])
    assert earlier not in [f.sid for f in found] and other not in [f.sid for f in found]


def test_a_read_timeout_on_create_is_unknown_and_the_message_is_found(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    before = utcnow() - timedelta(seconds=1)
    fake_twilio.stall_next(3, operation="CreateMessage", after_create=True)
    with pytest.raises(telephony.TwilioError, match="発信されたか確認できません") as caught:
        telephony.send_sms(account, to=TO, from_=FROM, body="障害通知")
    assert caught.value.unknown
    [sid] = fake_twilio.messages_by_sid
    fake_twilio.set_message_status(sid, "sent")
    found = telephony.find_messages(account, to=TO, from_=FROM, sent_after=before)
    assert [(f.sid, f.status) for f in found] == [(sid, "sent")]
    assert telephony.find_messages(account, to=OTHER, from_=FROM, sent_after=before) == []
    [query, _] = fake_twilio.requests_for("ListMessage")
    assert "DateSent>" not in query.query  # a queued message has no DateSent yet
    assert [r.kind for r in _logs()] == ["sms", LOG_FIND_MESSAGES, LOG_FIND_MESSAGES]
    assert LOG_KINDS[LOG_FIND_MESSAGES] == "SMS検索"


def test_a_connection_reset_after_sending_is_unknown(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    fake_twilio.drop_next(operation="CreateCall")
    with pytest.raises(telephony.TwilioError) as caught:
        _call(account)
    assert caught.value.unknown and "接続が切断" in str(caught.value)
    assert len(fake_twilio.calls_by_sid) == 1
    [row] = _logs()
    assert row.http_status is None and row.error_message.startswith("connection error after sending")


def test_429_is_temporary_and_nothing_was_made(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    fake_twilio.fail_next(429, operation="CreateCall")
    with pytest.raises(telephony.TwilioError) as caught:
        _call(account)
    assert caught.value.temporary and caught.value.retry_cap is None
    assert fake_twilio.calls_by_sid == {}


def test_a_5xx_on_a_read_is_temporary(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    fake_twilio.fail_next(503, operation="ListCall")
    with pytest.raises(telephony.TwilioError, match="一時的なエラー") as caught:
        telephony.find_calls(account, to=TO, from_=FROM, started_after=utcnow())
    assert caught.value.temporary


def test_13224_is_temporary_with_a_retry_cap(live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account()
    fake_twilio.fail_next(400, code=13224, operation="CreateCall")
    with pytest.raises(telephony.TwilioError) as caught:
        _call(account)
    assert caught.value.temporary and caught.value.retry_cap == telephony.MAX_RETRIES_BY_CODE[13224] == 2


def test_the_old_permanent_flag_still_works() -> None:
    assert telephony.TwilioError("x", permanent=True).outcome == "permanent"
    assert telephony.TwilioError("x", permanent=False).outcome == "temporary"
    with pytest.raises(ValueError):
        telephony.TwilioError("x", outcome="maybe")


def test_the_log_detail_explains_an_unknown_create(live_app: Flask, live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    account = make_twilio_account()
    fake_twilio.stall_next(3, operation="CreateCall", after_create=True)
    with pytest.raises(telephony.TwilioError):
        _call(account)
    [row] = [r for r in _logs() if r.kind == LOG_CALL]
    page = live_logged_in.get(f"/admin/twilio/logs/{row.id}").get_data(as_text=True)
    assert "発信されたか確認できません。" in page and "(応答待ちのタイムアウト)" in page
    assert "発信・送信されたか確認してから再試行" in page


def test_simulate_mode_finds_what_it_placed(app: Flask) -> None:
    account = make_twilio_account()
    before = utcnow() - timedelta(seconds=1)
    sid = _call(account)
    _call(account, to=OTHER)
    msid = telephony.send_sms(account, to=TO, from_=FROM, body="テスト")
    assert [f.sid for f in telephony.find_calls(account, to=TO, from_=FROM, started_after=before)] == [sid]
    assert [f.sid for f in telephony.find_messages(account, to=TO, from_=FROM, sent_after=before)] == [msid]
    later = utcnow() + timedelta(minutes=1)
    assert telephony.find_calls(account, to=TO, from_=FROM, started_after=later) == []
    assert all(r.simulated for r in _logs())


def test_a_create_is_logged_before_it_is_sent(live_app: Flask, fake_twilio: Any) -> None:
    """A process killed while Twilio works on a call leaves a row saying the outcome is unknown."""
    import threading
    import time

    from sqlalchemy.orm import Session

    from xmonbridge.twilio_errors import explain_logged

    account = make_twilio_account()
    account_id = account.id
    fake_twilio.stall_next(2, operation="CreateCall", after_create=True)
    done = threading.Event()

    def call() -> None:
        with live_app.app_context():
            try:
                _call(db.session.get(type(account), account_id))
            except telephony.TwilioError:
                pass
            finally:
                done.set()

    worker = threading.Thread(target=call)
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while not fake_twilio.calls_by_sid and time.monotonic() < deadline:
            time.sleep(0.05)
        # Twilio holds the call and has not answered: the row is already there.
        with Session(db.engine) as session:
            [row] = session.scalars(select(RequestLog)).all()
            assert (row.kind, row.success, row.http_status) == (LOG_CALL, False, None)
            error = explain_logged(row.http_status, row.error_code, row.error_message, create=True)
            assert error is not None and error.unknown and "処理が中断されました" in str(error)
    finally:
        worker.join(10)
    assert done.is_set()
    # Once the answer comes (here a timeout), the same row holds it: still one row.
    [row] = _logs()
    assert row.error_message == "timeout" and row.duration_ms > 0

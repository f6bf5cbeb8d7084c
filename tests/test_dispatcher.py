"""The dispatcher, one pass at a time, against the fake Twilio, with a clock moved by hand."""

from __future__ import annotations

import random
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.dispatch_helpers import FakeClock, queue
from tests.factories import ACCOUNT_SID, make_recipient, make_simple_call_setting, make_sms_setting, make_twilio_account, set_xmon_url
from xmonbridge.dispatch.engine import Dispatcher
from xmonbridge.extensions import db
from xmonbridge.twilio_errors import LOGGED_WAITING
from xmonbridge.models import (
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    NOTIFICATION_DONE,
    NOTIFICATION_FAILED,
    OUTCOME_ADOPTED,
    OUTCOME_PENDING,
    OUTCOME_PERMANENT,
    OUTCOME_PLACED,
    OUTCOME_TEMPORARY,
    OUTCOME_UNKNOWN,
    Attempt,
    Delivery,
    Notification,
    RequestLog,
)

PHONES = ["+819001230001", "+819001230002", "+819001230003"]


@pytest.fixture
def three(any_db_live_app: Flask) -> list[Any]:
    return [make_recipient(login=f"u{i}", name=f"担当者{i}", phone=phone) for i, phone in enumerate(PHONES)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def dispatcher(clock: FakeClock, holder: str = "test-a") -> Dispatcher:
    return Dispatcher(holder=holder, clock=clock, rng=random.Random(7))


def deliveries(notification: Notification) -> list[Delivery]:
    db.session.expire_all()
    return list(db.session.scalars(select(Delivery).where(Delivery.notification_id == notification.id).order_by(Delivery.position)))


def test_simple_call_reaches_every_recipient_with_the_bin_url_and_status_callback(
    any_db_live_app: Flask, fake_twilio: Any, three: list[Any], clock: FakeClock
) -> None:
    set_xmon_url("https://xmon.example.jp/bridge")
    account = make_twilio_account(cps=100)
    setting = make_simple_call_setting(account, three, ring_seconds=45)
    notification = queue(setting, "ホスト web-server01 のサービス HTTP で障害が発生しました。", at=clock.now())

    dispatcher(clock).run_once()

    calls = fake_twilio.requests_for("CreateCall")
    assert sorted(r.form["To"] for r in calls) == PHONES
    for request in calls:
        assert request.form["From"] == "+815012340001"
        assert request.form["Timeout"] == "45"
        assert request.form["Url"].startswith(setting.account.twiml_bin_url + "?message=")
        assert request.form["StatusCallback"].startswith("https://xmon.example.jp/bridge/twilio/status/")
    heard = {fake_twilio.heard(sid) for sid in fake_twilio.calls_by_sid}
    assert heard == {"ホスト web-server01 のサービス HTTP で障害が発生しました。"}
    rows = deliveries(notification)
    assert [d.status for d in rows] == [DELIVERY_SENT] * 3
    assert {d.sid for d in rows} == set(fake_twilio.calls_by_sid)
    assert all(d.attempts[0].outcome == OUTCOME_PLACED for d in rows)
    assert db.session.get(Notification, notification.id).status == NOTIFICATION_DONE
    # Logged like every request, with the setting named.
    logged = db.session.scalars(select(RequestLog).where(RequestLog.kind == "call")).all()
    assert len(logged) == 3 and {r.setting_name for r in logged} == {setting.name}


def test_sms_to_every_recipient_without_callback_when_no_xmon_url(
    any_db_live_app: Flask, fake_twilio: Any, three: list[Any], clock: FakeClock
) -> None:
    account = make_twilio_account(cps=100)
    setting = make_sms_setting(account, three)
    queue(setting, "[X-MON 障害] ホスト web-server01 のサービス HTTP", at=clock.now())

    dispatcher(clock).run_once()

    messages = fake_twilio.requests_for("CreateMessage")
    assert sorted(r.form["To"] for r in messages) == PHONES
    assert {r.form["Body"] for r in messages} == {"[X-MON 障害] ホスト web-server01 のサービス HTTP"}
    assert all("StatusCallback" not in r.form for r in messages)


def test_calls_per_second_are_spaced_per_account(any_db_live_app: Flask, fake_twilio: Any, three: list[Any], clock: FakeClock) -> None:
    account = make_twilio_account(cps=1)
    setting = make_simple_call_setting(account, three)
    queue(setting, at=clock.now())
    worker = dispatcher(clock)

    wait = worker.run_once()
    assert len(fake_twilio.requests_for("CreateCall")) == 1
    assert 0.9 <= wait <= 1.0
    clock.advance(0.5)
    worker.run_once()
    assert len(fake_twilio.requests_for("CreateCall")) == 1
    clock.advance(0.5)
    worker.run_once()
    assert len(fake_twilio.requests_for("CreateCall")) == 2
    clock.advance(1)
    worker.run_once()
    assert len(fake_twilio.requests_for("CreateCall")) == 3


def test_429_backs_the_whole_account_off(any_db_live_app: Flask, fake_twilio: Any, three: list[Any], clock: FakeClock) -> None:
    account = make_twilio_account(cps=100)
    setting = make_simple_call_setting(account, three)
    notification = queue(setting, at=clock.now())
    fake_twilio.fail_next(429, 20429, operation="CreateCall")
    worker = dispatcher(clock)

    worker.run_once()
    # The first got 429: nobody else on the account is called during the pause.
    assert len(fake_twilio.requests_for("CreateCall")) == 1
    first = deliveries(notification)[0]
    assert first.status == DELIVERY_QUEUED
    assert first.attempts[0].outcome == OUTCOME_TEMPORARY and first.attempts[0].error_code == 20429
    pause = (first.next_at - clock.now()).total_seconds()
    assert 2.5 <= pause <= 5.0  # base 5 s, first retry: between half and all of it
    clock.advance(1)
    worker.run_once()
    assert len(fake_twilio.requests_for("CreateCall")) == 1

    clock.advance(5)
    worker.run_once()
    assert len(fake_twilio.requests_for("CreateCall")) == 4
    assert [d.status for d in deliveries(notification)] == [DELIVERY_SENT] * 3


def test_connection_refused_retries_with_backoff_then_gives_up(make_app: Any, clock: FakeClock) -> None:
    app = make_app(TWILIO_MODE="live", TWILIO_API_BASE="http://127.0.0.1:9", DISPATCH_MAX_TRIES=3)
    with app.app_context():
        account = make_twilio_account()
        setting = make_sms_setting(account, [make_recipient()])
        notification = queue(setting, at=clock.now())
        worker = dispatcher(clock)
        waits = []
        for _ in range(3):
            worker.run_once()
            row = deliveries(notification)[0]
            if row.status == DELIVERY_QUEUED:
                waits.append((row.next_at - clock.now()).total_seconds())
                clock.advance(waits[-1])
        row = deliveries(notification)[0]
        assert [a.outcome for a in row.attempts] == [OUTCOME_TEMPORARY] * 3
        # Exponential: 5 s then 10 s (with jitter: at least half of each).
        assert 2.5 <= waits[0] <= 5 and 5 <= waits[1] <= 10
        assert row.status == DELIVERY_FAILED
        assert "再試行の上限(3 回)" in row.error
        assert db.session.get(Notification, notification.id).status == NOTIFICATION_FAILED


def test_invalid_number_is_not_retried(any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock) -> None:
    account = make_twilio_account()
    setting = make_simple_call_setting(account, [make_recipient()])
    notification = queue(setting, at=clock.now())
    fake_twilio.fail_next(400, 21211, operation="CreateCall")
    worker = dispatcher(clock)

    worker.run_once()
    clock.advance(3600)
    worker.run_once()

    assert len(fake_twilio.requests_for("CreateCall")) == 1
    row = deliveries(notification)[0]
    assert row.status == DELIVERY_FAILED
    assert row.attempts[0].outcome == OUTCOME_PERMANENT and row.attempts[0].error_code == 21211
    assert "宛先の電話番号が正しくありません" in row.error


def test_500_after_the_call_was_made_adopts_it_without_a_second_call(
    any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock
) -> None:
    fake_twilio.dial_at_once = True
    account = make_twilio_account()
    setting = make_simple_call_setting(account, [make_recipient()])
    notification = queue(setting, at=clock.now())
    fake_twilio.fail_next(500, operation="CreateCall", after_create=True)
    worker = dispatcher(clock)

    worker.run_once()
    row = deliveries(notification)[0]
    assert row.status == DELIVERY_QUEUED and row.attempts[0].outcome == OUTCOME_UNKNOWN
    # Not looked up at once: Twilio lists a call once it dials.
    worker.run_once()
    assert fake_twilio.requests_for("ListCall") == []

    clock.advance(15)
    worker.run_once()

    assert len(fake_twilio.requests_for("CreateCall")) == 1
    assert len(fake_twilio.requests_for("ListCall")) == 1
    row = deliveries(notification)[0]
    (made,) = fake_twilio.calls_by_sid
    assert row.status == DELIVERY_SENT and row.sid == made
    assert [a.outcome for a in row.attempts] == [OUTCOME_ADOPTED]


def test_500_where_no_call_was_made_places_exactly_one_more(any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock) -> None:
    fake_twilio.dial_at_once = True
    account = make_twilio_account()
    setting = make_simple_call_setting(account, [make_recipient()])
    notification = queue(setting, at=clock.now())
    fake_twilio.fail_next(500, operation="CreateCall")
    worker = dispatcher(clock)

    worker.run_once()
    clock.advance(15)
    worker.run_once()
    clock.advance(60)
    worker.run_once()

    assert len(fake_twilio.requests_for("CreateCall")) == 2
    assert len(fake_twilio.calls_by_sid) == 1
    row = deliveries(notification)[0]
    assert [a.outcome for a in row.attempts] == [OUTCOME_UNKNOWN, OUTCOME_PLACED]
    assert row.status == DELIVERY_SENT


def test_an_earlier_call_to_the_same_person_is_not_adopted(any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock) -> None:
    fake_twilio.dial_at_once = True
    account = make_twilio_account()
    setting = make_simple_call_setting(account, [make_recipient()])
    first = queue(setting, at=clock.now())
    worker = dispatcher(clock)
    worker.run_once()
    assert deliveries(first)[0].status == DELIVERY_SENT

    clock.advance(2)
    second = queue(setting, at=clock.now())
    fake_twilio.fail_next(500, operation="CreateCall")
    worker.run_once()
    clock.advance(15)
    worker.run_once()

    # The first notification's call was found but is not this one: a new call is placed.
    assert len(fake_twilio.calls_by_sid) == 2
    assert deliveries(second)[0].sid != deliveries(first)[0].sid


def test_a_process_killed_mid_request_is_looked_up_not_placed_blind(
    any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock
) -> None:
    fake_twilio.dial_at_once = True
    account = make_twilio_account()
    setting = make_simple_call_setting(account, [make_recipient()])
    notification = queue(setting, at=clock.now())
    worker = dispatcher(clock)
    worker.run_once()
    # As if the process died after Twilio made the call and before the outcome was written.
    row = deliveries(notification)[0]
    row.status, row.sid = DELIVERY_SENDING, ""
    row.attempts[0].outcome, row.attempts[0].sid = OUTCOME_PENDING, ""
    logged = db.session.scalars(select(RequestLog).where(RequestLog.kind == "call")).one()
    logged.success, logged.sid, logged.error_message = False, "", LOGGED_WAITING
    db.session.commit()

    clock.advance(10)
    worker.run_once()
    assert deliveries(notification)[0].status == DELIVERY_SENDING  # another process may still be at it

    clock.advance(40)
    worker.run_once()  # found interrupted: marked unknown, looked up
    worker.run_once()

    assert len(fake_twilio.requests_for("CreateCall")) == 1
    row = deliveries(notification)[0]
    assert row.status == DELIVERY_SENT
    assert row.attempts[0].outcome == OUTCOME_ADOPTED and row.sid in fake_twilio.calls_by_sid


def test_only_the_lease_holder_dispatches_and_another_takes_over(
    any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock
) -> None:
    account = make_twilio_account(cps=100)
    setting = make_sms_setting(account, [make_recipient()])
    leader, other = dispatcher(clock, "a"), dispatcher(clock, "b")
    leader.run_once()
    assert leader.leads()

    queue(setting, at=clock.now())
    other.run_once()
    assert not other.leads()
    assert fake_twilio.requests_for("CreateMessage") == []

    # The leader stops renewing (hung or dead): within the lease time the other takes over.
    clock.advance(9)
    other.run_once()
    assert fake_twilio.requests_for("CreateMessage") == []
    clock.advance(2)
    other.run_once()
    assert other.leads()
    assert len(fake_twilio.requests_for("CreateMessage")) == 1

    # The old leader wakes up late: it knows its lease ended and sends nothing.
    queue(setting, at=clock.now())
    assert not leader.leads()
    leader.run_once()
    assert not leader.leads()
    assert len(fake_twilio.requests_for("CreateMessage")) == 1


def test_a_late_leader_whose_clock_says_it_still_leads_is_fenced_off(
    any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock
) -> None:
    account = make_twilio_account(cps=100)
    setting = make_sms_setting(account, [make_recipient()])
    old = dispatcher(clock, "old")
    old.run_once()
    clock.advance(11)
    new = dispatcher(clock, "new")
    new.run_once()
    assert new.leads()

    notification = queue(setting, at=clock.now())
    # The old one believes it still leads (a stalled thread resuming with a stale deadline).
    old.lease.valid_until = clock.now().replace(year=clock.now().year + 1)
    old._renewed_at = clock.now()
    old.run_once()
    assert fake_twilio.requests_for("CreateMessage") == []
    assert deliveries(notification)[0].status == DELIVERY_QUEUED

    new.run_once()
    assert len(fake_twilio.requests_for("CreateMessage")) == 1


def test_released_lease_is_taken_at_once(any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock) -> None:
    first, second = dispatcher(clock, "a"), dispatcher(clock, "b")
    first.run_once()
    first.release()
    second.run_once()
    assert second.leads()


def test_attempt_rows_record_each_try(any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock) -> None:
    account = make_twilio_account()
    setting = make_sms_setting(account, [make_recipient()])
    notification = queue(setting, at=clock.now())
    fake_twilio.fail_next(503, operation="CreateMessage")
    worker = dispatcher(clock)
    worker.run_once()
    clock.advance(15)
    worker.run_once()
    attempts = db.session.scalars(select(Attempt).order_by(Attempt.id)).all()
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[0].error_code is not None or "確認できません" in attempts[0].error_message
    assert attempts[1].sid.startswith("SM") and attempts[0].callback_token != attempts[1].callback_token
    assert deliveries(notification)[0].tries == 2
    assert ACCOUNT_SID in fake_twilio.requests_for("CreateMessage")[0].path


def test_a_notification_whose_recipients_all_failed_at_intake_is_closed_as_failed(
    any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock
) -> None:
    account = make_twilio_account()
    setting = make_sms_setting(account, [make_recipient()])
    notification = queue(setting, at=clock.now())
    row = deliveries(notification)[0]
    row.status, row.error = DELIVERY_FAILED, "連絡先電話番号が登録されていません。"
    db.session.commit()

    dispatcher(clock).run_once()

    assert fake_twilio.requests_for("CreateMessage") == []
    db.session.expire_all()
    assert db.session.get(Notification, notification.id).status == NOTIFICATION_FAILED


def test_a_process_killed_after_twilio_answered_adopts_the_logged_call(
    any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock
) -> None:
    fake_twilio.dial_at_once = True
    account = make_twilio_account()
    setting = make_simple_call_setting(account, [make_recipient()])
    notification = queue(setting, at=clock.now())
    worker = dispatcher(clock)
    worker.run_once()
    # Killed after the log row got the SID and before the attempt's outcome was committed.
    row = deliveries(notification)[0]
    made = row.sid
    row.status, row.sid = DELIVERY_SENDING, ""
    row.attempts[0].outcome, row.attempts[0].sid = OUTCOME_PENDING, ""
    db.session.commit()

    clock.advance(50)
    worker.run_once()
    worker.run_once()

    assert len(fake_twilio.requests_for("CreateCall")) == 1
    row = deliveries(notification)[0]
    assert row.sid == made and row.attempts[0].outcome == OUTCOME_ADOPTED


def test_expired_dedupe_keys_are_pruned(any_db_live_app: Flask, clock: FakeClock) -> None:
    from datetime import timedelta

    from xmonbridge.models import AlertDedupe

    db.session.add_all(
        [
            AlertDedupe(key="old", claim="a", expires_at=clock.now() - timedelta(seconds=1)),
            AlertDedupe(key="new", claim="b", expires_at=clock.now() + timedelta(minutes=5)),
        ]
    )
    db.session.commit()
    dispatcher(clock).run_once()
    db.session.expire_all()
    assert set(db.session.scalars(select(AlertDedupe.key))) == {"new"}


def test_a_call_twilio_still_queues_is_found_and_adopted(any_db_live_app: Flask, fake_twilio: Any, clock: FakeClock) -> None:
    # Over the account's CPS Twilio queues calls: no StartTime yet, and still not to be doubled.
    fake_twilio.dial_at_once = False
    account = make_twilio_account()
    setting = make_simple_call_setting(account, [make_recipient()])
    notification = queue(setting, at=clock.now())
    fake_twilio.fail_next(500, operation="CreateCall", after_create=True)
    worker = dispatcher(clock)
    worker.run_once()
    clock.advance(15)
    worker.run_once()
    assert len(fake_twilio.requests_for("CreateCall")) == 1
    (made,) = fake_twilio.calls_by_sid
    assert fake_twilio.calls_by_sid[made]["status"] == "queued"
    row = deliveries(notification)[0]
    assert row.sid == made and row.attempts[0].outcome == OUTCOME_ADOPTED

"""record_final(): Twilio's statuses on attempts and deliveries, in any order and more than once."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask

from tests.factories import make_alert, make_recipient, make_simple_call_setting, make_sms_setting, make_twilio_account
from xmonbridge.dispatch.outcomes import FAILING_STATUSES, record_final, status_label
from xmonbridge.extensions import db
from xmonbridge.models import DELIVERY_SENT, OUTCOME_PLACED, OUTCOME_UNKNOWN, Attempt, Delivery

CALL_SID = "CA" + "1" * 32
MESSAGE_SID = "SM" + "2" * 32


def _attempt(setting: Any, sid: str, **attempt: Any) -> Attempt:
    """An attempt that placed sid, its delivery holding the same sid (as the dispatcher leaves it)."""
    fields = {"outcome": OUTCOME_PLACED, "sid": sid}
    fields.update(attempt)
    alert = make_alert(
        setting,
        deliveries=[
            {"user_name": "佐藤 翔太", "to_number": "+819001230001", "status": DELIVERY_SENT, "sid": sid, "attempts": [fields]}
        ],
    )
    return alert.notifications[0].deliveries[0].attempts[0]


@pytest.fixture
def call_attempt(app: Flask) -> Attempt:
    setting = make_simple_call_setting(make_twilio_account(), [make_recipient()])
    return _attempt(setting, CALL_SID)


@pytest.fixture
def sms_attempt(app: Flask) -> Attempt:
    account = make_twilio_account(name="SMS 用アカウント")
    setting = make_sms_setting(account, [make_recipient(login="suzuki", phone="+819001230002")], name="SMS 連絡")
    return _attempt(setting, MESSAGE_SID)


def _reload(attempt: Attempt) -> tuple[Attempt, Delivery]:
    db.session.commit()
    db.session.expire_all()
    fresh = db.session.get(Attempt, attempt.id)
    assert fresh is not None
    return fresh, fresh.delivery


def test_it_records_a_final_call_status_on_attempt_and_delivery(call_attempt: Attempt) -> None:
    assert record_final(call_attempt, "completed", answered_by="human", duration=42) is True
    attempt, delivery = _reload(call_attempt)
    assert (attempt.final_status, attempt.answered_by, attempt.duration) == ("completed", "human", 42)
    assert attempt.final_at is not None
    assert delivery.final_status == "completed"


def test_interim_statuses_record_nothing(call_attempt: Attempt) -> None:
    for status in ("queued", "initiated", "ringing", "in-progress"):
        assert record_final(call_attempt, status) is False
    attempt, delivery = _reload(call_attempt)
    assert attempt.final_status == "" and attempt.final_at is None and delivery.final_status == ""


def test_interim_after_final_changes_nothing(call_attempt: Attempt) -> None:
    record_final(call_attempt, "no-answer")
    for status in ("ringing", "in-progress", "queued"):
        assert record_final(call_attempt, status) is False
    attempt, delivery = _reload(call_attempt)
    assert attempt.final_status == delivery.final_status == "no-answer"


def test_a_duplicate_final_status_changes_nothing(call_attempt: Attempt) -> None:
    assert record_final(call_attempt, "busy") is True
    first_at = _reload(call_attempt)[0].final_at
    attempt = _reload(call_attempt)[0]
    assert record_final(attempt, "busy") is False
    attempt, delivery = _reload(attempt)
    assert attempt.final_status == "busy" and attempt.final_at == first_at


def test_a_second_different_final_status_is_ignored_and_logged(
    call_attempt: Attempt, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alembic's logging setup (the migrated test database) disables loggers that existed before it.
    monkeypatch.setattr(logging.getLogger("xmonbridge.dispatch.outcomes"), "disabled", False)
    record_final(call_attempt, "completed", duration=12)
    with caplog.at_level("WARNING", logger="xmonbridge.dispatch.outcomes"):
        assert record_final(call_attempt, "failed") is False
    attempt, delivery = _reload(call_attempt)
    assert (attempt.final_status, attempt.duration, delivery.final_status) == ("completed", 12, "completed")
    assert "'failed' after final 'completed' ignored" in caplog.text


def test_out_of_order_interim_then_final_then_interim(call_attempt: Attempt) -> None:
    """Twilio does not promise order: ringing may come after completed, and nothing moves back."""
    results = [record_final(call_attempt, s) for s in ("in-progress", "completed", "ringing", "completed")]
    assert results == [False, True, False, False]
    attempt, _ = _reload(call_attempt)
    assert attempt.final_status == "completed"


def test_message_statuses(sms_attempt: Attempt) -> None:
    assert record_final(sms_attempt, "sent") is False
    assert record_final(sms_attempt, "delivered") is True
    # A read receipt follows delivery (Twilio's documented lifecycle); sent after it is stale.
    assert record_final(sms_attempt, "read") is True
    assert record_final(sms_attempt, "sent") is False
    assert record_final(sms_attempt, "undelivered") is False
    attempt, delivery = _reload(sms_attempt)
    assert attempt.final_status == delivery.final_status == "read"


def test_undelivered_message_keeps_its_error_code(sms_attempt: Attempt) -> None:
    assert record_final(sms_attempt, "undelivered", error_code=30003) is True
    attempt, delivery = _reload(sms_attempt)
    assert (attempt.final_status, attempt.error_code, delivery.final_status) == ("undelivered", 30003, "undelivered")


def test_call_statuses_do_not_apply_to_messages_and_back(call_attempt: Attempt, sms_attempt: Attempt) -> None:
    assert record_final(call_attempt, "delivered") is False
    assert record_final(sms_attempt, "completed") is False
    assert record_final(sms_attempt, "no-answer") is False
    assert _reload(call_attempt)[0].final_status == "" and _reload(sms_attempt)[0].final_status == ""


def test_the_delivery_mirrors_only_the_attempt_holding_its_sid(app: Flask) -> None:
    """An older attempt of the same recipient (another SID) records its own status only."""
    setting = make_simple_call_setting(make_twilio_account(), [make_recipient()])
    alert = make_alert(
        setting,
        deliveries=[
            {
                "user_name": "佐藤 翔太",
                "to_number": "+819001230001",
                "status": DELIVERY_SENT,
                "sid": CALL_SID,
                "attempts": [{"outcome": OUTCOME_PLACED, "sid": "CA" + "9" * 32}, {"outcome": OUTCOME_PLACED, "sid": CALL_SID}],
            }
        ],
    )
    old, current = alert.notifications[0].deliveries[0].attempts
    assert record_final(old, "busy") is True
    assert _reload(old)[1].final_status == ""
    assert record_final(current, "completed") is True
    assert _reload(current)[1].final_status == "completed"
    assert _reload(old)[0].final_status == "busy"


def test_a_status_recorded_before_the_sid_reaches_the_delivery_later(app: Flask) -> None:
    """A callback can beat the dispatcher's commit of the SID; the next report fills the delivery."""
    setting = make_simple_call_setting(make_twilio_account(), [make_recipient()])
    alert = make_alert(
        setting,
        deliveries=[{"user_name": "佐藤", "to_number": "+819001230001", "status": "sending", "attempts": [{"outcome": OUTCOME_UNKNOWN}]}],
    )
    attempt = alert.notifications[0].deliveries[0].attempts[0]
    assert record_final(attempt, "completed") is True
    attempt, delivery = _reload(attempt)
    assert attempt.final_status == "completed" and delivery.final_status == ""
    # The dispatcher adopts the call and stores its SID on both.
    attempt.sid = delivery.sid = CALL_SID
    delivery.status = DELIVERY_SENT
    db.session.commit()
    # The look-up (or a repeated callback) reports the same status: now the delivery has it.
    assert record_final(attempt, "completed") is True
    assert _reload(attempt)[1].final_status == "completed"


def test_failing_statuses_and_labels() -> None:
    assert {"busy", "no-answer", "failed", "canceled", "undelivered"} <= FAILING_STATUSES
    assert not {"completed", "delivered", "read"} & FAILING_STATUSES
    assert status_label("no-answer") == "応答なし(no-answer)"
    assert status_label("") == ""


def test_without_callbacks_the_dispatcher_reads_the_final_status_from_twilio(live_app: Flask, fake_twilio: Any) -> None:
    """Closed network (no X-MON URL): after ring time plus grace, the call is fetched and recorded."""
    import random

    from tests.dispatch_helpers import FakeClock, queue
    from xmonbridge.dispatch.engine import Dispatcher

    setting = make_simple_call_setting(make_twilio_account(cps=100), [make_recipient()], ring_seconds=30)
    notification = queue(setting)
    clock = FakeClock()
    worker = Dispatcher(holder="test", clock=clock, rng=random.Random(3))
    worker.run_once()
    [sid] = list(fake_twilio.calls_by_sid)
    fake_twilio.set_call_status(sid, "no-answer")

    clock.advance(30 + live_app.config["DISPATCH_CHECK_GRACE_SECONDS"] + 1)
    worker.run_once()

    assert len(fake_twilio.requests_for("FetchCall")) == 1
    db.session.expire_all()
    delivery = db.session.get(Delivery, notification.deliveries[0].id)
    assert delivery is not None
    assert delivery.final_status == "no-answer" and delivery.attempts[0].final_status == "no-answer"
    # Nothing more to ask.
    clock.advance(3600)
    worker.run_once()
    assert len(fake_twilio.requests_for("FetchCall")) == 1

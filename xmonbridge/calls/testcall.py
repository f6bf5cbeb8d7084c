"""メッセージテンプレート's 「テスト通話」 (§5.2.2): a real button call with a sample fault.

It is an ordinary button-call notification of its own kind (SETTING_BUTTON_TEST), so the
dispatcher places it, the callee works it with the keys, and インシデント shows it. It uses
the form's unsaved messages; 3# says what it would do but sends nothing to the monitor; it
is placed once (no re-call).
"""

from __future__ import annotations

import json
from datetime import datetime

from .. import dispatch
from ..extensions import db
from ..messages import sample_alert
from ..models import (
    CHANNEL_BUTTON,
    DELIVERY_QUEUED,
    MODE_ROTATION,
    AlertRecord,
    Delivery,
    Notification,
    NotificationAlert,
    TwilioAccount,
    User,
    utcnow,
)
from .flow import SETTING_BUTTON_TEST

TEST_NAME = "テスト通話"
TEST_RING_SECONDS = 60


def add_sample_alert(now: datetime) -> AlertRecord:
    """The sample fault a test call (and a rehearsal) reads out, added and flushed."""
    sample = sample_alert()
    alert = AlertRecord(
        received_at=now,
        setting_type=SETTING_BUTTON_TEST,
        setting_id=0,
        setting_name=TEST_NAME,
        notification_type="PROBLEM",
        host=sample.host,
        service=sample.service or "",
        state=sample.state,
        output=sample.output,
        event_time=now,
    )
    db.session.add(alert)
    db.session.flush()
    return alert


def start_test_call(account: TwilioAccount, from_number: str, user: User, opening: str, closing: str) -> Notification:
    """Queue a test button call to user with these messages; the caller commits (then it is placed)."""
    now = utcnow()
    alert = add_sample_alert(now)
    notification = Notification(
        alert_id=alert.id,
        channel=CHANNEL_BUTTON,
        setting_type=SETTING_BUTTON_TEST,
        setting_id=0,
        setting_name=TEST_NAME,
        account_id=account.id,
        account_name=account.name,
        from_number=from_number,
        ring_seconds=TEST_RING_SECONDS,
        mode=MODE_ROTATION,
        recall_seconds=0,
        max_calls=1,
        text=json.dumps({"opening": opening, "closing": closing}, ensure_ascii=False),
        created_at=now,
    )
    notification.deliveries.append(
        Delivery(
            user_id=user.id,
            user_name=user.display_name,
            to_number=user.phone or "",
            position=0,
            status=DELIVERY_QUEUED,
            next_at=now,
            updated_at=now,
        )
    )
    db.session.add(notification)
    db.session.flush()
    db.session.add(NotificationAlert(notification_id=notification.id, alert_id=alert.id, added_at=now))
    db.session.flush()
    dispatch.wake()
    return notification

"""A button call rehearsed on the 電話シミュレータ page in live mode: nothing is placed (B4).

In live mode calls go to Twilio, so the page cannot ring for them; instead it plays any
通話設定(ボタン操作付き)'s call as a rehearsal. Each step (the answer, or keys ending with #)
runs the real state machine (calls/flow.py) on a notification built for that step, of
メッセージテンプレート's test-call kind with its sample fault (so 3# acknowledges nothing),
renders the TwiML the voice webhook would answer, and then rolls everything back: no
notification, call, ログ or インシデント remains. Which phone rings is kept by the page.

No request code; the caller must not have changes of its own pending (they are rolled back).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..message_templates import store
from ..models import (
    CHANNEL_BUTTON,
    DELIVERY_CALLING,
    DELIVERY_QUEUED,
    DELIVERY_WAITING,
    MODE_ROTATION,
    OUTCOME_PLACED,
    Attempt,
    ButtonCallSetting,
    Delivery,
    Notification,
    NotificationAlert,
    XmonSettings,
)
from ..twiml import button_call
from . import flow, simphone
from .testcall import TEST_NAME, add_sample_alert

# The Call SID the rehearsed call "has" (never a real one: 34 characters, not hexadecimal).
REHEARSAL_SID = "CA" + "rehearsal".ljust(32, "0")


@dataclass
class Step:
    """What the phone hears in one step, and whose phone rings next (輪番 2#)."""

    lines: list[simphone.Line] = field(default_factory=list)
    waiting_for_keys: bool = False
    next_user_id: int | None = None


@dataclass(frozen=True)
class Rehearsable:
    """A button-call setting as the page offers it: its mode and the users it calls, in order."""

    id: int
    name: str
    rotation: bool
    user_ids: list[int]


def settings() -> list[Rehearsable]:
    """Every 通話設定(ボタン操作付き) with the users (with a phone) it calls, by name."""
    found = db.session.scalars(select(ButtonCallSetting).order_by(ButtonCallSetting.name)).all()
    return [
        Rehearsable(s.id, s.name, s.mode == MODE_ROTATION, [r.user_id for r in s.recipients if r.user.phone])
        for s in found
    ]


def play(setting_id: int, user_id: int, keys: str | None, now: datetime) -> Step | None:
    """Rehearse one step of setting's call to user: the answer (keys None) or keys before #.

    None when the setting does not call this user (or does not exist).
    """
    setting = db.session.get(ButtonCallSetting, setting_id)
    if setting is None:
        return None
    users = [(r.user.id, r.user.display_name, r.user.phone or "") for r in setting.recipients if r.user.phone]
    if user_id not in [uid for uid, _, _ in users]:
        return None
    opening, closing = store.messages_for(user_id)
    voice = XmonSettings.get().effective_voice
    values = {
        "account_id": setting.account_id,
        "account_name": setting.account.name,
        "from_number": setting.from_number,
        "mode": setting.mode,
        "ring_seconds": setting.ring_seconds,
        "recall_seconds": setting.recall_seconds,
    }
    # Start the step's transaction with a write, so SQLite's write lock is taken before any
    # read (a read first could not be followed by a write once another process has written).
    db.session.rollback()
    try:
        attempt = _build(values, users, user_id, opening, closing, now)
        reply = flow.answer(attempt, now)
        if keys is not None:
            reply = flow.press(attempt, "".join(c for c in keys if c in simphone.KEYPAD)[: simphone.MAX_KEYS], now)
        step = Step()
        if reply.hangup and values["mode"] == MODE_ROTATION:
            db.session.flush()
            queued = [d for d in attempt.delivery.notification.deliveries if d.status == DELIVERY_QUEUED]
            step.next_user_id = queued[0].user_id if queued else None
        heard = simphone.parse(200, button_call(reply.says, reply.guide, reply.hangup, voice, "rehearsal"))
        step.lines = heard.lines
        step.waiting_for_keys = bool(heard.action) and not heard.hangup
        return step
    finally:
        db.session.rollback()


def _build(values: dict, users: list[tuple[int, str, str]], user_id: int, opening: str, closing: str, now: datetime) -> Attempt:  # type: ignore[type-arg]
    """The notification of a test call with the sample fault, user's call answered just now."""
    alert = add_sample_alert(now)
    rotation = values["mode"] == MODE_ROTATION
    notification = Notification(
        alert_id=alert.id,
        channel=CHANNEL_BUTTON,
        setting_type=flow.SETTING_BUTTON_TEST,
        setting_id=0,
        setting_name=TEST_NAME,
        account_id=values["account_id"],
        account_name=values["account_name"],
        from_number=values["from_number"],
        ring_seconds=values["ring_seconds"],
        mode=values["mode"],
        recall_seconds=values["recall_seconds"],
        max_calls=0,
        text=json.dumps({"opening": opening, "closing": closing}, ensure_ascii=False),
        created_at=now,
    )
    mine: Delivery | None = None
    for position, (uid, name, number) in enumerate(users):
        delivery = Delivery(
            user_id=uid,
            user_name=name,
            to_number=number,
            position=position,
            status=DELIVERY_CALLING if uid == user_id or not rotation else DELIVERY_WAITING,
            next_at=now,
            updated_at=now,
        )
        notification.deliveries.append(delivery)
        if uid == user_id:
            mine = delivery
    assert mine is not None
    attempt = Attempt(
        number=1,
        started_at=now,
        finished_at=now,
        outcome=OUTCOME_PLACED,
        sid=REHEARSAL_SID,
        callback_token=secrets.token_urlsafe(24),
    )
    mine.sid = REHEARSAL_SID
    mine.attempts.append(attempt)
    db.session.add(notification)
    db.session.flush()
    db.session.add(NotificationAlert(notification_id=notification.id, alert_id=alert.id, added_at=now))
    db.session.flush()
    return attempt

"""Alerts of a button-call setting gather in one notification (R7, §5.2.1).

「同じ通話設定が設定されたホストやサービスについては、障害及び復旧を一回の通話でまとめて
読み上げます。」 While a setting has an active notification, its PROBLEM and RECOVERY alerts
join it (the call composes its content when answered, so they are read out); an
ACKNOWLEDGEMENT joins it too and may end it (every fault acknowledged or recovered). With no
active notification a PROBLEM or RECOVERY starts one: one delivery per recipient, all queued
(一斉通知) or only the first (輪番通知).

Runs inside intake's write transaction (SQLite: the database's write lock is held; PostgreSQL:
the setting's row is locked, and joining re-checks the notification under its row lock, so an
alert never joins a notification a key press ended at the same moment).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from ..extensions import db
from ..models import (
    CHANNEL_BUTTON,
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    DELIVERY_WAITING,
    MODE_ROTATION,
    NOTIFICATION_ACTIVE,
    SETTING_BUTTON_CALL,
    AlertRecord,
    Attempt,
    ButtonCallSetting,
    CallAnnouncement,
    Delivery,
    Notification,
    NotificationAlert,
)
from . import flow

# Types that start a notification; the others only join one.
STARTING = frozenset({"PROBLEM", "RECOVERY"})
JOINING = STARTING | {"ACKNOWLEDGEMENT"}

NO_PHONE = "ユーザに電話番号が設定されていないため、発信できません。"


def attach(alert: AlertRecord, setting: ButtonCallSetting, now: datetime) -> Notification | None:
    """Join the setting's active notification or start one; None when the alert calls nobody."""
    if alert.notification_type not in JOINING:
        return None
    # PostgreSQL: one intake per setting at a time (SQLite already holds its write lock).
    db.session.execute(select(ButtonCallSetting.id).where(ButtonCallSetting.id == setting.id).with_for_update())
    active = db.session.scalar(
        select(Notification)
        .where(
            Notification.setting_type == SETTING_BUTTON_CALL,
            Notification.setting_id == setting.id,
            Notification.status == NOTIFICATION_ACTIVE,
        )
        .order_by(Notification.id.desc())
        .limit(1)
    )
    if active is not None and _still_active(active):
        db.session.add(NotificationAlert(notification_id=active.id, alert_id=alert.id, added_at=now))
        db.session.flush()
        if alert.notification_type != "PROBLEM":
            flow.end_if_resolved(active, now)
        return active
    if alert.notification_type not in STARTING:
        return None
    return start(alert, setting, now)


def _still_active(notification: Notification) -> bool:
    """Row-lock the notification if it is still active (a key press may have just ended it)."""
    locked = flow.lock_if_active(notification)
    if not locked:
        db.session.expire(notification)
    return locked


def start(alert: AlertRecord, setting: ButtonCallSetting, now: datetime) -> Notification:
    """A new notification of the setting, its first alert joined and its deliveries queued."""
    account = setting.account
    notification = Notification(
        alert_id=alert.id,
        channel=CHANNEL_BUTTON,
        setting_type=SETTING_BUTTON_CALL,
        setting_id=setting.id,
        setting_name=setting.name,
        account_id=account.id,
        account_name=account.name,
        from_number=setting.from_number,
        ring_seconds=setting.ring_seconds,
        mode=setting.mode,
        recall_seconds=setting.recall_seconds,
        max_calls=setting.max_calls,
        machine_detection=setting.machine_detection,
        created_at=now,
    )
    first = True
    for position, recipient in enumerate(setting.recipients):
        user = recipient.user
        reason = "" if user.phone else NO_PHONE
        if reason:
            status = DELIVERY_FAILED
        elif setting.mode == MODE_ROTATION and not first:
            status = DELIVERY_WAITING
        else:
            status = DELIVERY_QUEUED
            first = False
        notification.deliveries.append(
            Delivery(
                user_id=user.id,
                user_name=user.display_name,
                to_number=user.phone or "",
                position=position,
                status=status,
                error=reason,
                next_at=now,
                updated_at=now,
            )
        )
    db.session.add(notification)
    db.session.flush()
    db.session.add(NotificationAlert(notification_id=notification.id, alert_id=alert.id, added_at=now))
    db.session.flush()
    return notification


def carry_over(notification: Notification, now: datetime) -> int:
    """Faults that joined an ended notification after every call had read it out: a new one.

    A key (3#, 9#) ends a notification for what its callee heard; a fault that arrived during
    that call was never heard by anyone, so it starts the setting's next notification instead of
    being closed with the rest. Returns how many faults went on.
    """
    if notification.setting_type != SETTING_BUTTON_CALL or notification.setting_id is None:
        return 0
    heard = set(
        db.session.scalars(
            select(CallAnnouncement.alert_id)
            .join(Attempt, CallAnnouncement.attempt_id == Attempt.id)
            .join(Delivery, Attempt.delivery_id == Delivery.id)
            .where(Delivery.notification_id == notification.id)
        )
    )
    unheard = [fault for fault in flow.unresolved(flow.content_of(notification)) if fault.id not in heard]
    setting = db.session.get(ButtonCallSetting, notification.setting_id)
    if not unheard or setting is None:
        return 0
    successor = start(unheard[0], setting, now)
    for fault in unheard[1:]:
        db.session.add(NotificationAlert(notification_id=successor.id, alert_id=fault.id, added_at=now))
    db.session.flush()
    return len(unheard)

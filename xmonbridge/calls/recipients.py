"""Who an active button call still calls: removed users, deleted users, an administrator's end.

* `drop_removed()` — an approved edit of a 通話設定(ボタン操作付き) changed its To rows: the
  setting's active notification stops calling the users no longer among them;
* `drop_user()` — a user is deleted (ユーザ管理): every active button call stops calling them;
* `end_by_admin()` — 「通知を終了」 on インシデント: nobody else is called and calls in
  progress are hung up by the dispatcher.

A stopped user's waiting, queued or re-call-pending delivery becomes canceled with the reason
インシデント shows; a call ringing or in progress right now is left alone, and when it ends
flow.call_ended() does not call them again (flow.still_recipient()). 輪番 passes to the next
remaining user if it was the removed user's turn; with nobody left the notification ends.
Plain code in the caller's transaction, no request code; the caller commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from .. import dispatch
from ..extensions import db
from ..models import (
    CHANNEL_BUTTON,
    DELIVERY_CALLING,
    DELIVERY_QUEUED,
    DELIVERY_SENDING,
    DELIVERY_WAITING,
    NOTIFICATION_ACTIVE,
    SETTING_BUTTON_CALL,
    Delivery,
    Notification,
    User,
)
from . import flow

REMOVED = flow.REMOVED
USER_DELETED = flow.USER_DELETED
ENDED_BY_ADMIN = "管理者({name})が通知を終了しました。"
# Deliveries stopped at once; sending/calling ones are on (or about to be on) a live call.
NOT_LIVE = (DELIVERY_QUEUED, DELIVERY_WAITING)


def _active(setting_id: int | None = None) -> list[Notification]:
    stmt = select(Notification).where(
        Notification.setting_type == SETTING_BUTTON_CALL,
        Notification.channel == CHANNEL_BUTTON,
        Notification.status == NOTIFICATION_ACTIVE,
    )
    if setting_id is not None:
        stmt = stmt.where(Notification.setting_id == setting_id)
    return list(db.session.scalars(stmt.order_by(Notification.id)))


def _stop(deliveries: list[Delivery], now: datetime, why: str) -> int:
    """Cancel the deliveries that are not on a live call; return how many were stopped."""
    stopped = 0
    for delivery in deliveries:
        if delivery.notification.status != NOTIFICATION_ACTIVE:
            break
        if delivery.status in NOT_LIVE:
            flow.stop_removed(delivery, now, why)
            stopped += 1
    if stopped:
        dispatch.wake()
    return stopped


def drop_removed(setting_id: int, user_ids: list[int], now: datetime) -> int:
    """The setting's To rows are now user_ids: stop calling everyone else in its active notification."""
    keep = set(user_ids)
    stopped = 0
    for notification in _active(setting_id):
        gone = [d for d in notification.deliveries if d.user_id is None or d.user_id not in keep]
        stopped += _stop(gone, now, REMOVED)
    return stopped


def drop_user(user_id: int, now: datetime) -> int:
    """A user is being deleted: no active button call calls them any more."""
    stopped = 0
    for notification in _active():
        gone = [d for d in notification.deliveries if d.user_id == user_id]
        stopped += _stop(gone, now, USER_DELETED)
    return stopped


def end_by_admin(notification: Notification, admin: User, now: datetime) -> bool:
    """End an active button call for an administrator; False when it had already ended."""
    if notification.channel != CHANNEL_BUTTON or notification.status != NOTIFICATION_ACTIVE:
        return False
    name = admin.display_name or admin.login
    flow.end(notification, now, ENDED_BY_ADMIN.format(name=name))
    if notification.status == NOTIFICATION_ACTIVE:
        return False  # ended meanwhile by a key or the dispatcher
    for delivery in notification.deliveries:
        if delivery.status not in (DELIVERY_SENDING, DELIVERY_CALLING):
            continue
        # The dispatcher hangs the current call up, as for an answering machine; its end
        # settles the delivery as canceled (flow.call_ended(): 通知が終了済み).
        attempt = next((a for a in reversed(delivery.attempts) if a.sid and a.sid == delivery.sid), None)
        if attempt is not None and not attempt.final_status and not attempt.end_key:
            attempt.end_reason = flow.END_ENDED
            attempt.hangup_wanted = True
    dispatch.wake()
    return True

"""What インシデント says of an alert's notifications, deliveries and attempts. No request code.

A notification "failed for everyone" when every recipient failed: the dispatcher stopped each
delivery (a permanent error, retries used up), or Twilio reported a failing final status for
each (busy, no-answer, undelivered …), or a mix of both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dispatch.outcomes import answered_by_label, explain_delivery_error, is_failing, status_label
from ..logs.entries import OTHER_SETTING_TYPES
from ..messages import NOTIFICATION_TYPES
from ..models import (
    CHANNEL_BUTTON,
    CHANNEL_CALL,
    CHANNEL_SMS,
    DELIVERY_FAILED,
    DELIVERY_OPEN,
    DELIVERY_QUEUED,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    NOTIFICATION_ACTIVE,
    NOTIFICATION_DONE,
    NOTIFICATION_FAILED,
    OUTCOMES,
    SETTING_TYPES,
    AlertRecord,
    Attempt,
    Delivery,
    Notification,
)
from ..twilio_errors import EXPLANATIONS

CHANNEL_LABELS = {CHANNEL_CALL: "電話", CHANNEL_BUTTON: "電話(ボタン操作付き)", CHANNEL_SMS: "SMS"}
VERBS = {CHANNEL_CALL: "発信", CHANNEL_BUTTON: "発信", CHANNEL_SMS: "送信"}
DELIVERY_LABELS = {
    DELIVERY_QUEUED: "{verb}待ち",
    DELIVERY_SENDING: "{verb}中",
    DELIVERY_SENT: "{verb}済み",
    DELIVERY_FAILED: "失敗",
}
NOTIFICATION_LABELS = {NOTIFICATION_ACTIVE: "処理中", NOTIFICATION_DONE: "完了", NOTIFICATION_FAILED: "全員失敗"}
# Bootstrap badge colours of monitor states.
STATE_BADGES = {
    "CRITICAL": "bg-danger",
    "DOWN": "bg-danger",
    "WARNING": "bg-warning text-dark",
    "UNKNOWN": "bg-secondary",
    "UNREACHABLE": "bg-secondary",
    "OK": "bg-success",
    "UP": "bg-success",
}
NO_NOTIFICATION_ACK = "通知なし(認知の記録のみ)"
NO_NOTIFICATION = "通知なし"
ALL_FAILED = "全員失敗"


def setting_label(setting_type: str, name: str) -> str:
    """「SMS 通知設定: 担当者への連絡」."""
    kind = SETTING_TYPES.get(setting_type) or OTHER_SETTING_TYPES.get(setting_type, setting_type)
    return f"{kind}: {name}" if name else kind


def type_label(notification_type: str) -> str:
    """「障害(PROBLEM)」."""
    label = NOTIFICATION_TYPES.get(notification_type)
    return f"{label}({notification_type})" if label else notification_type


@dataclass(frozen=True)
class AttemptView:
    """One attempt as the detail page lists it."""

    attempt: Attempt
    outcome: str
    error: str
    final: str
    failing: bool
    answered_by: str


@dataclass(frozen=True)
class DeliveryView:
    """One recipient of a notification."""

    delivery: Delivery
    status: str
    final: str
    failed: bool
    attempts: list[AttemptView]


@dataclass(frozen=True)
class NotificationView:
    """One notification: its recipients and the one-line summary of how they fared."""

    notification: Notification
    channel: str
    text: str
    all_failed: bool
    deliveries: list[DeliveryView]

    # Button calls have views of their own (button.py).
    button = False


def delivery_failed(delivery: Delivery) -> bool:
    """Tell whether this recipient was not reached (stopped, or a failing final status)."""
    return delivery.status == DELIVERY_FAILED or is_failing(delivery.final_status)


def attempt_error(attempt: Attempt) -> str:
    """The attempt's error in Japanese: what the dispatcher recorded, else the code's explanation."""
    if attempt.error_message:
        return attempt.error_message
    if attempt.error_code is None:
        return ""
    return EXPLANATIONS.get(attempt.error_code) or explain_delivery_error(attempt.error_code)


def _attempt_view(attempt: Attempt) -> AttemptView:
    return AttemptView(
        attempt=attempt,
        outcome=OUTCOMES.get(attempt.outcome, attempt.outcome),
        error=attempt_error(attempt),
        final=status_label(attempt.final_status),
        failing=is_failing(attempt.final_status),
        answered_by=answered_by_label(attempt.answered_by),
    )


def _delivery_view(delivery: Delivery, verb: str) -> DeliveryView:
    return DeliveryView(
        delivery=delivery,
        status=DELIVERY_LABELS.get(delivery.status, delivery.status).format(verb=verb),
        final=status_label(delivery.final_status),
        failed=delivery_failed(delivery),
        attempts=[_attempt_view(attempt) for attempt in delivery.attempts],
    )


def notification_view(notification: Notification) -> NotificationView:
    """Summarise a notification: 「3 名中 3 名に発信済み」, 「3 名中 1 名に送信済み、2 名失敗」, 「全員失敗(3 名)」."""
    verb = VERBS.get(notification.channel, "通知")
    deliveries = [_delivery_view(delivery, verb) for delivery in notification.deliveries]
    total = len(deliveries)
    failed = sum(1 for view in deliveries if view.failed)
    waiting = sum(1 for view in deliveries if view.delivery.status in DELIVERY_OPEN)
    reached = sum(1 for view in deliveries if view.delivery.status == DELIVERY_SENT and not view.failed)
    all_failed = total > 0 and failed == total
    if total == 0:
        text = "宛先なし"
    elif all_failed:
        text = f"{ALL_FAILED}({total} 名)"
    else:
        text = f"{total} 名中 {reached} 名に{verb}済み"
        if failed:
            text += f"、{failed} 名失敗"
        if waiting:
            text += f"、{waiting} 名{verb}待ち"
    return NotificationView(
        notification=notification,
        channel=CHANNEL_LABELS.get(notification.channel, notification.channel),
        text=text,
        all_failed=all_failed,
        deliveries=deliveries,
    )


def no_notification_text(alert: AlertRecord) -> str:
    """What an alert without notifications shows instead of a summary."""
    return NO_NOTIFICATION_ACK if alert.notification_type == "ACKNOWLEDGEMENT" else NO_NOTIFICATION


def alert_views(alert: AlertRecord) -> list[NotificationView]:
    """The summaries of every notification of an alert, in the order they were made."""
    return [notification_view(notification) for notification in alert.notifications]

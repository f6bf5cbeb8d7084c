"""What インシデント says of a button call (R9, R12): every step, in words. No request code.

A button call is one notification shared by every alert of its setting that arrived while it
was active (calls/aggregate.py). The alert that started it owns it; the others joined it
(`NotificationAlert`). The list shows the notification's summary once, under the alert that
started it, and a link to it under every alert that joined; the detail page of any of those
alerts shows it whole: its alerts, each recipient in order with the reason of their state,
every call in time order (answered or not, who answered, the keys, why it ended, whether it
was placed again), and the acknowledgements sent back to the monitor.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from ..calls.flow import END_KEY_2, END_REASONS, NORMAL_ENDS, STOPPED, alerts_of
from ..dispatch.outcomes import answered_by_label, status_label
from ..extensions import db
from ..filters import jst
from ..models import (
    ACK_DONE,
    ACK_FAILED,
    ACK_MODES,
    ACK_PENDING,
    ACK_STATES,
    DELIVERY_CALLING,
    DELIVERY_CANCELED,
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    DELIVERY_WAITING,
    MODE_ROTATION,
    MODES,
    NOTIFICATION_ACTIVE,
    NOTIFICATION_FAILED,
    OUTCOME_ADOPTED,
    OUTCOME_PLACED,
    OUTCOMES,
    Acknowledgement,
    AlertRecord,
    Attempt,
    CallAnnouncement,
    Delivery,
    Notification,
    NotificationAlert,
)
from .summary import NOTIFICATION_LABELS, attempt_error

TITLE = "ボタン操作付き通話 #{id}"
JOINED = "ボタン操作付き通話 #{id} に合流"
NO_SINK = "送信先の設定なし"
NO_RECALL = "不要"
TIME = "%H:%M:%S"

# Bootstrap text colours of a recipient's state.
TONE_DANGER = "text-danger"
TONE_ACTIVE = "text-primary fw-bold"
TONE_MUTED = "text-muted"

PLACED = (OUTCOME_PLACED, OUTCOME_ADOPTED)


def _placed(attempt: Attempt) -> bool:
    return attempt.outcome in PLACED


def _calls(delivery: Delivery) -> list[Attempt]:
    """The attempts of a delivery Twilio accepted, i.e. the calls made to this user."""
    return [a for a in delivery.attempts if _placed(a)]


def _capped(delivery: Delivery, notification: Notification) -> bool:
    return bool(notification.max_calls) and len(_calls(delivery)) >= (notification.max_calls or 0)


def _ended_abnormally(attempt: Attempt) -> bool:
    return bool(attempt.end_reason) and attempt.end_reason not in NORMAL_ENDS


def end_label(attempt: Attempt) -> str:
    """Why a call ended: 「2# 次のユーザへ」, 「応答なし」; "" while it goes on."""
    if attempt.end_reason:
        return END_REASONS.get(attempt.end_reason, attempt.end_reason)
    if attempt.final_status:
        return status_label(attempt.final_status)
    return ""


# --- a recipient ---


def recipient_status(delivery: Delivery) -> tuple[str, str]:
    """A button-call recipient's state and its colour: 呼び出し中, 次のユーザへ(2#), 上限到達 …"""
    notification = delivery.notification
    calls = _calls(delivery)
    last = calls[-1] if calls else None
    if delivery.status == DELIVERY_QUEUED:
        if last is not None and _ended_abnormally(last):
            return f"再発信待ち({jst(delivery.next_at, TIME)} 以降)", TONE_ACTIVE
        return "発信待ち", TONE_ACTIVE
    if delivery.status == DELIVERY_SENDING:
        return "発信中", TONE_ACTIVE
    if delivery.status == DELIVERY_CALLING:
        if last is not None and last.answered_at is not None:
            return "通話中", TONE_ACTIVE
        return "呼び出し中", TONE_ACTIVE
    if delivery.status == DELIVERY_WAITING:
        if last is not None and last.end_reason == END_KEY_2:
            return "次のユーザへ(2#)", ""
        return "待機中", TONE_MUTED
    if delivery.status == DELIVERY_SENT:
        return "発信済み", ""
    if delivery.status == DELIVERY_FAILED:
        if _capped(delivery, notification):
            return "上限到達", TONE_DANGER
        return "失敗", TONE_DANGER
    if delivery.status == DELIVERY_CANCELED and delivery.error in STOPPED:
        # Taken off the setting or deleted while the notification went on.
        return "発信停止", TONE_MUTED
    if delivery.status == DELIVERY_CANCELED:
        # The notification ended first: before this user was called at all, or between calls.
        return ("発信済み", "") if calls else ("取り消し", TONE_MUTED)
    return delivery.status, ""


@dataclass(frozen=True)
class RecipientView:
    """One recipient of a button call, in list order."""

    delivery: Delivery
    order: int
    status: str
    tone: str
    calls: int
    last_end: str
    reason: str

    @property
    def active(self) -> bool:
        return self.tone == TONE_ACTIVE


def recipient_view(delivery: Delivery, order: int) -> RecipientView:
    status, tone = recipient_status(delivery)
    calls = _calls(delivery)
    return RecipientView(
        delivery=delivery,
        order=order,
        status=status,
        tone=tone,
        calls=len(calls),
        last_end=end_label(calls[-1]) if calls else "",
        # A recipient who was called and is done needs no reason; an older one (a re-call's) would mislead.
        reason=""
        if delivery.status == DELIVERY_SENT
        or delivery.status == DELIVERY_CANCELED and calls and delivery.error not in STOPPED
        else delivery.error,
    )


# --- a call ---


@dataclass(frozen=True)
class CallView:
    """One call (attempt) of a button call, as the time-ordered list shows it."""

    attempt: Attempt
    recipient: str
    number: str
    recall: bool
    placed: bool
    outcome: str
    error: str
    answered: str
    answered_by: str
    keys: list[str]
    end: str
    abnormal: bool
    final: str
    next: str
    announced: str


def _recall_text(attempt: Attempt, later: list[Attempt], delivery: Delivery) -> str:
    """Whether the call was placed again after this one, and why not."""
    if not _placed(attempt):
        return ""
    if not attempt.end_reason:
        return ""
    if attempt.end_reason in NORMAL_ENDS:
        return NO_RECALL
    notification = delivery.notification
    if later:
        return f"再発信しました({jst(later[0].started_at, TIME)})"
    if delivery.status == DELIVERY_QUEUED:
        return f"再発信の予定({jst(delivery.next_at, TIME)} 以降)"
    if delivery.status == DELIVERY_FAILED and _capped(delivery, notification):
        if notification.mode == MODE_ROTATION:
            return "なし(上限到達のため次のユーザへ)"
        return "なし(上限到達)"
    if delivery.status == DELIVERY_CANCELED or notification.status != NOTIFICATION_ACTIVE:
        return "なし(通知が終了)"
    return "なし"


def _answered(attempt: Attempt) -> str:
    if attempt.answered_at is not None:
        return f"応答({jst(attempt.answered_at, TIME)})"
    if not _placed(attempt):
        return ""
    if attempt.final_status or attempt.end_reason:
        return "応答なし"
    return ""


def _keys(attempt: Attempt) -> list[str]:
    return [key for key in (attempt.keys or "").split(",") if key]


def _announced_text(types: Counter[str]) -> str:
    if not types:
        return ""
    return f"障害 {types.get('PROBLEM', 0)} 件・復旧 {types.get('RECOVERY', 0)} 件"


def call_views(notification: Notification, announced: dict[int, Counter[str]]) -> list[CallView]:
    """Every attempt of the notification, oldest first."""
    views = []
    for delivery in notification.deliveries:
        recipient = delivery.user_name or delivery.to_number
        previous: Attempt | None = None
        attempts = list(delivery.attempts)
        for index, attempt in enumerate(attempts):
            later = [a for a in attempts[index + 1 :] if _placed(a)]
            recall = previous is not None and _ended_abnormally(previous)
            views.append(
                CallView(
                    attempt=attempt,
                    recipient=recipient,
                    number=f"{attempt.number} 回目",
                    recall=recall and _placed(attempt),
                    placed=_placed(attempt),
                    outcome=OUTCOMES.get(attempt.outcome, attempt.outcome),
                    error=attempt_error(attempt),
                    answered=_answered(attempt),
                    answered_by=answered_by_label(attempt.answered_by),
                    keys=_keys(attempt),
                    end=end_label(attempt),
                    abnormal=_ended_abnormally(attempt),
                    final=status_label(attempt.final_status),
                    next=_recall_text(attempt, later, delivery),
                    announced=_announced_text(announced.get(attempt.id, Counter())),
                )
            )
            if _placed(attempt):
                previous = attempt
    views.sort(key=lambda view: (view.attempt.started_at, view.attempt.id))
    return views


# --- acknowledgements ---


@dataclass(frozen=True)
class AckView:
    """One fault acknowledged with 3#, on its way back to the monitor."""

    ack: Acknowledgement
    target: str
    sink: str
    state: str
    failed: bool


def sink_label(sink: str) -> str:
    return ACK_MODES.get(sink, sink) if sink else NO_SINK


def ack_view(ack: Acknowledgement) -> AckView:
    target = f"{ack.host} / {ack.service}" if ack.service else f"{ack.host}(ホスト)"
    return AckView(
        ack=ack,
        target=target,
        sink=sink_label(ack.sink),
        state=ACK_STATES.get(ack.status, ack.status),
        failed=ack.status == ACK_FAILED,
    )


def _ack_counts_text(counts: Counter[str]) -> str:
    total = sum(counts.values())
    if not total:
        return ""
    parts = [f"{ACK_STATES[state]} {counts[state]}" for state in (ACK_DONE, ACK_PENDING, ACK_FAILED) if counts.get(state)]
    return f"認知済みの通知 {total} 件({'・'.join(parts)})"


# --- the notification ---


@dataclass(frozen=True)
class ButtonSummary:
    """A button call in one glance: mode, state, who is called now, what it holds, how it ended."""

    notification: Notification
    title: str
    mode: str
    state: str
    failed: bool
    now: str
    alerts: str
    calls: int
    acks: str
    acks_failed: bool
    end_reason: str
    recipients: list[RecipientView]

    # Shared with the simple-call and SMS views, so templates treat every view alike.
    button = True

    @property
    def all_failed(self) -> bool:
        return self.failed


def _now_text(recipients: list[RecipientView]) -> str:
    """Who is being called (or about to be) now: 「呼び出し中: 鈴木 花子」."""
    active = [r for r in recipients if r.active]
    return "、".join(f"{r.status}: {r.delivery.user_name or '(名前なし)'}" for r in active)


def _alerts_text(types: Counter[str]) -> str:
    text = f"障害 {types.get('PROBLEM', 0)} 件・復旧 {types.get('RECOVERY', 0)} 件"
    if types.get("ACKNOWLEDGEMENT"):
        text += f"・監視での認知 {types['ACKNOWLEDGEMENT']} 件"
    return text


def button_summary(notification: Notification, types: Counter[str], acks: Counter[str]) -> ButtonSummary:
    """The summary of one button call from its alert and acknowledgement counts."""
    recipients = [recipient_view(d, i + 1) for i, d in enumerate(sorted(notification.deliveries, key=lambda d: (d.position, d.id)))]
    return ButtonSummary(
        notification=notification,
        title=TITLE.format(id=notification.id),
        mode=MODES.get(notification.mode, notification.mode),
        state=NOTIFICATION_LABELS.get(notification.status, notification.status),
        failed=notification.status == NOTIFICATION_FAILED,
        now=_now_text(recipients) if notification.status == NOTIFICATION_ACTIVE else "",
        alerts=_alerts_text(types),
        calls=sum(r.calls for r in recipients),
        acks=_ack_counts_text(acks),
        acks_failed=bool(acks.get(ACK_FAILED)),
        end_reason=notification.end_reason,
        recipients=recipients,
    )


def summaries(notifications: Iterable[Notification]) -> dict[int, ButtonSummary]:
    """Summaries of many button calls, with two grouped queries (a page of インシデント)."""
    by_id = {n.id: n for n in notifications}
    if not by_id:
        return {}
    types: dict[int, Counter[str]] = defaultdict(Counter)
    for notification_id, kind, count in db.session.execute(
        select(NotificationAlert.notification_id, AlertRecord.notification_type, func.count())
        .join(AlertRecord, AlertRecord.id == NotificationAlert.alert_id)
        .where(NotificationAlert.notification_id.in_(by_id))
        .group_by(NotificationAlert.notification_id, AlertRecord.notification_type)
    ):
        types[notification_id][kind] = count
    acks: dict[int, Counter[str]] = defaultdict(Counter)
    for notification_id, status, count in db.session.execute(
        select(Acknowledgement.notification_id, Acknowledgement.status, func.count())
        .where(Acknowledgement.notification_id.in_(by_id))
        .group_by(Acknowledgement.notification_id, Acknowledgement.status)
    ):
        acks[notification_id][status] = count
    return {i: button_summary(n, types[i], acks[i]) for i, n in by_id.items()}


def joined_notifications(alert_ids: list[int]) -> dict[int, list[Notification]]:
    """Button calls each alert joined without starting them, by alert id."""
    if not alert_ids:
        return {}
    found: dict[int, list[Notification]] = defaultdict(list)
    for alert_id, notification in db.session.execute(
        select(NotificationAlert.alert_id, Notification)
        .join(Notification, Notification.id == NotificationAlert.notification_id)
        .where(NotificationAlert.alert_id.in_(alert_ids), Notification.alert_id != NotificationAlert.alert_id)
        .order_by(Notification.id)
    ):
        found[alert_id].append(notification)
    return found


@dataclass(frozen=True)
class JoinedAlert:
    """One alert of a button call: what it was, which calls read it out, its acknowledgement."""

    alert: AlertRecord
    calls: list[int]
    ack: str
    starter: bool


@dataclass(frozen=True)
class ButtonDetail:
    """Everything the detail page says of one button call."""

    summary: ButtonSummary
    joined: bool
    alerts: list[JoinedAlert]
    calls: list[CallView]
    acks: list[AckView]

    button = True

    @property
    def notification(self) -> Notification:
        return self.summary.notification

    @property
    def all_failed(self) -> bool:
        return self.summary.failed


def _announcements(notification: Notification) -> list[tuple[int, int, str]]:
    """(attempt id, alert id, notification type) of every alert read out in the notification's calls."""
    return [
        (attempt_id, alert_id, kind)
        for attempt_id, alert_id, kind in db.session.execute(
            select(CallAnnouncement.attempt_id, CallAnnouncement.alert_id, AlertRecord.notification_type)
            .join(AlertRecord, AlertRecord.id == CallAnnouncement.alert_id)
            .join(Attempt, Attempt.id == CallAnnouncement.attempt_id)
            .join(Delivery, Delivery.id == Attempt.delivery_id)
            .where(Delivery.notification_id == notification.id)
        )
    ]


def button_detail(notification: Notification, alert: AlertRecord) -> ButtonDetail:
    """The whole button call, seen from one of its alerts."""
    alerts = alerts_of(notification)
    acks = list(
        db.session.scalars(
            select(Acknowledgement).where(Acknowledgement.notification_id == notification.id).order_by(Acknowledgement.id)
        )
    )
    announced: dict[int, Counter[str]] = defaultdict(Counter)
    read_in: dict[int, list[int]] = defaultdict(list)
    for attempt_id, alert_id, kind in _announcements(notification):
        announced[attempt_id][kind] += 1
        read_in[alert_id].append(attempt_id)
    calls = call_views(notification, announced)
    order = {view.attempt.id: position for position, view in enumerate(calls, start=1)}
    ack_by_alert = {ack.alert_id: ACK_STATES.get(ack.status, ack.status) for ack in acks if ack.alert_id}
    types = Counter(a.notification_type for a in alerts)
    ack_counts = Counter(ack.status for ack in acks)
    return ButtonDetail(
        summary=button_summary(notification, types, ack_counts),
        joined=notification.alert_id != alert.id,
        alerts=[
            JoinedAlert(
                alert=a,
                calls=sorted(order[i] for i in read_in.get(a.id, []) if i in order),
                ack=ack_by_alert.get(a.id, ""),
                starter=a.id == notification.alert_id,
            )
            for a in alerts
        ],
        calls=calls,
        acks=[ack_view(ack) for ack in acks],
    )

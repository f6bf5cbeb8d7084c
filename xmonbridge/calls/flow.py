"""The button call's state machine (R9, table 6; B1, B2): plain code, no request code.

Twilio's requests reach it through webhooks/ (already checked to be Twilio's):

* `answer()` — the callee picked up: the alerts of the notification are read out and recorded
  as this call's announcements (3# acknowledges exactly those), then the key guide;
* `press()` — the keys ending with # (or nothing within 30 s):
  1# fault details · 7# recovery details · 8# the message again, with alerts that arrived since ·
  2# (輪番) the next user · 3# (輪番) acknowledge what was announced, nobody after ·
  9# end (輪番: nobody after; 一斉: this user is done) · anything else: 「無効な操作です」;
* `machine()` — answering-machine detection found a machine: the call is hung up (the
  dispatcher does it) and counts as not answered;
* `call_ended()` — Twilio's final status (a status callback or the dispatcher's look-up): a
  call that ended without 2#, 3# or 9# calls the same user again after the interval; with a
  cap, 輪番 passes to the next user and 一斉 stops for that user.

Each function changes rows in the caller's transaction and returns what to say; the caller
commits. Deliveries of a button call: queued → sending → calling → (a key) sent / waiting
(輪番, passed on) · (no key) queued again · failed (capped or a permanent error) · canceled
(the notification ended first).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from .. import dispatch, replacement_lists
from ..extensions import db
from ..models import (
    ACK_NONE,
    CHANNEL_BUTTON,
    DELIVERY_CALLING,
    DELIVERY_CANCELED,
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    DELIVERY_WAITING,
    MODE_ROTATION,
    NOTIFICATION_ACTIVE,
    NOTIFICATION_DONE,
    NOTIFICATION_FAILED,
    OUTCOME_ADOPTED,
    OUTCOME_PENDING,
    OUTCOME_PLACED,
    REPLACEMENT_BUTTON,
    SETTING_BUTTON_CALL,
    Acknowledgement,
    AlertRecord,
    Attempt,
    ButtonCallRecipient,
    ButtonCallSetting,
    CallAnnouncement,
    Delivery,
    Notification,
    NotificationAlert,
    UserMessageTemplate,
    XmonSettings,
)
from . import compose

log = logging.getLogger(__name__)

# Why a call ended (Attempt.end_reason), as インシデント and ログ show it.
END_KEY_2 = "key2"
END_KEY_3 = "key3"
END_KEY_9 = "key9"
END_RESOLVED = "resolved"
END_ENDED = "ended"
END_NO_INPUT = "no_input"
END_MACHINE = "machine"
END_HUNG_UP = "hung_up"
END_LOST = "lost"
END_REASONS = {
    END_KEY_2: "2# 次のユーザへ",
    END_KEY_3: "3# 認知済み",
    END_KEY_9: "9# 通話終了",
    END_RESOLVED: "障害がすべて復旧・認知済み",
    END_ENDED: "通知が終了済み",
    END_NO_INPUT: "30 秒以内にボタン操作なし",
    END_MACHINE: "留守番電話が応答",
    END_HUNG_UP: "ボタン操作なしで切断",
    END_LOST: "通話の結果が分からないまま時間が経過",
    "busy": "話し中",
    "no-answer": "応答なし",
    "failed": "発信失敗",
    "canceled": "キャンセル",
}
# Ends that are normal (no re-call).
NORMAL_ENDS = frozenset({END_KEY_2, END_KEY_3, END_KEY_9, END_RESOLVED, END_ENDED})
# Keys of table 6.
TERMINAL_KEYS = {"2": END_KEY_2, "3": END_KEY_3, "9": END_KEY_9}
ROTATION_ONLY = frozenset({"2", "3"})
# Longest Digits value kept (Twilio sends what the callee typed before #).
MAX_DIGITS = 16
# Keys kept per call in Attempt.keys.
MAX_KEYS_TEXT = 500
# AnsweredBy values that mean a machine (B1).
MACHINES = frozenset({"machine_start", "fax"})
# 通知設定種別 of test calls (メッセージテンプレート's テスト通話).
SETTING_BUTTON_TEST = "button_test"

RECALL = "前回の通話が正常に終了しなかったため({reason})、{seconds} 秒後に再発信します。"
CAPPED_ALL = "発信回数の上限({cap} 回)に達したため、このユーザへの発信を終了しました。"
CAPPED_ROTATION = "発信回数の上限({cap} 回)に達したため、次のユーザに通知します。"
ALL_CAPPED = "すべての宛先が発信回数の上限に達したか、発信できなかったため、通知を終了しました。"
ENDED_BY_KEY = "{user} さんが {key} を押したため、通知を終了しました。"
ENDED_BY_ACK = "{user} さんが 3# で障害を認知済みにしたため、通知を終了しました。"
ENDED_BY_TEST_ACK = "{user} さんが 3# を押したため、テスト通話を終了しました(監視には認知済みを送っていません)。"
ENDED_RESOLVED = "すべての障害が復旧、または監視で認知済みになったため、通知を終了しました。"
NO_FAULT_NO_RECALL = "障害を含まない通知(復旧のみ)のため、再発信しません。"
ALL_DONE = "すべての宛先が 9# で通話を終了しました。"
ALL_DONE_PARTLY = "宛先が 9# で通話を終了するか、発信回数の上限に達しました(発信できなかった宛先を含みます)。"
# 輪番 with one user left: wait at least this long before calling the one who just passed.
MIN_SELF_WAIT = 10
PASSED = "{user} さんが 2# を押したため、次のユーザに通知します。"
CANCELED = "通知が終了したため、発信しませんでした。"
REMOVED = "通話設定から外されたため、以降は発信しません。"
USER_DELETED = "ユーザが削除されたため、以降は発信しません。"
# Why a user was stopped while the notification went on (インシデント shows it).
STOPPED = frozenset({REMOVED, USER_DELETED})
NOBODY_LEFT = "発信する宛先が残っていないため、通知を終了しました(宛先が通話設定から外されたか、削除されました)。"
ACK_COMMENT = "xmonbridge の電話通知で {user} さんが 3# を押して認知済みにしました。"


@dataclass
class Reply:
    """What to say next: texts in order, then either the key guide (<Gather>) or a hang-up."""

    says: list[str] = field(default_factory=list)
    guide: str | None = None
    hangup: bool = False
    # What the keys did, for the ログ row.
    note: str = ""


@dataclass(frozen=True)
class Content:
    """The alerts of a notification, split the way the call reads them."""

    faults: list[AlertRecord]
    recoveries: list[AlertRecord]
    follow_ups: list[AlertRecord]

    @property
    def all(self) -> list[AlertRecord]:
        return self.faults + self.recoveries


# --- reading the notification ---


def alerts_of(notification: Notification) -> list[AlertRecord]:
    """Every alert that joined the notification, oldest first."""
    return list(
        db.session.scalars(
            select(AlertRecord)
            .join(NotificationAlert, NotificationAlert.alert_id == AlertRecord.id)
            .where(NotificationAlert.notification_id == notification.id)
            .order_by(AlertRecord.id)
        )
    )


def content_of(notification: Notification) -> Content:
    alerts = alerts_of(notification)
    return Content(
        faults=[a for a in alerts if a.notification_type == "PROBLEM"],
        recoveries=[a for a in alerts if a.notification_type == "RECOVERY"],
        follow_ups=[a for a in alerts if a.notification_type == "ACKNOWLEDGEMENT"],
    )


def _closes(fault: AlertRecord, other: AlertRecord) -> bool:
    """Whether other (a RECOVERY or ACKNOWLEDGEMENT) ends fault: same host, service and problem."""
    if other.id <= fault.id or other.host != fault.host or other.service != fault.service:
        return False
    if other.problem_alert_id == fault.id:
        return True
    return bool(fault.correlation_id) and other.correlation_id == fault.correlation_id or not fault.correlation_id


def unresolved(content: Content) -> list[AlertRecord]:
    """Faults neither recovered nor acknowledged in the monitor (as far as alerts tell)."""
    closers = content.recoveries + content.follow_ups
    return [f for f in content.faults if not any(_closes(f, c) for c in closers)]


def is_resolved(content: Content) -> bool:
    """Beyond X-MON: every fault recovered or acknowledged, so nobody needs to be called."""
    return bool(content.faults) and not unresolved(content)


def _messages(notification: Notification, delivery: Delivery) -> tuple[str, str]:
    """The callee's 着信直後 and 通話終了時 messages (a test call carries its own)."""
    if notification.setting_type == SETTING_BUTTON_TEST and notification.text:
        data = json.loads(notification.text)
        return str(data.get("opening", "")), str(data.get("closing", ""))
    if delivery.user_id is None:
        return "", ""
    row = db.session.scalar(select(UserMessageTemplate).where(UserMessageTemplate.user_id == delivery.user_id))
    return (row.opening_message, row.closing_message) if row else ("", "")


def voice() -> str:
    return XmonSettings.get().effective_voice


# --- Twilio's requests ---


def _open_call(attempt: Attempt) -> bool:
    """Whether the attempt is its delivery's call in progress (keys may still change things)."""
    delivery = attempt.delivery
    return delivery.status in (DELIVERY_SENDING, DELIVERY_CALLING) and delivery.attempts[-1].id == attempt.id


# How long after an adopted call's answer its outcome is read from Twilio if no callback comes.
ADOPTED_CHECK_SECONDS = 120


def adopt(attempt: Attempt, sid: str, now: datetime) -> None:
    """A signed webhook names the call of an attempt still waiting for its create's answer.

    That answer never comes when the process placing the call died during the request, and
    the callee may work the call before another dispatcher has found it at Twilio: the
    webhook's CallSid is then recorded here, so the attempt is settled (placed: the signed
    webhook shows Twilio made the call) with its SID and the delivery is in that call. The
    webhook of a live dispatcher's call can also beat the create's answer: that dispatcher
    then finds the attempt settled and leaves it.
    """
    if attempt.sid or not sid or attempt.outcome != OUTCOME_PENDING:
        return
    delivery = attempt.delivery
    done = db.session.execute(
        update(Attempt)
        .where(Attempt.id == attempt.id, Attempt.outcome == OUTCOME_PENDING, Attempt.sid == "")
        .values(sid=sid, outcome=OUTCOME_PLACED, finished_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if done == 1 and delivery.attempts[-1].id == attempt.id:
        ring = delivery.notification.ring_seconds or 60
        db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.status == DELIVERY_SENDING)
            .values(
                status=DELIVERY_CALLING,
                sid=sid,
                final_status="",
                check_at=now + timedelta(seconds=ring + ADOPTED_CHECK_SECONDS),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        log.info("delivery %s: adopted %s named by its webhook", delivery.id, sid)
    db.session.refresh(attempt)
    db.session.refresh(delivery)


def answer(attempt: Attempt, now: datetime) -> Reply:
    """The callee answered: greeting, summary, guide (or a goodbye if nothing is left to do)."""
    delivery = attempt.delivery
    notification = delivery.notification
    replacements = replacement_lists.approved(REPLACEMENT_BUTTON)
    opening, closing = _messages(notification, delivery)
    if attempt.answered_at is None:
        attempt.answered_at = now
    if attempt.end_reason == END_MACHINE:
        return Reply(hangup=True, note="留守番電話のため切断")
    if notification.status != NOTIFICATION_ACTIVE or not _open_call(attempt):
        return _already_ended(attempt, closing, replacements)
    content = content_of(notification)
    _announce(attempt, content)
    if is_resolved(content):
        return _resolved(attempt, content, opening, closing, replacements, now)
    says = [opening, compose.summary(len(content.faults), len(content.recoveries))]
    return Reply(
        says=compose.spoken(says, replacements),
        guide=replacements.apply(compose.guide(notification.mode == MODE_ROTATION)),
        note="応答",
    )


def press(attempt: Attempt, digits: str | None, now: datetime) -> Reply:
    """A <Gather> result: the keys before # ("" when nothing was pressed within 30 s)."""
    key = (digits or "").strip()[:MAX_DIGITS]
    reply = _answer_key(attempt, key, now)
    # Recorded after the reads: a pending change would be flushed by the first query and hold
    # SQLite's write lock through every read of the request.
    _record_key(attempt, key)
    return reply


def _answer_key(attempt: Attempt, key: str, now: datetime) -> Reply:
    delivery = attempt.delivery
    notification = delivery.notification
    rotation = notification.mode == MODE_ROTATION
    replacements = replacement_lists.approved(REPLACEMENT_BUTTON)
    opening, closing = _messages(notification, delivery)
    guide = replacements.apply(compose.guide(rotation))

    def goodbye(*texts: str, reason: str, note: str) -> Reply:
        _set_end(attempt, reason)
        return Reply(says=compose.spoken([*texts, closing], replacements), hangup=True, note=note)

    if attempt.end_reason == END_MACHINE:
        return Reply(hangup=True, note="留守番電話のため切断")
    if notification.status != NOTIFICATION_ACTIVE or not _open_call(attempt):
        return _already_ended(attempt, closing, replacements)
    content = content_of(notification)
    if key and is_resolved(content):
        return _resolved(attempt, content, "", closing, replacements, now)
    if not key:
        return goodbye(compose.NO_INPUT, reason=END_NO_INPUT, note="入力なし(再発信します)")
    if key == "1":
        return Reply(says=compose.spoken([compose.fault_details(_announced(attempt, "PROBLEM"))], replacements), guide=guide, note="1# 障害の詳細")
    if key == "7":
        return Reply(
            says=compose.spoken([compose.recovery_details(_announced(attempt, "RECOVERY"))], replacements),
            guide=guide,
            note="7# 復旧の詳細",
        )
    if key == "8":
        _announce(attempt, content)
        says = [opening, compose.summary(len(content.faults), len(content.recoveries))]
        return Reply(says=compose.spoken(says, replacements), guide=guide, note="8# もう一度再生")
    if key in ROTATION_ONLY and not rotation or key not in ("2", "3", "9"):
        return Reply(says=compose.spoken([compose.INVALID], replacements), guide=guide, note=f"{key}# 無効な操作")
    if not _claim(attempt, key):
        # The same key twice (Twilio retried, or a replay raced the first): the first one acted.
        return Reply(says=compose.spoken([compose.ENDED, closing], replacements), hangup=True, note="操作は処理済み")
    user = delivery.user_name or delivery.to_number
    if key == "9":
        _set_end(attempt, END_KEY_9, key="9")
        delivery.status = DELIVERY_SENT
        if rotation:
            _end(notification, now, ENDED_BY_KEY.format(user=user, key="9#"))
        else:
            _finish_if_all_done(notification, now)
        later = _carry_over(notification, now)
        return Reply(says=compose.spoken([*later, compose.GOODBYE, closing], replacements), hangup=True, note="9# 通話終了")
    if key == "2":
        _set_end(attempt, END_KEY_2, key="2")
        delivery.status = DELIVERY_WAITING
        delivery.error = PASSED.format(user=user)
        _pass_on(delivery, now, PASSED.format(user=user))
        return Reply(
            says=compose.spoken([compose.PASSING, closing], replacements), hangup=True, note="2# 次のユーザへ"
        )
    # 3#: acknowledge what this call announced, then nobody after.
    _set_end(attempt, END_KEY_3, key="3")
    delivery.status = DELIVERY_SENT
    count = acknowledge(attempt, now)
    if notification.setting_type == SETTING_BUTTON_TEST:
        said = compose.TEST_ACK
    else:
        said = compose.ACKNOWLEDGED.format(count=count) if count else compose.NOTHING_TO_ACK
    ended = ENDED_BY_TEST_ACK if notification.setting_type == SETTING_BUTTON_TEST else ENDED_BY_ACK
    _end(notification, now, ended.format(user=user))
    later = _carry_over(notification, now)
    return Reply(says=compose.spoken([said, *later, closing], replacements), hangup=True, note=f"3# 認知済み({count} 件)")


def machine(attempt: Attempt, answered_by: str) -> bool:
    """AMD's result; return whether the call is to be hung up (a machine or a fax)."""
    attempt.answered_by = answered_by[:32]
    if answered_by not in MACHINES or attempt.end_key:
        return False
    _set_end(attempt, END_MACHINE)
    attempt.hangup_wanted = True
    dispatch.wake()
    return True


def call_ended(attempt: Attempt, now: datetime) -> None:
    """The call has a final status: re-call, pass on, or nothing (a key already decided)."""
    delivery = attempt.delivery
    notification = delivery.notification
    if notification.channel != CHANNEL_BUTTON or not attempt.final_status:
        return
    if attempt.end_key or delivery.status != DELIVERY_CALLING or delivery.sid != attempt.sid:
        return
    reason = attempt.end_reason
    if not reason:
        if attempt.final_status != "completed":
            reason = attempt.final_status
        elif attempt.answered_by in MACHINES:
            reason = END_MACHINE
        else:
            reason = END_HUNG_UP
        _set_end(attempt, reason)
    _after_call(attempt, reason, now)


def call_lost(attempt: Attempt, now: datetime) -> None:
    """No final status came for far too long: settle the call as not answered (re-call)."""
    delivery = attempt.delivery
    if attempt.end_key or delivery.status != DELIVERY_CALLING or delivery.sid != attempt.sid:
        return
    reason = attempt.end_reason or END_LOST
    _set_end(attempt, reason)
    _after_call(attempt, reason, now)


def _after_call(attempt: Attempt, reason: str, now: datetime) -> None:
    """What follows a call that ended for reason: nothing, a re-call, or the next user."""
    delivery = attempt.delivery
    notification = delivery.notification
    if reason in NORMAL_ENDS:
        delivery.status = DELIVERY_SENT if reason != END_ENDED else DELIVERY_CANCELED
        _finish_if_all_done(notification, now)
        return
    if notification.status != NOTIFICATION_ACTIVE:
        delivery.status = DELIVERY_CANCELED
        delivery.error = CANCELED
        return
    content = content_of(notification)
    if is_resolved(content):
        delivery.status = DELIVERY_CANCELED
        _end(notification, now, ENDED_RESOLVED)
        return
    if not content.faults:
        # Recoveries are news, not an emergency: one try each, never a loop of re-calls.
        delivery.status = DELIVERY_SENT
        delivery.error = NO_FAULT_NO_RECALL
        if notification.mode == MODE_ROTATION:
            _end(notification, now, NO_FAULT_NO_RECALL)
        else:
            _finish_if_all_done(notification, now)
        return
    if not still_recipient(delivery):
        # Taken off the setting (or deleted) while this call went on: not called again.
        stop_removed(delivery, now)
        return
    label = END_REASONS.get(reason, reason)
    cap = notification.max_calls or 0
    if cap and calls_made(delivery) >= cap:
        delivery.status = DELIVERY_FAILED
        if notification.mode == MODE_ROTATION:
            delivery.error = CAPPED_ROTATION.format(cap=cap)
            _pass_on(delivery, now, delivery.error)
        else:
            delivery.error = CAPPED_ALL.format(cap=cap)
            _finish_if_all_done(notification, now)
        return
    seconds = notification.recall_seconds or 0
    delivery.status = DELIVERY_QUEUED
    delivery.next_at = now + timedelta(seconds=seconds)
    delivery.error = RECALL.format(reason=label, seconds=seconds)
    delivery.updated_at = now
    dispatch.wake()


def after_failure(delivery: Delivery, now: datetime) -> None:
    """A delivery stopped for good (a permanent error, retries used up): 輪番 goes on to the next."""
    notification = delivery.notification
    if notification.channel == CHANNEL_BUTTON and notification.mode == MODE_ROTATION:
        _pass_on(delivery, now, delivery.error)


def still_recipient(delivery: Delivery) -> bool:
    """Whether the delivery's user is still among the To rows of its button-call setting.

    A user taken off the setting by an approved edit (or deleted) is not called again by its
    active notification. Test calls and notifications of a deleted setting are left as they are.
    """
    notification = delivery.notification
    if notification.setting_type != SETTING_BUTTON_CALL:
        return True
    if db.session.get(ButtonCallSetting, notification.setting_id) is None:
        return True
    if delivery.user_id is None:
        return False
    found = db.session.scalar(
        select(ButtonCallRecipient.id).where(
            ButtonCallRecipient.setting_id == notification.setting_id,
            ButtonCallRecipient.user_id == delivery.user_id,
        ).limit(1)
    )
    return found is not None


def stop_removed(delivery: Delivery, now: datetime, why: str = REMOVED) -> None:
    """Stop calling one user of an active notification; 輪番 passes on if it was their turn."""
    notification = delivery.notification
    in_turn = delivery.status in (DELIVERY_QUEUED, DELIVERY_SENDING, DELIVERY_CALLING)
    delivery.status = DELIVERY_CANCELED
    delivery.error = why
    delivery.updated_at = now
    if notification.status != NOTIFICATION_ACTIVE:
        return
    if not any(d.status not in (DELIVERY_FAILED, DELIVERY_CANCELED, DELIVERY_SENT) for d in notification.deliveries):
        if notification.mode == MODE_ROTATION or not any(d.status == DELIVERY_SENT for d in notification.deliveries):
            _end(notification, now, NOBODY_LEFT)
            return
    if notification.mode == MODE_ROTATION:
        if in_turn:
            _pass_on(delivery, now, why)
    else:
        _finish_if_all_done(notification, now)


def calls_made(delivery: Delivery) -> int:
    """Calls Twilio accepted for this user in this notification."""
    return sum(1 for a in delivery.attempts if a.outcome in (OUTCOME_PLACED, OUTCOME_ADOPTED))


def end_if_resolved(notification: Notification, now: datetime) -> bool:
    """Stop calling for a notification whose faults all recovered or were acknowledged."""
    if notification.status != NOTIFICATION_ACTIVE or not is_resolved(content_of(notification)):
        return False
    _end(notification, now, ENDED_RESOLVED)
    return True


# --- acknowledgements (R12) ---


def acknowledge(attempt: Attempt, now: datetime) -> int:
    """Queue an acknowledgement of every fault this call announced that is still open; return the count."""
    delivery = attempt.delivery
    notification = delivery.notification
    announced = _announced(attempt, "PROBLEM")
    content = content_of(notification)
    still_open = {a.id for a in unresolved(content)}
    faults = [a for a in announced if a.id in still_open]
    if notification.setting_type == SETTING_BUTTON_TEST:
        return len(faults)
    author = delivery.user_name or delivery.to_number
    sink = XmonSettings.get().ack_mode
    seen: set[tuple[str, str]] = set()
    for fault in faults:
        # One acknowledgement per host/service, even if it failed twice in one notification.
        if (fault.host, fault.service) in seen:
            continue
        seen.add((fault.host, fault.service))
        db.session.add(
            Acknowledgement(
                notification_id=notification.id,
                attempt_id=attempt.id,
                alert_id=fault.id,
                host=fault.host,
                service=fault.service,
                author=author,
                comment=ACK_COMMENT.format(user=author),
                sink="" if sink == ACK_NONE else sink,
                next_at=now,
                created_at=now,
            )
        )
    dispatch.wake()
    return len(seen)


# --- helpers ---


def _resolved(attempt: Attempt, content: Content, opening: str, closing: str, replacements, now: datetime) -> Reply:  # type: ignore[no-untyped-def]
    notification = attempt.delivery.notification
    _set_end(attempt, END_RESOLVED)
    attempt.delivery.status = DELIVERY_SENT
    _end(notification, now, ENDED_RESOLVED)
    return Reply(
        says=compose.spoken([opening, compose.RESOLVED, closing], replacements), hangup=True, note=compose.RESOLVED
    )


def _already_ended(attempt: Attempt, closing: str, replacements) -> Reply:  # type: ignore[no-untyped-def]
    """The notification ended while this call went on (resolved, or another user's key)."""
    resolved = attempt.delivery.notification.end_reason == ENDED_RESOLVED
    said = compose.RESOLVED if resolved else compose.ENDED
    if not attempt.end_reason:  # a late or replayed request keeps how the call really ended
        _set_end(attempt, END_RESOLVED if resolved else END_ENDED)
    if attempt.delivery.status in (DELIVERY_SENDING, DELIVERY_CALLING) and attempt.delivery.attempts[-1].id == attempt.id:
        attempt.delivery.status = DELIVERY_SENT if resolved else DELIVERY_CANCELED
    return Reply(says=compose.spoken([said, closing], replacements), hangup=True, note=said)


def _announce(attempt: Attempt, content: Content) -> None:
    """Record the alerts read out in this call (idempotent)."""
    known = {a.alert_id for a in attempt.announcements}
    for alert in content.all:
        if alert.id not in known:
            attempt.announcements.append(CallAnnouncement(alert_id=alert.id))
    db.session.flush()


def _announced(attempt: Attempt, notification_type: str) -> list[AlertRecord]:
    return list(
        db.session.scalars(
            select(AlertRecord)
            .join(CallAnnouncement, CallAnnouncement.alert_id == AlertRecord.id)
            .where(CallAnnouncement.attempt_id == attempt.id, AlertRecord.notification_type == notification_type)
            .order_by(AlertRecord.id)
        )
    )


KEYPAD = frozenset("0123456789*#")


def _record_key(attempt: Attempt, key: str) -> None:
    # Only what a keypad has is kept (a forged request may hold anything; it is invalid anyway).
    key = "".join(char if char in KEYPAD else "?" for char in key)
    pressed = f"{key}#" if key else "(入力なし)"
    keys = f"{attempt.keys},{pressed}" if attempt.keys else pressed
    attempt.keys = keys[-MAX_KEYS_TEXT:]


def _carry_over(notification: Notification, now: datetime) -> list[str]:
    """After the notification ended: faults nobody heard start the next one (what to say of it)."""
    if notification.status == NOTIFICATION_ACTIVE:
        return []
    from . import aggregate  # aggregate builds on this module

    count = aggregate.carry_over(notification, now)
    return [compose.LATE_FAULTS.format(count=count)] if count else []


def _claim(attempt: Attempt, key: str) -> bool:
    """Take the call's one ending key (2#, 3#, 9#) under the database's write lock.

    The checks before it are plain reads: two copies of one request may both pass them, and
    only the one that claims the key may act (acknowledge, pass on, end).
    """
    taken = db.session.execute(
        update(Attempt)
        .where(Attempt.id == attempt.id, Attempt.end_key == "")
        .values(end_key=key)
        .execution_options(synchronize_session=False)
    ).rowcount
    return taken == 1


def _set_end(attempt: Attempt, reason: str, key: str = "") -> None:
    attempt.end_reason = reason
    if key:
        attempt.end_key = key


def lock_if_active(notification: Notification) -> bool:
    """Lock the notification row while it is active (intake joins alerts under the same lock)."""
    return (
        db.session.execute(
            update(Notification)
            .where(Notification.id == notification.id, Notification.status == NOTIFICATION_ACTIVE)
            .values(status=NOTIFICATION_ACTIVE)
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )


def _end(notification: Notification, now: datetime, reason: str, status: str = NOTIFICATION_DONE) -> None:
    """End the notification: nobody else is called; calls in progress finish by themselves."""
    if not lock_if_active(notification):
        return
    notification.status = status
    notification.finished_at = now
    notification.end_reason = reason
    for other in notification.deliveries:
        if other.status in (DELIVERY_QUEUED, DELIVERY_WAITING):
            other.status = DELIVERY_CANCELED
            other.error = CANCELED
            other.updated_at = now


def end(notification: Notification, now: datetime, reason: str) -> None:
    """End an active notification for reason (an administrator's 「通知を終了」)."""
    _end(notification, now, reason)


def _finish_if_all_done(notification: Notification, now: datetime) -> None:
    """一斉: the notification ends when no user is left to call."""
    db.session.flush()
    states = [d.status for d in notification.deliveries]
    if any(s in (DELIVERY_QUEUED, DELIVERY_SENDING, DELIVERY_CALLING, DELIVERY_WAITING) for s in states):
        return
    if states and all(s == DELIVERY_FAILED for s in states):
        _end(notification, now, ALL_CAPPED, NOTIFICATION_FAILED)
    else:
        _end(notification, now, ALL_DONE if all(s != DELIVERY_FAILED for s in states) else ALL_DONE_PARTLY)


def _pass_on(delivery: Delivery, now: datetime, why: str) -> None:
    """輪番: call the next user in the list (after the last, the first), skipping stopped ones."""
    notification = delivery.notification
    if notification.status != NOTIFICATION_ACTIVE:
        return
    ordered = sorted(notification.deliveries, key=lambda d: (d.position, d.id))
    index = ordered.index(delivery)
    removed = False
    for step in range(1, len(ordered) + 1):
        candidate = ordered[(index + step) % len(ordered)]
        if candidate.status in (DELIVERY_FAILED, DELIVERY_CANCELED):
            continue
        if candidate.status in (DELIVERY_SENDING, DELIVERY_CALLING) and candidate is not delivery:
            return  # someone is already being called
        if not still_recipient(candidate):
            candidate.status = DELIVERY_CANCELED
            candidate.error = REMOVED
            candidate.updated_at = now
            removed = True
            continue
        candidate.status = DELIVERY_QUEUED
        # The only one left is the user who just passed: not while their call is still on.
        wait = 0 if candidate is not delivery else max(notification.recall_seconds or 0, MIN_SELF_WAIT)
        candidate.next_at = now + timedelta(seconds=wait)
        candidate.updated_at = now
        if candidate is not delivery:
            candidate.error = why
        dispatch.wake()
        return
    if removed:
        _end(notification, now, NOBODY_LEFT)
    else:
        _end(notification, now, ALL_CAPPED, NOTIFICATION_FAILED)

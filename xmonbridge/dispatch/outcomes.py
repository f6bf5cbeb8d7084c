"""What became of a call or message: Twilio's statuses recorded on attempts and deliveries (B7).

Statuses reach `record_final()` from two places: the status callback webhook (webhooks/) and
the dispatcher's own look-up when no callback can come (closed networks). Callbacks arrive
in any order and more than once, so:

* a final status (a call ended, a message was delivered or not) is recorded once; an interim
  one (queued, ringing, sent …) records nothing, before or after it;
* the same final status again changes nothing; a different final status after a final one is
  ignored and logged (the first answer stays), except a read receipt after `delivered`;
* a delivery mirrors the final status of the attempt that holds its SID.

No request code here. `record_final()` flushes; the caller commits.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update

from ..extensions import db
from ..models import CHANNEL_BUTTON, CHANNEL_CALL, CHANNEL_SMS, Attempt, utcnow

log = logging.getLogger(__name__)

# Statuses after which a call or message changes no more (Twilio's call and message status lists).
FINAL_CALL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
FINAL_MESSAGE = frozenset({"delivered", "undelivered", "failed", "read", "canceled"})
FINAL_STATUSES = {CHANNEL_CALL: FINAL_CALL, CHANNEL_BUTTON: FINAL_CALL, CHANNEL_SMS: FINAL_MESSAGE}
# Statuses on the way there: they say nothing about the outcome.
INTERIM_CALL = frozenset({"queued", "initiated", "ringing", "in-progress"})
INTERIM_MESSAGE = frozenset({"queued", "accepted", "scheduled", "sending", "sent", "receiving", "received"})
INTERIM_STATUSES = {CHANNEL_CALL: INTERIM_CALL, CHANNEL_BUTTON: INTERIM_CALL, CHANNEL_SMS: INTERIM_MESSAGE}
# Final statuses that mean the person was not reached.
FAILING_STATUSES = frozenset({"busy", "no-answer", "failed", "canceled", "undelivered"})
# A final status that may follow another one: Twilio reports a read receipt after delivery.
REFINES = {"read": "delivered"}

STATUS_LABELS = {
    "completed": "通話完了",
    "busy": "話し中",
    "no-answer": "応答なし",
    "failed": "失敗",
    "canceled": "キャンセル",
    "delivered": "配信済み",
    "undelivered": "配信失敗",
    "read": "既読",
    "queued": "待機中",
    "initiated": "発信開始",
    "ringing": "呼び出し中",
    "in-progress": "通話中",
    "accepted": "受付済み",
    "scheduled": "予約済み",
    "sending": "送信中",
    "sent": "送信済み",
    "receiving": "受信中",
    "received": "受信済み",
}

ANSWERED_BY_LABELS = {
    "human": "人",
    "machine_start": "留守番電話",
    "machine_end_beep": "留守番電話",
    "machine_end_silence": "留守番電話",
    "machine_end_other": "留守番電話",
    "fax": "FAX",
    "unknown": "判定できず",
}

# Why a message was not delivered (ErrorCode of an undelivered or failed message's callback).
DELIVERY_ERRORS = {
    30001: "Twilio の送信待ちの列があふれたため送信できませんでした。",
    30002: "Twilio アカウントが停止されているため送信できませんでした。",
    30003: "宛先の端末に届きませんでした(電源が切れているか圏外です)。",
    30004: "宛先で受信が拒否されました。",
    30005: "宛先の電話番号が存在しないか、使われていません。",
    30006: "宛先は SMS を受信できない番号(固定電話など)か、通信事業者に届きませんでした。",
    30007: "通信事業者に迷惑メッセージとして止められました。",
    30008: "通信事業者から原因不明のエラーが返されました。",
}

MAX_ANSWERED_BY = 32


def status_label(status: str) -> str:
    """A status as the screens show it: 「応答なし(no-answer)」."""
    if not status:
        return ""
    label = STATUS_LABELS.get(status)
    return f"{label}({status})" if label else status


def answered_by_label(answered_by: str) -> str:
    """Who answered, as the screens show it: 「留守番電話(machine_start)」."""
    if not answered_by:
        return ""
    label = ANSWERED_BY_LABELS.get(answered_by)
    return f"{label}({answered_by})" if label else answered_by


def is_final(channel: str, status: str) -> bool:
    """Tell whether status ends a call (channel call) or a message (channel sms)."""
    return status in FINAL_STATUSES.get(channel, frozenset())


def is_failing(status: str) -> bool:
    """Tell whether a final status means the person was not reached."""
    return status in FAILING_STATUSES


def explain_delivery_error(code: int | None) -> str:
    """The Japanese reason of a message delivery error code ("" when unknown)."""
    return DELIVERY_ERRORS.get(code or 0, "")


def record_final(
    attempt: Attempt,
    status: str,
    *,
    answered_by: str = "",
    duration: int | None = None,
    error_code: int | None = None,
    at: datetime | None = None,
) -> bool:
    """Record a Twilio status on the attempt and its delivery; return whether anything changed.

    1. An interim or unknown status records nothing.
    2. A final status is written only while the attempt has none (or it refines the one it
       has), with a conditional UPDATE, so two callbacks racing each other cannot both win.
    3. The delivery takes the attempt's final status when the attempt holds its SID; this is
       repeated on every call, so a status recorded before the dispatcher stored the SID
       reaches the delivery with the next callback or look-up.
    4. A button call's end goes to calls.flow.call_ended (re-call, 輪番), also repeatedly:
       it acts only while the delivery is still in that call.
    """
    status = (status or "").strip().lower()
    channel = attempt.delivery.notification.channel
    if not is_final(channel, status):
        if status not in INTERIM_STATUSES.get(channel, frozenset()):
            log.warning("attempt %s: unknown %s status %r ignored", attempt.id, channel, status)
        return False
    db.session.flush()
    current = attempt.final_status
    changed = False
    if not current or REFINES.get(status) == current:
        values: dict[str, object] = {"final_status": status, "final_at": at or utcnow()}
        if answered_by:
            values["answered_by"] = answered_by[:MAX_ANSWERED_BY]
        if duration is not None:
            values["duration"] = duration
        if error_code is not None and attempt.error_code is None and is_failing(status):
            values["error_code"] = error_code
        written = db.session.execute(
            update(Attempt)
            .where(Attempt.id == attempt.id, Attempt.final_status == current)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        db.session.refresh(attempt)
        changed = written == 1
        if not changed:
            log.info("attempt %s: %r lost to %r recorded at the same time", attempt.id, status, attempt.final_status)
    elif current != status:
        log.warning("attempt %s: %r after final %r ignored", attempt.id, status, current)
    changed = _mirror(attempt) or changed
    if channel == CHANNEL_BUTTON and attempt.final_status:
        # A button call that ended without a valid key calls again (calls/flow.py).
        from ..calls import flow

        flow.call_ended(attempt, at or utcnow())
    db.session.flush()
    return changed


def _mirror(attempt: Attempt) -> bool:
    """Copy the attempt's final status to its delivery if the attempt holds the delivery's SID."""
    delivery = attempt.delivery
    if not attempt.final_status or not attempt.sid or delivery.sid != attempt.sid:
        return False
    if delivery.final_status == attempt.final_status:
        return False
    delivery.final_status = attempt.final_status
    return True

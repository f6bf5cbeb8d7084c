"""Alert intake (R11): what the monitor hands over becomes an alert, notifications and deliveries.

Plain code, no request code: the API blueprint (and anything else) calls `accept(fields)`.
One transaction stores the alert, one `Notification` for its setting and one `Delivery` per
recipient, with the text composed now (the dispatcher only sends). After the commit the
dispatcher is woken.

* Validation: every problem is listed (Japanese), nothing is stored.
* Dedupe: the same notification (setting, type, host, service, problem id) within
  ALERT_DEDUPE_SECONDS is stored once; the repeat answers the first alert's id. Race-free on
  SQLite and PostgreSQL through the `alert_dedupe` row claimed in the same transaction.
* ACKNOWLEDGEMENT is recorded and notifies nobody (Nagios sends one after every ack).
* A RECOVERY (or any follow-up) points at its PROBLEM: the latest PROBLEM of the same host and
  service whose problem id is the follow-up's "current problem id if non-zero, else last".
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import current_app
from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload

from .. import dispatch, messages, simple_call
from ..calls import aggregate
from ..extensions import db
from ..forms import has_control_characters
from ..models import (
    CHANNEL_CALL,
    CHANNEL_SMS,
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    HOST_STATES,
    NOTIFICATION_TYPES,
    SERVICE_STATES,
    SETTING_BUTTON_CALL,
    SETTING_SIMPLE_CALL,
    SETTING_SMS,
    AlertDedupe,
    AlertRecord,
    ApiToken,
    ButtonCallSetting,
    Delivery,
    Notification,
    SimpleCallSetting,
    SmsSetting,
    utcnow,
)

KINDS = (SETTING_SIMPLE_CALL, SETTING_BUTTON_CALL, SETTING_SMS)
FIELDS = (
    "kind",
    "setting_id",
    "setting",
    "type",
    "host",
    "host_address",
    "service",
    "state",
    "output",
    "problem_id",
    "last_problem_id",
    "time",
)
# ASCII digits only: str.isdigit() and \d also take "²" and full-width digits.
_DIGITS = re.compile(r"[0-9]+")
MAX_NAME = 255
MAX_OUTPUT = 8192
MAX_ID = 2**63 - 1
NO_PHONE = "連絡先電話番号(Twilio API連携)が登録されていないため、発信・送信できません。"
NO_BIN = "Twilio アカウント情報に TwiML Bin URL が設定されていないため、発信できません。"


class IntakeError(ValueError):
    """What is wrong with the fields: a list of {"field", "message"}; nothing was stored."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(p["message"] for p in problems))
        self.problems = problems


class UnknownSetting(LookupError):
    """No setting of that kind with that id or name."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.problems = [{"field": "setting", "message": message}]


@dataclass(frozen=True)
class Accepted:
    """The stored alert's id; duplicate when it was the repeat of one stored before."""

    alert_id: int
    duplicate: bool


@dataclass(frozen=True)
class Fields:
    """Validated fields."""

    kind: str
    setting_id: int | None
    setting_name: str
    notification_type: str
    host: str
    host_address: str
    service: str
    state: str
    output: str
    problem_id: str
    last_problem_id: str
    event_time: datetime | None

    @property
    def correlation_id(self) -> str:
        """Nagios's problem id: the current one if non-zero, else the last (host RECOVERY)."""
        if self.problem_id and self.problem_id != "0":
            return self.problem_id
        return self.last_problem_id if self.last_problem_id != "0" else ""


def _text(raw: Any) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return str(raw).lower()
    return str(raw).strip()


def parse(values: Mapping[str, Any]) -> Fields:
    """Validate the fields of an alert; raise IntakeError listing every problem."""
    problems: list[dict[str, str]] = []

    def bad(field: str, message: str) -> None:
        problems.append({"field": field, "message": message})

    unknown = sorted(set(values) - set(FIELDS))
    for name in unknown:
        bad(name, f"{name}: 知らない項目です(使える項目: {', '.join(FIELDS)})。")
    raw = {name: values.get(name) for name in FIELDS}
    for name, value in raw.items():
        if isinstance(value, list | dict):
            bad(name, f"{name}: 文字列または数値で指定してください。")
            raw[name] = None
    text = {name: _text(value) for name, value in raw.items()}
    for name, value in text.items():
        if has_control_characters(value, multi_line=name == "output"):
            bad(name, f"{name}: 制御文字は使用できません。")

    kind = text["kind"]
    if not kind:
        bad("kind", f"kind: 通知設定の種類を指定してください({' / '.join(KINDS)})。")
    elif kind not in KINDS:
        bad("kind", f"kind: 通知設定の種類は {' / '.join(KINDS)} のいずれかです。")

    setting_id: int | None = None
    if text["setting_id"]:
        if not _DIGITS.fullmatch(text["setting_id"]) or not 0 < int(text["setting_id"]) <= MAX_ID:
            bad("setting_id", "setting_id: 通知設定の ID は正の整数で指定してください。")
        else:
            setting_id = int(text["setting_id"])
    if not text["setting_id"] and not text["setting"]:
        bad("setting", "setting: 通知設定の名称(setting)または ID(setting_id)を指定してください。")
    if len(text["setting"]) > 128:
        bad("setting", "setting: 通知設定の名称は 128 文字以内です。")

    kind_of_alert = text["type"].upper()
    if not kind_of_alert:
        bad("type", "type: 通知の種類($NOTIFICATIONTYPE$)を指定してください。")
    elif kind_of_alert not in NOTIFICATION_TYPES:
        bad("type", f"type: 通知の種類は {', '.join(NOTIFICATION_TYPES)} のいずれかです。")

    if not text["host"]:
        bad("host", "host: ホスト名を指定してください。")
    for name in ("host", "host_address", "service"):
        if len(text[name]) > MAX_NAME:
            bad(name, f"{name}: {MAX_NAME} 文字以内で指定してください。")
    if len(text["output"]) > MAX_OUTPUT:
        bad("output", f"output: {MAX_OUTPUT:,} 文字以内で指定してください。")

    state = text["state"].upper()
    states = SERVICE_STATES if text["service"] else HOST_STATES
    if not state:
        bad("state", f"state: 状態を指定してください({', '.join(states)})。")
    elif state not in states:
        what = "サービス" if text["service"] else "ホスト"
        bad("state", f"state: {what}の状態は {', '.join(states)} のいずれかです。")

    for name in ("problem_id", "last_problem_id"):
        if text[name] and (not _DIGITS.fullmatch(text[name]) or len(text[name]) > 20):
            bad(name, f"{name}: 問題 ID は数字で指定してください。")

    event_time = None
    if text["time"]:
        event_time = _parse_time(text["time"])
        if event_time is None:
            bad("time", "time: 日時は UNIX 時刻(秒)か、タイムゾーン付きの ISO 8601 形式で指定してください。")

    if problems:
        raise IntakeError(problems)
    return Fields(
        kind=kind,
        setting_id=setting_id,
        setting_name=text["setting"],
        notification_type=kind_of_alert,
        host=text["host"],
        host_address=text["host_address"],
        service=text["service"],
        state=state,
        output=text["output"],
        problem_id=text["problem_id"].lstrip("0") or ("0" if text["problem_id"] else ""),
        last_problem_id=text["last_problem_id"].lstrip("0") or ("0" if text["last_problem_id"] else ""),
        event_time=event_time,
    )


_EPOCH = re.compile(r"[0-9]{1,12}(\.[0-9]+)?")


def _parse_time(raw: str) -> datetime | None:
    """Epoch seconds ($TIMET$) or ISO 8601 with a time zone, as naive UTC."""
    try:
        if _EPOCH.fullmatch(raw):
            moment = datetime.fromtimestamp(float(raw), tz=timezone.utc)
        else:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                return None
        return moment.astimezone(timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError, OSError):
        return None


Setting = SimpleCallSetting | SmsSetting | ButtonCallSetting


def find_setting(fields: Fields) -> Setting:
    """The approved setting named by the fields; UnknownSetting if there is none."""
    model: type[SimpleCallSetting] | type[SmsSetting] | type[ButtonCallSetting] | None = {
        SETTING_SIMPLE_CALL: SimpleCallSetting,
        SETTING_BUTTON_CALL: ButtonCallSetting,
        SETTING_SMS: SmsSetting,
    }.get(fields.kind)
    wanted = f"ID {fields.setting_id}" if fields.setting_id is not None else f"「{fields.setting_name}」"
    if model is None:
        raise UnknownSetting(f"{fields.kind} の通知設定 {wanted} はありません。")
    # Account, recipients and their users come in the same round trips, before any write.
    recipient = model.recipients.property.mapper.class_
    query = select(model).options(joinedload(model.account), joinedload(model.recipients).joinedload(recipient.user))
    if fields.setting_id is not None:
        query = query.where(model.id == fields.setting_id)
        if fields.setting_name:
            query = query.where(model.name == fields.setting_name)
    else:
        query = query.where(model.name == fields.setting_name)
    setting = db.session.scalars(query).unique().first()
    if setting is None:
        raise UnknownSetting(f"{fields.kind} の通知設定 {wanted} はありません(承認済みの設定だけが使えます)。")
    return setting


def _dedupe_key(fields: Fields, setting_id: int) -> str:
    parts = (fields.kind, str(setting_id), fields.notification_type, fields.host, fields.service, fields.correlation_id)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _claim(key: str, now: datetime, window: timedelta) -> bool:
    """Own the dedupe key for this transaction, or learn that a first alert holds it."""
    claim = secrets.token_hex(8)
    table = AlertDedupe.__table__
    values = {"key": key, "claim": claim, "alert_id": None, "expires_at": now + window}
    insert = postgresql.insert if db.engine.dialect.name == "postgresql" else sqlite.insert
    db.session.execute(insert(table).values(**values).on_conflict_do_nothing())
    owned = db.session.execute(
        update(AlertDedupe)
        .where(AlertDedupe.key == key, (AlertDedupe.claim == claim) | (AlertDedupe.expires_at < now))
        .values(claim=claim, alert_id=None, expires_at=now + window)
        .execution_options(synchronize_session=False)
    ).rowcount
    return owned == 1


def _first_of(key: str) -> int | None:
    """The alert that holds the key (committed by the request that owned it)."""
    for _ in range(50):
        alert_id = db.session.scalar(select(AlertDedupe.alert_id).where(AlertDedupe.key == key))
        db.session.rollback()
        if alert_id is not None:
            return int(alert_id)
        time.sleep(0.02)
    return None


def accept(values: Mapping[str, Any], token: ApiToken | None = None) -> Accepted:
    """Store an alert (or recognise its repeat) and what it asks of its setting; commit; wake.

    Everything is read first, so the write transaction (which on SQLite holds the database's
    one write lock) is a handful of INSERTs long.
    """
    fields = parse(values)
    setting = find_setting(fields)
    now = utcnow()
    window = timedelta(seconds=int(current_app.config["ALERT_DEDUPE_SECONDS"]))
    key = _dedupe_key(fields, setting.id)
    alert = AlertRecord(
        received_at=now,
        setting_type=fields.kind,
        setting_id=setting.id,
        setting_name=setting.name,
        notification_type=fields.notification_type,
        host=fields.host,
        host_address=fields.host_address,
        service=fields.service,
        state=fields.state,
        output=fields.output,
        problem_id=fields.problem_id,
        last_problem_id=fields.last_problem_id,
        correlation_id=fields.correlation_id,
        event_time=fields.event_time,
        problem_alert_id=_problem_of(fields, setting.id),
        token_id=token.id if token else None,
        token_name=token.name if token else "",
    )
    button = isinstance(setting, ButtonCallSetting)
    notification = None
    if fields.notification_type != "ACKNOWLEDGEMENT" and not button:
        notification = _notification(fields, setting, now)
    # Reads end here; the write transaction starts with the dedupe claim.
    if window.total_seconds() > 0 and not _claim(key, now, window):
        db.session.rollback()
        first = _first_of(key)
        if first is not None:
            db.session.execute(
                update(AlertRecord)
                .where(AlertRecord.id == first)
                .values(repeats=AlertRecord.repeats + 1)
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
            return Accepted(first, duplicate=True)
        # The holder vanished (its transaction failed): store this one after all.
        if not _claim(key, utcnow(), window):
            raise IntakeError([{"field": "", "message": "同じ通知を処理中です。しばらくしてから再送してください。"}])
    if notification is not None:
        alert.notifications.append(notification)
    db.session.add(alert)
    db.session.flush()
    if button:
        # Joins the setting's active notification, or starts one (calls/aggregate.py).
        aggregate.attach(alert, setting, now)
    if window.total_seconds() > 0:
        db.session.execute(
            update(AlertDedupe)
            .where(AlertDedupe.key == key)
            .values(alert_id=alert.id)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    dispatch.wake()
    return Accepted(alert.id, duplicate=False)


def _problem_of(fields: Fields, setting_id: int) -> int | None:
    """The PROBLEM a follow-up belongs to (same host, service and problem id), latest first."""
    if fields.notification_type == "PROBLEM" or not fields.correlation_id:
        return None
    same_setting = case(
        ((AlertRecord.setting_type == fields.kind) & (AlertRecord.setting_id == setting_id), 1), else_=0
    )
    return db.session.scalar(
        select(AlertRecord.id)
        .where(
            AlertRecord.notification_type == "PROBLEM",
            AlertRecord.host == fields.host,
            AlertRecord.service == fields.service,
            AlertRecord.correlation_id == fields.correlation_id,
        )
        .order_by(same_setting.desc(), AlertRecord.id.desc())
        .limit(1)
    )


def _notification(fields: Fields, setting: SimpleCallSetting | SmsSetting, now: datetime) -> Notification:
    """The call or SMS this alert asks of its setting, one delivery per recipient."""
    composed = messages.Alert(
        notification_type=fields.notification_type,
        host=fields.host,
        state=fields.state,
        time=fields.event_time or now,
        service=fields.service or None,
        output=fields.output,
    )
    account = setting.account
    notification = Notification(
        channel=CHANNEL_CALL if isinstance(setting, SimpleCallSetting) else CHANNEL_SMS,
        setting_type=fields.kind,
        setting_id=setting.id,
        setting_name=setting.name,
        account_id=account.id,
        account_name=account.name,
        from_number=setting.from_number,
        created_at=now,
    )
    blocked = ""
    if isinstance(setting, SimpleCallSetting):
        text = simple_call.spoken_text(setting.message_template, setting.custom_message, composed)
        notification.ring_seconds = setting.ring_seconds
        if account.twiml_bin_url:
            call = simple_call.fit_bin_call(account.twiml_bin_url, text)
            notification.text, notification.url = call.spoken.text, call.url
            if call.spoken.shortened:
                notification.shortened_from = call.spoken.original_length
        else:
            notification.text, blocked = text, NO_BIN
    else:
        notification.text = messages.compose_for(
            messages.SMS_TEMPLATES, setting.message_template, composed, setting.custom_message
        )
    for position, recipient in enumerate(setting.recipients):
        user = recipient.user
        reason = blocked or ("" if user.phone else NO_PHONE)
        notification.deliveries.append(
            Delivery(
                user_id=user.id,
                user_name=user.display_name,
                to_number=user.phone or "",
                position=position,
                status=DELIVERY_FAILED if reason else DELIVERY_QUEUED,
                error=reason,
                next_at=now,
                updated_at=now,
            )
        )
    return notification

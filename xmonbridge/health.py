"""The self-check behind `GET /healthz` and `xmonbridge check`: is the phone path working?

`report(now)` reads the database and answers a plain dict that holds nothing secret (no
token, no number, no SID, no error text that could echo a request): whether the database
answers, the dispatcher lease's holder and the age of its last renewal, the oldest delivery
that is due but not being worked, the last failed request to Twilio, and whether the X-MON
URL is set. Its `status` is the worst of the findings, with a reason for each:

* critical: the database does not answer; no dispatcher holds the lease or the lease has
  run out (the dispatcher is stopped, dead or cannot reach the database) — nobody is called.
* warning: a delivery has been due for longer than HEALTH_WAITING_WARNING_SECONDS; the last
  request to Twilio failed (no success since) within HEALTH_TWILIO_ERROR_SECONDS; the X-MON
  URL is not set (no status callbacks, no button calls).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from .dispatch import lease as dispatch_lease
from .extensions import db
from .models import (
    DELIVERY_QUEUED,
    LOG_CALL,
    LOG_FETCH_CALL,
    LOG_FETCH_MESSAGE,
    LOG_FIND_CALLS,
    LOG_FIND_MESSAGES,
    LOG_HANGUP,
    LOG_NUMBERS,
    LOG_SMS,
    LOG_TEST_CALL,
    LOG_TEST_SMS,
    Delivery,
    Notification,
    RequestLog,
    XmonSettings,
)

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
_RANK = {OK: 0, WARNING: 1, CRITICAL: 2}

# Request log kinds that are requests xmonbridge made to Twilio (not webhooks Twilio made to us).
TWILIO_KINDS = (
    LOG_CALL,
    LOG_SMS,
    LOG_NUMBERS,
    LOG_FETCH_CALL,
    LOG_FETCH_MESSAGE,
    LOG_FIND_CALLS,
    LOG_FIND_MESSAGES,
    LOG_TEST_CALL,
    LOG_TEST_SMS,
    LOG_HANGUP,
)


def _age(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else max(0, int((now - then).total_seconds()))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(microsecond=0).isoformat() + "Z"


def _lease(now: datetime) -> dict[str, Any]:
    row = dispatch_lease.current()
    if row is None or not row.holder:
        return {"holder": None, "heartbeat_age": None, "expires_in": None, "running": False}
    renewed = row.heartbeat_at or row.acquired_at
    return {
        "holder": row.holder,
        "heartbeat_at": _iso(renewed),
        "heartbeat_age": _age(now, renewed),
        "expires_in": int((row.expires_at - now).total_seconds()),
        "running": row.expires_at > now,
    }


def _oldest_waiting(now: datetime) -> dict[str, Any]:
    """The delivery that has been due the longest without the dispatcher taking it."""
    row = db.session.execute(
        select(Delivery.next_at, Notification.alert_id)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Delivery.status == DELIVERY_QUEUED, Delivery.next_at <= now)
        .order_by(Delivery.next_at, Delivery.id)
        .limit(1)
    ).first()
    count = db.session.scalar(
        select(func.count()).select_from(Delivery).where(Delivery.status == DELIVERY_QUEUED, Delivery.next_at <= now)
    )
    if row is None:
        return {"age": 0, "alert_id": None, "count": 0}
    return {"age": _age(now, row.next_at), "alert_id": row.alert_id, "count": int(count or 0)}


def _twilio(now: datetime) -> dict[str, Any]:
    error = db.session.execute(
        select(RequestLog.created_at, RequestLog.kind, RequestLog.http_status, RequestLog.error_code, RequestLog.simulated)
        .where(RequestLog.kind.in_(TWILIO_KINDS), RequestLog.success.is_(False))
        .order_by(RequestLog.created_at.desc(), RequestLog.id.desc())
        .limit(1)
    ).first()
    success_at = db.session.scalar(
        select(func.max(RequestLog.created_at)).where(RequestLog.kind.in_(TWILIO_KINDS), RequestLog.success.is_(True))
    )
    last_error = None
    if error is not None:
        last_error = {
            "at": _iso(error.created_at),
            "age": _age(now, error.created_at),
            "kind": error.kind,
            "http_status": error.http_status,
            "error_code": error.error_code,
            "simulated": bool(error.simulated),
        }
    return {
        "last_error": last_error,
        "last_success_at": _iso(success_at),
        "failing": error is not None and (success_at is None or success_at < error.created_at),
    }


def report(now: datetime, config: dict[str, Any]) -> dict[str, Any]:
    """The health report (see the module docstring); never raises for a database fault."""
    reasons: list[tuple[str, str]] = []
    body: dict[str, Any] = {"database": True}
    try:
        db.session.execute(text("SELECT 1"))
        body["dispatcher"] = _lease(now)
        body["oldest_waiting"] = _oldest_waiting(now)
        body["twilio"] = _twilio(now)
        body["xmon_url_set"] = bool((XmonSettings.get().xmon_url or "").strip())
    except SQLAlchemyError:
        db.session.rollback()
        body = {"database": False}
        reasons.append((CRITICAL, "database unreachable"))
    finally:
        # Nothing here writes; end the transaction so SQLite's reader does not linger.
        db.session.rollback()

    if body["database"]:
        lease = body["dispatcher"]
        if lease["holder"] is None:
            reasons.append((CRITICAL, "no dispatcher has ever held the lease"))
        elif not lease["running"]:
            reasons.append((CRITICAL, f"dispatcher lease is stale (last renewed {lease['heartbeat_age']}s ago)"))
        waiting = body["oldest_waiting"]
        if waiting["age"] > int(config["HEALTH_WAITING_WARNING_SECONDS"]):
            reasons.append((WARNING, f"{waiting['count']} delivery(ies) waiting, oldest for {waiting['age']}s"))
        twilio = body["twilio"]
        if twilio["failing"] and twilio["last_error"]["age"] <= int(config["HEALTH_TWILIO_ERROR_SECONDS"]):
            error = twilio["last_error"]
            code = error["error_code"] or error["http_status"] or "no answer"
            reasons.append((WARNING, f"last Twilio request failed {error['age']}s ago ({code})"))
        if not body["xmon_url_set"]:
            reasons.append((WARNING, "X-MON URL is not set"))

    status = max((level for level, _ in reasons), key=_RANK.__getitem__, default=OK)
    return {"status": status, "reasons": [reason for _, reason in reasons], "time": _iso(now), **body}

"""Retention: delete alerts, calls and ログ rows older than X-MON 設定's period, a little at a time.

No request code: the dispatcher calls `Schedule.run()` from its idle time (dispatch/engine.py),
the leader only. Each batch is one DELETE of at most a few hundred rows in a transaction of its
own, committed at once, so webhooks and intake (which write in between) never wait long; the
batch size adapts so that a batch takes about BATCH_SECONDS.

What goes, oldest first:

* ログ rows (`request_logs`) created before the cutoff;
* alerts received before the cutoff, with everything that hangs on them through the foreign
  keys' ON DELETE CASCADE: their notifications, deliveries, attempts, what each button call
  read out (`call_announcements`), acknowledgements and the rows of alerts that joined a button
  call (`notification_alerts`); a follow-up that stays loses only its link to the PROBLEM
  (`problem_alert_id` is SET NULL). An alert stays while anything of it is unfinished: a
  notification still active, a delivery still open (queued, sending, waiting, calling), an
  acknowledgement still pending, a button call it joined that is still going, or a button call
  it started that a younger alert joined (that alert's page still shows the call);
* the calls and messages of simulate mode (`simulated_messages`).

Ids are never reused (AUTOINCREMENT since migration 0008), so a link to a pruned alert or
log row answers 404, never another row. Expired `alert_dedupe` keys are pruned by the
dispatcher itself; `login_failures` are pruned at every login (auth/throttle.py) and idle
`user_sessions` at every login (auth/sessions.py); `phone_changes` and `pending_changes` are
the audit trail of people and configuration, small, and kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Delete, delete, exists, select, text
from sqlalchemy.orm import aliased

from .extensions import db
from .models import (
    ACK_PENDING,
    DELIVERY_OPEN,
    NOTIFICATION_ACTIVE,
    Acknowledgement,
    AlertRecord,
    Delivery,
    Notification,
    NotificationAlert,
    RequestLog,
    SimulatedMessage,
    XmonSettings,
)

# Rows per DELETE at most: ログ and simulated messages; alerts (each takes its notifications,
# deliveries and attempts along, typically five to ten rows). A batch starts smaller and
# grows while it stays well under BATCH_SECONDS, and shrinks when it takes longer: how long
# a row takes depends on the database and on the indexes behind its foreign keys.
BATCH = 500
ALERT_BATCH = 200
FIRST_BATCH = 1
BATCH_SECONDS = 0.05
# The dispatcher's share: at most this many batches and this many seconds per idle pass,
# once a minute, or every few seconds while old rows are left (a backlog after the period
# was shortened, or a first run on a year of data).
PASS_BATCHES = 4
PASS_SECONDS = 0.5
# Between two batches of a pass: a writer that waited for one gets the database first (SQLite's
# busy handler retries every few ms; it would lose the race to a batch that followed at once).
BATCH_PAUSE = 0.05
EVERY = timedelta(minutes=1)
BACKLOG_EVERY = timedelta(seconds=5)


def cutoff(now: datetime, days: int) -> datetime:
    """The moment before which rows are deleted."""
    return now - timedelta(days=days)


def next_limit(limit: int, most: int, seconds: float) -> int:
    """The next batch size after one of limit rows took seconds: about BATCH_SECONDS' worth."""
    if seconds > 2 * BATCH_SECONDS:
        return max(1, int(limit * BATCH_SECONDS / seconds))
    if seconds < BATCH_SECONDS / 2:
        return min(most, limit * 2)
    return limit


def _old_logs(before: datetime, limit: int) -> Delete:
    oldest = select(RequestLog.id).where(RequestLog.created_at < before).order_by(RequestLog.created_at).limit(limit)
    return delete(RequestLog).where(RequestLog.id.in_(oldest.scalar_subquery()))


def _old_simulated(before: datetime, limit: int) -> Delete:
    # No index on created_at: look at the rows with the lowest ids only (ids follow time, as
    # they are never reused), so a table with nothing old is never scanned.
    lowest = select(SimulatedMessage.id, SimulatedMessage.created_at).order_by(SimulatedMessage.id).limit(limit).subquery()
    old = select(lowest.c.id).where(lowest.c.created_at < before)
    return delete(SimulatedMessage).where(SimulatedMessage.id.in_(old.scalar_subquery()))


def _old_alerts(before: datetime, limit: int) -> Delete:
    """The oldest finished alerts received before `before`, at most limit."""
    alert, joined_alert, joined_call = AlertRecord, aliased(AlertRecord), aliased(Notification)
    unfinished = (
        (Notification.status == NOTIFICATION_ACTIVE)
        | exists().where(Delivery.notification_id == Notification.id, Delivery.status.in_(DELIVERY_OPEN))
        | exists().where(Acknowledgement.notification_id == Notification.id, Acknowledgement.status == ACK_PENDING)
        # A younger alert joined this button call: its page still shows the call.
        | exists().where(
            NotificationAlert.notification_id == Notification.id,
            joined_alert.id == NotificationAlert.alert_id,
            joined_alert.received_at >= before,
        )
    )
    owns_unfinished = exists().where(Notification.alert_id == alert.id, unfinished)
    joined_active = exists().where(
        NotificationAlert.alert_id == alert.id,
        joined_call.id == NotificationAlert.notification_id,
        joined_call.status == NOTIFICATION_ACTIVE,
    )
    # Few acknowledgements are pending at a time (ix_acknowledgements_queue finds them).
    pending_ack = select(Acknowledgement.alert_id).where(
        Acknowledgement.status == ACK_PENDING, Acknowledgement.alert_id.is_not(None)
    )
    oldest = (
        select(alert.id)
        .where(alert.received_at < before, ~owns_unfinished, ~joined_active, alert.id.not_in(pending_ack))
        .order_by(alert.received_at, alert.id)
        .limit(limit)
    )
    return delete(AlertRecord).where(AlertRecord.id.in_(oldest.scalar_subquery()))


# (name reported, statement builder, most rows per batch), in the order each pass takes them.
KINDS: tuple[tuple[str, Callable[[datetime, int], Delete], int], ...] = (
    ("request_logs", _old_logs, BATCH),
    ("alerts", _old_alerts, ALERT_BATCH),
    ("simulated_messages", _old_simulated, BATCH),
)


@dataclass
class Report:
    """What one prune() did: rows deleted per kind (an alert's calls go with it, uncounted)."""

    deleted: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    # The longest batch in seconds: the longest a writer could have waited for one.
    longest: float = 0.0
    # A batch came back full: old rows are probably left.
    more: bool = False


def prune(
    now: datetime,
    *,
    days: int | None = None,
    max_batches: int = PASS_BATCHES,
    max_seconds: float | None = None,
    keep_going: Callable[[], bool] = lambda: True,
    limits: dict[str, int] | None = None,
    pause: Callable[[float], bool] | None = None,
) -> Report:
    """Delete up to max_batches batches of rows older than the period, committing each.

    1. Read the period (X-MON 設定) unless days is given; the cutoff is now minus that.
    2. Take the kinds in turn (ログ, alerts, simulated messages), one batch each round, so a
       backlog of one does not hold the others back; a kind whose batch was not full is done.
       Batch sizes come from limits (kind → rows, FIRST_BATCH when absent) and are adjusted
       there after each batch (next_limit), so a caller that keeps the dict keeps the sizes.
    3. After a batch that deleted rows, call pause(BATCH_PAUSE) before the next one; it
       sleeps, and returns True to stop early (the dispatcher's wake-up: an alert came).
    4. Stop after max_batches, after max_seconds, or when keep_going() says so (the
       dispatcher lost its lease or is stopping).
    5. On SQLite, checkpoint the write-ahead log once rows were deleted, so that copying the
       pages this pass wrote is not left to the next webhook's or alert's commit.
    """
    if days is None:
        days = XmonSettings.get().retention_days
        db.session.rollback()
    before = cutoff(now, days)
    limits = {} if limits is None else limits
    report = Report()
    try:
        _run_batches(before, report, max_batches, max_seconds, keep_going, limits, pause)
    finally:
        if sum(report.deleted.values()) and db.engine.dialect.name == "sqlite":
            db.session.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
            db.session.rollback()
    return report


def _run_batches(
    before: datetime,
    report: Report,
    max_batches: int,
    max_seconds: float | None,
    keep_going: Callable[[], bool],
    limits: dict[str, int],
    pause: Callable[[float], bool] | None,
) -> None:
    """prune()'s steps 2–4, filling report."""
    started = time.monotonic()
    pending = list(KINDS)
    deleted = 0
    while pending:
        for kind in list(pending):
            out_of_time = max_seconds is not None and time.monotonic() - started >= max_seconds
            if report.batches >= max_batches or out_of_time or not keep_going():
                report.more = True
                return
            if deleted and pause is not None and pause(BATCH_PAUSE):
                report.more = True
                return
            name, statement, most = kind
            limit = min(limits.get(name, FIRST_BATCH), most)
            batch_started = time.monotonic()
            deleted = db.session.execute(statement(before, limit).execution_options(synchronize_session=False)).rowcount
            db.session.commit()
            seconds = time.monotonic() - batch_started
            report.longest = max(report.longest, seconds)
            report.batches += 1
            report.deleted[name] = report.deleted.get(name, 0) + deleted
            if deleted < limit:
                pending.remove(kind)
            else:
                limits[name] = next_limit(limit, most, seconds)
    report.more = False


class Schedule:
    """When the dispatcher prunes: once a minute, every few seconds while old rows are left."""

    def __init__(self) -> None:
        self.next_at: datetime | None = None
        # Batch sizes learnt in earlier passes (prune's limits).
        self.limits: dict[str, int] = {}

    def run(
        self, now: datetime, keep_going: Callable[[], bool], pause: Callable[[float], bool] | None = None
    ) -> Report | None:
        """Prune a pass's share if it is time; None if it was not (pause: see prune())."""
        if self.next_at is not None and now < self.next_at:
            return None
        # Set first: a pass that fails (database busy) is not retried before the next minute.
        self.next_at = now + EVERY
        report = prune(now, max_seconds=PASS_SECONDS, keep_going=keep_going, limits=self.limits, pause=pause)
        if report.more:
            self.next_at = now + BACKLOG_EVERY
        return report

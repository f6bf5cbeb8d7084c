"""The dispatcher's work, one pass at a time: `Dispatcher.run_once()`.

Everything it knows is in the database, so any process that takes the lease can continue
where another stopped:

* a `Delivery` (one recipient of one notification) is queued until its `next_at`;
* claiming it is a conditional UPDATE fenced by the lease (queued → sending); the `Attempt`
  row is committed before the request goes to Twilio, and the outcome after;
* permanent errors stop the delivery with the reason; temporary ones queue it again after an
  exponential backoff with jitter (a 429 also pauses the whole account); unknown ones (a 5xx or
  a lost answer on a create: the call may exist) queue a look-up at Twilio: a call or message
  found is adopted, and only when none is found is it placed again;
* a delivery left `sending` by a process that died mid-request is treated as unknown once
  nothing can still be writing to it (the Twilio timeouts plus a margin have passed);
* calls per second are limited per account (`pacing.py`);
* a delivery Twilio accepted is checked at Twilio after ring time plus a grace period if no
  status callback has brought its final status (closed networks have none).

No request code here: the runner thread (runner.py) and tests call `run_once()` inside an app
context. The clock is injectable, so tests move time instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, func, select, update

from .. import retention, telephony
from ..calls import flow
from ..extensions import db
from ..models import (
    CHANNEL_BUTTON,
    CHANNEL_CALL,
    CHANNEL_SMS,
    DELIVERY_CALLING,
    DELIVERY_CANCELED,
    DELIVERY_FAILED,
    DELIVERY_OPEN,
    DELIVERY_QUEUED,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    LOG_ACK,
    LOG_CALL,
    LOG_CALL_LIMIT,
    LOG_FETCH_CALL,
    LOG_FETCH_MESSAGE,
    LOG_FIND_CALLS,
    LOG_FIND_MESSAGES,
    LOG_HANGUP,
    LOG_SMS,
    NOTIFICATION_ACTIVE,
    NOTIFICATION_DONE,
    NOTIFICATION_FAILED,
    OUTCOME_ADOPTED,
    OUTCOME_PENDING,
    OUTCOME_PERMANENT,
    OUTCOME_PLACED,
    OUTCOME_TEMPORARY,
    OUTCOME_UNKNOWN,
    ACK_DONE,
    ACK_FAILED,
    ACK_PENDING,
    Acknowledgement,
    AlertDedupe,
    Attempt,
    Delivery,
    Notification,
    RequestLog,
    TwilioAccount,
    XmonSettings,
    utcnow,
)
from ..public_url import amd_url, status_callback_url, voice_url
from ..filters import jst
from ..twilio_errors import TwilioError
from . import wait_for_work
from .lease import Lease, new_holder_name
from .outcomes import FINAL_CALL, FINAL_MESSAGE, record_final
from .pacing import Pacer, backoff

log = logging.getLogger(__name__)

# Deliveries looked at per pass; the rest wait for the next one.
BATCH = 200
# Look this much before an attempt's start when searching Twilio (clocks differ a little).
LOOKUP_SLACK = timedelta(seconds=10)
# Expired alert dedupe keys are deleted this often, this many at a time.
PRUNE_EVERY = timedelta(minutes=1)
PRUNE_BATCH = 1000
# Stop asking Twilio about a delivery this long after it was placed.
CHECK_FOR = timedelta(hours=6)
# A button call with no final status this long after it was placed is settled as not answered
# (it would otherwise keep its notification active, and every later alert would join it unheard).
BUTTON_CALL_FOR = timedelta(hours=1)

INTERRUPTED = "処理が中断されたため、発信・送信されたか確認できません。Twilio に照会してから再送します。"
NO_ACCOUNT = "Twilio アカウント情報が削除されたため、発信・送信できません。"
GAVE_UP = "再試行の上限({tries} 回)に達したため中止しました。"
NO_XMON_URL = (
    "X-MON URL が設定されていないため、ボタン操作付きの通話を発信できません"
    "(Twilio が通話の内容を取りに来る URL です。X-MON 設定で設定してください)。"
)
LIMITED = "同じ番号への発信の上限({limit} 回/{window})に達したため、{until} まで発信を待ちます(X-MON 設定)。"
# B8 windows: (column of XmonSettings, length, as the log says it).
LIMIT_WINDOWS = (("calls_per_15min", timedelta(minutes=15), "15 分"), ("calls_per_hour", timedelta(hours=1), "1 時間"))
# Acknowledgements: tries before giving up, and the longest wait between two.
ACK_MAX_TRIES = 10
# Seconds of a pass spent on acknowledgements before the rest wait for the next pass: a monitor
# that hangs costs each pass one send timeout at most, never the placing of calls.
ACK_PASS_BUDGET = 1.0
ACK_BACKOFF_CAP = 300.0


class Clock:
    """Real time: naive UTC like every column, and a real sleep."""

    def now(self) -> datetime:
        return utcnow()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class Timing:
    """The dispatcher's settings (config keys DISPATCH_*)."""

    poll: float
    lease: float
    max_tries: int
    backoff_base: float
    backoff_cap: float
    lookup_delay: float
    orphan_after: float
    check_grace: float
    check_grace_callback: float

    @classmethod
    def from_config(cls, cfg: Any) -> Timing:
        twilio_wait = float(cfg["TWILIO_CONNECT_TIMEOUT"]) + float(cfg["TWILIO_READ_TIMEOUT"])
        return cls(
            poll=float(cfg["DISPATCH_POLL_SECONDS"]),
            lease=float(cfg["DISPATCH_LEASE_SECONDS"]),
            max_tries=int(cfg["DISPATCH_MAX_TRIES"]),
            backoff_base=float(cfg["DISPATCH_BACKOFF_SECONDS"]),
            backoff_cap=float(cfg["DISPATCH_BACKOFF_MAX_SECONDS"]),
            lookup_delay=float(cfg["DISPATCH_LOOKUP_DELAY_SECONDS"]),
            # A request still running somewhere has given up by then (its timeouts have passed).
            orphan_after=twilio_wait + float(cfg["DISPATCH_LOOKUP_DELAY_SECONDS"]),
            check_grace=float(cfg["DISPATCH_CHECK_GRACE_SECONDS"]),
            check_grace_callback=float(cfg["DISPATCH_CHECK_GRACE_CALLBACK_SECONDS"]),
        )


class Dispatcher:
    """One process's dispatcher. Call run_once() repeatedly (runner.py does, in a thread)."""

    def __init__(
        self,
        *,
        holder: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.timing = Timing.from_config(current_app.config)
        self.lease = Lease(holder or new_holder_name(), self.timing.lease)
        self.clock = clock or Clock()
        self.rng = rng or random.Random()
        self.pacer = Pacer()
        self.stopping = stopping
        self._renewed_at: datetime | None = None
        self._pruned_at: datetime | None = None
        self.retention = retention.Schedule()

    # --- the pass ---

    def run_once(self) -> float:
        """Do what is due; return the seconds until something else will be (at most the poll)."""
        now = self.clock.now()
        if not self._lead(now):
            return self.timing.poll
        try:
            self._recover_orphans(now)
            next_due = self._send_due()
            self._check_outcomes(self.clock.now())
            self._hang_up_machines(self.clock.now())
            ack_due = self._send_acks(self.clock.now())
            if ack_due is not None:
                next_due = min(next_due or ack_due, ack_due)
            self._close_finished(self.clock.now())
            self._prune_dedupe(self.clock.now())
            if next_due is None or (next_due - self.clock.now()).total_seconds() > retention.PASS_SECONDS:
                # Idle: old alerts, calls and ログ rows go, a few small batches at a time.
                self.retention.run(
                    self.clock.now(), keep_going=lambda: not self.stopping() and self.leads(), pause=wait_for_work
                )
        finally:
            db.session.rollback()
        wait = (next_due - self.clock.now()).total_seconds() if next_due else self.timing.poll
        return max(0.0, min(wait, self.timing.poll))

    def leads(self) -> bool:
        """Whether this process leads right now (by its own deadline)."""
        return self.lease.holds(self.clock.now())

    def release(self) -> None:
        """Give the lease up (clean shutdown), so another process takes over at once."""
        if self.lease.valid_until is not None:
            self.lease.release(self.clock.now())

    def _lead(self, now: datetime) -> bool:
        renew_every = timedelta(seconds=self.timing.lease / 3)
        if self.lease.holds(now) and self._renewed_at and now - self._renewed_at < renew_every:
            return True
        leading = self.lease.acquire_or_renew(now)
        self._renewed_at = now if leading else None
        return leading

    # --- sending ---

    def _send_due(self) -> datetime | None:
        """Send every due delivery the accounts' rates allow; return when the next is due."""
        now = self.clock.now()
        rows = db.session.execute(
            select(Delivery.id, Notification.account_id)
            .join(Notification, Delivery.notification_id == Notification.id)
            .where(Delivery.status == DELIVERY_QUEUED, Delivery.next_at <= now)
            .order_by(Delivery.next_at, Delivery.id)
            .limit(BATCH)
        ).all()
        db.session.rollback()
        next_due: datetime | None = None
        accounts: dict[int, TwilioAccount | None] = {}
        for delivery_id, account_id in rows:
            if self.stopping():
                return None
            now = self.clock.now()
            if not self._lead(now):
                return None
            if account_id is None:
                self._stop_without_account(delivery_id, now)
                continue
            ready = self.pacer.ready_at(account_id, now)
            if ready > now:
                # Waits of a few milliseconds are slept here; longer ones end the pass.
                if (ready - now).total_seconds() > 0.05:
                    next_due = min(next_due or ready, ready)
                    continue
                self.clock.sleep((ready - now).total_seconds())
                now = self.clock.now()
            if account_id not in accounts:
                accounts[account_id] = db.session.get(TwilioAccount, account_id)
            account = accounts[account_id]
            if account is None:
                self._stop_without_account(delivery_id, now)
                continue
            self._work(delivery_id, account, now)
        if len(rows) == BATCH:
            # More may be due than one pass looked at: go on at once.
            return self.clock.now()
        upcoming = db.session.scalar(
            select(func.min(Delivery.next_at)).where(Delivery.status == DELIVERY_QUEUED, Delivery.next_at > now)
        )
        db.session.rollback()
        if upcoming is not None:
            next_due = min(next_due or upcoming, upcoming)
        return next_due

    def _claim(self, delivery_id: int, now: datetime, *, commit: bool = True) -> bool:
        """queued → sending, only while this process holds the lease (committed unless told not to)."""
        claimed = db.session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DELIVERY_QUEUED, self.lease.fence(now))
            .values(status=DELIVERY_SENDING, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            db.session.rollback()
            return False
        if commit:
            db.session.commit()
        return True

    def _work(self, delivery_id: int, account: TwilioAccount, now: datetime) -> None:
        # The claim is committed together with the attempt row (_place), or before a look-up.
        if not self._claim(delivery_id, now, commit=False):
            return
        delivery = db.session.get(Delivery, delivery_id)
        assert delivery is not None
        last = delivery.attempts[-1] if delivery.attempts else None
        if last is not None and last.outcome == OUTCOME_UNKNOWN:
            db.session.commit()  # never hold the write lock over a request to Twilio
            try:
                found = self._look_up(account, delivery, last)
            except TwilioError as error:
                # The question failed: ask again later; nothing is placed blind.
                self._requeue(delivery, now + backoff(1, self.timing.backoff_base, self.timing.backoff_cap, self.rng))
                log.warning("look-up for delivery %s failed: %s", delivery.id, error)
                return
            if found:
                self._adopt(delivery, last, found, now)
                return
            if self._failures_in_a_row(delivery) >= self.timing.max_tries:
                self._stop(delivery, f"{last.error_message} {GAVE_UP.format(tries=self._failures_in_a_row(delivery))}", now)
                return
        if delivery.notification.channel == CHANNEL_BUTTON and not self._button_call_may_go(delivery, now):
            return
        self._place(delivery, account, now)

    @staticmethod
    def _failures_in_a_row(delivery: Delivery) -> int:
        """Attempts since the last one Twilio accepted (a button call is placed again and again)."""
        count = 0
        for attempt in reversed(delivery.attempts):
            if attempt.outcome in (OUTCOME_PLACED, OUTCOME_ADOPTED):
                break
            count += 1
        return count

    def _button_call_may_go(self, delivery: Delivery, now: datetime) -> bool:
        """Checks before a button call: the notification is still on, X-MON URL, B8 limits."""
        notification = delivery.notification
        if notification.status != NOTIFICATION_ACTIVE:
            delivery.status = DELIVERY_CANCELED
            delivery.error = flow.CANCELED
            delivery.updated_at = now
            db.session.commit()
            return False
        if not flow.still_recipient(delivery):
            # Taken off the setting (or deleted) while this call waited: not placed.
            flow.stop_removed(delivery, now)
            self._finish_notification(notification, now)
            db.session.commit()
            return False
        settings = XmonSettings.get()
        if not settings.xmon_url:
            self._stop(delivery, NO_XMON_URL, now)
            return False
        for column, window, label in LIMIT_WINDOWS:
            limit = max(1, int(getattr(settings, column) or 1))
            since = now - window
            started = db.session.scalars(
                select(Attempt.started_at)
                .join(Delivery, Attempt.delivery_id == Delivery.id)
                .join(Notification, Delivery.notification_id == Notification.id)
                .where(
                    Delivery.to_number == delivery.to_number,
                    Notification.channel != CHANNEL_SMS,  # a limit on calls: texts do not count
                    Attempt.started_at > since,
                    Attempt.outcome.in_([OUTCOME_PLACED, OUTCOME_ADOPTED, OUTCOME_PENDING, OUTCOME_UNKNOWN]),
                )
                .order_by(Attempt.started_at.desc())
                .limit(limit)
            ).all()
            if len(started) < limit:
                continue
            # The oldest of the last `limit` calls leaves the window then.
            until = started[-1] + window + timedelta(seconds=1)
            reason = LIMITED.format(limit=limit, window=label, until=jst(until))
            self._log_limit(delivery, reason)
            delivery.error = reason
            self._requeue(delivery, until)
            log.warning("delivery %s held back by the per-number limit until %s", delivery.id, until)
            return False
        return True

    def _log_limit(self, delivery: Delivery, reason: str) -> None:
        notification = delivery.notification
        db.session.add(
            RequestLog(
                kind=LOG_CALL_LIMIT,
                account_id=notification.account_id,
                account_name=notification.account_name,
                setting_type=notification.setting_type,
                setting_id=notification.setting_id,
                setting_name=notification.setting_name,
                destination=delivery.to_number,
                from_number=notification.from_number,
                success=False,
                error_message=reason,
            )
        )

    def _place(self, delivery: Delivery, account: TwilioAccount, now: datetime) -> None:
        notification = delivery.notification
        attempt = Attempt(
            delivery_id=delivery.id,
            number=len(delivery.attempts) + 1,
            started_at=now,
            callback_token=secrets.token_urlsafe(24),
            placed_by=self.lease.holder,
        )
        db.session.add(attempt)
        delivery.tries = attempt.number
        delivery.updated_at = now
        xmon_url = XmonSettings.get().xmon_url
        callback = status_callback_url(xmon_url, attempt.callback_token)
        # Committed before the request: if this process dies during it, the attempt is found
        # in flight and looked up at Twilio instead of being placed blind.
        db.session.commit()
        self.pacer.take(account.id, account.cps, now)
        context = telephony.LogContext(
            LOG_SMS if notification.channel == CHANNEL_SMS else LOG_CALL,
            notification.setting_type,
            notification.setting_id,
            notification.setting_name,
        )
        try:
            if notification.channel == CHANNEL_CALL:
                sid = telephony.place_call(
                    account,
                    to=delivery.to_number,
                    from_=notification.from_number,
                    url=notification.url,
                    timeout=notification.ring_seconds or 60,
                    context=context,
                    shortened_from=notification.shortened_from,
                    status_callback=callback,
                )
            elif notification.channel == CHANNEL_BUTTON:
                sid = telephony.place_call(
                    account,
                    to=delivery.to_number,
                    from_=notification.from_number,
                    url=str(voice_url(xmon_url, attempt.callback_token)),
                    timeout=notification.ring_seconds or 60,
                    context=context,
                    status_callback=callback,
                    machine_detection_callback=(
                        amd_url(xmon_url, attempt.callback_token) if notification.machine_detection else None
                    ),
                )
            else:
                sid = telephony.send_sms(
                    account,
                    to=delivery.to_number,
                    from_=notification.from_number,
                    body=notification.text,
                    context=context,
                    status_callback=callback,
                )
        except TwilioError as error:
            self._failed(delivery, attempt, error, account)
            return
        self.pacer.succeeded(account.id)
        self._sent(delivery, attempt, sid, OUTCOME_PLACED, bool(callback))

    def _sent(self, delivery: Delivery, attempt: Attempt, sid: str, outcome: str, callback: bool) -> None:
        now = self.clock.now()
        if not self._settle(attempt, now, outcome=outcome, sid=sid):
            return
        notification = delivery.notification
        if notification.channel != CHANNEL_SMS:
            grace = self.timing.check_grace_callback if callback else self.timing.check_grace
            wait = (notification.ring_seconds or 60) + grace
        else:
            wait = self.timing.check_grace_callback if callback else self.timing.check_grace
        button = notification.channel == CHANNEL_BUTTON
        if not button:
            delivery.status = DELIVERY_SENT
        else:
            # Calling until it ends; a key pressed before this commit has already moved it on.
            db.session.execute(
                update(Delivery)
                .where(Delivery.id == delivery.id, Delivery.status == DELIVERY_SENDING)
                .values(status=DELIVERY_CALLING)
                .execution_options(synchronize_session=False)
            )
            db.session.refresh(delivery)
        delivery.sid = sid
        delivery.final_status = ""
        if not button:
            delivery.error = ""
        # A status callback may have beaten this commit to the attempt.
        db.session.refresh(attempt)
        if attempt.final_status:
            delivery.final_status = attempt.final_status
        delivery.check_at = now + timedelta(seconds=wait)
        delivery.updated_at = now
        if button and attempt.final_status:
            flow.call_ended(attempt, now)
        self._finish_notification(notification, now)
        db.session.commit()

    def _failed(self, delivery: Delivery, attempt: Attempt, error: TwilioError, account: TwilioAccount) -> None:
        now = self.clock.now()
        retry_at: datetime | None = None
        if error.unknown:
            retry_at = now + timedelta(seconds=self.timing.lookup_delay)
            outcome = OUTCOME_UNKNOWN
        elif error.temporary:
            outcome = OUTCOME_TEMPORARY
            most = self.timing.max_tries if error.retry_cap is None else error.retry_cap + 1
            if self._failures_in_a_row(delivery) < most:
                retry_at = now + backoff(attempt.number, self.timing.backoff_base, self.timing.backoff_cap, self.rng)
                if error.status == 429 or error.code == 20429:
                    paused = self.pacer.pause(account.id, now, self.timing.backoff_base, self.timing.backoff_cap, self.rng)
                    retry_at = max(retry_at, paused)
        else:
            outcome = OUTCOME_PERMANENT
        if not self._settle(attempt, now, outcome=outcome, error=error, retry_at=retry_at):
            return
        if retry_at is not None:
            self._requeue(delivery, retry_at)
            return
        reason = str(error)
        if outcome == OUTCOME_TEMPORARY:
            reason = f"{reason} {GAVE_UP.format(tries=self._failures_in_a_row(delivery))}"
        self._stop(delivery, reason, now)

    def _settle(
        self,
        attempt: Attempt,
        now: datetime,
        *,
        outcome: str,
        sid: str = "",
        error: TwilioError | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Record an attempt's outcome, unless another process already did (a late leader)."""
        values: dict[str, Any] = {"outcome": outcome, "finished_at": now, "next_retry_at": retry_at}
        if sid:
            values["sid"] = sid
        if error is not None:
            values.update(error_code=error.code, error_message=str(error))
        done = db.session.execute(
            update(Attempt)
            .where(Attempt.id == attempt.id, Attempt.outcome.in_([OUTCOME_PENDING, OUTCOME_UNKNOWN]))
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:
            db.session.rollback()
            return False
        db.session.expire(attempt)
        return True

    def _requeue(self, delivery: Delivery, at: datetime) -> None:
        delivery.status = DELIVERY_QUEUED
        delivery.next_at = at
        delivery.updated_at = self.clock.now()
        db.session.commit()

    def _stop(self, delivery: Delivery, reason: str, now: datetime) -> None:
        delivery.status = DELIVERY_FAILED
        delivery.error = reason
        delivery.updated_at = now
        flow.after_failure(delivery, now)
        self._finish_notification(delivery.notification, now)
        db.session.commit()

    def _stop_without_account(self, delivery_id: int, now: datetime) -> None:
        if self._claim(delivery_id, now):
            delivery = db.session.get(Delivery, delivery_id)
            assert delivery is not None
            self._stop(delivery, NO_ACCOUNT, now)

    def _finish_notification(self, notification: Notification, now: datetime) -> None:
        """Close the notification once no delivery is open (in the caller's transaction)."""
        db.session.flush()
        states = [d.status for d in notification.deliveries]
        if notification.status != NOTIFICATION_ACTIVE or any(s in DELIVERY_OPEN for s in states):
            return
        notification.status = NOTIFICATION_FAILED if states and all(s == DELIVERY_FAILED for s in states) else NOTIFICATION_DONE
        notification.finished_at = now

    def _prune_dedupe(self, now: datetime) -> None:
        """Forget expired dedupe keys, a batch at a time (their alerts stay)."""
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        expired = select(AlertDedupe.key).where(AlertDedupe.expires_at < now).limit(PRUNE_BATCH)
        db.session.execute(
            delete(AlertDedupe).where(AlertDedupe.key.in_(expired)).execution_options(synchronize_session=False)
        )
        db.session.commit()

    def _close_finished(self, now: datetime) -> None:
        """Close notifications with nothing open (e.g. every recipient failed at intake)."""
        open_delivery = (
            select(Delivery.id)
            .where(Delivery.notification_id == Notification.id, Delivery.status.in_(DELIVERY_OPEN))
            .exists()
        )
        stale = db.session.scalars(
            select(Notification).where(Notification.status == NOTIFICATION_ACTIVE, ~open_delivery).limit(BATCH)
        ).all()
        for notification in stale:
            self._finish_notification(notification, now)
        if stale:
            db.session.commit()

    # --- unknown outcomes ---

    def _look_up(self, account: TwilioAccount, delivery: Delivery, attempt: Attempt) -> str:
        """The SID of the call or message an unknown attempt made, or "" when Twilio has none.

        Only a SID no other attempt and no successful create holds counts: an earlier call to
        the same person is never taken for this one.
        """
        notification = delivery.notification
        since = attempt.started_at - LOOKUP_SLACK
        if notification.channel != CHANNEL_SMS:
            found = telephony.find_calls(
                account,
                to=delivery.to_number,
                from_=notification.from_number,
                started_after=since,
                context=telephony.LogContext(
                    LOG_FIND_CALLS, notification.setting_type, notification.setting_id, notification.setting_name
                ),
            )
        else:
            found = telephony.find_messages(
                account,
                to=delivery.to_number,
                from_=notification.from_number,
                sent_after=since,
                context=telephony.LogContext(
                    LOG_FIND_MESSAGES, notification.setting_type, notification.setting_id, notification.setting_name
                ),
            )
        sids = [placed.sid for placed in found]
        if not sids:
            return ""
        # Every call or message the dispatcher made is an attempt's; a test call or SMS made
        # from the settings screens is only in the log. A SID in the log as a dispatcher create
        # but held by no attempt is exactly what a killed process leaves: it may be this one.
        taken = set(db.session.scalars(select(Attempt.sid).where(Attempt.sid.in_(sids))))
        taken |= set(
            db.session.scalars(
                select(RequestLog.sid).where(
                    RequestLog.sid.in_(sids),
                    RequestLog.success.is_(True),
                    RequestLog.kind.in_(telephony.CREATE_KINDS - {LOG_CALL, LOG_SMS}),
                )
            )
        )
        fresh = [placed for placed in found if placed.sid not in taken]
        # Oldest first: the earliest unclaimed one is the closest to this attempt.
        fresh.sort(key=lambda placed: placed.at or datetime.max)
        return fresh[0].sid if fresh else ""

    def _adopt(self, delivery: Delivery, attempt: Attempt, sid: str, now: datetime) -> None:
        log.info("delivery %s: adopted %s found at Twilio", delivery.id, sid)
        self._sent(delivery, attempt, sid, OUTCOME_ADOPTED, callback=bool(XmonSettings.get().xmon_url))

    def _recover_orphans(self, now: datetime) -> None:
        """Deliveries left `sending` by a process that died mid-request: unknown, look them up."""
        before = now - timedelta(seconds=self.timing.orphan_after)
        ids = db.session.scalars(
            select(Delivery.id).where(Delivery.status == DELIVERY_SENDING, Delivery.updated_at < before).limit(BATCH)
        ).all()
        for delivery_id in ids:
            moved = db.session.execute(
                update(Delivery)
                .where(
                    Delivery.id == delivery_id,
                    Delivery.status == DELIVERY_SENDING,
                    Delivery.updated_at < before,
                    self.lease.fence(now),
                )
                .values(status=DELIVERY_QUEUED, next_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if moved != 1:
                db.session.rollback()
                continue
            db.session.execute(
                update(Attempt)
                .where(Attempt.delivery_id == delivery_id, Attempt.outcome == OUTCOME_PENDING)
                .values(outcome=OUTCOME_UNKNOWN, finished_at=now, error_message=INTERRUPTED, next_retry_at=now)
                .execution_options(synchronize_session=False)
            )
            db.session.commit()
            log.warning("delivery %s was interrupted mid-request; looking it up at Twilio", delivery_id)

    # --- outcomes without a status callback ---

    def _check_outcomes(self, now: datetime) -> None:
        """Ask Twilio for the final status of deliveries whose callback has not come."""
        ids = db.session.scalars(
            select(Delivery.id)
            .where(
                Delivery.status.in_([DELIVERY_SENT, DELIVERY_CALLING]),
                Delivery.final_status == "",
                Delivery.check_at <= now,
            )
            .order_by(Delivery.check_at)
            .limit(20)
        ).all()
        if not ids:
            return
        for delivery_id in ids:
            if self.stopping() or not self._lead(self.clock.now()):
                return
            delivery = db.session.get(Delivery, delivery_id)
            if delivery is None or not delivery.attempts:
                continue
            notification = delivery.notification
            account = db.session.get(TwilioAccount, notification.account_id) if notification.account_id else None
            attempt = next((a for a in reversed(delivery.attempts) if a.sid == delivery.sid), delivery.attempts[-1])
            if notification.channel == CHANNEL_BUTTON and (account is None or now - attempt.started_at > BUTTON_CALL_FOR):
                delivery.check_at = None
                flow.call_lost(attempt, now)
                db.session.commit()
                continue
            if account is None or now - attempt.started_at > CHECK_FOR:
                delivery.check_at = None
                db.session.commit()
                continue
            # Committed first, so a failing question is not asked again at once.
            delivery.check_at = now + timedelta(seconds=max(self.timing.check_grace, 30))
            db.session.commit()
            context = telephony.LogContext(
                LOG_FETCH_MESSAGE if notification.channel == CHANNEL_SMS else LOG_FETCH_CALL,
                notification.setting_type,
                notification.setting_id,
                notification.setting_name,
            )
            try:
                if notification.channel != CHANNEL_SMS:
                    state = telephony.fetch_call(account, delivery.sid, context)
                else:
                    state = telephony.fetch_message(account, delivery.sid, context)
            except TwilioError as error:
                log.warning("status check of %s failed: %s", delivery.sid, error)
                continue
            final = FINAL_MESSAGE if notification.channel == CHANNEL_SMS else FINAL_CALL
            if state.status in final:
                record_final(attempt, state.status, answered_by=state.answered_by or "", duration=state.duration)
                db.session.commit()

    # --- button calls: machines hung up, acknowledgements sent (R12, B1) ---

    def _hang_up_machines(self, now: datetime) -> None:
        """Hang up button calls that answering-machine detection found a machine on."""
        ids = db.session.scalars(
            select(Attempt.id).where(Attempt.hangup_wanted.is_(True), Attempt.hangup_done.is_(False)).limit(20)
        ).all()
        for attempt_id in ids:
            if self.stopping() or not self._lead(self.clock.now()):
                return
            attempt = db.session.get(Attempt, attempt_id)
            assert attempt is not None
            attempt.hangup_done = True  # asked once: a failed hang-up ends anyway with the <Gather> timeout
            db.session.commit()
            notification = attempt.delivery.notification
            account = db.session.get(TwilioAccount, notification.account_id) if notification.account_id else None
            if account is None or not attempt.sid or attempt.final_status:
                continue
            try:
                telephony.hang_up(
                    account,
                    attempt.sid,
                    telephony.LogContext(
                        LOG_HANGUP, notification.setting_type, notification.setting_id, notification.setting_name
                    ),
                )
            except TwilioError as error:
                log.warning("hanging up %s failed: %s", attempt.sid, error)

    def _send_acks(self, now: datetime) -> datetime | None:
        """Send due acknowledgements to the monitor; return when the next one is due."""
        ids = db.session.scalars(
            select(Acknowledgement.id)
            .where(Acknowledgement.status == ACK_PENDING, Acknowledgement.next_at <= now)
            .order_by(Acknowledgement.next_at, Acknowledgement.id)
            .limit(50)
        ).all()
        db.session.rollback()
        if ids:
            from ..acks import sink
        settings = XmonSettings.get()
        pass_started = time.monotonic()
        for ack_id in ids:
            if self.stopping() or not self._lead(self.clock.now()):
                return None
            if time.monotonic() - pass_started >= ACK_PASS_BUDGET:
                return self.clock.now()  # the rest after the calls due in the meantime
            ack = db.session.get(Acknowledgement, ack_id)
            if ack is None or ack.status != ACK_PENDING:
                continue
            ack.tries += 1
            # Committed first: a crash during the write is retried, never forgotten.
            ack.next_at = now + timedelta(seconds=ACK_BACKOFF_CAP)
            db.session.commit()
            request = sink.AckRequest(
                host=ack.host, service=ack.service, author=ack.author, comment=ack.comment, at=now
            )
            started = time.monotonic()
            try:
                result = sink.send(request, settings)
            except sink.AckError as error:
                ack.sink = settings.ack_mode
                self._ack_failed(ack, error, now, started)
                continue
            ack.status = ACK_DONE
            ack.done_at = self.clock.now()
            ack.error = ""
            ack.sink = settings.ack_mode
            self._log_ack(ack, True, result, started)
            db.session.commit()
        upcoming = db.session.scalar(
            select(func.min(Acknowledgement.next_at)).where(Acknowledgement.status == ACK_PENDING)
        )
        db.session.rollback()
        return upcoming

    def _ack_failed(self, ack: Acknowledgement, error: Exception, now: datetime, started: float) -> None:
        temporary = bool(getattr(error, "temporary", False))
        ack.error = str(error)
        if temporary and ack.tries < ACK_MAX_TRIES:
            ack.next_at = now + backoff(ack.tries, self.timing.backoff_base, ACK_BACKOFF_CAP, self.rng)
        else:
            ack.status = ACK_FAILED
            if temporary:
                ack.error = f"{ack.error} {GAVE_UP.format(tries=ack.tries)}"
        self._log_ack(ack, False, ack.error, started)
        db.session.commit()
        log.warning("acknowledgement %s of %s %s failed: %s", ack.id, ack.host, ack.service, error)

    def _log_ack(self, ack: Acknowledgement, success: bool, text: str, started: float) -> None:
        notification = db.session.get(Notification, ack.notification_id)
        summary = {"host": ack.host, "service": ack.service, "author": ack.author, "sink": ack.sink, "tries": ack.tries}
        if success and text:
            summary["result"] = text
        db.session.add(
            RequestLog(
                kind=LOG_ACK,
                setting_type=notification.setting_type if notification else "",
                setting_id=notification.setting_id if notification else None,
                setting_name=notification.setting_name if notification else "",
                success=success,
                error_message="" if success else text,
                duration_ms=int((time.monotonic() - started) * 1000),
                request_summary=json.dumps(summary, ensure_ascii=False),
            )
        )

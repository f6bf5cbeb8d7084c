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

from .. import telephony
from ..extensions import db
from ..models import (
    CHANNEL_CALL,
    DELIVERY_FAILED,
    DELIVERY_OPEN,
    DELIVERY_QUEUED,
    DELIVERY_SENDING,
    DELIVERY_SENT,
    LOG_CALL,
    LOG_FETCH_CALL,
    LOG_FETCH_MESSAGE,
    LOG_FIND_CALLS,
    LOG_FIND_MESSAGES,
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
    AlertDedupe,
    Attempt,
    Delivery,
    Notification,
    RequestLog,
    TwilioAccount,
    XmonSettings,
    utcnow,
)
from ..public_url import status_callback_url
from ..twilio_errors import TwilioError
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

INTERRUPTED = "処理が中断されたため、発信・送信されたか確認できません。Twilio に照会してから再送します。"
NO_ACCOUNT = "Twilio アカウント情報が削除されたため、発信・送信できません。"
GAVE_UP = "再試行の上限({tries} 回)に達したため中止しました。"


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
            self._close_finished(self.clock.now())
            self._prune_dedupe(self.clock.now())
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
            if len(delivery.attempts) >= self.timing.max_tries:
                self._stop(delivery, f"{last.error_message} {GAVE_UP.format(tries=len(delivery.attempts))}", now)
                return
        self._place(delivery, account, now)

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
        callback = status_callback_url(XmonSettings.get().xmon_url, attempt.callback_token)
        # Committed before the request: if this process dies during it, the attempt is found
        # in flight and looked up at Twilio instead of being placed blind.
        db.session.commit()
        self.pacer.take(account.id, account.cps, now)
        context = telephony.LogContext(
            LOG_CALL if notification.channel == CHANNEL_CALL else LOG_SMS,
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
        if notification.channel == CHANNEL_CALL:
            grace = self.timing.check_grace_callback if callback else self.timing.check_grace
            wait = (notification.ring_seconds or 60) + grace
        else:
            wait = self.timing.check_grace_callback if callback else self.timing.check_grace
        delivery.status = DELIVERY_SENT
        delivery.sid = sid
        delivery.error = ""
        # A status callback may have beaten this commit to the attempt.
        db.session.refresh(attempt)
        if attempt.final_status and not delivery.final_status:
            delivery.final_status = attempt.final_status
        delivery.check_at = now + timedelta(seconds=wait)
        delivery.updated_at = now
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
            if attempt.number < most:
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
            reason = f"{reason} {GAVE_UP.format(tries=attempt.number)}"
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
        if notification.channel == CHANNEL_CALL:
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
            .where(Delivery.status == DELIVERY_SENT, Delivery.final_status == "", Delivery.check_at <= now)
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
            if account is None or now - attempt.started_at > CHECK_FOR:
                delivery.check_at = None
                db.session.commit()
                continue
            # Committed first, so a failing question is not asked again at once.
            delivery.check_at = now + timedelta(seconds=max(self.timing.check_grace, 30))
            db.session.commit()
            context = telephony.LogContext(
                LOG_FETCH_CALL if notification.channel == CHANNEL_CALL else LOG_FETCH_MESSAGE,
                notification.setting_type,
                notification.setting_id,
                notification.setting_name,
            )
            try:
                if notification.channel == CHANNEL_CALL:
                    state = telephony.fetch_call(account, delivery.sid, context)
                else:
                    state = telephony.fetch_message(account, delivery.sid, context)
            except TwilioError as error:
                log.warning("status check of %s failed: %s", delivery.sid, error)
                continue
            final = FINAL_CALL if notification.channel == CHANNEL_CALL else FINAL_MESSAGE
            if state.status in final:
                record_final(attempt, state.status, answered_by=state.answered_by or "", duration=state.duration)
                db.session.commit()

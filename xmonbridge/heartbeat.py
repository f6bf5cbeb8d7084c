"""The optional heartbeat SMS: text a chosen user when the phone path itself is broken.

`check(now)` looks at two problems that no call or SMS of xmonbridge can report, since they
are what stops calls and SMS:

* the dispatcher: its lease (dispatch/lease.py) has not been renewed for longer than
  `heartbeat_dispatcher_minutes`, or no dispatcher ever held it;
* Twilio: every request to Twilio since the last success failed, the first of those failures
  is older than `heartbeat_twilio_minutes`, and one of them falls within that window (the
  heartbeat's own texts do not count either way).

For each problem it texts the user of X-MON 設定's heartbeat (`heartbeat_user_id`) once per
outage, through the account and sender of the chosen SMS 通知設定 and telephony.send_sms (so
the text shows in ログ as ハートビート通知). `heartbeat_*_sent_at` remembers that this outage
was texted; the send is claimed first with a conditional UPDATE of that column and committed,
so processes checking at once (every `serve` worker's watchdog, a cron `xmonbridge
heartbeat`) text once between them. When the problem has ended (the lease was renewed, or a
request to Twilio succeeded, after the text), the column is cleared the same way and the
process that cleared it texts 「復旧」 once.

The caller needs an app context; nothing here uses a request. This module commits: a claim
must be visible to other processes before the text goes out, and telephony.py must not be
called inside an open write transaction on SQLite.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from . import telephony
from .dispatch import lease as dispatch_lease
from .extensions import db
from .filters import jst
from .health import TWILIO_KINDS
from .models import LOG_SMS, LOG_TEST_SMS, RequestLog, SmsSetting, User, XmonSettings, utcnow
from .twilio_errors import TwilioError

log = logging.getLogger(__name__)

# RequestLog.setting_type and setting_name of the heartbeat's own texts (ログ shows the name).
SETTING_HEARTBEAT = "heartbeat"
SETTING_NAME = "ハートビート通知"

DISPATCHER = "dispatcher"
TWILIO = "twilio"
PREFIX = "【xmonbridge】"
TIME_FORMAT = "%m/%d %H:%M"


@dataclass(frozen=True)
class Problem:
    """A problem that has lasted longer than its threshold."""

    kind: str
    # When it began: the lease's last renewal, or the first refused request since the last
    # success; None when no dispatcher ever held the lease.
    since: datetime | None
    text: str


@dataclass
class Result:
    """What one check found and did, for the command line and the logs."""

    enabled: bool
    problems: list[Problem] = field(default_factory=list)
    # What was texted: "dispatcher", "twilio", "dispatcher recovered", "twilio recovered".
    sent: list[str] = field(default_factory=list)
    # Texts that Twilio refused or whose outcome is unknown, with the reason.
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line in English for `xmonbridge heartbeat` and the server log."""
        if not self.enabled:
            return "heartbeat is off (no user with a number or no SMS setting chosen on the ハートビート通知 page)"
        found = ", ".join(p.kind for p in self.problems) or "no problem"
        sent = ", ".join(self.sent) or "nothing"
        line = f"heartbeat: {found}; texted {sent}"
        if self.failed:
            line += "; failed: " + "; ".join(self.failed)
        return line


@dataclass(frozen=True)
class Target:
    """Who the heartbeat texts and through what."""

    user: User
    setting: SmsSetting


def host_name() -> str:
    """The name of the host this check runs on."""
    return socket.gethostname()


def _when(moment: datetime) -> str:
    return jst(moment, TIME_FORMAT)


def _minutes(now: datetime, since: datetime) -> int:
    return max(0, int((now - since).total_seconds() // 60))


def target(settings: XmonSettings) -> Target | None:
    """The user and SMS setting the heartbeat texts through; None when it is off or incomplete."""
    if settings.heartbeat_user_id is None or settings.heartbeat_sms_setting_id is None:
        return None
    user = db.session.get(User, settings.heartbeat_user_id)
    setting = db.session.get(SmsSetting, settings.heartbeat_sms_setting_id)
    if user is None or not user.phone or setting is None:
        return None
    return Target(user, setting)


def dispatcher_problem(now: datetime, minutes: int) -> Problem | None:
    """The dispatcher has not renewed its lease for longer than minutes (or never held it)."""
    row = dispatch_lease.current()
    if row is None or not row.holder:
        return Problem(DISPATCHER, None, f"{PREFIX}配信処理が一度も動いていません。電話・SMS の通知が送られません。")
    renewed = row.heartbeat_at or row.acquired_at or row.expires_at
    if now - renewed <= timedelta(minutes=minutes):
        return None
    holder_host = row.holder.split(":", 1)[0]
    return Problem(
        DISPATCHER,
        renewed,
        f"{PREFIX}配信処理が {_when(renewed)} から止まっています({_minutes(now, renewed)} 分間)。"
        f"電話・SMS の通知が送られません。最後の配信処理: {holder_host}",
    )


def _failing_since_success() -> tuple[datetime | None, RequestLog | None]:
    """When the failed requests to Twilio since the last success began, and the newest of them."""
    ours = RequestLog.setting_type != SETTING_HEARTBEAT
    to_twilio = RequestLog.kind.in_(TWILIO_KINDS)
    last_success = db.session.scalar(
        select(func.max(RequestLog.created_at)).where(to_twilio, ours, RequestLog.success.is_(True))
    )
    failing = [to_twilio, ours, RequestLog.success.is_(False)]
    if last_success is not None:
        failing.append(RequestLog.created_at > last_success)
    first = db.session.scalar(select(func.min(RequestLog.created_at)).where(*failing))
    newest = db.session.scalars(
        select(RequestLog).where(*failing).order_by(RequestLog.created_at.desc(), RequestLog.id.desc()).limit(1)
    ).first()
    return first, newest


def twilio_problem(now: datetime, minutes: int) -> tuple[Problem | None, datetime | None]:
    """Twilio has refused every request for longer than minutes; also when the failures began.

    The second value is the start of the failures since the last success (None: the last
    request succeeded, or there was none), whether or not they last long enough yet.
    """
    first, newest = _failing_since_success()
    if first is None or newest is None:
        return None, None
    newest_at = newest.created_at
    window = timedelta(minutes=minutes)
    if now - first <= window or now - newest_at > window:
        return None, first
    reason = f"エラー {newest.error_code}" if newest.error_code else (f"HTTP {newest.http_status}" if newest.http_status else "応答なし")
    return (
        Problem(
            TWILIO,
            first,
            f"{PREFIX}Twilio が {_when(first)} から要求を拒否し続けています({_minutes(now, first)} 分間、"
            f"最後は {_when(newest_at)} に {reason})。電話・SMS の通知が届いていない可能性があります。",
        ),
        first,
    )


def _column(kind: str) -> InstrumentedAttribute[datetime | None]:
    return XmonSettings.heartbeat_dispatcher_sent_at if kind == DISPATCHER else XmonSettings.heartbeat_twilio_sent_at


def _set_if(column: InstrumentedAttribute[datetime | None], condition: object, value: datetime | None) -> bool:
    """UPDATE the settings row's column when condition holds; commit; tell whether it did."""
    statement = (
        update(XmonSettings)
        .where(XmonSettings.id == 1, condition)  # type: ignore[arg-type]
        .values({column.key: value})
        .execution_options(synchronize_session=False)
    )
    changed = db.session.execute(statement).rowcount == 1
    db.session.commit()
    return changed


def _claim(kind: str, now: datetime, since: datetime | None) -> bool:
    """Take the right to text about this outage: nobody texted since it began."""
    column = _column(kind)
    condition = column.is_(None) if since is None else or_(column.is_(None), column < since)
    return _set_if(column, condition, now)


def _send(target: Target, text: str, kind: str = LOG_SMS) -> str:
    """Text the heartbeat's user through the SMS setting's account and sender; the Message SID."""
    setting = target.setting
    return telephony.send_sms(
        setting.account,
        to=str(target.user.phone),
        from_=setting.from_number,
        body=text,
        context=telephony.LogContext(kind, SETTING_HEARTBEAT, None, SETTING_NAME),
    )


def _with_host(text: str, host: str) -> str:
    return f"{text}(ホスト: {host})"


def _recovered(kind: str, sent_at: datetime, host: str) -> str:
    what = "配信処理が再開しました" if kind == DISPATCHER else "Twilio への要求が成功しました"
    return _with_host(f"{PREFIX}復旧: {what}。{_when(sent_at)} に通知した問題は解消しています。", host)


def test_text(dispatcher_minutes: int, twilio_minutes: int, host: str | None = None) -> str:
    """The text of 「テスト送信」, naming the thresholds it would text at."""
    return _with_host(
        f"{PREFIX}ハートビート通知のテストです。配信処理が {dispatcher_minutes} 分止まったとき、"
        f"Twilio が {twilio_minutes} 分要求を拒否し続けたときに、この番号へ SMS を送ります。",
        host or host_name(),
    )


def send_test(chosen: Target, dispatcher_minutes: int, twilio_minutes: int) -> str:
    """Send the test text now (「テスト送信」); return the Message SID. Raises TwilioError."""
    return _send(chosen, test_text(dispatcher_minutes, twilio_minutes), LOG_TEST_SMS)


def check(now: datetime | None = None) -> Result:
    """Look for the two problems; text the chosen user once per outage, and once when it ends.

    1. Read the settings; off (no user with a number, or no SMS setting): do nothing.
    2. Find each problem (dispatcher lease, Twilio failures) and when it began.
    3. A texted outage that has ended (renewed / succeeded after the text): clear its
       *_sent_at with a conditional UPDATE; the process that cleared it texts 「復旧」.
    4. A problem not texted since it began: claim it with a conditional UPDATE of *_sent_at;
       the process that claimed it texts. A text that certainly did not go out (a temporary
       error) gives the claim back, so the next check tries again; one that may have gone out
       (unknown outcome) or never will (permanent error) keeps it: never text twice.
    """
    now = now or utcnow()
    settings = XmonSettings.get()
    chosen = target(settings)
    if chosen is None:
        db.session.rollback()
        return Result(enabled=False)
    result = Result(enabled=True)
    host = host_name()
    dispatcher = dispatcher_problem(now, settings.heartbeat_dispatcher_minutes)
    twilio, failing_since = twilio_problem(now, settings.heartbeat_twilio_minutes)
    lease_row = dispatch_lease.current()
    renewed = (lease_row.heartbeat_at or lease_row.acquired_at) if lease_row is not None and lease_row.holder else None
    sent = {DISPATCHER: settings.heartbeat_dispatcher_sent_at, TWILIO: settings.heartbeat_twilio_sent_at}
    # End the read transaction before writing (SQLite cannot upgrade a stale reader).
    db.session.rollback()

    # An outage ended once the lease was renewed, or a request succeeded, after its text.
    ended = {
        DISPATCHER: lambda sent_at: renewed is not None and renewed > sent_at,
        TWILIO: lambda sent_at: failing_since is None or failing_since > sent_at,
    }
    for kind, sent_at in sent.items():
        if sent_at is None or not ended[kind](sent_at):
            continue
        if _set_if(_column(kind), _column(kind) == sent_at, None):
            _deliver(result, chosen, _recovered(kind, sent_at, host), f"{kind} recovered")

    for problem in (dispatcher, twilio):
        if problem is None:
            continue
        result.problems.append(problem)
        if not _claim(problem.kind, now, problem.since):
            continue
        if not _deliver(result, chosen, _with_host(problem.text, host), problem.kind):
            # Nothing went out: let the next check try again.
            _set_if(_column(problem.kind), _column(problem.kind) == now, None)
    return result


def _deliver(result: Result, chosen: Target, text: str, what: str) -> bool:
    """Send one text; False only when it certainly did not go out (a temporary error)."""
    try:
        _send(chosen, text)
    except TwilioError as error:
        log.warning("heartbeat text (%s) failed: %s", what, error)
        result.failed.append(f"{what}: {error}")
        return not error.temporary
    result.sent.append(what)
    return True

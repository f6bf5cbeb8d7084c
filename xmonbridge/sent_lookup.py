"""After a create whose outcome is unknown: find on Twilio what this attempt may have sent.

Plain domain code for 「テスト通話」/「送信テスト」 (and later the dispatcher): no request code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select

from . import telephony
from .extensions import db
from .models import RequestLog, TwilioAccount

# Clocks differ a little (Twilio's DateCreated vs. ours): look this much before the send.
SLACK = timedelta(seconds=10)
# How far back an earlier create without an answer makes what is found ambiguous.
EARLIER_ATTEMPTS = timedelta(minutes=10)
AMBIGUOUS = (
    "Twilio に同じ宛先への発信・送信(SID: {sid})が見つかりましたが、直前の結果不明のテストのものか"
    "判別できません。着信・受信を確認し、届いていない場合にだけ再度お試しください。"
)

Finder = Callable[[TwilioAccount, str, str, datetime], list[telephony.Placed]]


def last_log_id() -> int:
    """The newest request log row before an attempt: rows up to it belong to earlier ones."""
    return db.session.scalar(select(func.max(RequestLog.id))) or 0


def look_up(
    find_sent: Finder, account: TwilioAccount, to_number: str, from_number: str, since: datetime, last_id: int
) -> tuple[str, bool]:
    """Ask Twilio whether the attempt went out.

    Return (SID or "" when nothing was found, whether it may be an earlier attempt's). A SID
    that any request logged before this attempt, or that a create got back, belongs to
    someone else and never counts. If an earlier create to the same number also ended
    without an answer, what is found may be that one: say so rather than claim it.
    Raises TwilioError when the question itself fails.
    """
    sids = [placed.sid for placed in find_sent(account, to_number, from_number, since)]
    seen = select(RequestLog.sid).where(
        RequestLog.sid.in_(sids),
        (RequestLog.id <= last_id) | (RequestLog.success.is_(True) & RequestLog.kind.in_(telephony.CREATE_KINDS)),
    )
    known = set(db.session.scalars(seen)) if sids else set()
    fresh = [sid for sid in sids if sid not in known]
    if not fresh:
        return "", False
    earlier_unknown = select(RequestLog.id).where(
        RequestLog.id <= last_id,
        RequestLog.kind.in_(telephony.CREATE_KINDS),
        RequestLog.success.is_(False),
        RequestLog.destination == to_number,
        RequestLog.from_number == from_number,
        RequestLog.created_at >= since - EARLIER_ATTEMPTS,
    )
    return fresh[0], db.session.scalar(earlier_unknown.limit(1)) is not None

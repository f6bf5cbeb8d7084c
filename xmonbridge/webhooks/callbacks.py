"""Status callbacks from Twilio: who may report, and what is recorded (B7, B9). No request code.

A callback is believed only when its `X-Twilio-Signature` is the one Twilio computes with the
AUTH TOKEN of the account that placed the call or sent the message, over the URL Twilio was
given: the public StatusCallback URL rebuilt from the X-MON URL (public_url.py) plus the query
string. The address the request arrived at is not used: behind a reverse proxy or NAT it differs
from the one Twilio signed. Every callback, believed or not, leaves one ログ row saying what was
received and why it was refused; neither the URL's token nor the signature is written anywhere.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from .. import secretbox
from ..dispatch.outcomes import (
    INTERIM_STATUSES,
    answered_by_label,
    explain_delivery_error,
    is_final,
    record_final,
    status_label,
)
from ..extensions import db
from ..models import CHANNEL_SMS, LOG_STATUS_CALLBACK, Attempt, RequestLog, TwilioAccount, XmonSettings
from ..public_url import status_callback_url
from .signature import is_signed

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
# Longest token the dispatcher makes is 32 characters (the column holds 64).
MAX_TOKEN = 64
# Received values kept in the log are cut to this length (they may come from anyone).
MAX_VALUE = 64

# Keys of the log row's summary besides Twilio's own field names (the ログ detail reads them).
CHECK_KEY = "署名の検証"
RESULT_KEY = "記録"
CHECK_OK = "一致しました"
NOT_CHECKED = "検証していません"

UNKNOWN_TOKEN = "状態通知の URL が見つかりません(このサーバーが発行した URL ではないか、記録が削除されています)。"
NO_SIGNATURE = "署名なし: X-Twilio-Signature ヘッダがありません。"
BAD_SIGNATURE = (
    "署名が一致しません: Twilio アカウント情報の AUTH TOKEN か X-MON URL が、発信・送信したときと異なるか、"
    "Twilio 以外から送られたリクエストです。"
)
NO_ACCOUNT_SID = "アカウントが一致しません: AccountSid がありません。"
ACCOUNT_MISMATCH = "アカウントが一致しません: AccountSid がこの発信・送信に使った Twilio アカウントのものではありません。"
ACCOUNT_GONE = "この発信・送信に使った Twilio アカウント情報が削除されているため、署名を検証できません。"
NO_XMON_URL = "X-MON URL が設定されていないため、署名を検証できません(X-MON 設定で設定してください)。"
TOKEN_UNREADABLE = "AUTH TOKEN を復号できないため、署名を検証できません。fernet.key を確認してください。"

RECORDED = "最終状態を記録しました。"
DUPLICATE = "同じ最終状態がすでに記録されているため、変更はありません。"
IGNORED = "最終状態「{current}」がすでに記録されているため、無視しました。"
INTERIM = "途中経過の状態のため、記録しません。"
UNKNOWN_STATUS = "この種別にない状態のため、記録しません。"
SID_MISMATCH = "通知された SID がこの試行の SID と一致しないため、記録しませんでした。"


# Control characters (NUL included, which PostgreSQL text refuses) are dropped from logged values.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Integers outside this range are not Twilio's (error codes have 5 digits) and would overflow a column.
MAX_INT = 2**31 - 1


def _clip(value: str | None) -> str:
    return _CONTROL.sub("", value or "")[:MAX_VALUE]


def _int(value: str | None) -> int | None:
    """A non-negative integer field, or None when absent or not a plausible number."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    number = int(value)
    return number if number <= MAX_INT else None


def receive_status(token: str, form: Mapping[str, str], signature: str | None, query_string: str) -> int:
    """Check one status callback, record it if it is Twilio's, log it; return the HTTP status.

    204: recorded (or nothing to record); 403: not believed, nothing changed; 404: unknown URL.
    The caller commits.
    """
    started = time.monotonic()
    attempt = None
    if len(token) <= MAX_TOKEN:
        attempt = db.session.scalar(select(Attempt).where(Attempt.callback_token == token))
    call = attempt is None or attempt.delivery.notification.channel != CHANNEL_SMS
    status_field = "CallStatus" if call else "MessageStatus"
    status = _clip(form.get(status_field) or ("" if call else form.get("SmsStatus")))
    sid = _clip(form.get("CallSid") or form.get("MessageSid") or form.get("SmsSid"))
    summary: dict[str, Any] = {status_field: status}
    for name in ("AnsweredBy", "CallDuration", "ErrorCode", "AccountSid"):
        if form.get(name):
            summary[name] = _clip(form.get(name))
    error_code = _int(form.get("ErrorCode"))

    def finish(http_status: int, *, reason: str = "", result: str = "", success: bool = False) -> int:
        if attempt is None:
            summary[CHECK_KEY] = NOT_CHECKED
        else:
            summary[CHECK_KEY] = reason or CHECK_OK
        if result:
            summary[RESULT_KEY] = result
        message = reason or explain_delivery_error(error_code)
        _log(attempt, http_status, success, sid, error_code, message, summary, started)
        return http_status

    if attempt is None:
        # Not Twilio's: every URL Twilio was given has a token of ours. No ログ row, or anyone
        # could fill the table with their own text; the server log keeps a line.
        log.warning("status callback for an unknown URL refused (404)")
        return 404
    reason = _refusal(attempt, form, signature, query_string)
    if reason:
        log.warning("status callback for attempt %s refused: %s", attempt.id, reason)
        return finish(403, reason=reason)
    if attempt.sid and sid and sid != attempt.sid:
        return finish(204, result=SID_MISMATCH, success=True)
    channel = attempt.delivery.notification.channel
    reported = status.strip().lower()
    previous = attempt.final_status
    changed = record_final(
        attempt,
        reported,
        answered_by=_clip(form.get("AnsweredBy")),
        duration=_int(form.get("CallDuration")),
        error_code=error_code,
    )
    if not is_final(channel, reported):
        result = INTERIM if reported in INTERIM_STATUSES.get(channel, frozenset()) else UNKNOWN_STATUS
    elif changed and attempt.final_status == reported:
        result = RECORDED
    elif previous == reported:
        result = DUPLICATE
    else:
        result = IGNORED.format(current=status_label(attempt.final_status))
    return finish(204, result=result, success=True)


def _refusal(
    attempt: Attempt,
    form: Mapping[str, str],
    signature: str | None,
    query_string: str,
    public_url: Callable[[str | None, str], str | None] = status_callback_url,
) -> str:
    """Why the request is not believed, or "" when its signature is the account's.

    public_url builds the URL Twilio was given for this attempt (status callback, voice, gather …).
    """
    if not signature:
        return NO_SIGNATURE
    notification = attempt.delivery.notification
    account = db.session.get(TwilioAccount, notification.account_id) if notification.account_id else None
    claimed = form.get("AccountSid") or ""
    if not claimed:
        return NO_ACCOUNT_SID
    if account is None:
        return ACCOUNT_GONE
    if claimed != account.account_sid:
        return ACCOUNT_MISMATCH
    url = public_url(XmonSettings.get().xmon_url, attempt.callback_token)
    if url is None:
        return NO_XMON_URL
    if query_string:
        url = f"{url}?{query_string}"
    try:
        if not is_signed(account, url, form, signature):
            return BAD_SIGNATURE
    except secretbox.SecretError:
        return TOKEN_UNREADABLE
    return ""


def _log(
    attempt: Attempt | None,
    http_status: int,
    success: bool,
    sid: str,
    error_code: int | None,
    error_message: str,
    summary: dict[str, Any],
    started: float,
) -> None:
    """Add the callback's ログ row (in the caller's transaction), named after what it reports on."""
    row = RequestLog(
        kind=LOG_STATUS_CALLBACK,
        http_status=http_status,
        success=success,
        sid=sid,
        error_code=error_code,
        error_message=error_message,
        request_summary=json.dumps(summary, ensure_ascii=False),
    )
    if attempt is not None:
        delivery = attempt.delivery
        notification = delivery.notification
        row.account_id = notification.account_id
        row.account_name = notification.account_name
        row.setting_type = notification.setting_type
        row.setting_id = notification.setting_id
        row.setting_name = notification.setting_name
        row.destination = delivery.to_number
        row.from_number = notification.from_number
    row.duration_ms = int((time.monotonic() - started) * 1000)
    db.session.add(row)


@dataclass(frozen=True)
class CallbackView:
    """What a status callback's ログ row says, for the ログ screens."""

    status: str
    answered_by: str
    duration: str
    check: str
    result: str


def describe(summary: Mapping[str, Any]) -> CallbackView:
    """Read a status callback's logged summary back for display."""
    status = str(summary.get("CallStatus") or summary.get("MessageStatus") or "")
    duration = str(summary.get("CallDuration") or "")
    return CallbackView(
        status=status_label(status.lower()) if status else "",
        answered_by=answered_by_label(str(summary.get("AnsweredBy") or "")),
        duration=f"{duration} 秒" if duration else "",
        check=str(summary.get(CHECK_KEY) or ""),
        result=str(summary.get(RESULT_KEY) or ""),
    )

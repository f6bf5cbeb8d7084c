"""A button call's webhooks (R9, B1): the answer, the keys, answering-machine detection.

Twilio fetches the voice URL when the callee answers, posts the <Gather> result to the
gather URL and the asynchronous AMD result to the amd URL; each URL carries the attempt's
token. Each request is believed only when signed with the account's AUTH TOKEN over the
public URL (callbacks._refusal, as for status callbacks); then calls/flow.py decides and this
module turns its Reply into TwiML. Every request leaves a ログ row. Nothing here talks to
Twilio, so the answer takes milliseconds (Twilio waits 15 s).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ..calls import flow
from ..extensions import db
from ..models import CHANNEL_BUTTON, LOG_AMD, LOG_GATHER, LOG_VOICE, Attempt, Delivery, RequestLog, XmonSettings, utcnow
from ..public_url import amd_url, gather_url, voice_url
from ..twiml import button_call
from .callbacks import CHECK_KEY, CHECK_OK, MAX_TOKEN, RESULT_KEY, _clip, _refusal

log = logging.getLogger(__name__)

VOICE = "voice"
GATHER = "gather"
AMD = "amd"
_URLS: dict[str, Callable[[str | None, str], str | None]] = {VOICE: voice_url, GATHER: gather_url, AMD: amd_url}
_LOG_KINDS = {VOICE: LOG_VOICE, GATHER: LOG_GATHER, AMD: LOG_AMD}
SID_MISMATCH = "CallSid がこの試行の通話と一致しません。"


@dataclass(frozen=True)
class Answer:
    """The HTTP answer: a status and, for voice and gather, TwiML."""

    status: int
    twiml: str = ""


def receive(kind: str, token: str, form: Mapping[str, str], signature: str | None, query_string: str) -> Answer:
    """Check and handle one button-call webhook; the caller commits."""
    started = time.monotonic()
    attempt = None
    if len(token) <= MAX_TOKEN:
        # The attempt with its delivery and notification in one query: every path reads them.
        attempt = db.session.scalar(
            select(Attempt)
            .where(Attempt.callback_token == token)
            .options(joinedload(Attempt.delivery).joinedload(Delivery.notification))
        )
    if attempt is None or attempt.delivery.notification.channel != CHANNEL_BUTTON:
        # Not one of ours: no ログ row (anyone can post here).
        log.warning("%s webhook for an unknown URL refused (404)", kind)
        return Answer(404)
    # Held for the whole request: the session keeps unchanged rows only while something refers
    # to them, so each XmonSettings.get() in the flow would otherwise read the row again.
    settings = XmonSettings.get()
    summary: dict[str, str] = {}
    for name in ("CallStatus", "Digits", "AnsweredBy", "AccountSid"):
        if form.get(name) is not None:
            summary[name] = _clip(form.get(name))
    sid = _clip(form.get("CallSid"))
    reason = _refusal(attempt, form, signature, query_string, _URLS[kind])
    if not reason and attempt.sid and sid and sid != attempt.sid:
        reason = SID_MISMATCH
    if reason:
        log.warning("%s webhook for attempt %s refused: %s", kind, attempt.id, reason)
        summary[CHECK_KEY] = reason
        _log(kind, attempt, 403, False, sid, reason, summary, started)
        return Answer(403)
    summary[CHECK_KEY] = CHECK_OK
    now = utcnow()
    # The create's answer of this call may have died with the process that placed it.
    flow.adopt(attempt, sid, now)
    if kind == AMD:
        answered_by = _clip(form.get("AnsweredBy"))
        hang_up = flow.machine(attempt, answered_by)
        summary[RESULT_KEY] = "留守番電話のため切断します(再発信します)。" if hang_up else "通話を続けます。"
        _log(kind, attempt, 204, True, sid, "", summary, started)
        return Answer(204)
    reply = flow.answer(attempt, now) if kind == VOICE else flow.press(attempt, form.get("Digits"), now)
    summary[RESULT_KEY] = reply.note
    action = gather_url(settings.xmon_url, attempt.callback_token) or ""
    twiml = button_call(reply.says, reply.guide, reply.hangup, settings.effective_voice, action)
    _log(kind, attempt, 200, True, sid, "", summary, started)
    return Answer(200, twiml)


def _log(
    kind: str,
    attempt: Attempt,
    http_status: int,
    success: bool,
    sid: str,
    error_message: str,
    summary: dict[str, str],
    started: float,
) -> None:
    delivery = attempt.delivery
    notification = delivery.notification
    db.session.add(
        RequestLog(
            kind=_LOG_KINDS[kind],
            account_id=notification.account_id,
            account_name=notification.account_name,
            setting_type=notification.setting_type,
            setting_id=notification.setting_id,
            setting_name=notification.setting_name,
            destination=delivery.to_number,
            from_number=notification.from_number,
            http_status=http_status,
            success=success,
            sid=sid,
            error_message=error_message,
            request_summary=json.dumps(summary, ensure_ascii=False),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    )

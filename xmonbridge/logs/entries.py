"""What a ログ row says beyond its columns, in words. No request code.

Most rows are requests xmonbridge made to Twilio; their columns say it all. Others are
requests Twilio made to xmonbridge (状態通知, and a button call's 通話開始, ボタン操作 and
留守番電話判定 webhooks), whose `request_summary` holds what Twilio sent (CallStatus, Digits,
AnsweredBy …) and what xmonbridge made of it (`署名の検証`, `記録`); and two are no request
at all: 発信上限 (a call held back by the per-number limit) and 認知済み通知 (an
acknowledgement sent to the monitor), whose message and summary are all there is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..calls.flow import SETTING_BUTTON_TEST
from ..dispatch.outcomes import answered_by_label, status_label
from ..heartbeat import SETTING_HEARTBEAT, SETTING_NAME
from ..models import (
    ACK_MODES,
    LOG_ACK,
    LOG_AMD,
    LOG_CALL_LIMIT,
    LOG_GATHER,
    LOG_STATUS_CALLBACK,
    LOG_VOICE,
    SETTING_TYPES,
    RequestLog,
)
from ..webhooks.callbacks import CHECK_KEY, RESULT_KEY

# Requests Twilio made to xmonbridge: the HTTP status is xmonbridge's answer, not Twilio's.
RECEIVED_KINDS = frozenset({LOG_STATUS_CALLBACK, LOG_VOICE, LOG_GATHER, LOG_AMD})
# Rows of no request at all: no HTTP status, SID or Twilio error.
LOCAL_KINDS = frozenset({LOG_CALL_LIMIT, LOG_ACK})
# Requests that belong to no setting: メッセージテンプレート's テスト通話, the heartbeat's texts.
OTHER_SETTING_TYPES = {SETTING_BUTTON_TEST: "メッセージテンプレート", SETTING_HEARTBEAT: SETTING_NAME}
ALL_SETTING_TYPES = {**SETTING_TYPES, **OTHER_SETTING_TYPES}
NO_KEY = "(入力なし)"
NO_SINK = "送信先の設定なし"
ACK_SENT = "監視サーバーに送りました。"


def summary_of(row: RequestLog) -> dict[str, Any]:
    """The row's request_summary as a dict ({} when it is not JSON or not an object)."""
    try:
        asked = json.loads(row.request_summary or "{}")
    except ValueError:
        return {}
    return asked if isinstance(asked, dict) else {}


def pressed(summary: dict[str, Any]) -> str:
    """The keys of a ボタン操作 row as the callee pressed them: 「3#」, or 「(入力なし)」."""
    digits = str(summary.get("Digits") or "")
    return f"{digits}#" if digits else NO_KEY


@dataclass(frozen=True)
class Received:
    """A request Twilio made to xmonbridge: what it said and what was made of it."""

    status: str
    digits: str | None
    answered_by: str
    duration: str
    check: str
    result: str


def received(row: RequestLog, summary: dict[str, Any] | None = None) -> Received | None:
    """What a webhook row received and decided; None for every other kind."""
    if row.kind not in RECEIVED_KINDS:
        return None
    summary = summary_of(row) if summary is None else summary
    status = str(summary.get("CallStatus") or summary.get("MessageStatus") or "")
    duration = str(summary.get("CallDuration") or "")
    return Received(
        status=status_label(status.lower()) if status else "",
        digits=pressed(summary) if row.kind == LOG_GATHER else None,
        answered_by=answered_by_label(str(summary.get("AnsweredBy") or "")),
        duration=f"{duration} 秒" if duration else "",
        check=str(summary.get(CHECK_KEY) or ""),
        result=str(summary.get(RESULT_KEY) or ""),
    )


@dataclass(frozen=True)
class Fact:
    """One labelled line of a row that was no request (発信上限, 認知済み通知)."""

    label: str
    value: str
    key: str


def _ack_target(summary: dict[str, Any]) -> str:
    host = str(summary.get("host") or "")
    service = str(summary.get("service") or "")
    return f"{host} / {service}" if service else f"{host}(ホスト)"


def facts(row: RequestLog, summary: dict[str, Any] | None = None) -> list[Fact]:
    """The lines the detail page shows instead of HTTP status, SID and error for LOCAL_KINDS."""
    if row.kind == LOG_CALL_LIMIT:
        return [Fact("発信を見送った理由", row.error_message, "limit")]
    if row.kind != LOG_ACK:
        return []
    summary = summary_of(row) if summary is None else summary
    sink = str(summary.get("sink") or "")
    tries = summary.get("tries")
    lines = [
        Fact("認知した障害", _ack_target(summary), "target"),
        Fact("認知したユーザ", str(summary.get("author") or ""), "author"),
        Fact("送信先", ACK_MODES.get(sink, sink) if sink else NO_SINK, "sink"),
    ]
    if isinstance(tries, int):
        lines.append(Fact("試行", f"{tries} 回目", "tries"))
    done = str(summary.get("result") or ACK_SENT)
    lines.append(Fact("結果", done if row.success else row.error_message, "result"))
    return lines


def notes(row: RequestLog) -> list[tuple[str, str]]:
    """Short lines the list shows under a row's error: (css suffix, text)."""
    summary = summary_of(row)
    if row.kind == LOG_ACK:
        return [("ack", f"認知: {_ack_target(summary)}({summary.get('author') or ''})")]
    seen = received(row, summary)
    if seen is None:
        return []
    lines = []
    if row.kind == LOG_STATUS_CALLBACK and seen.status:
        lines.append(("callback-status", f"受信した状態: {seen.status}"))
    if seen.digits is not None:
        lines.append(("digits", f"押されたボタン: {seen.digits}"))
    if row.kind == LOG_AMD and seen.answered_by:
        lines.append(("answered-by", f"応答者: {seen.answered_by}"))
    if row.kind != LOG_STATUS_CALLBACK and seen.result:
        lines.append(("result", f"記録: {seen.result}"))
    return lines

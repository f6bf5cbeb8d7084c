"""「ログの見方について」: the common Twilio errors, in the words twilio_errors.py uses for them."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from ..twilio_errors import EXPLANATIONS, UNKNOWN_TEXT, TwilioError, explain, network_error

# Error codes an operator meets most, in the order the help lists them.
COMMON_CODES = (
    21211,
    21214,
    21217,
    21219,
    21210,
    21212,
    21215,
    21408,
    21606,
    21608,
    21610,
    21612,
    21614,
    21617,
    13224,
    20003,
)


@dataclass(frozen=True)
class ErrorHelp:
    """One line of the error table: what the log shows, what it means, whether a retry helps."""

    label: str
    text: str
    permanent: bool
    retry: str


def _row(label: str, error: TwilioError, text: str | None = None) -> ErrorHelp:
    return ErrorHelp(label, text if text is not None else str(error), error.permanent, error.retry_label)


def error_help() -> list[ErrorHelp]:
    """The error table: codes from EXPLANATIONS, then HTTP statuses and network failures."""
    rows = [_row(str(code), explain(400, code), EXPLANATIONS[code]) for code in COMMON_CODES]
    rows.append(_row("20429 / HTTP 429", explain(429, None)))
    rows.append(_row("HTTP 5xx(番号取得・通話照会・検索)", explain(500, None)))
    rows.append(_row("HTTP 5xx(発信・SMS 送信)", explain(500, None, create=True)))
    rows.append(_row("その他の HTTP 4xx", explain(400, None)))
    timeout, _ = network_error(requests.ReadTimeout(), create=False)
    rows.append(_row("タイムアウト(番号取得・通話照会・検索)", timeout))
    lost, _ = network_error(requests.ReadTimeout(), create=True)
    rows.append(_row("タイムアウト・切断(発信・SMS 送信)", lost, UNKNOWN_TEXT))
    refused, _ = network_error(requests.ConnectTimeout(), create=True)
    rows.append(_row("接続エラー(HTTP ステータスなし)", refused))
    return rows

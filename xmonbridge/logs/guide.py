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


# A status callback (Webhook) refused: nothing Twilio did failed, but its report was not believed.
CALLBACK_REFUSED = ErrorHelp(
    "状態通知(Webhook)の HTTP 403",
    "Twilio からの状態通知だと確認できなかったため(署名なし、署名が一致しません、アカウントが一致しません)、"
    "結果を記録しませんでした。X-MON 設定の X-MON URL が Twilio から見た公開側の URL"
    "(リバースプロキシを通す場合はプロキシの URL)と同じか、Twilio アカウント情報の AUTH TOKEN が正しいかを確認してください。"
    "記録されなかった通話・SMS の結果は、しばらく後に xmonbridge が Twilio に照会して記録します。",
    True,
    "設定を見直す",
)


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
    rows.append(CALLBACK_REFUSED)
    return rows

"""「ログの見方について」: the kinds of row, and the common Twilio errors in the words twilio_errors.py uses."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from ..models import LOG_ACK, LOG_AMD, LOG_CALL_LIMIT, LOG_GATHER, LOG_HANGUP, LOG_KINDS, LOG_VOICE
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


# A button call's webhooks refused: the same checks as status callbacks.
BUTTON_WEBHOOK_REFUSED = ErrorHelp(
    "通話開始・ボタン操作・留守番電話判定(Webhook)の HTTP 403",
    "Twilio からのリクエストだと確認できなかったため(署名なし、署名が一致しません、アカウントが一致しません)、"
    "何も読み上げず、押されたボタンも記録しませんでした。確認する設定は状態通知(Webhook)の HTTP 403 と同じです。"
    "正しく受け付けられなかった通話は、ボタン操作なしで終わった通話として再発信されます。",
    True,
    "設定を見直す",
)


@dataclass(frozen=True)
class KindHelp:
    """One kind of ログ row of button calls: its label and what it records."""

    kind: str
    label: str
    text: str


# Button calls' rows, in the order a call makes them.
KIND_TEXTS = (
    (
        LOG_VOICE,
        "ボタン操作付き通話に相手が出たとき、Twilio が読み上げる内容を X-MON URL の /twilio/voice/… "
        "に取りに来た記録です。「記録」は xmonbridge の対応(応答、通知が終了済み など)です。",
    ),
    (
        LOG_GATHER,
        "通話中に押されたボタン(# まで)を Twilio が /twilio/gather/… に知らせてきた記録です。"
        "「押されたボタン」は 1#・2#・3#・7#・8#・9# など(30 秒以内に押されなかったときは「(入力なし)」)、"
        "「記録」はそのボタンで行ったこと(次のユーザへ、認知済み(2 件) など)です。",
    ),
    (
        LOG_AMD,
        "留守番電話の検出を有効にした設定で、Twilio が応答者を判定した結果(人、留守番電話、FAX など)です。"
        "留守番電話と FAX は通話を切断し、応答がなかったものとして再発信します。",
    ),
    (LOG_HANGUP, "留守番電話と判定した通話を切断するよう、xmonbridge が Twilio に依頼したリクエストです。"),
    (
        LOG_CALL_LIMIT,
        "同じ番号への発信の上限(X-MON 設定、15 分あたり・1 時間あたり)に達したため、発信を見送った記録です。"
        "Twilio には何も送っていません。エラーの欄に、いつまで待つかが表示されます。",
    ),
    (
        LOG_ACK,
        "3# で認知済みにした障害を、X-MON 設定の送信先(Nagios の外部コマンドファイル、または HTTP)に送った記録です。"
        "失敗したときはエラーの欄に理由が表示され、時間をおいて再送します。結果はインシデントの詳細にも表示されます。",
    ),
)


def kind_help() -> list[KindHelp]:
    """The button calls' kinds of row, for the help's 「ボタン操作付き通話のログ」."""
    return [KindHelp(kind, LOG_KINDS[kind], text) for kind, text in KIND_TEXTS]


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
    rows.append(BUTTON_WEBHOOK_REFUSED)
    return rows

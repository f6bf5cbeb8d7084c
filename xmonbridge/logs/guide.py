"""「ログの見方について」: the common Twilio errors, in the words telephony.py uses for them."""

from __future__ import annotations

from dataclasses import dataclass

from ..telephony import CONNECTION_TEXT, EXPLANATIONS, PERMANENT_CODES, TIMEOUT_TEXT, explain

# Error codes an operator meets most, in the order the help lists them.
COMMON_CODES = (21211, 21214, 21217, 21219, 21608, 21614, 13224, 20003)


@dataclass(frozen=True)
class ErrorHelp:
    """One line of the error table: what the log shows, what it means, whether a retry helps."""

    label: str
    text: str
    permanent: bool


def error_help() -> list[ErrorHelp]:
    """The error table: codes from EXPLANATIONS, then HTTP statuses and network failures."""
    rows = [ErrorHelp(str(code), EXPLANATIONS[code], code in PERMANENT_CODES) for code in COMMON_CODES]
    for label, status in (("20429 / HTTP 429", 429), ("HTTP 5xx", 500), ("その他の HTTP 4xx", 400)):
        error = explain(status, None)
        rows.append(ErrorHelp(label, str(error), error.permanent))
    rows.append(ErrorHelp("タイムアウト(HTTP ステータスなし)", TIMEOUT_TEXT, False))
    rows.append(ErrorHelp("接続エラー(HTTP ステータスなし)", CONNECTION_TEXT, False))
    return rows

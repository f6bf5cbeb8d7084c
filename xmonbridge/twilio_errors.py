"""Twilio failures as xmonbridge understands them: one outcome each, explained in Japanese.

Three outcomes, because a create is not idempotent (Twilio's error 20500 page):

* permanent -- Twilio refused the request and will refuse it again (a bad number, auth);
* temporary -- nothing was done (HTTP 429 / 20429, a connection that never opened, any
  failure of a read such as listing numbers): safe to send again, with backoff;
* unknown   -- a create (Calls.json / Messages.json) that may have been carried out: a 5xx,
  a read timeout, a connection reset after the request was sent. Look for the call or the
  message (telephony.find_calls / find_messages) before placing it again.

The dispatcher retries temporary errors; `TwilioError.retry_cap` (from MAX_RETRIES_BY_CODE)
bounds the retries of codes that are usually but not always permanent.
"""

from __future__ import annotations

import re

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

OUTCOME_PERMANENT = "permanent"
OUTCOME_TEMPORARY = "temporary"
OUTCOME_UNKNOWN = "unknown"
OUTCOMES = (OUTCOME_PERMANENT, OUTCOME_TEMPORARY, OUTCOME_UNKNOWN)

# Errors that will fail again however often they are retried (B7).
PERMANENT_CODES = {
    20003,
    21210,
    21211,
    21212,
    21214,
    21215,
    21217,
    21219,
    21408,
    21606,
    21608,
    21610,
    21612,
    21614,
    21617,
}

# Temporary codes the dispatcher retries at most this many times: carriers answer 13224 for
# numbers that are valid but briefly unreachable, and for numbers that really are wrong.
MAX_RETRIES_BY_CODE: dict[int, int] = {13224: 2}

EXPLANATIONS: dict[int, str] = {
    20003: "Twilio の認証に失敗しました。ACCOUNT SID と AUTH TOKEN を確認してください。",
    20404: "指定したリソースが Twilio に見つかりません。",
    20429: "Twilio へのリクエストが多すぎます。しばらく待ってから再度お試しください。",
    13224: (
        "宛先の電話番号に発信できませんでした。国番号から始まる正しい番号か確認してください。"
        "正しい番号でも通信事業者の都合で一時的に起きることがあるため、時間をおいて再度お試しください(再試行は最大 2 回まで)。"
    ),
    21210: "発信元(From)の電話番号が Twilio で認証されていません。Twilio アカウントが所有する番号か、認証済みの番号を選択してください。",
    21211: "宛先の電話番号が正しくありません。国番号から始まる番号か確認してください。",
    21212: "発信元(From)の電話番号が正しくありません。Twilio アカウントが所有する番号を選択してください。",
    21214: "宛先の電話番号に発信できません(到達できない番号です)。",
    21215: (
        "宛先の国・地域への発信が許可されていません。Twilio Console の音声の地域別許可設定"
        "(Voice Geographic Permissions)で、宛先の国への発信を許可してください。"
    ),
    21217: "宛先の電話番号が有効ではありません。",
    21219: "トライアルアカウントでは、Twilio で認証済みの電話番号にしか発信できません。",
    21408: (
        "宛先の国・地域への SMS 送信が許可されていません。Twilio Console の SMS の地域別許可設定"
        "(Messaging Geographic Permissions)で、宛先の国への送信を許可してください。"
    ),
    21606: "発信元(From)の電話番号は SMS の送信に使用できません。",
    21608: "トライアルアカウントでは、Twilio で認証済みの電話番号にしか SMS を送信できません。",
    21610: "宛先の電話番号は SMS の受信を停止しています(STOP)。",
    21612: "この宛先と発信元(From)の組み合わせでは SMS を送信できません(宛先が SMS で到達できない番号か、発信元の番号がその宛先に対応していません)。",
    21614: "宛先の電話番号は SMS を受信できません(固定電話などの番号です)。",
    21617: "SMS の本文が長すぎます(1,600 文字まで)。",
}

# Failures without a Twilio error code; also listed in the ログ screen's help.
SERVER_ERROR_TEXT = "Twilio 側で一時的なエラーが発生しました。しばらく待ってから再度お試しください。"
TIMEOUT_TEXT = "Twilio から応答がありませんでした(タイムアウト)。しばらく待ってから再度お試しください。"
CONNECTION_TEXT = "Twilio に接続できませんでした。ネットワークの設定を確認してください。"
UNKNOWN_TEXT = (
    "発信されたか確認できません。Twilio はリクエストを受け取った後に正常な応答を返さなかったため"
    "(Twilio 側のエラー、応答のタイムアウト、または接続の切断)、通話や SMS が実際には発信・送信されている"
    "可能性があります。二重に発信しないよう、再度発信する前にログ(通話検索・SMS検索)または Twilio Console の"
    "通話・メッセージの履歴で、発信・送信されたかを確認してください。"
)
# What happened, after UNKNOWN_TEXT, when there is no HTTP status to show.
UNKNOWN_TIMEOUT = "(応答待ちのタイムアウト)"
UNKNOWN_RESET = "(応答の前に接続が切断されました)"
UNKNOWN_WAITING = "(Twilio の応答を待つ間に処理が中断されました)"


class TwilioError(Exception):
    """A request Twilio refused or that never got a clear answer; str() is for the UI.

    `outcome` is one of OUTCOMES; `permanent`, `temporary` and `unknown` read it.
    `retry_cap` is the most retries a temporary error deserves (None: no cap of its own).
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool | None = None,
        outcome: str | None = None,
        code: int | None = None,
        status: int | None = None,
        retry_cap: int | None = None,
    ) -> None:
        super().__init__(message)
        if outcome is None:
            outcome = OUTCOME_PERMANENT if permanent else OUTCOME_TEMPORARY
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        self.outcome = outcome
        self.code = code
        self.status = status
        self.retry_cap = retry_cap if retry_cap is not None else MAX_RETRIES_BY_CODE.get(code or 0)

    @property
    def permanent(self) -> bool:
        """Tell whether retrying cannot help."""
        return self.outcome == OUTCOME_PERMANENT

    @property
    def temporary(self) -> bool:
        """Tell whether nothing was done, so the request may simply be sent again."""
        return self.outcome == OUTCOME_TEMPORARY

    @property
    def unknown(self) -> bool:
        """Tell whether a create may have been carried out: look it up before retrying."""
        return self.outcome == OUTCOME_UNKNOWN


    @property
    def retry_label(self) -> str:
        """What to do about it, as the ログ screen says it."""
        if self.temporary and self.retry_cap is not None:
            return f"{RETRY_LABELS[OUTCOME_TEMPORARY]}(最大 {self.retry_cap} 回)"
        return RETRY_LABELS[self.outcome]


RETRY_LABELS = {
    OUTCOME_PERMANENT: "再試行しても成功しない",
    OUTCOME_TEMPORARY: "時間をおいて再試行",
    OUTCOME_UNKNOWN: "発信・送信されたか確認してから再試行",
}

# The SDK prefixes Twilio's message with what it was doing ("Unable to create record: ").
_SDK_PREFIX = re.compile(r"^Unable to \w+ record: ")


def explain(status: int | None, code: int | None, twilio_message: str = "", *, create: bool = False) -> TwilioError:
    """Classify a Twilio error answer and explain it in Japanese.

    `create` says the request created a call or a message: a 5xx then leaves its outcome unknown.
    """
    server_error = status is not None and status >= 500
    if create and server_error and code not in PERMANENT_CODES:
        text = UNKNOWN_TEXT
    elif code in EXPLANATIONS:
        text = EXPLANATIONS[code]
    elif status == 429:
        text = EXPLANATIONS[20429]
    elif server_error:
        text = SERVER_ERROR_TEXT
    elif status == 401:
        text = EXPLANATIONS[20003]
    else:
        text = "Twilio がリクエストを受け付けませんでした。"
    if code:
        text += f"(Twilio エラー {code}"
        # Twilio's own (English) words only where there is no Japanese explanation of the code.
        detail = _SDK_PREFIX.sub("", twilio_message) if code not in EXPLANATIONS else ""
        text += f": {detail})" if detail else ")"
    elif server_error and create:
        text += f"(HTTP {status})"
    if code in PERMANENT_CODES:
        outcome = OUTCOME_PERMANENT
    elif status == 429 or code == 20429 or code in MAX_RETRIES_BY_CODE:
        outcome = OUTCOME_TEMPORARY
    elif server_error:
        outcome = OUTCOME_UNKNOWN if create else OUTCOME_TEMPORARY
    elif status is not None and 400 <= status < 500:
        outcome = OUTCOME_PERMANENT
    else:
        outcome = OUTCOME_TEMPORARY
    return TwilioError(text, outcome=outcome, code=code, status=status)


def never_sent(exc: requests.RequestException) -> bool:
    """Tell whether a requests failure happened before the request left this machine.

    requests raises ConnectTimeout when the TCP connection never opened, and ConnectionError
    wrapping urllib3's MaxRetryError(NewConnectionError) when it was refused or the name did
    not resolve. A connection reset after sending arrives as ConnectionError wrapping
    ProtocolError('Connection aborted.'), a read timeout as ReadTimeout, a broken body as
    ChunkedEncodingError: those may have reached Twilio.
    """
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return True
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            reason = reason.reason
        return isinstance(reason, (NewConnectionError, ConnectTimeoutError))
    return False


# RequestLog.error_message of failures without an HTTP answer (read back by explain_logged()).
LOGGED_TIMEOUT = "timeout"
LOGGED_NOT_SENT = "connection error"
LOGGED_LOST = "connection error after sending"
# A create logged before it was sent whose answer was never recorded (the process ended).
LOGGED_WAITING = "no answer recorded"


def network_error(exc: requests.RequestException, *, create: bool) -> tuple[TwilioError, str]:
    """Classify a failure without an HTTP answer; return the error and the log's error_message."""
    if never_sent(exc):
        logged = f"{LOGGED_NOT_SENT}: {type(exc).__name__}"
    elif isinstance(exc, requests.Timeout):
        logged = LOGGED_TIMEOUT
    else:
        logged = f"{LOGGED_LOST}: {type(exc).__name__}"
    error = explain_logged(None, None, logged, create=create)
    return error or TwilioError(CONNECTION_TEXT, outcome=OUTCOME_TEMPORARY), logged


def explain_logged(status: int | None, code: int | None, error_message: str, *, create: bool) -> TwilioError | None:
    """Explain a failed request again from its log row; None when the row says nothing Twilio did."""
    if status is not None:
        return explain(status, code, create=create)
    if error_message == LOGGED_TIMEOUT:
        if create:
            return TwilioError(UNKNOWN_TEXT + UNKNOWN_TIMEOUT, outcome=OUTCOME_UNKNOWN)
        return TwilioError(TIMEOUT_TEXT, outcome=OUTCOME_TEMPORARY)
    if error_message.startswith(LOGGED_LOST):
        if create:
            return TwilioError(UNKNOWN_TEXT + UNKNOWN_RESET, outcome=OUTCOME_UNKNOWN)
        return TwilioError(CONNECTION_TEXT, outcome=OUTCOME_TEMPORARY)
    if error_message == LOGGED_WAITING:
        return TwilioError(UNKNOWN_TEXT + UNKNOWN_WAITING, outcome=OUTCOME_UNKNOWN)
    if error_message.startswith(LOGGED_NOT_SENT):
        return TwilioError(CONNECTION_TEXT, outcome=OUTCOME_TEMPORARY)
    return None

"""The only module that talks to Twilio's REST API, and the one that writes the R13 log.

Every request goes through `_perform()`: it picks the backend (the real SDK client, or the
built-in simulator in simulate mode), times the request, classifies errors as permanent or
temporary with a Japanese explanation, and writes one RequestLog row that holds no secret.
Log rows are committed in their own session, so a caller's rollback never loses them; a
caller must therefore not hold an open write transaction on SQLite while calling here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import requests
from flask import current_app
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from . import secretbox
from .extensions import db
from .models import (
    LOG_CALL,
    LOG_FETCH_CALL,
    LOG_NUMBERS,
    LOG_SMS,
    LOG_TEST_CALL,
    LOG_TEST_SMS,
    RequestLog,
    TwilioAccount,
)

T = TypeVar("T")

# Errors that will fail again however often they are retried (B7).
PERMANENT_CODES = {21211, 21214, 21217, 21219, 21608, 21614, 13224, 20003}

EXPLANATIONS: dict[int, str] = {
    20003: "Twilio の認証に失敗しました。ACCOUNT SID と AUTH TOKEN を確認してください。",
    20404: "指定したリソースが Twilio に見つかりません。",
    20429: "Twilio へのリクエストが多すぎます。しばらく待ってから再度お試しください。",
    13224: "宛先の電話番号が正しくありません。国番号から始まる番号か確認してください。",
    21211: "宛先の電話番号が正しくありません。国番号から始まる番号か確認してください。",
    21212: "発信元(From)の電話番号が正しくありません。Twilio アカウントが所有する番号を選択してください。",
    21214: "宛先の電話番号に発信できません(到達できない番号です)。",
    21217: "宛先の電話番号が有効ではありません。",
    21219: "トライアルアカウントでは、Twilio で認証済みの電話番号にしか発信できません。",
    21606: "発信元(From)の電話番号は SMS の送信に使用できません。",
    21608: "トライアルアカウントでは、Twilio で認証済みの電話番号にしか SMS を送信できません。",
    21610: "宛先の電話番号は SMS の受信を停止しています(STOP)。",
    21614: "宛先の電話番号は SMS を受信できません(固定電話などの番号です)。",
}

# Failures without a Twilio error code; also listed in the ログ screen's help.
SERVER_ERROR_TEXT = "Twilio 側で一時的なエラーが発生しました。しばらく待ってから再度お試しください。"
TIMEOUT_TEXT = "Twilio から応答がありませんでした(タイムアウト)。しばらく待ってから再度お試しください。"
CONNECTION_TEXT = "Twilio に接続できませんでした。ネットワークの設定を確認してください。"


class TwilioError(Exception):
    """A request Twilio refused or that never got an answer; str() is for the UI."""

    def __init__(self, message: str, *, permanent: bool, code: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.status = status


# The SDK prefixes Twilio's message with what it was doing ("Unable to create record: ").
_SDK_PREFIX = re.compile(r"^Unable to \w+ record: ")


def explain(status: int | None, code: int | None, twilio_message: str = "") -> TwilioError:
    """Classify a Twilio error answer and explain it in Japanese."""
    if code in EXPLANATIONS:
        text = EXPLANATIONS[code]
    elif status == 429:
        text = EXPLANATIONS[20429]
    elif status is not None and status >= 500:
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
    temporary = status == 429 or code == 20429 or (status is not None and status >= 500)
    permanent = code in PERMANENT_CODES or (not temporary and status is not None and 400 <= status < 500)
    return TwilioError(text, permanent=permanent, code=code, status=status)


@dataclass(frozen=True)
class LogContext:
    """What a request is for, as the log shows it."""

    kind: str
    setting_type: str = ""
    setting_id: int | None = None
    setting_name: str = ""


@dataclass(frozen=True)
class OwnedNumber:
    """A phone number the account owns, with what it can do."""

    phone_number: str
    friendly_name: str
    voice: bool
    sms: bool


@dataclass(frozen=True)
class CallState:
    """What Twilio knows of a call."""

    sid: str
    status: str
    duration: int | None = None
    answered_by: str | None = None


class Backend(Protocol):
    """Twilio as the rest of this module sees it: the SDK, or the simulator."""

    simulated: bool

    def create_call(self, to: str, from_: str, url: str, timeout: int) -> str: ...
    def create_message(self, to: str, from_: str, body: str) -> str: ...
    def list_numbers(self) -> list[OwnedNumber]: ...
    def fetch_call(self, sid: str) -> CallState: ...


class LiveBackend:
    """The official SDK, its base URL taken from TWILIO_API_BASE."""

    simulated = False

    def __init__(self, account: TwilioAccount) -> None:
        cfg = current_app.config
        http_client = TwilioHttpClient(timeout=cfg["TWILIO_READ_TIMEOUT"])
        # requests takes (connect, read); the SDK's constructor only checks a single number.
        http_client.timeout = (cfg["TWILIO_CONNECT_TIMEOUT"], cfg["TWILIO_READ_TIMEOUT"])
        self.client = Client(account.account_sid, secretbox.decrypt(account.auth_token_encrypted), http_client=http_client)
        # Only the base URL: setting edge/region would rewrite the host.
        self.client.api.base_url = cfg["TWILIO_API_BASE"].rstrip("/")

    def create_call(self, to: str, from_: str, url: str, timeout: int) -> str:
        return str(self.client.calls.create(to=to, from_=from_, url=url, timeout=timeout).sid)

    def create_message(self, to: str, from_: str, body: str) -> str:
        return str(self.client.messages.create(to=to, from_=from_, body=body).sid)

    def list_numbers(self) -> list[OwnedNumber]:
        numbers = []
        for item in self.client.incoming_phone_numbers.stream(page_size=100, limit=1000):
            caps = item.capabilities or {}
            numbers.append(
                OwnedNumber(
                    phone_number=item.phone_number,
                    friendly_name=item.friendly_name or "",
                    voice=bool(caps.get("voice")),
                    sms=bool(caps.get("sms")),
                )
            )
        return numbers

    def fetch_call(self, sid: str) -> CallState:
        call = self.client.calls(sid).fetch()
        duration = int(call.duration) if call.duration not in (None, "") else None
        return CallState(sid=sid, status=str(call.status), duration=duration, answered_by=call.answered_by)


def _backend(account: TwilioAccount) -> Backend:
    if current_app.config["TWILIO_MODE"] == "simulate":
        from .simulator import Simulator

        return Simulator(account)
    return LiveBackend(account)


def _write_log(row: RequestLog) -> None:
    # Own session and commit: the caller may roll back, the log must stay.
    with Session(db.engine) as session:
        session.add(row)
        session.commit()


def _perform(
    account: TwilioAccount,
    context: LogContext,
    summary: dict[str, Any],
    action: Callable[[Backend], T],
    *,
    destination: str = "",
    from_number: str = "",
    success_status: int = 200,
    sid_of: Callable[[T], str] = lambda _result: "",
) -> T:
    """Run one request against Twilio, log it, and turn every failure into TwilioError."""
    row = RequestLog(
        kind=context.kind,
        account_id=account.id,
        account_name=account.name,
        setting_type=context.setting_type,
        setting_id=context.setting_id,
        setting_name=context.setting_name,
        destination=destination,
        from_number=from_number,
        request_summary=json.dumps(summary, ensure_ascii=False),
    )
    started = time.monotonic()
    error: TwilioError | None = None
    result: Any = None
    backend: Backend | None = None
    try:
        backend = _backend(account)
        result = action(backend)
        row.http_status, row.success, row.sid = success_status, True, sid_of(result)
    except TwilioRestException as exc:
        error = explain(exc.status, exc.code, exc.msg if isinstance(exc.msg, str) else "")
        row.http_status, row.error_code, row.error_message = exc.status, exc.code, str(exc.msg)
    except TwilioException as exc:
        # Paging errors come as a bare TwilioException carrying the HTTP response.
        status, code, message = _from_response(exc)
        error = explain(status, code, message)
        row.http_status, row.error_code, row.error_message = status, code, message or str(exc)
    except requests.Timeout:
        error = TwilioError(TIMEOUT_TEXT, permanent=False)
        row.error_message = "timeout"
    except requests.RequestException as exc:
        error = TwilioError(CONNECTION_TEXT, permanent=False)
        row.error_message = f"connection error: {type(exc).__name__}"
    except TwilioError as exc:
        # The simulator answers errors the way Twilio would, already classified.
        error = exc
        row.http_status, row.error_code, row.error_message = exc.status, exc.code, str(exc)
    except secretbox.SecretError as exc:
        # The token cannot be decrypted: the instance's fernet.key changed.
        error = TwilioError("AUTH TOKEN を復号できません。fernet.key を確認してください。", permanent=True)
        row.error_message = str(exc)
    row.duration_ms = int((time.monotonic() - started) * 1000)
    row.simulated = bool(backend and backend.simulated)
    _write_log(row)
    if error is not None:
        raise error
    return result  # type: ignore[no-any-return]


def _from_response(exc: TwilioException) -> tuple[int | None, int | None, str]:
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    try:
        body = json.loads(getattr(response, "text", "") or "{}")
    except ValueError:
        body = {}
    return status, body.get("code"), str(body.get("message", ""))


def place_call(
    account: TwilioAccount, *, to: str, from_: str, url: str, timeout: int, context: LogContext | None = None
) -> str:
    """Create a call that fetches its TwiML from url; return the Call SID."""
    context = context or LogContext(LOG_CALL)
    return _perform(
        account,
        context,
        {"Url": url, "Timeout": timeout},
        lambda backend: backend.create_call(to, from_, url, timeout),
        destination=to,
        from_number=from_,
        success_status=201,
        sid_of=str,
    )


def send_sms(account: TwilioAccount, *, to: str, from_: str, body: str, context: LogContext | None = None) -> str:
    """Send one SMS; return the Message SID."""
    context = context or LogContext(LOG_SMS)
    return _perform(
        account,
        context,
        {"Body": body},
        lambda backend: backend.create_message(to, from_, body),
        destination=to,
        from_number=from_,
        success_status=201,
        sid_of=str,
    )


def list_numbers(account: TwilioAccount) -> list[OwnedNumber]:
    """Read the phone numbers the account owns (IncomingPhoneNumbers)."""
    return _perform(account, LogContext(LOG_NUMBERS), {}, lambda backend: backend.list_numbers())


def fetch_call(account: TwilioAccount, sid: str, context: LogContext | None = None) -> CallState:
    """Ask Twilio for a call's status."""
    return _perform(
        account,
        context or LogContext(LOG_FETCH_CALL),
        {"CallSid": sid},
        lambda backend: backend.fetch_call(sid),
        sid_of=lambda state: state.sid,
    )


__all__ = [
    "LOG_TEST_CALL",
    "LOG_TEST_SMS",
    "CallState",
    "LogContext",
    "OwnedNumber",
    "TwilioError",
    "explain",
    "fetch_call",
    "list_numbers",
    "place_call",
    "send_sms",
]

"""The only module that talks to Twilio's REST API, and the one that writes the R13 log.

Every request goes through `_perform()`: it picks the backend (the real SDK client, or the
built-in simulator in simulate mode), times the request, classifies errors as permanent,
temporary or unknown with a Japanese explanation (twilio_errors.py), and writes one
RequestLog row that holds no secret. Texts are kept within Twilio's limits (twilio_limits.py):
an SMS body is cut here, a call's Url is refused here if the caller did not fit it.
Log rows are committed in their own session, so a caller's rollback never loses them; a
caller must therefore not hold an open write transaction on SQLite while calling here.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
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
    LOG_HANGUP,
    LOG_FETCH_MESSAGE,
    LOG_FIND_CALLS,
    LOG_FIND_MESSAGES,
    LOG_NUMBERS,
    LOG_SMS,
    LOG_TEST_CALL,
    LOG_TEST_SMS,
    RequestLog,
    TwilioAccount,
)
from .twilio_errors import (
    CONNECTION_TEXT,
    EXPLANATIONS,
    LOGGED_WAITING,
    MAX_RETRIES_BY_CODE,
    PERMANENT_CODES,
    SERVER_ERROR_TEXT,
    TIMEOUT_TEXT,
    UNKNOWN_TEXT,
    TwilioError,
    explain,
    network_error,
)
from .public_url import redact
from .twilio_limits import MAX_URL, fit_sms_body

T = TypeVar("T")

# Requests that create a call or a message: not idempotent, so a lost answer leaves them unknown.
CREATE_KINDS = frozenset({LOG_CALL, LOG_SMS, LOG_TEST_CALL, LOG_TEST_SMS})
# Key of request_summary saying the text was cut to fit (its length before), shown by the ログ screen.
SHORTENED_FROM = "shortened_from"
# An account imported without its AUTH TOKEN (xmonbridge import) until someone enters it.
NO_AUTH_TOKEN = "AUTH TOKEN が設定されていません。Twilio アカウント情報の編集で AUTH TOKEN を入力してください。"


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
class Placed:
    """A call or a message found on Twilio; `at` is when Twilio created it (naive UTC)."""

    sid: str
    status: str
    to: str
    from_: str
    at: datetime | None


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

    def create_call(
        self,
        to: str,
        from_: str,
        url: str,
        timeout: int,
        status_callback: str | None = None,
        machine_detection_callback: str | None = None,
    ) -> str: ...
    def hang_up(self, sid: str) -> CallState: ...
    def create_message(self, to: str, from_: str, body: str, status_callback: str | None = None) -> str: ...
    def list_numbers(self) -> list[OwnedNumber]: ...
    def fetch_call(self, sid: str) -> CallState: ...
    def fetch_message(self, sid: str) -> CallState: ...
    def find_calls(self, to: str, from_: str, after: datetime) -> list[Placed]: ...
    def find_messages(self, to: str, from_: str, after: datetime) -> list[Placed]: ...


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

    def create_call(
        self,
        to: str,
        from_: str,
        url: str,
        timeout: int,
        status_callback: str | None = None,
        machine_detection_callback: str | None = None,
    ) -> str:
        extra: dict[str, Any] = {}
        if status_callback:
            # Only the final status: one callback per call, when it has ended.
            extra = {"status_callback": status_callback, "status_callback_method": "POST"}
        if machine_detection_callback:
            # Asynchronous: the call goes on at once; the result arrives at the callback
            # (synchronous detection would hold the TwiML request for up to 30 s).
            extra.update(
                machine_detection="Enable",
                async_amd="true",
                async_amd_status_callback=machine_detection_callback,
                async_amd_status_callback_method="POST",
            )
        return str(self.client.calls.create(to=to, from_=from_, url=url, timeout=timeout, **extra).sid)

    def hang_up(self, sid: str) -> CallState:
        call = self.client.calls(sid).update(status="completed")
        return CallState(sid=sid, status=str(call.status))

    def create_message(self, to: str, from_: str, body: str, status_callback: str | None = None) -> str:
        extra: dict[str, Any] = {"status_callback": status_callback} if status_callback else {}
        if is_messaging_service(from_):
            extra["messaging_service_sid"] = from_
        else:
            extra["from_"] = from_
        return str(self.client.messages.create(to=to, body=body, **extra).sid)

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

    def fetch_message(self, sid: str) -> CallState:
        message = self.client.messages(sid).fetch()
        return CallState(sid=sid, status=str(message.status))

    def find_calls(self, to: str, from_: str, after: datetime) -> list[Placed]:
        # Not filtered by StartTime: a call Twilio still queues (over the account's CPS) has
        # none yet, and is exactly what a look-up must not miss. Newest first, by creation.
        calls = self.client.calls.list(to=to, from_=from_, limit=FIND_LIMIT)
        # SDK quirk: CallInstance keeps "from" as `_from`.
        return _created_since(
            (Placed(c.sid, str(c.status), c.to, c._from, _naive_utc(c.date_created)) for c in calls), after
        )

    def find_messages(self, to: str, from_: str, after: datetime) -> list[Placed]:
        # Not filtered by DateSent: a message still queued has none yet. Twilio picks the sender
        # of a Messaging Service, so then only the recipient is known.
        if is_messaging_service(from_):
            messages = self.client.messages.list(to=to, limit=FIND_LIMIT)
        else:
            messages = self.client.messages.list(to=to, from_=from_, limit=FIND_LIMIT)
        return _created_since(
            (Placed(m.sid, str(m.status), m.to, m.from_, _naive_utc(m.date_created)) for m in messages), after
        )


MESSAGING_SERVICE = re.compile(r"MG[0-9a-f]{32}")


def is_messaging_service(sender: str) -> bool:
    """Tell whether an SMS sender is a Messaging Service SID (Twilio picks the number)."""
    return bool(MESSAGING_SERVICE.fullmatch(sender))


# The most calls or messages a look-up reads (one page): a few are expected at most.
FIND_LIMIT = 50


def _created_since(found: Iterable[Placed], after: datetime) -> list[Placed]:
    """What was created at or after `after` (naive UTC), in Twilio's order (newest first)."""
    return [placed for placed in found if placed.at is None or placed.at >= after]


def _naive_utc(moment: datetime | None) -> datetime | None:
    """A datetime from the SDK (aware) as the naive UTC the app stores."""
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _backend(account: TwilioAccount) -> Backend:
    if current_app.config["TWILIO_MODE"] == "simulate":
        from .simulator import Simulator

        return Simulator(account)
    return LiveBackend(account)


def _write_log(row: RequestLog) -> None:
    """Insert the row, or update it once it has an id; in its own session and commit, so a
    caller's rollback never loses it."""
    with Session(db.engine, expire_on_commit=False) as session:
        saved = session.merge(row)
        session.commit()
        row.id = saved.id


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
    create: bool = False,
) -> T:
    """Run one request against Twilio, log it, and turn every failure into TwilioError.

    `create` marks a request that creates a call or a message (see twilio_errors).
    """
    row = RequestLog(
        kind=context.kind,
        account_id=account.id,
        account_name=account.name,
        setting_type=context.setting_type,
        setting_id=context.setting_id,
        setting_name=context.setting_name,
        destination=destination,
        from_number=from_number,
        # The webhook URLs' tokens stay out of ログ, as out of the access log.
        request_summary=redact(json.dumps(summary, ensure_ascii=False)),
    )
    if create:
        # Logged before it is sent: if this process dies while Twilio works on it, the row
        # stays and says the outcome is unknown, instead of the call leaving no trace.
        row.error_message = LOGGED_WAITING
        _write_log(row)
        row.error_message = ""
    started = time.monotonic()
    error: TwilioError | None = None
    result: Any = None
    backend: Backend | None = None
    try:
        backend = _backend(account)
        result = action(backend)
        row.http_status, row.success, row.sid = success_status, True, sid_of(result)
    except TwilioRestException as exc:
        error = explain(exc.status, exc.code, exc.msg if isinstance(exc.msg, str) else "", create=create)
        row.http_status, row.error_code, row.error_message = exc.status, exc.code, str(exc.msg)
    except TwilioException as exc:
        # Paging errors come as a bare TwilioException carrying the HTTP response.
        status, code, message = _from_response(exc)
        error = explain(status, code, message, create=create)
        row.http_status, row.error_code, row.error_message = status, code, message or str(exc)
    except requests.RequestException as exc:
        # Refused before sending: temporary; timed out or cut off after sending: unknown for a create.
        error, row.error_message = network_error(exc, create=create)
    except TwilioError as exc:
        # The simulator answers errors the way Twilio would, already classified.
        error = exc
        row.http_status, row.error_code, row.error_message = exc.status, exc.code, str(exc)
    except secretbox.SecretError as exc:
        # The token cannot be decrypted: the instance's fernet.key changed, or the account was
        # imported without its AUTH TOKEN (config_import.py) and nobody has entered it yet.
        if account.auth_token_encrypted:
            error = TwilioError("AUTH TOKEN を復号できません。fernet.key を確認してください。", permanent=True)
        else:
            error = TwilioError(NO_AUTH_TOKEN, permanent=True)
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
    account: TwilioAccount,
    *,
    to: str,
    from_: str,
    url: str,
    timeout: int,
    context: LogContext | None = None,
    shortened_from: int | None = None,
    status_callback: str | None = None,
    machine_detection_callback: str | None = None,
) -> str:
    """Create a call that fetches its TwiML from url; return the Call SID.

    A Url over MAX_URL characters is refused without sending (simple_call.fit_bin_call fits
    one); `shortened_from` is the length of the spoken text before it was cut, for the log.
    """
    context = context or LogContext(LOG_CALL)
    summary: dict[str, Any] = {"Url": url, "Timeout": timeout}
    if shortened_from is not None:
        summary[SHORTENED_FROM] = shortened_from
    if machine_detection_callback:
        summary["MachineDetection"] = "Enable"

    def create(backend: Backend) -> str:
        if len(url) > MAX_URL:
            raise TwilioError(
                f"呼び出し URL が長すぎるため発信しませんでした({len(url):,} 文字、上限 {MAX_URL:,} 文字)。",
                permanent=True,
            )
        return backend.create_call(to, from_, url, timeout, status_callback, machine_detection_callback)

    return _perform(
        account, context, summary, create, destination=to, from_number=from_, success_status=201, sid_of=str, create=True
    )


def send_sms(
    account: TwilioAccount,
    *,
    to: str,
    from_: str,
    body: str,
    context: LogContext | None = None,
    status_callback: str | None = None,
) -> str:
    """Send one SMS, cut to Twilio's 1,600 characters (ending 以下省略); return the Message SID.

    from_ is a number, an alphanumeric sender ID, or a Messaging Service SID (MG…).
    """
    context = context or LogContext(LOG_SMS)
    fitted = fit_sms_body(body)
    summary: dict[str, Any] = {"Body": fitted.text}
    if fitted.shortened:
        summary[SHORTENED_FROM] = fitted.original_length
    return _perform(
        account,
        context,
        summary,
        lambda backend: backend.create_message(to, from_, fitted.text, status_callback),
        destination=to,
        from_number=from_,
        success_status=201,
        sid_of=str,
        create=True,
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


def hang_up(account: TwilioAccount, sid: str, context: LogContext | None = None) -> CallState:
    """End a call in progress (a button call answered by a machine, B1)."""
    return _perform(
        account,
        context or LogContext(LOG_HANGUP),
        {"CallSid": sid, "Status": "completed"},
        lambda backend: backend.hang_up(sid),
        sid_of=lambda state: state.sid,
    )


def fetch_message(account: TwilioAccount, sid: str, context: LogContext | None = None) -> CallState:
    """Ask Twilio for a message's status (delivered, undelivered, failed …)."""
    return _perform(
        account,
        context or LogContext(LOG_FETCH_MESSAGE),
        {"MessageSid": sid},
        lambda backend: backend.fetch_message(sid),
        sid_of=lambda state: state.sid,
    )


def find_calls(
    account: TwilioAccount, *, to: str, from_: str, started_after: datetime, context: LogContext | None = None
) -> list[Placed]:
    """Look for calls from from_ to `to` created at or after started_after (naive UTC).

    For an unknown outcome: ask before placing the call again. The newest FIND_LIMIT calls
    between the two numbers are read, queued ones included, and filtered by creation time.
    """
    return _perform(
        account,
        context or LogContext(LOG_FIND_CALLS),
        {"To": to, "From": from_, "DateCreated>=": _iso(started_after)},
        lambda backend: backend.find_calls(to, from_, started_after),
        destination=to,
        from_number=from_,
        sid_of=_first_sid,
    )


def find_messages(
    account: TwilioAccount, *, to: str, from_: str, sent_after: datetime, context: LogContext | None = None
) -> list[Placed]:
    """Look for messages from from_ to `to` created at or after sent_after (naive UTC).

    The newest FIND_LIMIT messages are read, queued ones included, and filtered by creation time.
    """
    return _perform(
        account,
        context or LogContext(LOG_FIND_MESSAGES),
        {"To": to, "From": from_, "DateCreated>=": _iso(sent_after)},
        lambda backend: backend.find_messages(to, from_, sent_after),
        destination=to,
        from_number=from_,
        sid_of=_first_sid,
    )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _first_sid(found: list[Placed]) -> str:
    """The SID a look-up's log row shows: the most recent one found."""
    return found[0].sid if found else ""


__all__ = [
    "CONNECTION_TEXT",
    "CREATE_KINDS",
    "EXPLANATIONS",
    "LOG_TEST_CALL",
    "LOG_TEST_SMS",
    "MAX_RETRIES_BY_CODE",
    "PERMANENT_CODES",
    "SERVER_ERROR_TEXT",
    "TIMEOUT_TEXT",
    "UNKNOWN_TEXT",
    "CallState",
    "LogContext",
    "OwnedNumber",
    "Placed",
    "TwilioError",
    "explain",
    "fetch_call",
    "fetch_message",
    "is_messaging_service",
    "find_calls",
    "find_messages",
    "list_numbers",
    "place_call",
    "send_sms",
]

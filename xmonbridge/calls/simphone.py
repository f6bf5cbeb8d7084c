"""The phone simulator (B4): what Twilio and the callee's phone do with a simulated call or SMS.

In simulate mode simulator.py records each call and SMS in simulated_messages instead of
sending it. The 電話シミュレータ page shows a phone per user with a number, and this module
works those rows the way Twilio would when a phone is answered, keys are pressed or the call
is hung up:

* 応答 fetches the call's TwiML from its Url: a button call's voice webhook, or a simple
  call's TwiML Bin, played here as the bin the account screen's (?) describes;
* keys ending with # go to the <Gather> action; nothing within its timeout posts an empty
  result (actionOnEmptyResult), as Twilio does;
* the end of a call posts its final status (completed, busy, no-answer) to the attempt's
  status callback, and an SMS on a phone posts `delivered` — final statuses only, as the
  dispatcher asks Twilio for (telephony.LiveBackend);
* every request is signed like Twilio's (RequestValidator, the account's AUTH TOKEN, over the
  public URL it goes to) and handed to this app's own WSGI stack under that URL's host and
  prefix: the X-MON URL need not be reachable from this machine, and the real signature
  check and state machine (calls/flow.py) run.

State is kept on the simulated row: `status` is Twilio's call status (queued while it rings,
in-progress, completed, busy, no-answer; an SMS queued → delivered) and a call's `body` holds
the phone's side as JSON: what was said, the keys, and the <Gather> waiting for keys. Every
change is a compare-and-set UPDATE, so two open pages never both answer or end one call.
Time (ring timeout, <Gather> timeout) is settled by `settle()`, which the page's polling
runs; with no page open, the dispatcher's look-up (Simulator.fetch_call) still ends a call
nobody answered.

No request code. Each step commits: Twilio's requests are transactions of their own, and the
webhook they reach must find the row committed (SQLite: no write lock held across one).
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import current_app
from sqlalchemy import and_, or_, select, update
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from .. import secretbox
from ..dispatch.outcomes import status_label
from ..extensions import db
from ..models import Attempt, SimulatedMessage, TwilioAccount, User, XmonSettings
from ..public_url import AMD_PATH, STATUS_CALLBACK_PATH, VOICE_PATH, WEBHOOK_PATHS, status_callback_url
from ..twiml import say

log = logging.getLogger(__name__)

CALL = "call"
SMS = "sms"
# Twilio's statuses of a call on a phone, as the simulated row keeps them (queued: ringing).
QUEUED = "queued"
RINGING = QUEUED
TALKING = "in-progress"
ACTIVE = (RINGING, TALKING)
DELIVERED = "delivered"
# A phone's state, as its card shows it.
IDLE = "idle"
RING = "ringing"
TALK = "talking"
STATE_LABELS = {IDLE: "待機中", RING: "着信中", TALK: "通話中"}
# Kinds of line in a call's transcript.
SAID = "say"
KEYS = "keys"
INFO = "info"

APPLICATION_ERROR = "アプリケーションエラーが発生しました(Webhook の応答: HTTP {status})。Twilio はここで通話を終了します。"
ENDED = "通話が終了しました: {status}"
DECLINED = "着信を拒否しました。"
NO_ANSWER = "呼び出し時間({seconds} 秒)が過ぎました。"
NO_KEYS = "ボタン操作がないまま {seconds} 秒が過ぎました。"
KEYS_SENT = "押したボタン: {keys}"
# An ended call stays on its phone this long; the last SMS shown per phone.
SHOW_ENDED_FOR = timedelta(minutes=30)
MESSAGES_SHOWN = 5
# Recent SMS rows read for all phones at once.
MESSAGES_READ = 500
# Twilio's own <Gather> timeout when the TwiML names none.
DEFAULT_GATHER_TIMEOUT = 5
KEYPAD = frozenset("0123456789*")
MAX_KEYS = 16


@dataclass(frozen=True)
class Line:
    """One line of a call as the phone heard it: a <Say> (with its voice), keys, or a note."""

    kind: str
    text: str
    voice: str = ""


@dataclass
class CallView:
    """The call a phone shows: ringing, in progress, or just ended."""

    id: int
    sid: str
    from_number: str
    setting_name: str
    state: str
    status: str
    at: datetime
    lines: list[Line] = field(default_factory=list)
    waiting_for_keys: bool = False

    @property
    def ended(self) -> str:
        """How it ended (「応答なし(no-answer)」), "" while it goes on."""
        return "" if self.status in ACTIVE else status_label(self.status)


@dataclass(frozen=True)
class MessageView:
    """An SMS on a phone."""

    id: int
    at: datetime
    from_number: str
    body: str


@dataclass
class Phone:
    """A user's phone: their number, the call on it, their latest SMS."""

    user_id: int
    name: str
    number: str
    call: CallView | None = None
    messages: list[MessageView] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.call.state if self.call else IDLE


# --- the page's view ---


def idle_phones() -> list[Phone]:
    """Every user with a phone number, by id, with nothing on their phone yet."""
    users = db.session.scalars(select(User).where(User.phone.is_not(None), User.phone != "").order_by(User.id))
    return [Phone(user.id, user.display_name, user.phone or "") for user in users]


def phones(now: datetime) -> list[Phone]:
    """Every user's phone with its call and SMS, after settling what time has ended."""
    found: dict[str, Phone] = {}
    for phone in idle_phones():
        found.setdefault(phone.number, phone)  # two users sharing a number share one phone
    if not found:
        return []
    settle(now, list(found))
    db.session.expire_all()
    calls = db.session.scalars(
        select(SimulatedMessage)
        .where(
            SimulatedMessage.channel == CALL,
            SimulatedMessage.to_number.in_(list(found)),
            or_(SimulatedMessage.status.in_(ACTIVE), SimulatedMessage.created_at >= now - SHOW_ENDED_FOR),
        )
        .order_by(SimulatedMessage.id)
    ).all()
    for phone in found.values():
        mine = [row for row in calls if row.to_number == phone.number]
        # The call in progress, else the one ringing longest, else the latest one that ended.
        shown = next((r for r in mine if r.status == TALKING), None) or next((r for r in mine if r.status == RINGING), None)
        if shown is None and mine:
            shown = mine[-1]
        if shown is not None:
            phone.call = _view(shown)
    texts = db.session.scalars(
        select(SimulatedMessage)
        .where(SimulatedMessage.channel == SMS, SimulatedMessage.to_number.in_(list(found)))
        .order_by(SimulatedMessage.id.desc())
        .limit(MESSAGES_READ)
    ).all()
    for row in texts:
        phone = found[row.to_number]
        if len(phone.messages) < MESSAGES_SHOWN:
            phone.messages.append(MessageView(row.id, row.created_at, row.from_number, row.body))
    return list(found.values())


def _view(row: SimulatedMessage) -> CallView:
    state = _state(row)
    attempt = _attempt_by_sid(row.sid)
    setting = attempt.delivery.notification.setting_name if attempt is not None else ""
    return CallView(
        id=row.id,
        sid=row.sid,
        from_number=row.from_number,
        setting_name=setting,
        state={RINGING: RING, TALKING: TALK}.get(row.status, IDLE),
        status=row.status,
        at=row.created_at,
        lines=[Line(**line) for line in state.get("lines", [])],
        waiting_for_keys=row.status == TALKING and bool(state.get("action")),
    )


# --- what the phone does ---


def answer(call_id: int, now: datetime) -> bool:
    """Pick up a ringing phone: Twilio fetches the call's TwiML and the phone says it."""
    row = _call(call_id)
    if row is None or row.status != RINGING or _rang_out(row, now):
        return False
    state = {"answered_at": now.isoformat(), "lines": []}
    if not _swap(row, RINGING, TALKING, state):
        return False
    if _is_ours(row.url):
        params = _call_params(row, CallStatus=TALKING)
        code, twiml = _post(row.account_sid, row.url, params)
        amd = _amd_url(row)
        if amd:
            # Asynchronous AMD reports after the call was picked up: a person (human).
            _post(row.account_sid, amd, _call_params(row, AnsweredBy="human", MachineDetectionDuration="1200"))
    else:
        code, twiml = 200, _bin_twiml(row.url)
    _play(call_id, code, twiml, now)
    return True


def press(call_id: int, keys: str | None, now: datetime) -> bool:
    """Send keys ending with # (keys without the #) to the <Gather>; None: its timeout passed."""
    row = _call(call_id)
    if row is None or row.status != TALKING:
        return False
    state = _state(row)
    action = str(state.get("action") or "")
    if not action:
        return False
    until = state.get("gather_until")
    if keys is not None and until and datetime.fromisoformat(str(until)) <= now:
        press(call_id, None, now)  # too late: the <Gather> has given up waiting
        return False
    if keys is not None:
        keys = "".join(char for char in keys if char in KEYPAD)[:MAX_KEYS]
    if keys is None:
        seconds = int(state.get("gather_timeout") or DEFAULT_GATHER_TIMEOUT)
        state["lines"].append({"kind": INFO, "text": NO_KEYS.format(seconds=seconds)})
    else:
        state["lines"].append({"kind": KEYS, "text": KEYS_SENT.format(keys=f"{keys}#")})
    state["action"] = ""
    state["gather_until"] = ""
    if not _swap(row, TALKING, TALKING, state):
        return False
    params = _call_params(row, CallStatus=TALKING)
    if keys is not None:
        params.update(Digits=keys, FinishedOnKey="#")
    code, twiml = _post(row.account_sid, action, params)
    _play(call_id, code, twiml, now)
    return True


def hang_up(call_id: int, now: datetime) -> bool:
    """切断: decline a ringing phone (busy) or end the call in progress (completed)."""
    row = _call(call_id)
    if row is None or row.status not in ACTIVE:
        return False
    if row.status == RINGING:
        if _rang_out(row, now):
            return False
        return _end(row, "busy", now, DECLINED)
    return _end(row, "completed", now)


def settle_all(now: datetime) -> None:
    """Settle every phone, page open or not (the dispatcher's runner, in simulate mode).

    A ring nobody answers ends after its ring time and an SMS is delivered, as with Twilio,
    whether or not an administrator is looking at 電話シミュレータ.
    """
    numbers = db.session.scalars(
        select(SimulatedMessage.to_number)
        .where(
            or_(
                and_(SimulatedMessage.channel == CALL, SimulatedMessage.status.in_(ACTIVE)),
                and_(SimulatedMessage.channel == SMS, SimulatedMessage.status == QUEUED),
            )
        )
        .distinct()
    ).all()
    if numbers:
        settle(now, list(numbers))


def settle(now: datetime, numbers: list[str]) -> None:
    """What time did on these phones: rings that ran out, <Gather>s that waited in vain, SMS delivered."""
    active = db.session.scalars(
        select(SimulatedMessage).where(
            SimulatedMessage.channel == CALL,
            SimulatedMessage.status.in_(ACTIVE),
            SimulatedMessage.to_number.in_(numbers),
        )
    ).all()
    due: list[tuple[int, str]] = []
    for row in active:
        if row.status == RINGING and _ring_over(row, now):
            due.append((row.id, "ring"))
        elif row.status == TALKING:
            until = _state(row).get("gather_until")
            if until and datetime.fromisoformat(str(until)) <= now:
                due.append((row.id, "keys"))
    queued_texts = db.session.scalars(
        select(SimulatedMessage.id).where(
            SimulatedMessage.channel == SMS,
            SimulatedMessage.status == QUEUED,
            SimulatedMessage.to_number.in_(numbers),
        )
    ).all()
    db.session.rollback()
    for call_id, what in due:
        row = _call(call_id)
        if row is None:
            continue
        if what == "ring":
            _rang_out(row, now)
        else:
            press(call_id, None, now)
    for message_id in queued_texts:
        _deliver(message_id)


# --- steps ---


def _rang_out(row: SimulatedMessage, now: datetime) -> bool:
    """End a ringing call whose ring time has passed (no-answer); return whether it had."""
    if not _ring_over(row, now):
        return False
    _end(row, "no-answer", now, NO_ANSWER.format(seconds=row.timeout))
    return True


def _ring_over(row: SimulatedMessage, now: datetime) -> bool:
    return row.timeout is not None and now >= row.created_at + timedelta(seconds=row.timeout)


def _play(call_id: int, code: int, twiml: str, now: datetime) -> None:
    """The phone says what the TwiML holds, then waits for keys or the call ends."""
    db.session.expire_all()
    row = _call(call_id)
    if row is None or row.status != TALKING:
        return
    state = _state(row)
    heard = parse(code, twiml)
    state["lines"].extend(asdict(line) for line in heard.lines)
    if heard.action and not heard.hangup:
        state["action"] = heard.action
        state["gather_timeout"] = heard.timeout
        state["gather_until"] = (now + timedelta(seconds=heard.timeout)).isoformat()
        _swap(row, TALKING, TALKING, state)
        return
    # Twilio hangs up at <Hangup/>, at the end of the document, or after an application error.
    state["action"] = ""
    state["gather_until"] = ""
    if _swap(row, TALKING, TALKING, state):
        _end(row, "completed", now)


def _end(row: SimulatedMessage, status: str, now: datetime, note: str = "") -> bool:
    """Move a call from its current status to a final one, then post the status callback."""
    current = row.status
    old = _state(row)
    state = _state(row)
    if note:
        state["lines"].append({"kind": INFO, "text": note})
    state["lines"].append({"kind": INFO, "text": ENDED.format(status=status_label(status))})
    state["action"] = ""
    state["gather_until"] = ""
    if not _swap(row, current, status, state):
        return False
    duration = 0
    if status == "completed" and old.get("answered_at"):
        duration = max(0, int((now - datetime.fromisoformat(str(old["answered_at"]))).total_seconds()))
    callback = _status_url(row)
    if callback:
        _post(row.account_sid, callback, _call_params(row, CallStatus=status, CallDuration=str(duration)))
    return True


def _deliver(message_id: int) -> None:
    """An SMS reached its phone: `delivered`, reported to its status callback."""
    row = db.session.get(SimulatedMessage, message_id)
    if row is None or not _swap(row, QUEUED, DELIVERED, None):
        return
    callback = _status_url(row)
    if not callback:
        return
    params = {
        "AccountSid": row.account_sid,
        "MessageSid": row.sid,
        "SmsSid": row.sid,
        "From": row.from_number,
        "To": row.to_number,
        "MessageStatus": DELIVERED,
        "SmsStatus": DELIVERED,
        "ApiVersion": "2010-04-01",
    }
    _post(row.account_sid, callback, params)


def _swap(row: SimulatedMessage, status: str, new_status: str, state: dict[str, Any] | None) -> bool:
    """Compare-and-set a row's status (and a call's state, if the state is still the one read).

    Committed; False when the row changed meanwhile (another page, the timeout). The commit
    expires the row, so what is read of it next comes from the database.
    """
    where = [SimulatedMessage.id == row.id, SimulatedMessage.status == status]
    values: dict[str, Any] = {"status": new_status}
    if state is not None:
        where.append(SimulatedMessage.body == row.body)
        values["body"] = json.dumps(state, ensure_ascii=False)
    changed = db.session.execute(
        update(SimulatedMessage).where(*where).values(**values).execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return changed == 1


# --- Twilio's side ---


@dataclass
class Heard:
    """A TwiML document as the phone hears it."""

    lines: list[Line] = field(default_factory=list)
    action: str = ""
    timeout: int = DEFAULT_GATHER_TIMEOUT
    hangup: bool = False


def parse(code: int, twiml: str) -> Heard:
    """What Twilio makes of a webhook's answer: its <Say>s, its <Gather>, its <Hangup>."""
    heard = Heard()
    if code != 200:
        heard.lines.append(Line(INFO, APPLICATION_ERROR.format(status=code)))
        heard.hangup = True
        return heard
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        heard.lines.append(Line(INFO, APPLICATION_ERROR.format(status=code)))
        heard.hangup = True
        return heard
    for verb in root:
        if verb.tag == "Say":
            heard.lines.append(Line(SAID, verb.text or "", verb.get("voice", "")))
        elif verb.tag == "Gather":
            for spoken in verb.iter("Say"):
                heard.lines.append(Line(SAID, spoken.text or "", spoken.get("voice", "")))
            heard.action = verb.get("action", "")
            heard.timeout = int(verb.get("timeout") or DEFAULT_GATHER_TIMEOUT)
            # Twilio goes to the action once the <Gather> ends: the rest of the document is not played.
            break
        elif verb.tag == "Hangup":
            heard.hangup = True
            break
    return heard


def _bin_twiml(url: str) -> str:
    """A simple call's TwiML Bin: its `message` said with the X-MON 設定 voice (twiml.bin_snippet)."""
    message = parse_qs(urlsplit(url).query).get("message", [""])[0]
    return str(say(VoiceResponse(), message, XmonSettings.get().effective_voice).to_xml())


def _post(account_sid: str, url: str, params: dict[str, str]) -> tuple[int, str]:
    """POST as Twilio does: signed over the public url, into this app under that url's host and prefix."""
    signature = RequestValidator(_auth_token(account_sid)).compute_signature(url, params)
    parts = urlsplit(url)
    cut = max(parts.path.rfind(path) for path in WEBHOOK_PATHS)
    if cut < 0:
        log.warning("phone simulator: %s is not a webhook of this app", parts.path)
        return 404, ""
    path = parts.path[cut:] + (f"?{parts.query}" if parts.query else "")
    # End this session's transaction first: the webhook writes, and on SQLite a transaction
    # that read before that write could not write after it.
    db.session.rollback()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # A context of its own: the webhook gets its own database session and `g`, as a request
    # from Twilio would, not those of the page's request that pressed the button.
    with app.app_context():
        response = app.test_client().post(
            path,
            base_url=f"{parts.scheme}://{parts.netloc}{parts.path[:cut]}",
            data=params,
            headers={"X-Twilio-Signature": signature},
        )
    return response.status_code, response.get_data(as_text=True)


def _auth_token(account_sid: str) -> str:
    """The AUTH TOKEN Twilio signs this account's requests with ("" when it cannot be read)."""
    account = db.session.scalar(
        select(TwilioAccount).where(TwilioAccount.account_sid == account_sid).order_by(TwilioAccount.id).limit(1)
    )
    if account is None:
        return ""
    try:
        return secretbox.decrypt(account.auth_token_encrypted)
    except secretbox.SecretError:
        return ""


def _call_params(row: SimulatedMessage, **extra: str) -> dict[str, str]:
    params = {
        "AccountSid": row.account_sid,
        "CallSid": row.sid,
        "From": row.from_number,
        "To": row.to_number,
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
    }
    params.update(extra)
    return params


def _is_ours(url: str) -> bool:
    """Whether a call's Url is this app's voice webhook (a button call), not a TwiML Bin."""
    return VOICE_PATH in urlsplit(url).path


def _voice_token(url: str) -> tuple[str, str]:
    """(public root, attempt token) of a button call's voice URL."""
    path = urlsplit(url)._replace(query="", fragment="").geturl()
    cut = path.rfind(VOICE_PATH)
    return path[:cut], path[cut + len(VOICE_PATH) :]


def _status_url(row: SimulatedMessage) -> str | None:
    """The StatusCallback the dispatcher gave with this call or SMS (None: it gave none)."""
    if row.channel == CALL and _is_ours(row.url):
        # Built like the voice URL it came with: the same X-MON URL and token.
        root, token = _voice_token(row.url)
        return f"{root}{STATUS_CALLBACK_PATH}{token}"
    attempt = _attempt_by_sid(row.sid)
    if attempt is None:
        return None  # a test from a settings screen: no status callback
    return status_callback_url(XmonSettings.get().xmon_url, attempt.callback_token)


def _amd_url(row: SimulatedMessage) -> str | None:
    """The AsyncAmdStatusCallback of a button call placed with 留守番電話の検出."""
    root, token = _voice_token(row.url)
    attempt = db.session.scalar(select(Attempt).where(Attempt.callback_token == token))
    if attempt is None or not attempt.delivery.notification.machine_detection:
        return None
    return f"{root}{AMD_PATH}{token}"


def _attempt_by_sid(sid: str) -> Attempt | None:
    return db.session.scalar(select(Attempt).where(Attempt.sid == sid).limit(1))


def _call(call_id: int) -> SimulatedMessage | None:
    row = db.session.get(SimulatedMessage, call_id)
    return row if row is not None and row.channel == CALL else None


def _state(row: SimulatedMessage) -> dict[str, Any]:
    """A call's phone-side state (a fresh dict each time; `lines` always present)."""
    try:
        state = json.loads(row.body) if row.body else {}
    except ValueError:
        state = {}
    if not isinstance(state, dict):
        state = {}
    state["lines"] = list(state.get("lines") or [])
    return state

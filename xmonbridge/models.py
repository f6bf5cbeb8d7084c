"""Every table of xmonbridge, as SQLAlchemy 2 typed models."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, String, Text, delete, false as sa_false, func, select, text
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship
from werkzeug.security import generate_password_hash

from .extensions import db

# Pending change actions and states (approval.py).
ACTION_CREATE = "create"
ACTION_UPDATE = "update"
ACTION_DELETE = "delete"
ACTIONS = {ACTION_CREATE: "作成", ACTION_UPDATE: "編集", ACTION_DELETE: "削除"}
STATUS_PENDING = "pending"
STATUS_APPROVED = "approved"
STATUS_REJECTED = "rejected"
STATUSES = {STATUS_PENDING: "承認待ち", STATUS_APPROVED: "承認済み", STATUS_REJECTED: "却下"}

# The ja-JP voices of Twilio's text-to-speech table (R15); the first is the default.
# Google's ja-JP Standard-A and Neural2 voices are not in Twilio's table: a <Say> naming a
# voice Twilio does not offer fails, so a stored voice no longer listed here falls back
# to the default (XmonSettings.effective_voice).
VOICES = [
    ("Polly.Mizuki", "Polly.Mizuki(女性)"),
    ("Polly.Takumi", "Polly.Takumi(男性)"),
    ("Polly.Kazuha-Neural", "Polly.Kazuha-Neural(女性・ニューラル)"),
    ("Polly.Tomoko-Neural", "Polly.Tomoko-Neural(女性・ニューラル)"),
    ("Polly.Takumi-Neural", "Polly.Takumi-Neural(男性・ニューラル)"),
    ("Google.ja-JP-Standard-B", "Google.ja-JP-Standard-B(女性)"),
    ("Google.ja-JP-Standard-C", "Google.ja-JP-Standard-C(男性)"),
    ("Google.ja-JP-Standard-D", "Google.ja-JP-Standard-D(男性)"),
    ("Google.ja-JP-Wavenet-B", "Google.ja-JP-Wavenet-B(女性・WaveNet)"),
    ("Google.ja-JP-Wavenet-C", "Google.ja-JP-Wavenet-C(男性・WaveNet)"),
    ("Google.ja-JP-Wavenet-D", "Google.ja-JP-Wavenet-D(男性・WaveNet)"),
]
DEFAULT_VOICE = VOICES[0][0]
VOICE_LABELS = dict(VOICES)


# Ids are never reused (sqlite_autoincrement: SQLite would otherwise hand a deleted row's id
# to the next row): pending changes, alerts, notifications and logs keep these ids.
NEVER_REUSED = {"sqlite_autoincrement": True}


def utcnow() -> datetime:
    """Return the current UTC time as a naive datetime (how every column stores time)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class User(UserMixin, db.Model):
    """A person: an administrator, an approver, or only a notification target."""

    __tablename__ = "users"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str | None] = mapped_column(String(256))
    login_disabled: Mapped[bool] = mapped_column(default=False)
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    email: Mapped[str | None] = mapped_column(String(254))
    mobile_email: Mapped[str | None] = mapped_column(String(254))
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_approver: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def set_password(self, password: str, keep_session: str | None = None) -> None:
        """Store a salted hash of password and end the user's sessions but keep_session.

        keep_session is the token hash of the session that changed the password (see
        auth/sessions.py); it is kept only if it is one of this user's, so a user who changes
        their own password stays logged in there, and nowhere else.
        """
        self.password_hash = generate_password_hash(password)
        if self.id is not None:
            db.session.execute(
                delete(UserSession)
                .where(UserSession.user_id == self.id, UserSession.token_hash != (keep_session or ""))
                .execution_options(synchronize_session=False)
            )

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled users cannot hold a session.
        return not self.login_disabled

    @property
    def display_name(self) -> str:
        """Name shown in lists: the display name, else the login name."""
        return self.name or self.login


class LoginFailure(db.Model):
    """Failed login attempts per login name and client address, for slowing down guessing.

    Counting per pair means a stranger guessing `admin` locks only their own address out,
    not the administrator at their desk.
    """

    __tablename__ = "login_failures"

    login: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The client address as seen through the configured reverse-proxy hops.
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    first_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column()


class UserSession(db.Model):
    """One logged-in browser session; logout deletes it, a password change deletes the others."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Used by the user loader on every request; SHA-256 of the token kept in the cookie.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Used when a password change ends a user's other sessions.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class PhoneChange(db.Model):
    """Audit list of changes to a user's 連絡先電話番号: who, when, old → new (masked)."""

    __tablename__ = "phone_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Used by the audit list, newest first.
    changed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Logins are copied so the list still reads after a user is deleted.
    user_login: Mapped[str] = mapped_column(String(64), default="")
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    changed_by_login: Mapped[str] = mapped_column(String(64), default="")
    old_masked: Mapped[str] = mapped_column(String(32), default="")
    new_masked: Mapped[str] = mapped_column(String(32), default="")

    user: Mapped[User | None] = relationship(foreign_keys=[user_id])


# Where 3# acknowledgements are sent (X-MON 設定, R12).
ACK_NONE = "none"
ACK_COMMAND_FILE = "command_file"
ACK_HTTP = "http"
ACK_MODES = {
    ACK_NONE: "送らない",
    ACK_COMMAND_FILE: "Nagios の外部コマンドファイルに書き込む",
    ACK_HTTP: "HTTP で POST する",
}
# B8 defaults: calls to one number per 15 minutes and per hour.
DEFAULT_CALLS_PER_15MIN = 6
DEFAULT_CALLS_PER_HOUR = 20
# Retention of alerts, calls and ログ rows, in days.
DEFAULT_RETENTION_DAYS = 400
# The heartbeat's thresholds, in minutes.
DEFAULT_HEARTBEAT_DISPATCHER_MINUTES = 10
DEFAULT_HEARTBEAT_TWILIO_MINUTES = 30


class XmonSettings(db.Model):
    """The single row of X-MON 設定 (R1, R15)."""

    __tablename__ = "xmon_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    xmon_url: Mapped[str | None] = mapped_column(String(2048))
    voice: Mapped[str] = mapped_column(String(64), default=DEFAULT_VOICE)
    # Where 3# acknowledgements go (R12): ACK_NONE, ACK_COMMAND_FILE or ACK_HTTP.
    ack_mode: Mapped[str] = mapped_column(String(16), default=ACK_NONE, server_default=ACK_NONE)
    # Nagios' external command file (a FIFO), for ACK_COMMAND_FILE.
    ack_command_file: Mapped[str] = mapped_column(String(1024), default="", server_default="")
    # The endpoint acknowledgements are POSTed to as JSON, for ACK_HTTP, and its bearer token.
    ack_http_url: Mapped[str] = mapped_column(String(2048), default="", server_default="")
    ack_http_token_encrypted: Mapped[str | None] = mapped_column(Text)
    # B8: calls to one destination number at most this many per 15 minutes and per hour.
    calls_per_15min: Mapped[int] = mapped_column(default=DEFAULT_CALLS_PER_15MIN, server_default=str(DEFAULT_CALLS_PER_15MIN))
    calls_per_hour: Mapped[int] = mapped_column(default=DEFAULT_CALLS_PER_HOUR, server_default=str(DEFAULT_CALLS_PER_HOUR))
    # Alerts, notifications, calls and ログ rows older than this many days are deleted.
    retention_days: Mapped[int] = mapped_column(default=DEFAULT_RETENTION_DAYS, server_default=str(DEFAULT_RETENTION_DAYS))
    # The optional heartbeat: text this user through this SMS setting's account and sender
    # when the dispatcher has not run for heartbeat_dispatcher_minutes, or Twilio has refused
    # every request for heartbeat_twilio_minutes (None: off).
    heartbeat_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    heartbeat_sms_setting_id: Mapped[int | None] = mapped_column(ForeignKey("sms_settings.id", ondelete="SET NULL"))
    heartbeat_dispatcher_minutes: Mapped[int] = mapped_column(
        default=DEFAULT_HEARTBEAT_DISPATCHER_MINUTES, server_default=str(DEFAULT_HEARTBEAT_DISPATCHER_MINUTES)
    )
    heartbeat_twilio_minutes: Mapped[int] = mapped_column(
        default=DEFAULT_HEARTBEAT_TWILIO_MINUTES, server_default=str(DEFAULT_HEARTBEAT_TWILIO_MINUTES)
    )
    # When the heartbeat last texted about each problem (so it texts once per outage).
    heartbeat_dispatcher_sent_at: Mapped[datetime | None] = mapped_column()
    heartbeat_twilio_sent_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def voice_offered(self) -> bool:
        """Tell whether the stored voice is one Twilio still offers."""
        return self.voice in VOICE_LABELS

    @property
    def effective_voice(self) -> str:
        """The voice every <Say> uses: the stored one, or the default if it is no longer offered."""
        return self.voice if self.voice_offered else DEFAULT_VOICE

    @classmethod
    def get(cls) -> XmonSettings:
        """The settings, read only: the row, or the defaults while it does not exist yet.

        The defaults are not added to the session: two requests or dispatchers that read the
        settings and commit something else at once would both insert the row, and the second
        would fail on its primary key (PostgreSQL). Only for_update() creates the row.
        """
        return db.session.get(cls, 1) or cls(
            id=1,
            voice=DEFAULT_VOICE,
            ack_mode=ACK_NONE,
            ack_command_file="",
            ack_http_url="",
            calls_per_15min=DEFAULT_CALLS_PER_15MIN,
            calls_per_hour=DEFAULT_CALLS_PER_HOUR,
            retention_days=DEFAULT_RETENTION_DAYS,
            heartbeat_dispatcher_minutes=DEFAULT_HEARTBEAT_DISPATCHER_MINUTES,
            heartbeat_twilio_minutes=DEFAULT_HEARTBEAT_TWILIO_MINUTES,
        )

    @classmethod
    def for_update(cls) -> XmonSettings:
        """The settings row to change, created (unsaved until commit) on first use (X-MON 設定)."""
        row = db.session.get(cls, 1)
        if row is None:
            row = cls(id=1, voice=DEFAULT_VOICE)
            db.session.add(row)
        return row


class TwilioAccount(db.Model):
    """Twilio アカウント情報 (R3): approved state only; changes wait in PendingChange."""

    __tablename__ = "twilio_accounts"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    account_sid: Mapped[str] = mapped_column(String(34))
    auth_token_encrypted: Mapped[str] = mapped_column(Text)
    # B9: the AUTH TOKEN before the last change, still accepted on webhooks until the time given.
    previous_auth_token_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_token_until: Mapped[datetime | None] = mapped_column()
    twiml_bin_url: Mapped[str | None] = mapped_column(String(2048))
    # When from_numbers.refresh() last read the numbers; None: never, or the credentials changed.
    # An account may own no number, so an empty TwilioPhoneNumber cache does not mean "never read".
    numbers_fetched_at: Mapped[datetime | None] = mapped_column()
    # Calls and messages per second the dispatcher sends through this account (Twilio's default: 1).
    cps: Mapped[int] = mapped_column(default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def _pending_unique(name: str, column: str, action: str) -> Index:
    """A unique index over (kind, column) among pending changes of one action."""
    where = text(f"status = '{STATUS_PENDING}' AND action = '{action}'")
    return Index(name, "kind", column, unique=True, sqlite_where=where, postgresql_where=where)


class PendingChange(db.Model):
    """A create, edit or delete of a Twilio 連携設定 object waiting for approval (R4)."""

    __tablename__ = "pending_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[int | None] = mapped_column()
    target_name: Mapped[str] = mapped_column(String(128), default="")
    # Field values as JSON; secret fields hold Fernet ciphertext, never clear text.
    payload: Mapped[str] = mapped_column(Text, default="{}")
    # Used by the 承認待ち list and the pending counter in the layout.
    status: Mapped[str] = mapped_column(String(16), default=STATUS_PENDING, index=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column()

    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])

    # At most one pending 作成 per name and one pending 削除 per object, even when two
    # requests race past the forms' checks: the database refuses the second (approval.py).
    __table_args__ = (
        _pending_unique("uq_pending_create_name", "target_name", ACTION_CREATE),
        _pending_unique("uq_pending_delete_target", "target_id", ACTION_DELETE),
        NEVER_REUSED,
    )

    @property
    def data(self) -> dict[str, Any]:
        """The proposed field values."""
        return json.loads(self.payload or "{}")

    @data.setter
    def data(self, values: dict[str, Any]) -> None:
        self.payload = json.dumps(values, ensure_ascii=False, sort_keys=True)

    @classmethod
    def pending_count(cls) -> int:
        """Count changes still waiting for approval."""
        return db.session.scalar(select(func.count()).where(cls.status == STATUS_PENDING)) or 0


# Kinds of request to Twilio, as written in the R13 log (telephony.py).
LOG_CALL = "call"
LOG_SMS = "sms"
LOG_NUMBERS = "numbers"
LOG_FETCH_CALL = "fetch_call"
LOG_TEST_CALL = "test_call"
LOG_TEST_SMS = "test_sms"
LOG_FIND_CALLS = "find_calls"
LOG_FIND_MESSAGES = "find_messages"
LOG_FETCH_MESSAGE = "fetch_message"
LOG_STATUS_CALLBACK = "status_callback"
LOG_VOICE = "voice"  # Twilio asked for a button call's TwiML
LOG_GATHER = "gather"  # a key pressed in a button call
LOG_AMD = "amd"  # answering-machine detection's result
LOG_HANGUP = "hangup"  # a call hung up through the REST API (a machine answered)
LOG_CALL_LIMIT = "call_limit"  # B8: a call held back by the per-number limit
LOG_ACK = "ack"  # an acknowledgement sent to the monitor
LOG_KINDS = {
    LOG_CALL: "発信",
    LOG_SMS: "SMS",
    LOG_NUMBERS: "番号取得",
    LOG_FETCH_CALL: "通話照会",
    LOG_TEST_CALL: "テスト通話",
    LOG_TEST_SMS: "送信テスト",
    LOG_FIND_CALLS: "通話検索",
    LOG_FIND_MESSAGES: "SMS検索",
    LOG_FETCH_MESSAGE: "SMS照会",
    LOG_STATUS_CALLBACK: "状態通知(Webhook)",
    LOG_VOICE: "通話開始(Webhook)",
    LOG_GATHER: "ボタン操作(Webhook)",
    LOG_AMD: "留守番電話判定(Webhook)",
    LOG_HANGUP: "通話切断",
    LOG_CALL_LIMIT: "発信上限",
    LOG_ACK: "認知済み通知",
}
# What a logged request was for (RequestLog.setting_type), as the log shows it.
SETTING_SIMPLE_CALL = "simple_call"
SETTING_SMS = "sms"
SETTING_BUTTON_CALL = "button_call"
SETTING_TYPES = {
    SETTING_SIMPLE_CALL: "通話設定(シンプル通話)",
    SETTING_BUTTON_CALL: "通話設定(ボタン操作付き)",
    SETTING_SMS: "SMS 通知設定",
}


class RequestLog(db.Model):
    """One request xmonbridge made to Twilio (R13); never holds a secret."""

    __tablename__ = "request_logs"
    # ログ's kind filter, newest first.
    __table_args__ = (Index("ix_request_logs_kind_created_at", "kind", "created_at"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Used by the ログ screen's period filter and newest-first order.
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("twilio_accounts.id", ondelete="SET NULL"))
    # Names are copied so the log still reads after a rename or deletion.
    account_name: Mapped[str] = mapped_column(String(128), default="")
    setting_type: Mapped[str] = mapped_column(String(32), default="")
    setting_id: Mapped[int | None] = mapped_column()
    setting_name: Mapped[str] = mapped_column(String(128), default="")
    destination: Mapped[str] = mapped_column(String(32), default="")
    # A number, an alphanumeric sender ID or a Messaging Service SID (MG…, 34 characters).
    from_number: Mapped[str] = mapped_column(String(64), default="")
    http_status: Mapped[int | None] = mapped_column()
    sid: Mapped[str] = mapped_column(String(64), default="")
    error_code: Mapped[int | None] = mapped_column()
    error_message: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(default=0)
    success: Mapped[bool] = mapped_column(default=False)
    simulated: Mapped[bool] = mapped_column(default=False)
    # What was asked of Twilio (Url, Timeout, Body …) as JSON, for the detail view.
    request_summary: Mapped[str] = mapped_column(Text, default="{}")


class TwilioPhoneNumber(db.Model):
    """A number the account owns, as last read from Twilio (the From list cache)."""

    __tablename__ = "twilio_phone_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("twilio_accounts.id", ondelete="CASCADE"), index=True)
    phone_number: Mapped[str] = mapped_column(String(32))
    friendly_name: Mapped[str] = mapped_column(String(128), default="")
    voice: Mapped[bool] = mapped_column(default=False)
    sms: Mapped[bool] = mapped_column(default=False)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class SimulatedMessage(db.Model):
    """A call or SMS the built-in simulator "placed" in simulate mode."""

    __tablename__ = "simulated_messages"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str] = mapped_column(String(8))  # "call" or "sms"
    sid: Mapped[str] = mapped_column(String(34), unique=True)
    account_sid: Mapped[str] = mapped_column(String(34))
    from_number: Mapped[str] = mapped_column(String(64))
    to_number: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    timeout: Mapped[int | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default="queued")


# Spoken-text replacement lists (R6): one for simple calls, one for button calls.
REPLACEMENT_SIMPLE = "simple"
REPLACEMENT_BUTTON = "button"


class ReplacementList(db.Model):
    """再生メッセージ置き換え設定: `word,reading` lines for one kind of call."""

    __tablename__ = "replacement_lists"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    content: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


MESSAGE_CUSTOM = "custom"


class NotifySettingColumns:
    """Columns every notification setting has (simple call, SMS; button calls later)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("twilio_accounts.id", ondelete="RESTRICT"))
    # A number; for SMS also an alphanumeric sender ID or a Messaging Service SID (MG…).
    from_number: Mapped[str] = mapped_column(String(64))
    message_template: Mapped[str] = mapped_column(String(32))
    custom_message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @declared_attr
    def account(cls) -> Mapped[TwilioAccount]:
        return relationship(TwilioAccount)


class RecipientColumns:
    """Columns of one 宛先の電話番号(To) row; position keeps the list order."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(default=0)

    @declared_attr
    def user(cls) -> Mapped[User]:
        return relationship(User)


class SimpleCallSetting(NotifySettingColumns, db.Model):
    """通話設定(シンプル通話) (R5), dialled through the account's TwiML Bin."""

    __tablename__ = "simple_call_settings"
    __table_args__ = NEVER_REUSED

    ring_seconds: Mapped[int] = mapped_column(default=60)

    recipients: Mapped[list[SimpleCallRecipient]] = relationship(
        back_populates="setting", cascade="all, delete-orphan", order_by="SimpleCallRecipient.position"
    )


class SimpleCallRecipient(RecipientColumns, db.Model):
    """One 宛先の電話番号(To) row of a simple-call setting."""

    __tablename__ = "simple_call_recipients"

    setting_id: Mapped[int] = mapped_column(ForeignKey("simple_call_settings.id", ondelete="CASCADE"), index=True)
    setting: Mapped[SimpleCallSetting] = relationship(back_populates="recipients")


class SmsSetting(NotifySettingColumns, db.Model):
    """SMS 通知設定 (R10)."""

    __tablename__ = "sms_settings"
    __table_args__ = NEVER_REUSED

    recipients: Mapped[list[SmsRecipient]] = relationship(
        back_populates="setting", cascade="all, delete-orphan", order_by="SmsRecipient.position"
    )


class SmsRecipient(RecipientColumns, db.Model):
    """One 宛先の電話番号(To) row of an SMS setting."""

    __tablename__ = "sms_recipients"

    setting_id: Mapped[int] = mapped_column(ForeignKey("sms_settings.id", ondelete="CASCADE"), index=True)
    setting: Mapped[SmsSetting] = relationship(back_populates="recipients")


# 通知設定種別 of a button call (§5.2.1, table 3).
MODE_ALL = "all"
MODE_ROTATION = "rotation"
MODES = {MODE_ALL: "一斉通知", MODE_ROTATION: "輪番通知"}
# Beyond X-MON: defaults of the re-call interval and the per-user cap (0 = no cap).
DEFAULT_RECALL_SECONDS = 60
DEFAULT_MAX_CALLS = 0


class ButtonCallSetting(db.Model):
    """通話設定(ボタン操作付き) (R7): calls the callee works from the keypad."""

    __tablename__ = "button_call_settings"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    mode: Mapped[str] = mapped_column(String(16), default=MODE_ALL)
    account_id: Mapped[int] = mapped_column(ForeignKey("twilio_accounts.id", ondelete="RESTRICT"))
    from_number: Mapped[str] = mapped_column(String(64))
    ring_seconds: Mapped[int] = mapped_column(default=60)
    # Seconds between a call that ended without a valid key and the next call to the same user.
    recall_seconds: Mapped[int] = mapped_column(default=DEFAULT_RECALL_SECONDS)
    # Calls to one user per notification; 0: no cap (as X-MON).
    max_calls: Mapped[int] = mapped_column(default=DEFAULT_MAX_CALLS)
    # B1: Twilio answering-machine detection (a machine counts as not answered).
    machine_detection: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account: Mapped[TwilioAccount] = relationship(TwilioAccount)
    recipients: Mapped[list[ButtonCallRecipient]] = relationship(
        back_populates="setting", cascade="all, delete-orphan", order_by="ButtonCallRecipient.position"
    )


class ButtonCallRecipient(RecipientColumns, db.Model):
    """One 宛先の電話番号(To) row of a button-call setting; position is the 輪番 order."""

    __tablename__ = "button_call_recipients"

    setting_id: Mapped[int] = mapped_column(ForeignKey("button_call_settings.id", ondelete="CASCADE"), index=True)
    setting: Mapped[ButtonCallSetting] = relationship(back_populates="recipients")


MESSAGE_TEXT_MAX = 4096


class UserMessageTemplate(db.Model):
    """メッセージテンプレート (R8): what one user hears first and last in a button call."""

    __tablename__ = "user_message_templates"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    # 着信直後に流すメッセージ / 通話終了時に流すメッセージ, each up to MESSAGE_TEXT_MAX characters.
    opening_message: Mapped[str] = mapped_column(Text, default="")
    closing_message: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(User)


class ApiToken(db.Model):
    """A bearer token the monitor uses for the alert API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    # SHA-256 hex of the token; used on every API request.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The token's first characters, so an admin can tell tokens apart without the secret.
    hint: Mapped[str] = mapped_column(String(16), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_login: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    revoked_by_login: Mapped[str] = mapped_column(String(64), default="")


# Notification types of Nagios ($NOTIFICATIONTYPE$) and states ($SERVICESTATE$ / $HOSTSTATE$).
NOTIFICATION_TYPES = (
    "PROBLEM",
    "RECOVERY",
    "ACKNOWLEDGEMENT",
    "FLAPPINGSTART",
    "FLAPPINGSTOP",
    "FLAPPINGDISABLED",
    "DOWNTIMESTART",
    "DOWNTIMEEND",
    "DOWNTIMECANCELLED",
    "CUSTOM",
)
SERVICE_STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
HOST_STATES = ("UP", "DOWN", "UNREACHABLE")


class AlertRecord(db.Model):
    """One notification the monitor handed over (R11), as received."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Used by インシデント (newest first, period filter).
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    setting_type: Mapped[str] = mapped_column(String(32))
    setting_id: Mapped[int] = mapped_column()
    # Copied so インシデント still reads after a rename or deletion.
    setting_name: Mapped[str] = mapped_column(String(128), default="")
    notification_type: Mapped[str] = mapped_column(String(32))
    host: Mapped[str] = mapped_column(String(255))
    host_address: Mapped[str] = mapped_column(String(255), default="")
    # "" for a host alert.
    service: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="")
    output: Mapped[str] = mapped_column(Text, default="")
    problem_id: Mapped[str] = mapped_column(String(32), default="")
    last_problem_id: Mapped[str] = mapped_column(String(32), default="")
    # The problem this alert belongs to: problem_id if non-zero, else last_problem_id.
    correlation_id: Mapped[str] = mapped_column(String(32), default="")
    event_time: Mapped[datetime | None] = mapped_column()
    # A RECOVERY (or other follow-up) points at the PROBLEM it ends.
    problem_alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id", ondelete="SET NULL"))
    token_name: Mapped[str] = mapped_column(String(128), default="")
    # Repeats of the same notification that were answered with this alert's id.
    repeats: Mapped[int] = mapped_column(default=0)

    problem_alert: Mapped[AlertRecord | None] = relationship(remote_side=[id])
    notifications: Mapped[list[Notification]] = relationship(
        back_populates="alert", cascade="all, delete-orphan", order_by="Notification.id"
    )

    # Used by intake's correlation, the detail page's follow-ups and インシデント's setting filter.
    __table_args__ = (
        Index("ix_alerts_problem", "host", "service", "correlation_id"),
        Index("ix_alerts_problem_alert_id", "problem_alert_id"),
        Index("ix_alerts_setting", "setting_type", "setting_id", "received_at"),
        NEVER_REUSED,
    )

    @property
    def is_host_alert(self) -> bool:
        return not self.service


class AlertDedupe(db.Model):
    """The first alert of a notification repeated within the dedupe window (intake.py)."""

    __tablename__ = "alert_dedupe"

    # SHA-256 hex of (setting, type, host, service, problem id).
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    claim: Mapped[str] = mapped_column(String(32))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    # Used by the dispatcher's pruning of expired keys.
    expires_at: Mapped[datetime] = mapped_column(index=True)


# Channels of a notification.
CHANNEL_CALL = "call"
CHANNEL_SMS = "sms"
CHANNEL_BUTTON = "button"  # a button call: the callee works it from the keypad

# Notification states: active while any delivery is open.
NOTIFICATION_ACTIVE = "active"
NOTIFICATION_DONE = "done"
NOTIFICATION_FAILED = "failed"  # every recipient failed

# Delivery states (one per recipient of a notification).
DELIVERY_QUEUED = "queued"  # waiting for next_at
DELIVERY_SENDING = "sending"  # an attempt is in flight (or the process died during one)
DELIVERY_SENT = "sent"  # Twilio accepted it; final_status follows
DELIVERY_FAILED = "failed"  # stopped: a permanent error, or retries used up
# Button calls only:
DELIVERY_WAITING = "waiting"  # 輪番: not this user's turn yet
DELIVERY_CALLING = "calling"  # a call is placed and has not ended
DELIVERY_CANCELED = "canceled"  # the notification ended before this user was reached
DELIVERY_OPEN = (DELIVERY_QUEUED, DELIVERY_SENDING, DELIVERY_WAITING, DELIVERY_CALLING)


class Notification(db.Model):
    """What one alert asks of one setting: a call or SMS to each of its recipients."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    setting_type: Mapped[str] = mapped_column(String(32))
    setting_id: Mapped[int] = mapped_column()
    setting_name: Mapped[str] = mapped_column(String(128), default="")
    account_id: Mapped[int | None] = mapped_column(ForeignKey("twilio_accounts.id", ondelete="SET NULL"))
    account_name: Mapped[str] = mapped_column(String(128), default="")
    from_number: Mapped[str] = mapped_column(String(64), default="")
    # The text spoken or sent (after replacements and Twilio's limits).
    text: Mapped[str] = mapped_column(Text, default="")
    # A simple call's TwiML Bin Url; "" for SMS.
    url: Mapped[str] = mapped_column(Text, default="")
    ring_seconds: Mapped[int | None] = mapped_column()
    # Length of the text before it was cut to fit Twilio's limits.
    shortened_from: Mapped[int | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(16), default=NOTIFICATION_ACTIVE)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    # Button calls: the setting's options when the notification began, and how it ended.
    mode: Mapped[str] = mapped_column(String(16), default="", server_default="")
    recall_seconds: Mapped[int | None] = mapped_column()
    max_calls: Mapped[int | None] = mapped_column()
    machine_detection: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    end_reason: Mapped[str] = mapped_column(Text, default="", server_default="")

    alert: Mapped[AlertRecord] = relationship(back_populates="notifications")
    deliveries: Mapped[list[Delivery]] = relationship(
        back_populates="notification", cascade="all, delete-orphan", order_by="Delivery.position"
    )

    # Used to find a button setting's active notification (alerts join it); at most one is
    # active per button-call setting, even if two intakes raced past their checks.
    __table_args__ = (
        Index("ix_notifications_setting_status", "setting_type", "setting_id", "status"),
        Index(
            "uq_notifications_active_button",
            "setting_type",
            "setting_id",
            unique=True,
            sqlite_where=sql_text("status = 'active' AND setting_type = 'button_call'"),
            postgresql_where=sql_text("status = 'active' AND setting_type = 'button_call'"),
        ),
        NEVER_REUSED,
    )


class NotificationAlert(db.Model):
    """An alert that joined a button call's notification (the first one is Notification.alert)."""

    __tablename__ = "notification_alerts"

    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True, index=True)
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    alert: Mapped[AlertRecord] = relationship()


class Delivery(db.Model):
    """The call or SMS of a notification to one recipient: the dispatcher's unit of work."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    user_name: Mapped[str] = mapped_column(String(128), default="")
    to_number: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default=DELIVERY_QUEUED)
    # Not sent before this time (retries wait here).
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    tries: Mapped[int] = mapped_column(default=0)
    # The call or message Twilio made for it, and what became of it.
    sid: Mapped[str] = mapped_column(String(64), default="")
    final_status: Mapped[str] = mapped_column(String(32), default="")
    # Why it stopped, when it failed.
    error: Mapped[str] = mapped_column(Text, default="")
    # When the outcome should be read from Twilio if no status callback has come (closed networks).
    check_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    notification: Mapped[Notification] = relationship(back_populates="deliveries")
    attempts: Mapped[list[Attempt]] = relationship(
        back_populates="delivery", cascade="all, delete-orphan", order_by="Attempt.id"
    )

    # Used by the dispatcher's queue scan, its status checks, and the per-number limits (B8).
    __table_args__ = (
        Index("ix_deliveries_queue", "status", "next_at"),
        Index("ix_deliveries_check", "check_at"),
        Index("ix_deliveries_to_number", "to_number"),
        NEVER_REUSED,
    )


# Attempt outcomes.
OUTCOME_PENDING = ""  # in flight (or the process died during it)
OUTCOME_PLACED = "placed"
OUTCOME_ADOPTED = "adopted"  # the outcome was unknown and the look-up found it at Twilio
OUTCOME_PERMANENT = "permanent"
OUTCOME_TEMPORARY = "temporary"
OUTCOME_UNKNOWN = "unknown"
OUTCOMES = {
    OUTCOME_PENDING: "送信中",
    OUTCOME_PLACED: "発信済み",
    OUTCOME_ADOPTED: "発信済み(照会で確認)",
    OUTCOME_PERMANENT: "失敗(再試行なし)",
    OUTCOME_TEMPORARY: "一時的な失敗(再試行)",
    OUTCOME_UNKNOWN: "結果不明(照会後に再試行)",
}


class Attempt(db.Model):
    """One try of a delivery: one create request to Twilio (or its look-up)."""

    __tablename__ = "attempts"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(default=1)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    outcome: Mapped[str] = mapped_column(String(16), default=OUTCOME_PENDING)
    # Used to find the attempt of a status callback or a look-up.
    sid: Mapped[str] = mapped_column(String(64), default="", index=True)
    error_code: Mapped[int | None] = mapped_column()
    error_message: Mapped[str] = mapped_column(Text, default="")
    next_retry_at: Mapped[datetime | None] = mapped_column()
    # The unguessable part of this attempt's StatusCallback URL.
    callback_token: Mapped[str] = mapped_column(String(64), unique=True)
    # What Twilio said at the end: completed, busy, no-answer, failed, canceled; delivered, undelivered.
    final_status: Mapped[str] = mapped_column(String(32), default="")
    final_at: Mapped[datetime | None] = mapped_column()
    answered_by: Mapped[str] = mapped_column(String(32), default="")
    duration: Mapped[int | None] = mapped_column()
    # Which dispatcher placed it (its lease holder name).
    placed_by: Mapped[str] = mapped_column(String(128), default="")
    # Button calls: when the callee answered, the keys pressed ("1#,7#,3#"), the key that ended
    # the call normally ("2", "3", "9"), and why the call ended (END_* codes).
    answered_at: Mapped[datetime | None] = mapped_column()
    keys: Mapped[str] = mapped_column(Text, default="", server_default="")
    end_key: Mapped[str] = mapped_column(String(4), default="", server_default="")
    end_reason: Mapped[str] = mapped_column(String(32), default="", server_default="")
    # AMD found a machine: the dispatcher hangs the call up (hangup_done once Twilio agreed).
    hangup_wanted: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    hangup_done: Mapped[bool] = mapped_column(default=False, server_default=sa_false())

    delivery: Mapped[Delivery] = relationship(back_populates="attempts")
    announcements: Mapped[list[CallAnnouncement]] = relationship(
        back_populates="attempt", cascade="all, delete-orphan", order_by="CallAnnouncement.alert_id"
    )


class CallAnnouncement(db.Model):
    """An alert read out in one button call: what 3# acknowledges."""

    __tablename__ = "call_announcements"
    # Found by alert when retention deletes one (ON DELETE CASCADE).
    __table_args__ = (Index("ix_call_announcements_alert_id", "alert_id"),)

    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"), primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True)

    attempt: Mapped[Attempt] = relationship(back_populates="announcements")
    alert: Mapped[AlertRecord] = relationship()


# Acknowledgement states.
ACK_PENDING = "pending"
ACK_DONE = "done"
ACK_FAILED = "failed"
ACK_STATES = {ACK_PENDING: "送信待ち", ACK_DONE: "送信済み", ACK_FAILED: "失敗"}


class Acknowledgement(db.Model):
    """A fault acknowledged with 3#, on its way back to the monitor (R12)."""

    __tablename__ = "acknowledgements"

    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="SET NULL"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    host: Mapped[str] = mapped_column(String(255))
    service: Mapped[str] = mapped_column(String(255), default="")
    author: Mapped[str] = mapped_column(String(128), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    # The sink it goes to (ACK_COMMAND_FILE / ACK_HTTP), "" when none is configured.
    sink: Mapped[str] = mapped_column(String(16), default="")
    status: Mapped[str] = mapped_column(String(16), default=ACK_PENDING)
    tries: Mapped[int] = mapped_column(default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column()

    # Used by the dispatcher's ack queue.
    # Also found by alert when retention deletes one (ON DELETE SET NULL).
    __table_args__ = (
        Index("ix_acknowledgements_queue", "status", "next_at"),
        Index("ix_acknowledgements_alert_id", "alert_id"),
        Index("ix_acknowledgements_attempt_id", "attempt_id"),
        NEVER_REUSED,
    )


class DispatcherLease(db.Model):
    """The row whose holder is the one dispatcher allowed to work (dispatch/lease.py)."""

    __tablename__ = "dispatcher_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    expires_at: Mapped[datetime] = mapped_column()
    acquired_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()

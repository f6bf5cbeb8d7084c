"""Every table of xmonbridge, as SQLAlchemy 2 typed models."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, String, Text, delete, func, select, text
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


def utcnow() -> datetime:
    """Return the current UTC time as a naive datetime (how every column stores time)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class User(UserMixin, db.Model):
    """A person: an administrator, an approver, or only a notification target."""

    __tablename__ = "users"

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


class XmonSettings(db.Model):
    """The single row of X-MON 設定 (R1, R15)."""

    __tablename__ = "xmon_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    xmon_url: Mapped[str | None] = mapped_column(String(2048))
    voice: Mapped[str] = mapped_column(String(64), default=DEFAULT_VOICE)
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
        """Return the settings row, creating it (unsaved until commit) on first use."""
        row = db.session.get(cls, 1)
        if row is None:
            row = cls(id=1, voice=DEFAULT_VOICE)
            db.session.add(row)
        return row


class TwilioAccount(db.Model):
    """Twilio アカウント情報 (R3): approved state only; changes wait in PendingChange."""

    __tablename__ = "twilio_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    account_sid: Mapped[str] = mapped_column(String(34))
    auth_token_encrypted: Mapped[str] = mapped_column(Text)
    twiml_bin_url: Mapped[str | None] = mapped_column(String(2048))
    # When from_numbers.refresh() last read the numbers; None: never, or the credentials changed.
    # An account may own no number, so an empty TwilioPhoneNumber cache does not mean "never read".
    numbers_fetched_at: Mapped[datetime | None] = mapped_column()
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
LOG_KINDS = {
    LOG_CALL: "発信",
    LOG_SMS: "SMS",
    LOG_NUMBERS: "番号取得",
    LOG_FETCH_CALL: "通話照会",
    LOG_TEST_CALL: "テスト通話",
    LOG_TEST_SMS: "送信テスト",
    LOG_FIND_CALLS: "通話検索",
    LOG_FIND_MESSAGES: "SMS検索",
}
# What a logged request was for (RequestLog.setting_type), as the log shows it.
SETTING_SIMPLE_CALL = "simple_call"
SETTING_SMS = "sms"
SETTING_TYPES = {SETTING_SIMPLE_CALL: "通話設定(シンプル通話)", SETTING_SMS: "SMS 通知設定"}


class RequestLog(db.Model):
    """One request xmonbridge made to Twilio (R13); never holds a secret."""

    __tablename__ = "request_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Used by the ログ screen's period filter and newest-first order.
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("twilio_accounts.id", ondelete="SET NULL"))
    # Names are copied so the log still reads after a rename or deletion.
    account_name: Mapped[str] = mapped_column(String(128), default="")
    setting_type: Mapped[str] = mapped_column(String(32), default="")
    setting_id: Mapped[int | None] = mapped_column()
    setting_name: Mapped[str] = mapped_column(String(128), default="")
    destination: Mapped[str] = mapped_column(String(32), default="")
    from_number: Mapped[str] = mapped_column(String(32), default="")
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

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    channel: Mapped[str] = mapped_column(String(8))  # "call" or "sms"
    sid: Mapped[str] = mapped_column(String(34), unique=True)
    account_sid: Mapped[str] = mapped_column(String(34))
    from_number: Mapped[str] = mapped_column(String(32))
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
    from_number: Mapped[str] = mapped_column(String(32))
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

    recipients: Mapped[list[SmsRecipient]] = relationship(
        back_populates="setting", cascade="all, delete-orphan", order_by="SmsRecipient.position"
    )


class SmsRecipient(RecipientColumns, db.Model):
    """One 宛先の電話番号(To) row of an SMS setting."""

    __tablename__ = "sms_recipients"

    setting_id: Mapped[int] = mapped_column(ForeignKey("sms_settings.id", ondelete="CASCADE"), index=True)
    setting: Mapped[SmsSetting] = relationship(back_populates="recipients")

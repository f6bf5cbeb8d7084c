"""Every table of xmonbridge, as SQLAlchemy 2 typed models."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

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

# ja-JP voices Twilio documents for <Say> today (R15); the first is the default.
VOICES = [
    ("Polly.Mizuki", "Polly.Mizuki(女性)"),
    ("Polly.Takumi", "Polly.Takumi(男性)"),
    ("Polly.Kazuha-Neural", "Polly.Kazuha-Neural(女性・ニューラル)"),
    ("Polly.Tomoko-Neural", "Polly.Tomoko-Neural(女性・ニューラル)"),
    ("Polly.Takumi-Neural", "Polly.Takumi-Neural(男性・ニューラル)"),
    ("Google.ja-JP-Standard-A", "Google.ja-JP-Standard-A(女性)"),
    ("Google.ja-JP-Standard-C", "Google.ja-JP-Standard-C(男性)"),
    ("Google.ja-JP-Neural2-B", "Google.ja-JP-Neural2-B(女性・ニューラル)"),
    ("Google.ja-JP-Neural2-C", "Google.ja-JP-Neural2-C(男性・ニューラル)"),
]
DEFAULT_VOICE = VOICES[0][0]


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

    def set_password(self, password: str) -> None:
        """Store a salted hash of password."""
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        """Tell whether password matches the stored hash."""
        return bool(self.password_hash) and check_password_hash(self.password_hash or "", password)

    @property
    def is_active(self) -> bool:  # Flask-Login: disabled users cannot hold a session.
        return not self.login_disabled

    @property
    def display_name(self) -> str:
        """Name shown in lists: the display name, else the login name."""
        return self.name or self.login


class LoginFailure(db.Model):
    """Failed login attempts per login name, for slowing down password guessing."""

    __tablename__ = "login_failures"

    login: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    first_failure_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column()


class XmonSettings(db.Model):
    """The single row of X-MON 設定 (R1, R15)."""

    __tablename__ = "xmon_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    xmon_url: Mapped[str | None] = mapped_column(String(2048))
    voice: Mapped[str] = mapped_column(String(64), default=DEFAULT_VOICE)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

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
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


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

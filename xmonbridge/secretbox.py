"""Encryption of secrets at rest (Twilio AUTH TOKENs) with Fernet."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection

from .approval import REGISTRY
from .models import STATUS_PENDING, PendingChange, TwilioAccount, XmonSettings


class SecretError(ValueError):
    """A stored secret that this instance's FERNET_KEY cannot decrypt."""


def _fernet() -> Fernet:
    key = current_app.config.get("FERNET_KEY")
    if not key:
        raise RuntimeError("FERNET_KEY is not set: run `xmonbridge init` first")
    return Fernet(key.encode() if isinstance(key, str) else key)


def encrypt(plain: str) -> str:
    """Encrypt plain text into a Fernet token string."""
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt a Fernet token string; raise SecretError when the key does not fit."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretError("secret cannot be decrypted with this FERNET_KEY") from exc


@dataclass
class StoredSecrets:
    """What in the database only the current FERNET_KEY can decrypt."""

    # Names of the Twilio accounts whose AUTH TOKEN is stored.
    accounts: list[str] = field(default_factory=list)
    # Pending changes whose proposed values carry a secret (a new AUTH TOKEN).
    pending: int = 0
    # X-MON 設定 holds the bearer token acknowledgements are POSTed with.
    ack_token: bool = False

    def __bool__(self) -> bool:
        return bool(self.accounts or self.pending or self.ack_token)

    def __str__(self) -> str:
        parts = []
        if self.accounts:
            parts.append(f"the AUTH TOKEN of {_count(len(self.accounts), 'Twilio account')} ({', '.join(self.accounts)})")
        if self.pending:
            parts.append(f"{_count(self.pending, 'pending change')} with an AUTH TOKEN")
        if self.ack_token:
            parts.append("the 通知先のトークン of X-MON 設定")
        return " and ".join(parts) or "no encrypted secret"

    def reentry_notice(self) -> str:
        """One line for the operator after a new FERNET_KEY: what must be entered again."""
        notice = ""
        if self.accounts:
            accounts = _count(len(self.accounts), "Twilio account")
            notice = f"enter the AUTH TOKEN of {accounts} ({', '.join(self.accounts)}) again in Twilio アカウント情報"
        if self.pending:
            pending = f"reject {_count(self.pending, 'pending change')} carrying an AUTH TOKEN in 承認待ち and request it again"
            notice = f"{notice}; {pending}" if notice else pending
        if self.ack_token:
            ack = "enter 通知先のトークン again in X-MON 設定"
            notice = f"{notice}; {ack}" if notice else ack
        return notice


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def stored_secrets(connection: Connection) -> StoredSecrets:
    """Find the encrypted secrets in the database; tables an old schema lacks hold none."""
    found = StoredSecrets()
    tables = set(inspect(connection).get_table_names())
    if TwilioAccount.__tablename__ in tables:
        query = select(TwilioAccount.name).where(TwilioAccount.auth_token_encrypted != "").order_by(TwilioAccount.name)
        found.accounts = list(connection.scalars(query))
    if XmonSettings.__tablename__ in tables:
        # The column came with migration 0006.
        columns = {column["name"] for column in inspect(connection).get_columns(XmonSettings.__tablename__)}
        if "ack_http_token_encrypted" in columns:
            query = select(XmonSettings.id).where(XmonSettings.ack_http_token_encrypted.is_not(None))
            found.ack_token = connection.scalar(query) is not None
    if PendingChange.__tablename__ in tables:
        secret_fields = {key: [f.name for f in kind.fields if f.secret] for key, kind in REGISTRY.items()}
        query = select(PendingChange.kind, PendingChange.payload).where(PendingChange.status == STATUS_PENDING)
        for kind, payload in connection.execute(query):
            values = json.loads(payload or "{}")
            found.pending += any(values.get(name) for name in secret_fields.get(kind, ()))
    return found

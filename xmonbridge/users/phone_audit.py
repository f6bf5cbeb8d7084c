"""The audit list of 連絡先電話番号 changes: who changed whose number, when, old → new (masked).

A user's number decides where approved settings call and text, so every change is kept,
whichever way it was made (ユーザ管理 or the command line).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app
from sqlalchemy import select

from ..extensions import db
from ..models import PhoneChange, User
from ..phone import mask

COMMAND_LINE = "(コマンドライン)"


def record(user: User, old: str | None, actor: User | None) -> PhoneChange | None:
    """Add an audit row when user's number differs from old; actor None is the command line."""
    if (old or None) == (user.phone or None):
        return None
    row = PhoneChange(
        # The relationship, not user.id: a new user has no id before the caller's commit.
        user=user,
        user_login=user.login,
        changed_by_id=actor.id if actor is not None else None,
        changed_by_login=actor.login if actor is not None else COMMAND_LINE,
        old_masked=_masked(old),
        new_masked=_masked(user.phone),
    )
    db.session.add(row)
    return row


def _masked(e164: str | None) -> str:
    """The masked number plus a short keyed fingerprint: two numbers that differ only in
    hidden digits still read differently, yet the list does not reveal them (the key is
    the instance's SECRET_KEY, so the fingerprint cannot be looked up offline)."""
    if not e164:
        return ""
    key = str(current_app.config["SECRET_KEY"]).encode()
    fingerprint = hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()[:4]
    return f"{mask(e164)} #{fingerprint}"


def recent(limit: int) -> list[PhoneChange]:
    """The newest changes first."""
    return list(db.session.scalars(select(PhoneChange).order_by(PhoneChange.id.desc()).limit(limit)))

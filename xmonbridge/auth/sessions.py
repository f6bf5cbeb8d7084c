"""Server-side login sessions: a cookie counts only while its UserSession row exists.

The signed Flask session cookie alone cannot be revoked: a copy taken before logout or
before a password change would keep working. So login stores a random token in the cookie
and only its SHA-256 in user_sessions; logout deletes the row, a password change deletes
the user's other rows, deleting the user cascades, and rows idle too long are pruned.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app, session
from sqlalchemy import delete, select, update

from ..extensions import db
from ..models import User, UserSession, utcnow

# Key of the token in the Flask session.
TOKEN_KEY = "session_token"
# last_seen_at is written at most this often per session, not on every request.
TOUCH_INTERVAL = timedelta(minutes=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _idle_limit() -> timedelta:
    return timedelta(days=current_app.config["SESSION_MAX_IDLE_DAYS"])


def current_token_hash() -> str | None:
    """Hash of the token in this request's session cookie, if any."""
    token = session.get(TOKEN_KEY)
    return _hash(token) if isinstance(token, str) else None


def start(user: User) -> None:
    """Open a session for user in the cookie and the table; prune sessions idle too long."""
    end()  # a session this browser had before (another login without logout)
    now = utcnow()
    db.session.execute(
        delete(UserSession)
        .where(UserSession.last_seen_at < now - _idle_limit())
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    db.session.add(UserSession(token_hash=_hash(token), user_id=user.id, created_at=now, last_seen_at=now))
    session[TOKEN_KEY] = token


def end() -> None:
    """Close this request's session: delete its row, so a copy of the cookie stops working."""
    token_hash = current_token_hash()
    session.pop(TOKEN_KEY, None)
    if token_hash is not None:
        db.session.execute(
            delete(UserSession).where(UserSession.token_hash == token_hash).execution_options(synchronize_session=False)
        )


def load_user(user_id: str) -> User | None:
    """Return the user of this request's session, or None when its row is gone or too old.

    Flask-Login calls this when current_user is first read, which login_required does before
    the view changes anything, so committing the last_seen_at update here writes nothing else.
    """
    token_hash = current_token_hash()
    if token_hash is None or not user_id.isdigit():
        return None
    now = utcnow()
    row = db.session.scalar(
        select(UserSession).where(
            UserSession.token_hash == token_hash,
            UserSession.user_id == int(user_id),
            UserSession.last_seen_at >= now - _idle_limit(),
        )
    )
    if row is None:
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.login_disabled:
        return None
    if row.last_seen_at < now - TOUCH_INTERVAL and not (db.session.new or db.session.dirty or db.session.deleted):
        db.session.execute(
            update(UserSession)
            .where(UserSession.id == row.id, UserSession.last_seen_at < now - TOUCH_INTERVAL)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    return user

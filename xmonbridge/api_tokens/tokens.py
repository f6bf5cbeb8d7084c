"""API tokens: made here, shown once, stored as SHA-256, revoked, never shown again.

A token is `xmb_` followed by 32 random bytes (URL-safe Base64), so it is recognisable in a
config file or a leaked log and cannot be guessed. Only its SHA-256 is stored, with its first
characters as a hint to tell tokens apart; the alert API hashes what it is given and looks
the hash up (xmonbridge/api/routes.py).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from ..extensions import db
from ..models import ApiToken, User, utcnow

PREFIX = "xmb_"
RANDOM_BYTES = 32
# Characters of the token kept as ApiToken.hint: the prefix and 8 random characters.
HINT_LENGTH = len(PREFIX) + 8


def digest(token: str) -> str:
    """The SHA-256 hex digest stored for a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def generate() -> str:
    """A new token: the prefix and 32 random bytes."""
    return PREFIX + secrets.token_urlsafe(RANDOM_BYTES)


def create(name: str, user: User) -> tuple[ApiToken, str]:
    """Add a token named `name` made by `user`; return the row and the token (shown once).

    The caller commits.
    """
    token = generate()
    row = ApiToken(
        name=name,
        token_hash=digest(token),
        hint=token[:HINT_LENGTH],
        created_by_id=user.id,
        created_by_login=user.login,
        created_at=utcnow(),
    )
    db.session.add(row)
    return row, token


def name_in_use(name: str) -> bool:
    """Tell whether a token that is still valid has this name (names tell tokens apart)."""
    query = select(ApiToken.id).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)).limit(1)
    return db.session.scalar(query) is not None


def revoke(row: ApiToken, user: User) -> bool:
    """Revoke a token at once; False when it already was. The caller commits."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    row.revoked_by_login = user.login
    return True


def newest_first() -> list[ApiToken]:
    """Every token, valid or revoked, newest first."""
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))

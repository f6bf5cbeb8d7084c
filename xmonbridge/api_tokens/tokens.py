"""API token values: generation and the stored SHA-256 form (no Flask, no database)."""

from __future__ import annotations

import hashlib
import secrets

PREFIX = "xmb_"
HINT_LENGTH = 8


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in ApiToken.token_hash."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh token: (token shown once, hash to store, hint = its first 8 characters)."""
    token = PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token), token[:HINT_LENGTH]

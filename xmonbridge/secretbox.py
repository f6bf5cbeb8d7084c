"""Encryption of secrets at rest (Twilio AUTH TOKENs) with Fernet."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


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

"""Plain factories that add, commit and return rows."""

from __future__ import annotations

from typing import Any

from xmonbridge import secretbox
from xmonbridge.extensions import db
from xmonbridge.models import TwilioAccount, User, XmonSettings

PASSWORD = "admin-pass-123"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fedcba9876543210" * 2
BIN_URL = "https://handler.twilio.com/twiml/EH" + "0" * 32


def make_user(**overrides: Any) -> User:
    """A user who may log in with PASSWORD."""
    password = overrides.pop("password", PASSWORD)
    values: dict[str, Any] = {"login": "user", "name": ""}
    values.update(overrides)
    user = User(**values)
    if password:
        user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def make_twilio_account(**overrides: Any) -> TwilioAccount:
    """An approved Twilio account."""
    token = overrides.pop("auth_token", AUTH_TOKEN)
    values: dict[str, Any] = {"name": "運用チームアカウント", "account_sid": ACCOUNT_SID, "twiml_bin_url": BIN_URL}
    values.update(overrides)
    account = TwilioAccount(auth_token_encrypted=secretbox.encrypt(token), **values)
    db.session.add(account)
    db.session.commit()
    return account


def set_xmon_url(url: str) -> None:
    """Configure the X-MON URL directly."""
    XmonSettings.get().xmon_url = url
    db.session.commit()

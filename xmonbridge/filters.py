"""Jinja filters: JST times and phone numbers as the manual writes them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Flask

from . import phone
from .public_url import redact

JST = timezone(timedelta(hours=9), "JST")


def jst(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Format a naive UTC datetime in Japan time."""
    if value is None:
        return ""
    return value.replace(tzinfo=timezone.utc).astimezone(JST).strftime(fmt)


def recipient_phone(e164: str | None) -> str:
    """A recipient's number in full for administrators, masked for everyone else
    (インシデント is open to every logged-in user; ユーザ管理 is not)."""
    from flask_login import current_user

    if getattr(current_user, "is_admin", False):
        return phone.display(e164)
    return phone.mask(e164)


def init_app(app: Flask) -> None:
    """Register the filters."""
    app.add_template_filter(jst, "jst")
    app.add_template_filter(phone.display, "phone")
    app.add_template_filter(recipient_phone, "recipient_phone")
    app.add_template_filter(redact, "redact_tokens")

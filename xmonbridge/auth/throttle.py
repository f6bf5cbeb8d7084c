"""Slow down password guessing: lock a login name after repeated failures."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, or_

from ..extensions import db
from ..models import LoginFailure, utcnow


def locked(login: str, address: str) -> bool:
    """Tell whether the name is locked out now."""
    row = db.session.get(LoginFailure, (login, address))
    return bool(row and row.locked_until and row.locked_until > utcnow())


def record_failure(login: str, address: str) -> None:
    """Count a failed attempt; lock the name once the limit is reached in the window."""
    cfg = current_app.config
    now = utcnow()
    # Forget names whose window and lock are over, so guessing names cannot grow the table.
    stale = now - timedelta(seconds=max(cfg["LOGIN_WINDOW_SECONDS"], cfg["LOGIN_LOCK_SECONDS"]))
    db.session.execute(
        delete(LoginFailure).where(
            (LoginFailure.login != login) | (LoginFailure.address != address),
            LoginFailure.first_failure_at < stale,
            or_(LoginFailure.locked_until.is_(None), LoginFailure.locked_until < now),
        )
    )
    row = db.session.get(LoginFailure, (login, address))
    if row is None or now - row.first_failure_at > timedelta(seconds=cfg["LOGIN_WINDOW_SECONDS"]):
        if row is None:
            row = LoginFailure(login=login, address=address)
            db.session.add(row)
        row.failures = 0
        row.first_failure_at = now
        row.locked_until = None
    row.failures += 1
    if row.failures >= cfg["LOGIN_MAX_FAILURES"]:
        row.locked_until = now + timedelta(seconds=cfg["LOGIN_LOCK_SECONDS"])


def clear(login: str, address: str) -> None:
    """Forget failures after a successful login."""
    row = db.session.get(LoginFailure, (login, address))
    if row is not None:
        db.session.delete(row)

"""Slow down password guessing: lock a (login name, client address) pair after repeated failures.

A guess is reserved in the database before the password is checked, with conditional UPDATEs
that the database applies one at a time, so parallel requests (several gunicorn workers) get
no more than LOGIN_MAX_FAILURES checks between them. Reading the count and writing it back
later would let every request that read the same count through.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, case, delete, or_, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import LoginFailure, utcnow


def reserve(login: str, address: str) -> bool:
    """Reserve one password check for the pair; False when the pair is locked.

    1. Forget other pairs whose window and lock are over, so guessing names cannot grow the table.
    2. A counter whose lock or window is over starts again at this guess.
    3. A live counter below the limit counts this guess; the guess that reaches the limit
       also sets the lock (a successful login clears it again).
    4. No counter yet: insert one. If a parallel request inserted it first, the unique key
       refuses ours, and steps 2–3 run again against that row.

    The caller commits at once, before checking the password, so the reservation is visible
    to parallel requests and no lock is held during the slow hash.
    """
    cfg = current_app.config
    now = utcnow()
    stale = now - timedelta(seconds=max(cfg["LOGIN_WINDOW_SECONDS"], cfg["LOGIN_LOCK_SECONDS"]))
    db.session.execute(
        delete(LoginFailure).where(
            (LoginFailure.login != login) | (LoginFailure.address != address),
            LoginFailure.first_failure_at < stale,
            or_(LoginFailure.locked_until.is_(None), LoginFailure.locked_until < now),
        )
    )
    for _attempt in range(2):
        if _count(login, address, now) or _insert(login, address, now):
            return True
    return False


def _lock_end(failures: int, now: datetime) -> datetime | None:
    cfg = current_app.config
    return now + timedelta(seconds=cfg["LOGIN_LOCK_SECONDS"]) if failures >= cfg["LOGIN_MAX_FAILURES"] else None


def _count(login: str, address: str, now: datetime) -> bool:
    """Count a guess on an existing counter (steps 2 and 3); tell whether one was reserved."""
    cfg = current_app.config
    pair = (LoginFailure.login == login, LoginFailure.address == address)
    window_start = now - timedelta(seconds=cfg["LOGIN_WINDOW_SECONDS"])
    restarted = db.session.execute(
        update(LoginFailure)
        .where(
            *pair,
            or_(
                LoginFailure.locked_until <= now,
                and_(LoginFailure.locked_until.is_(None), LoginFailure.first_failure_at < window_start),
            ),
        )
        .values(failures=1, first_failure_at=now, locked_until=_lock_end(1, now))
        .execution_options(synchronize_session=False)
    )
    if restarted.rowcount == 1:
        return True
    counted = db.session.execute(
        update(LoginFailure)
        .where(*pair, LoginFailure.locked_until.is_(None), LoginFailure.failures < cfg["LOGIN_MAX_FAILURES"])
        .values(
            failures=LoginFailure.failures + 1,
            locked_until=case(
                (LoginFailure.failures + 1 >= cfg["LOGIN_MAX_FAILURES"], _lock_end(cfg["LOGIN_MAX_FAILURES"], now)),
                else_=None,
            ),
        )
        .execution_options(synchronize_session=False)
    )
    return counted.rowcount == 1


def _insert(login: str, address: str, now: datetime) -> bool:
    """Insert the pair's first counter (step 4); False when another request inserted it first."""
    try:
        # A savepoint, so that on PostgreSQL the refused INSERT does not abort the transaction.
        with db.session.begin_nested():
            db.session.add(
                LoginFailure(login=login, address=address, failures=1, first_failure_at=now, locked_until=_lock_end(1, now))
            )
    except IntegrityError:
        return False
    return True


def clear(login: str, address: str) -> None:
    """Forget the pair's failures after a successful login."""
    db.session.execute(
        delete(LoginFailure)
        .where(LoginFailure.login == login, LoginFailure.address == address)
        .execution_options(synchronize_session=False)
    )


def unlock(login: str) -> int:
    """Forget every failure and lock of login, from every address; return how many pairs there were."""
    result = db.session.execute(
        delete(LoginFailure).where(LoginFailure.login == login).execution_options(synchronize_session=False)
    )
    return result.rowcount

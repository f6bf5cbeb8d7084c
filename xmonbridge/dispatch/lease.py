"""The lease: exactly one dispatcher works, across gunicorn workers and servers on one database.

One row of `dispatcher_lease` names its holder and when the lease ends. A dispatcher takes it
with a conditional UPDATE (only if it already holds it or the lease has ended), renews it every
few seconds, and stops working when it cannot renew before its own deadline. Every claim of
work repeats the holder check in the same UPDATE (`fence()`), so a leader that wakes up late,
after another took over, cannot dispatch anything: its claims match no row.

Works the same on SQLite and PostgreSQL: plain conditional UPDATEs and an INSERT that ignores
a conflict. Servers sharing one database are expected to keep their clocks in step (NTP).
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from ..extensions import db
from ..models import DispatcherLease

NAME = "dispatcher"


def new_holder_name() -> str:
    """A name unique to this process and start: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _ensure_row(now: datetime) -> None:
    table = DispatcherLease.__table__
    values = {"name": NAME, "holder": "", "expires_at": now - timedelta(seconds=1)}
    dialect = db.engine.dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    db.session.execute(statement)


class Lease:
    """This process's claim on the dispatcher lease."""

    def __init__(self, holder: str, seconds: float) -> None:
        self.holder = holder
        self.seconds = seconds
        # Until when (on the caller's clock) this process may act as leader.
        self.valid_until: datetime | None = None

    def acquire_or_renew(self, now: datetime) -> bool:
        """Take or extend the lease; return whether this process leads. Commits."""
        until = now + timedelta(seconds=self.seconds)
        row = db.session.get(DispatcherLease, NAME)
        if row is None:
            _ensure_row(now)
            db.session.commit()
        statement = (
            update(DispatcherLease)
            .where(
                DispatcherLease.name == NAME,
                (DispatcherLease.holder == self.holder) | (DispatcherLease.expires_at < now),
            )
            .values(holder=self.holder, expires_at=until, heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
        taken = db.session.execute(statement).rowcount == 1
        if taken and (self.valid_until is None or self.valid_until < now):
            db.session.execute(
                update(DispatcherLease)
                .where(DispatcherLease.name == NAME, DispatcherLease.holder == self.holder)
                .values(acquired_at=now)
                .execution_options(synchronize_session=False)
            )
        db.session.commit()
        # Stop a little before the row says, so this process is done before another may start.
        self.valid_until = until - timedelta(seconds=self.seconds / 5) if taken else None
        return taken

    def holds(self, now: datetime) -> bool:
        """Whether this process may still act as leader (without asking the database)."""
        return self.valid_until is not None and now < self.valid_until

    def release(self, now: datetime) -> None:
        """Give the lease up at once (on a clean stop), so another process takes over without waiting."""
        db.session.execute(
            update(DispatcherLease)
            .where(DispatcherLease.name == NAME, DispatcherLease.holder == self.holder)
            .values(expires_at=now - timedelta(seconds=1))
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        self.valid_until = None

    def fence(self, now: datetime) -> ColumnElement[bool]:
        """A condition for claiming UPDATEs: this process still holds an unexpired lease."""
        return exists(
            select(DispatcherLease.name).where(
                and_(
                    DispatcherLease.name == NAME,
                    DispatcherLease.holder == self.holder,
                    DispatcherLease.expires_at > now,
                )
            )
        )


def current() -> DispatcherLease | None:
    """The lease row (for health and the incident view)."""
    return db.session.get(DispatcherLease, NAME)

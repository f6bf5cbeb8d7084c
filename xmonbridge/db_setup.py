"""Database connection settings: SQLite pragmas on every new connection."""

from __future__ import annotations

import sqlite3
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

_registered = False


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the dispatcher write while web requests read; the busy timeout makes
    # a second writer wait instead of failing at once with "database is locked".
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()


def init_app(app: Flask) -> None:
    """Install the connect listener once per process."""
    global _registered
    if not _registered:
        event.listen(Engine, "connect", _sqlite_pragmas)
        _registered = True

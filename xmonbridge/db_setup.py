"""Database connection settings: engine options, SQLite pragmas on every new connection."""

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
    """Set the engine options and install the connect listener once per process.

    Call before db.init_app(): Flask-SQLAlchemy creates the engine there.
    """
    # Never put SQL parameters in exception messages: a failed INSERT INTO users would
    # otherwise write the new password hash (and any other value) into the server log.
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    options["hide_parameters"] = True
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    global _registered
    if not _registered:
        event.listen(Engine, "connect", _sqlite_pragmas)
        _registered = True

"""Refuse to serve an instance that `xmonbridge init` has not prepared, or not upgraded."""

from __future__ import annotations

from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask

from . import keys
from .extensions import db


def require(app: Flask) -> None:
    """Raise RuntimeError with the fix when keys are missing or the schema is not the newest."""
    keys.require(app)
    directory = Path(app.extensions["migrate"].directory)
    head = ScriptDirectory(str(directory)).get_current_head()
    with app.app_context():
        with db.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        # gunicorn forks its workers after this check: a pooled connection left here would be
        # shared by every worker (on PostgreSQL their replies get mixed up).
        db.engine.dispose()
    if current != head:
        raise RuntimeError(
            f"The database is at schema {current or '(empty)'}, this version needs {head}: "
            "run `xmonbridge init` to apply the migrations before starting xmonbridge."
        )

"""Start-up checks: refuse an instance that is not ready, in one line naming the file and the fix.

Every command that uses the database is decorated with @ready (or calls require()) before it
touches the database, and so does wsgi.py; `xmonbridge init` calls check_init(). The checks
create nothing: no instance folder, no key file, and no empty database file (SQLite creates a
missing file on connect, so the file is checked before anything connects).
"""

from __future__ import annotations

import functools
import os
import pwd
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import click
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from . import keys, secretbox
from .extensions import db

SQLITE_MAGIC = b"SQLite format 3\x00"
RUN_INIT = "run `xmonbridge init`"
KEY_LOSS = "stored Twilio AUTH TOKENs can no longer be decrypted and must be entered again"

Command = TypeVar("Command", bound=Callable[..., Any])


class NotReady(click.ClickException):
    """An instance that cannot be used as it is; the message is one line with the fix."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print `xmonbridge: <message>` on stderr (no traceback, no click `Error:` prefix)."""
        click.echo(f"xmonbridge: {self.format_message()}", file=file, err=True)


def ready(command: Command) -> Command:
    """Push the app context and run require() before a command that uses the database."""

    @with_appcontext
    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        require(current_app)
        return command(*args, **kwargs)

    return cast(Command, checked)


def require(app: Flask) -> None:
    """Raise NotReady unless the instance is initialised, usable and on the newest schema."""
    database = sqlite_file(app)
    if database is not None:
        _check_folder(database.parent)
        if not database.exists():
            if any(database.parent.glob(".restore-*")):
                raise NotReady(
                    f"{database} does not exist and a restore into {database.parent} was interrupted: "
                    "run `xmonbridge restore FILE` again (it removes what the interrupted one left)."
                )
            raise NotReady(f"{database} does not exist: {RUN_INIT} to create it, or restore it from a backup.")
        _check_file(database)
    with _connected(app, database) as connection:
        _check_schema(app, connection, database)
        _check_keys(app, connection)


def check_init(app: Flask, new_fernet_key: bool) -> secretbox.StoredSecrets:
    """Raise NotReady when `xmonbridge init` must not run; create and change nothing.

    Return the secrets that a new fernet.key leaves undecryptable (empty unless fernet.key is
    missing). Refuse that case unless new_fernet_key, and refuse new_fernet_key when a
    fernet.key exists: a key file is never replaced.
    """
    folder = Path(app.instance_path)
    if folder.exists():
        _check_folder(folder)
    fernet_key = keys.paths(app)["FERNET_KEY"]
    if new_fernet_key and fernet_key.exists():
        raise NotReady(
            f"{fernet_key} exists and is never replaced: --new-fernet-key only makes a key when fernet.key is lost."
        )
    database = sqlite_file(app)
    if database is not None:
        if database.parent != folder and database.parent.exists():
            _check_folder(database.parent)
        if not database.exists() and not database.is_symlink():
            return secretbox.StoredSecrets()  # a new instance: nothing to check
        _check_file(database)
    with _connected(app, database) as connection:
        if database is not None and connection.exec_driver_sql("PRAGMA quick_check").scalar() != "ok":
            raise NotReady(_corrupt(database))
        stored = secretbox.StoredSecrets()
        if not fernet_key.exists():
            stored = secretbox.stored_secrets(connection)
    if stored and not new_fernet_key:
        raise NotReady(
            f"{fernet_key} is missing and the database holds {stored}: restore fernet.key from a backup; "
            f"`xmonbridge init --new-fernet-key` makes a new key, but {KEY_LOSS}."
        )
    return stored


def sqlite_file(app: Flask) -> Path | None:
    """The database file for a SQLite URL, else None (in-memory or another database)."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):
        return None  # a URI filename: leave it to SQLite
    # Flask-SQLAlchemy reads a relative SQLite path from the instance folder.
    return Path(app.instance_path, url.database)


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _check_folder(folder: Path) -> None:
    """The folder of the database and keys exists and this user may write in it (-wal, -shm, keys)."""
    if not folder.exists():
        raise NotReady(f"{folder} does not exist: {RUN_INIT} first, or point XMONBRIDGE_INSTANCE at the instance folder.")
    if not folder.is_dir():
        raise NotReady(f"{folder} is not a folder: move it away and {RUN_INIT}.")
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise NotReady(
            f"{folder} is not writable by user {_user()}: xmonbridge writes its database, the -wal and -shm "
            "files and its keys there; give that user write access to the folder (chown or chmod)."
        )


def _check_file(database: Path) -> None:
    """The database file is a writable SQLite file, not cut short; an empty file is an empty database."""
    if database.is_dir():
        raise NotReady(f"{database} is a folder, not a database file: move it away and {RUN_INIT}.")
    if not os.access(database, os.R_OK | os.W_OK):
        raise NotReady(f"{database} is not writable by user {_user()}: give that user read and write access to it.")
    try:
        with database.open("rb") as handle:
            header = handle.read(100)
        size = database.stat().st_size
    except OSError as exc:
        raise NotReady(f"{database} cannot be read ({exc.strerror}): restore it from a backup.") from None
    if header and (len(header) < 100 or not header.startswith(SQLITE_MAGIC) or _cut_short(header, size)):
        raise NotReady(_corrupt(database))


def _cut_short(header: bytes, size: int) -> bool:
    """Whether the file is smaller than the page count its header claims (a truncated copy)."""
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count is valid only when the change counter matches "version valid for".
    valid = pages > 0 and header[24:28] == header[92:96]
    return valid and pages * page_size > size


def _corrupt(database: Path) -> str:
    return f"{database} is not a database (corrupt or truncated): restore it from a backup, or move it away and {RUN_INIT}."


@contextmanager
def _connected(app: Flask, database: Path | None) -> Iterator[Connection]:
    """Connect with the app's engine; any database error becomes one NotReady line."""
    with app.app_context():
        try:
            with db.engine.connect() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise NotReady(unusable(app, exc)) from None
        finally:
            # No pooled connection crosses gunicorn's fork, and SQLite removes its -wal and
            # -shm files when the last connection closes.
            db.engine.dispose()


def unusable(app: Flask, exc: SQLAlchemyError) -> str:
    """One line for a database error: which database, why, and what to check."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    database = sqlite_file(app)
    if database is None:
        url = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).render_as_string(hide_password=True)
        return f"cannot use the database {url} ({reason}): check DATABASE_URL and that the database server is running."
    if "not a database" in reason or "malformed" in reason:
        return _corrupt(database)
    return f"{database} cannot be used ({reason}): check that user {_user()} can read and write it and its folder."


def _check_schema(app: Flask, connection: Connection, database: Path | None) -> None:
    head = ScriptDirectory(app.extensions["migrate"].directory).get_current_head()
    current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise NotReady(
            f"{database or 'The database'} is at schema {current or '(empty)'}, this version needs {head}: "
            "run `xmonbridge init` to apply the migrations before starting xmonbridge."
        )


def _check_keys(app: Flask, connection: Connection) -> None:
    """SECRET_KEY and FERNET_KEY are set, from their files or from config."""
    for name, path in keys.paths(app).items():
        if app.config.get(name):
            continue
        if path.exists():
            raise NotReady(f"{path} cannot be read by user {_user()} or is empty: restore it from a backup of the instance folder.")
        stored = secretbox.stored_secrets(connection) if name == "FERNET_KEY" else None
        if stored:
            raise NotReady(
                f"{path} is missing and the database holds {stored}: restore fernet.key from a backup; "
                f"`xmonbridge init --new-fernet-key` makes a new key, but {KEY_LOSS}."
            )
        raise NotReady(f"{path} is missing: {RUN_INIT} to create it.")
    try:
        Fernet(app.config["FERNET_KEY"])
    except (ValueError, TypeError):
        where = keys.paths(app)["FERNET_KEY"]
        raise NotReady(f"{where} does not hold a Fernet key: restore it from a backup of the instance folder.") from None

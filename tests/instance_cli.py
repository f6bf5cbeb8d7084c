"""An instance folder driven through the real `xmonbridge` command, and its app in this process.

Used by the backup and export tests: commands run as an operator runs them (their exit code,
stdout and stderr), and the app opened on the same folder seeds and reads the database and
serves the pages through Flask's test client. invoke() runs a command in this process, for
tests that try many refusals.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import Result
from flask import Flask

from tests.real_server import cli_path
from xmonbridge import create_app, keys
from xmonbridge.extensions import db

# The variables that would point the command at another instance or database.
_OWN = ("XMONBRIDGE_INSTANCE", "DATABASE_URL", "TWILIO_MODE", "TWILIO_API_BASE")


class Instance:
    """One instance folder (and optionally a PostgreSQL database) and the commands run on it."""

    def __init__(self, folder: Path, database_url: str | None = None) -> None:
        self.folder = folder
        self.database = folder / "xmonbridge.sqlite"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("XMONBRIDGE_") and k not in _OWN}
        self.env.update(XMONBRIDGE_INSTANCE=str(folder), TWILIO_MODE="simulate")
        if database_url:
            self.env["DATABASE_URL"] = database_url

    def run(self, *args: str, stdin: str | None = None, umask: int | None = None) -> subprocess.CompletedProcess[str]:
        """Run `xmonbridge ARGS` on this instance; the caller looks at the outcome."""
        return subprocess.run(
            [cli_path(), *args],
            env=self.env,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,  # noqa: PLW1509 - no threads yet
        )

    def ok(self, *args: str, stdin: str | None = None, here: bool = False) -> str:
        """Run a command that must succeed (here: in this process); return its standard output."""
        if here:
            done = self.invoke(*args, stdin=stdin)
            assert done.exit_code == 0, f"xmonbridge {' '.join(args)} exited {done.exit_code}: {done.stderr}{done.exception!r}"
            return done.stdout
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, f"xmonbridge {' '.join(args)} exited {result.returncode}: {result.stderr}"
        return result.stdout

    def invoke(self, *args: str, stdin: str | None = None) -> Result:
        """Run a command in this process (quicker; for the many refusals): exit_code, stdout, stderr."""
        with self.app() as app:
            return app.test_cli_runner().invoke(args=list(args), input=stdin)

    @contextmanager
    def app(self) -> Iterator[Flask]:
        """The instance's app in this process (CSRF off for the test client), its context pushed."""
        saved = {k: os.environ.get(k) for k in _OWN}
        for key in _OWN:
            if key in self.env:
                os.environ[key] = self.env[key]
            else:
                os.environ.pop(key, None)
        try:
            app = create_app()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        app.config["WTF_CSRF_ENABLED"] = False
        with app.app_context():
            try:
                yield app
            finally:
                db.session.remove()
                db.engine.dispose()


def initialised(folder: Path, migrated_db: Path) -> Instance:
    """An instance as `xmonbridge init` leaves it, made quicker from conftest's migrated database.

    The folder (0700), the database at the newest schema and both key files (0600): what
    init makes, without running every migration again for each instance of a test.
    """
    instance = Instance(folder)
    folder.mkdir(mode=0o700)
    shutil.copy(migrated_db, instance.database)
    with instance.app() as app:
        keys.ensure(app, [])
    return instance

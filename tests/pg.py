"""A throw-away PostgreSQL 15 cluster for tests (Debian's `postgresql` package).

The cluster lives in a temporary folder owned by the `postgres` user (PostgreSQL refuses to
run as root), listens only on a unix socket in that folder, and is stopped at the end of the
session; the system's own cluster is neither used nor touched. Each test that asks for
`pg_url` gets a fresh, empty database.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path("/usr/lib/postgresql/15/bin")
_counter = itertools.count(1)


class Cluster:
    """One running PostgreSQL server on a unix socket."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="xmonbridge-pg-"))
        self.data = self.folder / "data"
        self.folder.chmod(0o755)
        shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8")
        options = f"-k {self.folder} -c listen_addresses='' -c fsync=off -c max_connections=50"
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o", options, "-w", "start")

    def _as_postgres(self, *args: str) -> str:
        command = list(args) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr or result.stdout}")
        return result.stdout

    def sql(self, statement: str) -> None:
        self._as_postgres(str(BIN / "psql"), "-h", str(self.folder), "-U", "postgres", "-d", "postgres", "-qAt", "-c", statement)

    def new_database(self) -> str:
        """A fresh empty database; its SQLAlchemy URL (psycopg 3)."""
        name = f"t_{os.getpid()}_{next(_counter)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0")
        return f"postgresql+psycopg://postgres@/{name}?host={self.folder}"

    def migrated_database(self) -> str:
        """A fresh database with every migration applied (copied from a template made once)."""
        if not getattr(self, "_template", None):
            from flask_migrate import upgrade

            from tests.conftest import _config
            from xmonbridge import create_app
            from xmonbridge.extensions import db

            url = self.new_database()
            app = create_app(_config(self.folder, SQLALCHEMY_DATABASE_URI=url))
            with app.app_context():
                upgrade(directory=app.extensions["migrate"].directory)
                db.session.remove()
                db.engine.dispose()
            self._template = url.split("@/", 1)[1].split("?", 1)[0]
        name = f"t_{os.getpid()}_{next(_counter)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE {self._template}")
        return f"postgresql+psycopg://postgres@/{name}?host={self.folder}"

    def stop(self) -> None:
        try:
            self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """The session's PostgreSQL server; fails in CI and skips elsewhere when it cannot run."""
    if not (BIN / "initdb").exists():
        message = "PostgreSQL 15 is not installed (scripts/test.sh installs the Debian package postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cluster = Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return pg_cluster.new_database()


@pytest.fixture
def pg_migrated_url(pg_cluster: Cluster) -> str:
    """A fresh PostgreSQL database with every migration applied."""
    return pg_cluster.migrated_database()

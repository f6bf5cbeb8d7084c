"""Shared fixtures: an app on a migrated SQLite file per test, clients, login helper."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade

from xmonbridge import create_app
from xmonbridge.extensions import db

from tests.pg import pg_cluster, pg_migrated_url, pg_url  # noqa: E402,F401 - fixtures

ADMIN_PASSWORD = "admin-pass-123"


def _config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "FERNET_KEY": Fernet.generate_key().decode(),
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'test.sqlite'}",
        "WTF_CSRF_ENABLED": False,
        "TWILIO_MODE": "simulate",
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Apply the real migrations once; each test starts from a copy of that file."""
    folder = tmp_path_factory.mktemp("schema")
    app = create_app(_config(folder))
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.engine.dispose()
    return folder / "test.sqlite"


@pytest.fixture
def make_app(tmp_path: Path, migrated_db: Path) -> Iterator[Any]:
    """Build apps on a fresh copy of the migrated database (CSRF off unless asked)."""
    shutil.copy(migrated_db, tmp_path / "test.sqlite")
    apps: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        app = create_app(_config(tmp_path, **overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app: Any) -> Iterator[Flask]:
    """The application, with an app context pushed for direct database access."""
    app = make_app()
    with app.app_context():
        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


class AuthActions:
    """Log users in and out through the real login form."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, login: str = "admin", password: str = ADMIN_PASSWORD) -> Any:
        return self.client.post("/login", data={"login": login, "password": password})

    def logout(self) -> Any:
        return self.client.post("/logout")


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def admin(app: Flask) -> Any:
    """An administrator with 承認権限, password ADMIN_PASSWORD."""
    from tests.factories import make_user

    return make_user(login="admin", is_admin=True, is_approver=True)


@pytest.fixture
def logged_in(admin: Any, auth: AuthActions) -> AuthActions:
    """The client logged in as the approving administrator."""
    auth.login()
    return auth


@pytest.fixture(scope="session")
def fake_twilio_server() -> Iterator[Any]:
    """The one fake Twilio of the test run, on 127.0.0.1; fixtures reset or clear it per test."""
    from tests.fake_twilio import FakeTwilio
    from xmonbridge.models import DEFAULT_VOICE, VOICES
    from xmonbridge.twiml import bin_snippet

    with FakeTwilio() as server:
        # Every TwiML Bin holds what the account screen's (?) tells the admin to paste.
        server.bin_twiml = bin_snippet(DEFAULT_VOICE)
        server.voices = frozenset(voice for voice, _ in VOICES)
        yield server


@pytest.fixture
def fake_twilio(fake_twilio_server: Any) -> Iterator[Any]:
    """The fake Twilio, reset per test; fails the test on any invalid request."""
    fake_twilio_server.reset()
    yield fake_twilio_server
    fake_twilio_server.assert_no_violations()


@pytest.fixture
def live_app(make_app: Any, fake_twilio: Any) -> Iterator[Flask]:
    """The application in live mode, its Twilio REST base URL pointing at the fake."""
    app = make_app(
        TWILIO_MODE="live",
        TWILIO_API_BASE=fake_twilio.base_url,
        TWILIO_CONNECT_TIMEOUT=2.0,
        TWILIO_READ_TIMEOUT=1.0,
    )
    with app.app_context():
        yield app


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_live_app(request: pytest.FixtureRequest, make_app: Any, fake_twilio: Any) -> Iterator[Flask]:
    """live_app on SQLite, then on a migrated PostgreSQL database (tests/pg.py)."""
    database = {}
    if request.param == "postgresql":
        database["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("pg_migrated_url")
    app = make_app(
        TWILIO_MODE="live",
        TWILIO_API_BASE=fake_twilio.base_url,
        TWILIO_CONNECT_TIMEOUT=2.0,
        TWILIO_READ_TIMEOUT=1.0,
        **database,
    )
    with app.app_context():
        yield app


@pytest.fixture
def live_client(live_app: Flask) -> FlaskClient:
    return live_app.test_client()


@pytest.fixture
def live_logged_in(live_app: Flask, live_client: FlaskClient) -> FlaskClient:
    """live_client logged in as an administrator with 承認権限."""
    from tests.factories import make_user

    make_user(login="admin", is_admin=True, is_approver=True)
    live_client.post("/login", data={"login": "admin", "password": ADMIN_PASSWORD})
    return live_client

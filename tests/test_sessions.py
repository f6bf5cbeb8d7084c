"""Server-side login sessions: logout, password changes and deleted users end them.

These tests push no app context around the requests: a shared one would also share
`g`, where Flask-Login keeps the user of the previous request.
"""

from __future__ import annotations

from datetime import timedelta
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.conftest import ADMIN_PASSWORD
from tests.factories import make_user
from xmonbridge.extensions import db
from xmonbridge.models import User, UserSession, utcnow

EDIT = {"login": "admin", "name": "", "phone": "", "is_admin": "y", "is_approver": "y"}


@pytest.fixture
def site(make_app: Any) -> Flask:
    """The app, with the administrator `admin` (no app context left pushed)."""
    app: Flask = make_app()
    with app.app_context():
        make_user(login="admin", is_admin=True, is_approver=True)
    return app


@contextmanager
def _db(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


def _id(app: Flask, login: str) -> int:
    with _db(app):
        return db.session.scalar(select(User.id).where(User.login == login))  # type: ignore[return-value]


def _logged_in(app: Flask, login: str = "admin", password: str = ADMIN_PASSWORD) -> FlaskClient:
    client = app.test_client()
    assert client.post("/login", data={"login": login, "password": password}).status_code == 302
    return client


def _works(client: FlaskClient) -> bool:
    """Tell whether the client still gets the start page instead of the login form."""
    response = client.get("/home")
    return response.status_code == 200


def _rows(app: Flask, user_id: int) -> int:
    with _db(app):
        return db.session.scalar(select(func.count()).select_from(UserSession).where(UserSession.user_id == user_id)) or 0


def _make_user(app: Flask, **values: Any) -> int:
    with _db(app):
        return make_user(**values).id


def _set_last_seen(app: Flask, when: Any) -> None:
    """Move the one session row's last_seen_at."""
    with _db(app):
        row = db.session.scalars(select(UserSession)).one()
        row.last_seen_at = when
        db.session.commit()


def _last_seen(app: Flask) -> Any:
    with _db(app):
        return db.session.scalars(select(UserSession.last_seen_at)).one()


def test_a_cookie_copied_before_logout_stops_working(site: Flask) -> None:
    client = _logged_in(site)
    copied = client.get_cookie("session").value  # type: ignore[union-attr]
    assert client.post("/logout").status_code == 302
    replay = site.test_client()
    replay.set_cookie("session", copied)
    response = replay.get("/admin/users/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert _rows(site, _id(site, "admin")) == 0


def test_changing_ones_own_password_ends_only_the_other_sessions(site: Flask) -> None:
    first, second = _logged_in(site), _logged_in(site)
    response = first.post(f"/admin/users/{_id(site, 'admin')}/edit", data={**EDIT, "password": "new-admin-pass-1"})
    assert response.status_code == 302
    assert _works(first)
    assert not _works(second)
    assert second.get("/admin/users/").headers["Location"].startswith("/login")
    assert _logged_in(site, password="new-admin-pass-1")


def test_an_admin_changing_a_password_ends_every_session_of_that_user(site: Flask) -> None:
    sato = _make_user(site, login="sato")
    theirs = _logged_in(site, "sato")
    mine = _logged_in(site)
    data = {"login": "sato", "name": "", "phone": "", "password": "new-sato-pass-1"}
    assert mine.post(f"/admin/users/{sato}/edit", data=data).status_code == 302
    assert not _works(theirs)
    assert _works(mine)
    assert _rows(site, sato) == 0


def test_saving_without_a_password_keeps_the_sessions(site: Flask) -> None:
    first, second = _logged_in(site), _logged_in(site)
    assert first.post(f"/admin/users/{_id(site, 'admin')}/edit", data={**EDIT, "password": ""}).status_code == 302
    assert _works(first) and _works(second)


def test_deleting_a_user_deletes_their_sessions(site: Flask) -> None:
    sato = _make_user(site, login="sato", is_admin=True)
    theirs = _logged_in(site, "sato")
    assert _rows(site, sato) == 1
    mine = _logged_in(site)
    assert mine.post(f"/admin/users/{sato}/delete").status_code == 302
    assert _id(site, "sato") is None
    assert _rows(site, sato) == 0
    assert not _works(theirs)


def test_a_disabled_user_loses_their_session(site: Flask) -> None:
    sato = _make_user(site, login="sato")
    theirs = _logged_in(site, "sato")
    with _db(site):
        db.session.get(User, sato).login_disabled = True  # type: ignore[union-attr]
        db.session.commit()
    assert not _works(theirs)


def test_idle_sessions_end_and_are_pruned_at_the_next_login(site: Flask) -> None:
    idle = _logged_in(site)
    _set_last_seen(site, utcnow() - timedelta(days=site.config["SESSION_MAX_IDLE_DAYS"], minutes=1))
    assert not _works(idle)
    _logged_in(site)
    # Only the new session is left (_last_seen() reads the one row).
    assert _last_seen(site) > utcnow() - timedelta(minutes=1)


def test_last_seen_is_written_at_most_once_a_minute(site: Flask) -> None:
    client = _logged_in(site)
    recent = utcnow() - timedelta(seconds=30)
    _set_last_seen(site, recent)
    assert _works(client)
    assert _last_seen(site) == recent
    _set_last_seen(site, utcnow() - timedelta(minutes=5))
    assert _works(client)
    assert _last_seen(site) > recent

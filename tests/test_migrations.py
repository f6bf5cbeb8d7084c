"""Hand-written migrations: what they do to data already stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from xmonbridge import create_app
from xmonbridge.extensions import db
from tests.conftest import _config


def test_0003_marks_accounts_whose_numbers_were_read(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path))
    with app.app_context():
        directory = app.extensions["migrate"].directory
        upgrade(directory=directory, revision="0002")
        insert_account = text(
            "INSERT INTO twilio_accounts (id, name, account_sid, auth_token_encrypted, created_at, updated_at)"
            " VALUES (:id, :name, :sid, 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
        db.session.execute(insert_account, {"id": 1, "name": "read", "sid": "AC" + "0" * 32})
        db.session.execute(insert_account, {"id": 2, "name": "never read", "sid": "AC" + "1" * 32})
        db.session.execute(
            text(
                "INSERT INTO twilio_phone_numbers (account_id, phone_number, friendly_name, voice, sms, fetched_at)"
                " VALUES (1, '+815012340001', '', 1, 1, '2026-01-02 03:04:05')"
            )
        )
        db.session.commit()

        upgrade(directory=directory, revision="0003")
        rows: Any = db.session.execute(text("SELECT id, numbers_fetched_at FROM twilio_accounts ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "2026-01-02 03:04:05"), (2, None)]

        downgrade(directory=directory, revision="0002")
        assert "numbers_fetched_at" not in {c["name"] for c in inspect(db.engine).get_columns("twilio_accounts")}
        db.session.remove()
        db.engine.dispose()

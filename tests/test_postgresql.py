"""The same engine on PostgreSQL 15: migrations, a real server, the lease and claims under threads."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select

from tests.conftest import _config
from tests.dispatch_helpers import queue
from tests.factories import make_recipient, make_sms_setting, make_twilio_account
from tests.real_server import RealServer, wait_for
from xmonbridge import create_app
from xmonbridge.dispatch.engine import Dispatcher
from xmonbridge.extensions import db
from xmonbridge.models import DELIVERY_SENT, AlertRecord, ApiToken, Delivery


def test_migrations_run_up_and_down_and_match_the_models(tmp_path: Path, pg_url: str) -> None:
    app = create_app(_config(tmp_path, SQLALCHEMY_DATABASE_URI=pg_url))
    with app.app_context():
        directory = app.extensions["migrate"].directory
        upgrade(directory=directory)
        with db.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), db.metadata) == []
        downgrade(directory=directory, revision="base")
        upgrade(directory=directory)
        with db.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), db.metadata) == []
        db.session.remove()
        db.engine.dispose()


def test_a_real_server_on_postgresql_takes_an_alert_and_texts(tmp_path: Path, pg_url: str, fake_twilio: Any) -> None:
    server = RealServer(tmp_path, api_base=fake_twilio.base_url, database_url=pg_url)
    server.cli("create-user", "admin", "--password", "pg-admin-pass-1", "--admin")
    with server.app_context():
        setting = make_sms_setting(make_twilio_account(cps=10), [make_recipient()])
        setting_id = setting.id
    token = server.make_token()
    server.start(workers=2)
    try:
        status, body = server.post_alert(
            token, {"kind": "sms", "setting_id": setting_id, "type": "PROBLEM", "host": "db01", "service": "PGSQL", "state": "CRITICAL"}
        )
        assert status == 202, body
        wait_for(lambda: len(fake_twilio.requests_for("CreateMessage")) == 1, 30, "the SMS")
        assert fake_twilio.requests_for("CreateMessage")[0].form["Body"] == "[X-MON 障害] ホスト db01 のサービス PGSQL"
    finally:
        server.stop()


def test_two_dispatchers_in_threads_send_each_delivery_once(any_db_live_app: Flask, fake_twilio: Any) -> None:
    account = make_twilio_account(cps=100)
    users = [make_recipient(login=f"u{i}", phone=f"+8190012300{i:02d}") for i in range(3)]
    setting = make_sms_setting(account, users)
    for _ in range(10):
        queue(setting)
    app = any_db_live_app
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(holder: str) -> None:
        try:
            with app.app_context():
                dispatcher = Dispatcher(holder=holder)
                while not stop.is_set():
                    dispatcher.run_once()
                    db.session.remove()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(fake_twilio.requests_for("CreateMessage")) >= 30, 30, "30 messages")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == []
    assert len(fake_twilio.requests_for("CreateMessage")) == 30
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == DELIVERY_SENT)) == 30


def test_identical_alerts_at_once_are_stored_once(any_db_live_app: Flask) -> None:
    token = "xmb_pg-race"
    db.session.add(ApiToken(name="t", token_hash=hashlib.sha256(token.encode()).hexdigest()))
    db.session.commit()
    setting = make_sms_setting(make_twilio_account(), [make_recipient()])
    client = any_db_live_app.test_client()
    fields = {"kind": "sms", "setting_id": setting.id, "type": "PROBLEM", "host": "web", "service": "HTTP", "state": "CRITICAL", "problem_id": "3"}
    answers: list[Any] = []
    barrier = threading.Barrier(20)

    def send() -> None:
        barrier.wait()
        try:
            response = client.post("/api/v1/alerts", json=fields, headers={"Authorization": f"Bearer {token}"})
            answers.append((response.status_code, response.get_json()))
        except Exception as error:  # noqa: BLE001 - reported by the assertion
            answers.append((repr(error), None))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {status for status, _ in answers} == {202}
    assert len({body["id"] for _, body in answers}) == 1
    assert db.session.scalar(select(func.count()).select_from(AlertRecord)) == 1

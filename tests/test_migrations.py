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


REBUILT = (
    "users",
    "twilio_accounts",
    "api_tokens",
    "pending_changes",
    "simple_call_settings",
    "sms_settings",
    "button_call_settings",
    "user_message_templates",
    "replacement_lists",
)
NOW = "'2026-01-01 00:00:00'"


def _structure() -> dict[str, Any]:
    """Every table's columns, indexes (with their columns and WHERE) and foreign keys."""
    connection = db.session.connection()
    tables = [r[0] for r in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")]
    shape: dict[str, Any] = {}
    for table in tables:
        if table == "sqlite_sequence":
            continue
        indexes = []
        for _, name, unique, origin, partial in connection.exec_driver_sql(f"PRAGMA index_list('{table}')"):
            columns = [r[2] for r in connection.exec_driver_sql(f"PRAGMA index_info('{name}')")]
            sql = connection.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).scalar()
            indexes.append((name if origin == "c" else origin, unique, partial, columns, sql))
        shape[table] = {
            "columns": [tuple(r) for r in connection.exec_driver_sql(f"PRAGMA table_info('{table}')")],
            "indexes": sorted(indexes, key=repr),
            "foreign_keys": sorted(tuple(r[2:]) for r in connection.exec_driver_sql(f"PRAGMA foreign_key_list('{table}')")),
        }
    return shape


def _ids(table: str) -> list[int]:
    return [r[0] for r in db.session.execute(text(f"SELECT id FROM {table} ORDER BY id"))]


def test_0007_keeps_rows_and_schema_and_never_reuses_a_deleted_id(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path))
    with app.app_context():
        directory = app.extensions["migrate"].directory
        upgrade(directory=directory, revision="0006")
        run = db.session.execute
        for i in (1, 2, 3, 4):
            run(text(f"INSERT INTO users (id, login, name, login_disabled, is_admin, is_approver, created_at)"
                     f" VALUES ({i}, 'u{i}', '', 0, 0, 0, {NOW})"))
        for i in (1, 2, 3):
            run(text("INSERT INTO twilio_accounts (id, name, account_sid, auth_token_encrypted, cps, created_at, updated_at)"
                     f" VALUES ({i}, 'a{i}', 'AC{i:032d}', 'x', 1, {NOW}, {NOW})"))
        run(text(f"INSERT INTO user_sessions (token_hash, user_id, created_at, last_seen_at) VALUES ('t', 1, {NOW}, {NOW})"))
        run(text(f"INSERT INTO user_message_templates (id, user_id, opening_message, closing_message, updated_at)"
                 f" VALUES (1, 1, 'hello', '', {NOW})"))
        run(text("INSERT INTO button_call_settings (id, name, mode, account_id, from_number, ring_seconds,"
                 " recall_seconds, max_calls, machine_detection, created_at, updated_at)"
                 f" VALUES (1, 'b', 'all', 1, '+815012340001', 60, 60, 0, 0, {NOW}, {NOW})"))
        run(text("INSERT INTO button_call_recipients (setting_id, id, user_id, position) VALUES (1, 1, 1, 0)"))
        # User 4 and account 3 are deleted, the highest ids of their tables; a pending change
        # still names user 4 in its payload and account 3 as its target.
        run(text("INSERT INTO pending_changes (id, kind, action, target_id, target_name, payload, status, requested_at)"
                 f" VALUES (1, 'message_template', 'create', NULL, 'u4', '{{\"user_id\": 4}}', 'pending', {NOW}),"
                 f" (2, 'twilio_account', 'update', 3, 'a3', '{{\"cps\": 2}}', 'pending', {NOW})"))
        run(text("DELETE FROM users WHERE id = 4"))
        run(text("DELETE FROM twilio_accounts WHERE id = 3"))
        db.session.commit()
        before = _structure()

        upgrade(directory=directory, revision="0007")
        # Every table keeps its columns, indexes (partial ones with their WHERE) and foreign keys.
        assert _structure() == before
        # Rows survive with their ids, and nothing cascaded from the rebuilt tables.
        assert _ids("users") == [1, 2, 3] and _ids("twilio_accounts") == [1, 2]
        assert _ids("user_message_templates") == [1] and _ids("button_call_recipients") == [1]
        assert db.session.execute(text("SELECT user_id FROM user_sessions")).scalar() == 1
        sql = db.session.execute(text("SELECT sql FROM sqlite_master WHERE name = 'users'")).scalar()
        assert "AUTOINCREMENT" in sql

        # New rows take ids past every deleted one.
        run(text(f"INSERT INTO users (login, name, login_disabled, is_admin, is_approver, created_at) VALUES ('new', '', 0, 0, 0, {NOW})"))
        run(text("INSERT INTO twilio_accounts (name, account_sid, auth_token_encrypted, cps, created_at, updated_at)"
                 f" VALUES ('new', 'AC{9:032d}', 'x', 1, {NOW}, {NOW})"))
        run(text("DELETE FROM user_message_templates"))
        run(text(f"INSERT INTO user_message_templates (user_id, opening_message, closing_message, updated_at) VALUES (2, '', '', {NOW})"))
        db.session.commit()
        assert _ids("users") == [1, 2, 3, 5]
        assert _ids("twilio_accounts") == [1, 2, 4]
        assert _ids("user_message_templates") == [2]
        assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1

        downgrade(directory=directory, revision="0006")
        assert _ids("users") == [1, 2, 3, 5]
        assert "AUTOINCREMENT" not in db.session.execute(text("SELECT sql FROM sqlite_master WHERE name = 'users'")).scalar()
        db.session.remove()
        db.engine.dispose()


def test_0008_adds_retention_and_heartbeat_and_never_reuses_a_pruned_alert_id(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path))
    with app.app_context():
        directory = app.extensions["migrate"].directory
        upgrade(directory=directory, revision="0007")
        run = db.session.execute
        run(text(f"INSERT INTO xmon_settings (id, voice, calls_per_15min, calls_per_hour, updated_at) VALUES (1, 'Polly.Mizuki', 3, 9, {NOW})"))
        for i in (1, 2, 3):
            run(text("INSERT INTO alerts (id, received_at, setting_type, setting_id, setting_name, notification_type, host,"
                     " host_address, service, state, output, problem_id, last_problem_id, correlation_id, token_name, repeats)"
                     f" VALUES ({i}, {NOW}, 'sms', 1, 's', 'PROBLEM', 'h{i}', '', '', 'DOWN', '', '{i}', '0', '{i}', '', 0)"))
        run(text("INSERT INTO request_logs (id, created_at, kind, account_name, setting_type, setting_name, destination,"
                 " from_number, sid, error_message, duration_ms, success, simulated, request_summary)"
                 f" VALUES (7, {NOW}, 'sms', '', '', '', '', '', '', '', 0, 1, 1, '{{}}')"))
        # Alert 3 (the newest) and the only log row were pruned before the upgrade.
        run(text("DELETE FROM alerts WHERE id = 3"))
        db.session.commit()
        before = _structure()

        upgrade(directory=directory, revision="0008")
        after = _structure()
        # The rebuilt tables keep their columns, indexes (partial ones too) and foreign keys.
        for table in ("alerts", "notifications", "deliveries", "attempts", "acknowledgements", "request_logs", "simulated_messages"):
            assert after[table] == before[table], table
        # Settings keep their values and gain the defaults.
        row = run(text("SELECT calls_per_15min, calls_per_hour, retention_days, heartbeat_user_id,"
                       " heartbeat_dispatcher_minutes, heartbeat_twilio_minutes FROM xmon_settings")).one()
        assert tuple(row) == (3, 9, 400, None, 10, 30)
        run(text("DELETE FROM request_logs"))
        for host in ("new1", "new2"):
            run(text("INSERT INTO alerts (received_at, setting_type, setting_id, setting_name, notification_type, host,"
                     " host_address, service, state, output, problem_id, last_problem_id, correlation_id, token_name, repeats)"
                     f" VALUES ({NOW}, 'sms', 1, 's', 'PROBLEM', '{host}', '', '', 'DOWN', '', '9', '0', '9', '', 0)"))
        run(text("INSERT INTO request_logs (created_at, kind, account_name, setting_type, setting_name, destination,"
                 " from_number, sid, error_message, duration_ms, success, simulated, request_summary)"
                 f" VALUES ({NOW}, 'sms', '', '', '', '', '', '', '', 0, 1, 1, '{{}}')"))
        db.session.commit()
        # Ids continue past every row the upgrade saw (alert 3 was gone already).
        assert _ids("alerts") == [1, 2, 3, 4]
        run(text("DELETE FROM alerts WHERE host = 'new2'"))
        run(text("INSERT INTO alerts (received_at, setting_type, setting_id, setting_name, notification_type, host,"
                 " host_address, service, state, output, problem_id, last_problem_id, correlation_id, token_name, repeats)"
                 f" VALUES ({NOW}, 'sms', 1, 's', 'PROBLEM', 'new3', '', '', 'DOWN', '', '9', '0', '9', '', 0)"))
        db.session.commit()
        # Once deleted, an id stays unused.
        assert _ids("alerts") == [1, 2, 3, 5]
        assert _ids("request_logs") == [8]

        downgrade(directory=directory, revision="0007")
        assert _structure()["alerts"] == before["alerts"]
        assert "retention_days" not in [c["name"] for c in inspect(db.engine).get_columns("xmon_settings")]
        db.session.remove()
        db.engine.dispose()

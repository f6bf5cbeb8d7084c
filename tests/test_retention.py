"""Retention: old alerts, calls and ログ rows are pruned in small batches; what is unfinished stays."""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select, text

from tests.conftest import AuthActions
from tests.dispatch_helpers import FakeClock, queue
from tests.factories import make_recipient, make_sms_setting, make_twilio_account, make_user
from xmonbridge import retention
from xmonbridge.dispatch import begin_pass, wake
from xmonbridge.dispatch.engine import Dispatcher
from xmonbridge.extensions import db
from xmonbridge.models import (
    ACK_DONE,
    ACK_FAILED,
    ACK_PENDING,
    CHANNEL_BUTTON,
    CHANNEL_SMS,
    DEFAULT_RETENTION_DAYS,
    DELIVERY_QUEUED,
    DELIVERY_SENT,
    DELIVERY_WAITING,
    NOTIFICATION_ACTIVE,
    NOTIFICATION_DONE,
    OUTCOME_PLACED,
    SETTING_BUTTON_CALL,
    SETTING_SMS,
    Acknowledgement,
    AlertRecord,
    Attempt,
    CallAnnouncement,
    Delivery,
    DispatcherLease,
    Notification,
    NotificationAlert,
    RequestLog,
    SimulatedMessage,
    XmonSettings,
    utcnow,
)

OLD = timedelta(days=DEFAULT_RETENTION_DAYS + 1)
YOUNG = timedelta(days=DEFAULT_RETENTION_DAYS - 1)
TABLES = ("alerts", "notifications", "deliveries", "attempts", "call_announcements", "acknowledgements", "notification_alerts")


def _alert(
    age: timedelta,
    *,
    button: bool = False,
    status: str = NOTIFICATION_DONE,
    delivery: str = DELIVERY_SENT,
    host: str = "web-server01",
    **fields: Any,
) -> AlertRecord:
    """An alert received age ago with one notification, one delivery and one placed attempt."""
    when = utcnow() - age
    setting_type = SETTING_BUTTON_CALL if button else SETTING_SMS
    alert = AlertRecord(
        received_at=when,
        setting_type=setting_type,
        setting_id=1,
        setting_name="担当者への連絡",
        notification_type="PROBLEM",
        host=host,
        service="HTTP",
        state="CRITICAL",
        **fields,
    )
    notification = Notification(
        alert=alert,
        channel=CHANNEL_BUTTON if button else CHANNEL_SMS,
        setting_type=setting_type,
        setting_id=1,
        setting_name="担当者への連絡",
        status=status,
        created_at=when,
        finished_at=None if status == NOTIFICATION_ACTIVE else when,
    )
    row = Delivery(notification=notification, to_number="+819001230001", user_name="佐藤 翔太", status=delivery, next_at=when, updated_at=when)
    Attempt(delivery=row, started_at=when, outcome=OUTCOME_PLACED, sid="SM" + secrets.token_hex(16), callback_token=secrets.token_urlsafe(16))
    db.session.add(alert)
    db.session.commit()
    return alert


def _attempt(alert: AlertRecord) -> Attempt:
    return alert.notifications[0].deliveries[0].attempts[0]


def _log(age: timedelta) -> RequestLog:
    row = RequestLog(created_at=utcnow() - age, kind="sms", destination="+819001230001", success=True)
    db.session.add(row)
    db.session.commit()
    return row


def _simulated(age: timedelta) -> SimulatedMessage:
    row = SimulatedMessage(
        created_at=utcnow() - age,
        channel="sms",
        sid="SM" + secrets.token_hex(16),
        account_sid="AC" + "0" * 32,
        from_number="+815012340001",
        to_number="+819001230001",
        body="【障害】web-server01 HTTP CRITICAL",
    )
    db.session.add(row)
    db.session.commit()
    return row


def _ack(alert: AlertRecord, status: str) -> Acknowledgement:
    ack = Acknowledgement(
        notification_id=alert.notifications[0].id,
        attempt_id=_attempt(alert).id,
        alert_id=alert.id,
        host=alert.host,
        service=alert.service,
        author="佐藤 翔太",
        status=status,
    )
    db.session.add(ack)
    db.session.commit()
    return ack


def _join(alert: AlertRecord, started_by: AlertRecord) -> None:
    """alert joined the button call started_by started (and was read out in its call)."""
    notification = started_by.notifications[0]
    db.session.add(NotificationAlert(notification_id=notification.id, alert_id=alert.id))
    db.session.add(CallAnnouncement(attempt_id=_attempt(started_by).id, alert_id=alert.id))
    db.session.commit()


def _exists(model: type, row_id: int) -> bool:
    """Whether the row is still there (ids are taken before pruning: a pruned object cannot load)."""
    db.session.expire_all()
    return db.session.get(model, row_id) is not None


def _count(table: str) -> int:
    return int(db.session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


def _prune_all(**options: Any) -> retention.Report:
    """Prune until nothing old is left, as passes of the idle dispatcher would."""
    total = retention.Report()
    limits: dict[str, int] = {}
    for _ in range(100):
        report = retention.prune(utcnow(), limits=limits, **options)
        total.batches += report.batches
        for kind, count in report.deleted.items():
            total.deleted[kind] = total.deleted.get(kind, 0) + count
        if not report.more:
            return total
    raise AssertionError("pruning did not finish")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_app(request: pytest.FixtureRequest, make_app: Any) -> Iterator[Flask]:
    """The application on SQLite, then on a migrated PostgreSQL database (tests/pg.py)."""
    database = {}
    if request.param == "postgresql":
        database["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("pg_migrated_url")
    app = make_app(**database)
    with app.app_context():
        yield app


def _admin(app: Flask) -> FlaskClient:
    client = app.test_client()
    make_user(login="admin", is_admin=True, is_approver=True)
    AuthActions(client).login()
    return client


def _listed_alerts(client: FlaskClient) -> list[int]:
    html = client.get("/incidents/").get_data(as_text=True)
    return [int(i) for i in re.findall(r'<tr data-alert-id="(\d+)"', html)]


def _listed_logs(client: FlaskClient) -> list[int]:
    html = client.get("/admin/twilio/logs/").get_data(as_text=True)
    return [int(i) for i in re.findall(r'<tr data-log-id="(\d+)">', html)]


# --- what goes and what stays ---


def test_old_rows_go_and_young_ones_stay(any_db_app: Flask) -> None:
    client = _admin(any_db_app)
    old_alert, young_alert = _alert(OLD, host="old-server"), _alert(YOUNG, host="young-server")
    old_button = _alert(OLD, button=True)
    _ack(old_button, ACK_DONE)
    old_log, young_log = _log(OLD).id, _log(YOUNG).id
    old_sim, young_sim = _simulated(OLD).sid, _simulated(YOUNG).sid
    old_alert, young_alert, old_button = old_alert.id, young_alert.id, old_button.id
    assert _listed_alerts(client) == [young_alert, old_button, old_alert]

    report = _prune_all()

    assert report.deleted == {"request_logs": 1, "alerts": 2, "simulated_messages": 1}
    assert _listed_alerts(client) == [young_alert]
    assert client.get(f"/incidents/{old_alert}").status_code == 404
    assert client.get(f"/incidents/{young_alert}").status_code == 200
    assert _listed_logs(client) == [young_log]
    assert client.get(f"/admin/twilio/logs/{old_log}").status_code == 404
    simulated = client.get("/admin/twilio/logs/simulated").get_data(as_text=True)
    assert young_sim in simulated and old_sim not in simulated
    # Everything that hung on the old alerts went with them; the young alert keeps its own.
    assert {table: _count(table) for table in TABLES} == {
        "alerts": 1, "notifications": 1, "deliveries": 1, "attempts": 1,
        "call_announcements": 0, "acknowledgements": 0, "notification_alerts": 0,
    }  # fmt: skip


def test_what_is_unfinished_is_never_deleted(any_db_app: Flask) -> None:
    active = _alert(OLD, button=True, status=NOTIFICATION_ACTIVE, delivery=DELIVERY_WAITING)
    queued = _alert(OLD, delivery=DELIVERY_QUEUED)  # the notification says done, a recipient is still due
    acked = _alert(OLD, button=True)
    pending_ack = _ack(acked, ACK_PENDING)
    joiner = _alert(OLD)
    _join(joiner, started_by=active)
    # A finished call that a younger alert joined: that alert's page still shows the call.
    started = _alert(OLD, button=True)
    young_joiner = _alert(YOUNG)
    _join(young_joiner, started_by=started)
    failed_ack = _alert(OLD, button=True)
    _ack(failed_ack, ACK_FAILED)
    kept = [a.id for a in (active, queued, acked, joiner, started, young_joiner)]
    failed_ack_id, pending_ack_id, young_joiner_id, started_id = failed_ack.id, pending_ack.id, young_joiner.id, started.id

    report = _prune_all()

    assert report.deleted["alerts"] == 1
    assert not _exists(AlertRecord, failed_ack_id)
    assert [_exists(AlertRecord, alert_id) for alert_id in kept] == [True] * 6
    assert _exists(Acknowledgement, pending_ack_id)
    assert _count("notification_alerts") == 2 and _count("call_announcements") == 2

    # Once the calls end and the acknowledgement is sent, they go too, but for the call the
    # young alert joined: it stays with that alert.
    db.session.execute(Notification.__table__.update().values(status=NOTIFICATION_DONE))
    db.session.execute(Delivery.__table__.update().values(status=DELIVERY_SENT))
    db.session.execute(Acknowledgement.__table__.update().values(status=ACK_DONE))
    db.session.commit()
    _prune_all()
    db.session.expire_all()
    assert sorted(db.session.scalars(select(AlertRecord.id))) == [started_id, young_joiner_id]


def test_a_follow_up_whose_problem_was_pruned_still_shows(app: Flask) -> None:
    client = _admin(app)
    problem = _alert(OLD).id
    recovery = _alert(YOUNG, problem_alert_id=problem, correlation_id="42").id
    page = client.get(f"/incidents/{problem}").get_data(as_text=True)
    assert 'id="alert-followups"' in page

    _prune_all()

    assert _listed_alerts(client) == [recovery]
    page = client.get(f"/incidents/{recovery}")
    assert page.status_code == 200
    assert "web-server01" in page.get_data(as_text=True) and 'id="alert-problem"' not in page.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(AlertRecord, recovery).problem_alert_id is None


def test_ids_of_pruned_rows_are_never_reused(any_db_app: Flask) -> None:
    newest_old = _alert(OLD).id
    old_log = _log(OLD).id
    _prune_all()
    assert db.session.scalar(select(func.count()).select_from(AlertRecord)) == 0

    assert _alert(YOUNG).id > newest_old
    assert _log(YOUNG).id > old_log


# --- batches ---


def test_each_batch_deletes_at_most_its_limit_and_each_call_at_most_its_batches(app: Flask) -> None:
    logs = [_log(OLD + timedelta(minutes=n)).id for n in range(5)]
    alerts = [_alert(OLD).id for _ in range(3)]

    report = retention.prune(utcnow(), max_batches=1, limits={"request_logs": 2})
    assert (report.batches, report.deleted, report.more) == (1, {"request_logs": 2}, True)
    # The oldest go first.
    assert [_exists(RequestLog, row) for row in logs] == [True, True, True, False, False]

    limits = {"request_logs": 2, "alerts": 1}
    report = retention.prune(utcnow(), max_batches=3, limits=limits)
    assert report.batches == 3 and report.deleted == {"request_logs": 2, "alerts": 1, "simulated_messages": 0}
    assert [_exists(AlertRecord, a) for a in alerts] == [False, True, True]

    report = retention.prune(utcnow(), limits=limits)
    assert report.batches <= retention.PASS_BATCHES


def test_batch_sizes_follow_the_time_a_batch_takes() -> None:
    fast, slow = retention.BATCH_SECONDS / 10, retention.BATCH_SECONDS * 10
    assert retention.next_limit(100, 500, fast) == 200
    assert retention.next_limit(400, 500, fast) == 500
    assert retention.next_limit(100, 500, retention.BATCH_SECONDS) == 100
    assert retention.next_limit(100, 500, slow) == 10
    assert retention.next_limit(1, 500, slow) == 1


def test_each_batch_is_committed_before_the_next(app: Flask) -> None:
    """Between batches another writer gets in: each DELETE is committed on its own."""
    for _ in range(3):
        _alert(OLD)
    events: list[str] = []

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        events.append(sql.split()[0].upper())

    def commit(conn: Any) -> None:
        events.append("COMMIT")

    event.listen(db.engine, "before_cursor_execute", statement)
    event.listen(db.engine, "commit", commit)
    try:
        retention.prune(utcnow(), max_batches=3, limits={"alerts": 1})
    finally:
        event.remove(db.engine, "before_cursor_execute", statement)
        event.remove(db.engine, "commit", commit)
    writes = [e for e in events if e in ("DELETE", "COMMIT")]
    assert writes == ["DELETE", "COMMIT"] * 3


# --- the setting ---


def test_the_period_is_saved_through_xmon_settings(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get("/admin/xmon-settings/").get_data(as_text=True)
    assert '<label class="form-label" for="retention_days">ログ・インシデントの保存期間(日)</label>' in page
    assert 'value="400"' in page

    response = client.post(
        "/admin/xmon-settings/",
        data={"xmon_url": "https://xmon.example.com", "voice": "Polly.Mizuki", "retention_days": "90"},
    )
    assert response.status_code == 302
    db.session.expire_all()
    assert XmonSettings.get().retention_days == 90
    assert 'value="90"' in client.get("/admin/xmon-settings/").get_data(as_text=True)


@pytest.mark.parametrize(
    "value,message",
    [
        ("29", "30 から 3650 までの整数で入力してください。"),
        ("3651", "30 から 3650 までの整数で入力してください。"),
        ("-1", "30 から 3650 までの整数で入力してください。"),
        ("一年", "無効な整数です。"),
        ("", "このフィールドは必須です。"),
    ],
)
def test_a_bad_period_is_refused_and_nothing_is_saved(
    client: FlaskClient, logged_in: AuthActions, value: str, message: str
) -> None:
    page = client.post(
        "/admin/xmon-settings/",
        data={"xmon_url": "https://xmon.example.com", "voice": "Polly.Mizuki", "retention_days": value},
    ).get_data(as_text=True)
    assert message in page
    assert 'id="retention_days-error"' in page
    db.session.expire_all()
    assert db.session.get(XmonSettings, 1) is None


def test_pruning_follows_the_period(app: Flask) -> None:
    XmonSettings.for_update().retention_days = 30
    db.session.commit()
    month_old, week_old = _alert(timedelta(days=31)).id, _alert(timedelta(days=7)).id
    _prune_all()
    assert not _exists(AlertRecord, month_old) and _exists(AlertRecord, week_old)


# --- the dispatcher ---


def _pass(dispatcher: Dispatcher) -> None:
    """One pass as the runner thread makes it (wake-ups before it are forgotten)."""
    begin_pass()
    dispatcher.run_once()


def test_the_idle_dispatcher_prunes_every_few_seconds_then_once_a_minute(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the batch count ends a pass here: on a busy machine the time limit could end the
    # caught-up pass before it saw every table, and it would then come back in seconds.
    monkeypatch.setattr(retention, "PASS_SECONDS", 60.0)
    clock = FakeClock()
    dispatcher = Dispatcher(holder="test-a", clock=clock, rng=random.Random(7))
    old_alerts = [_alert(OLD).id for _ in range(6)]
    old_logs = [_log(OLD).id for _ in range(6)]
    _pass(dispatcher)
    # A pass does a few small batches; the next comes soon while old rows are left.
    assert 0 < sum(not _exists(RequestLog, row) for row in old_logs) < len(old_logs)
    for _ in range(20):
        clock.advance(retention.BACKLOG_EVERY.total_seconds())
        _pass(dispatcher)
    assert not any(_exists(AlertRecord, row) for row in old_alerts)
    assert not any(_exists(RequestLog, row) for row in old_logs)

    # Caught up: a pass a minute later finds nothing, and the next comes a minute after it.
    clock.advance(60)
    _pass(dispatcher)
    later = _log(OLD).id
    clock.advance(30)
    _pass(dispatcher)
    assert _exists(RequestLog, later)
    clock.advance(31)
    _pass(dispatcher)
    assert not _exists(RequestLog, later)


def test_an_alert_arriving_ends_the_pruning_pass(app: Flask) -> None:
    clock = FakeClock()
    dispatcher = Dispatcher(holder="test-a", clock=clock, rng=random.Random(7))
    old_logs = [_log(OLD).id for _ in range(3)]
    begin_pass()
    wake()  # as intake does once an alert is committed
    dispatcher.run_once()
    assert sum(not _exists(RequestLog, row) for row in old_logs) == 1
    _pass(dispatcher)  # the next pass goes on soon after (a backlog is left)
    clock.advance(retention.BACKLOG_EVERY.total_seconds())
    _pass(dispatcher)
    assert not any(_exists(RequestLog, row) for row in old_logs)


def test_only_the_lease_holder_prunes(app: Flask) -> None:
    clock = FakeClock()
    leader = Dispatcher(holder="test-a", clock=clock, rng=random.Random(7))
    other = Dispatcher(holder="test-b", clock=clock, rng=random.Random(8))
    leader.run_once()
    old_log = _log(OLD).id
    other.run_once()
    assert _exists(RequestLog, old_log)
    assert db.session.scalar(select(DispatcherLease.holder)) == "test-a"


def test_the_dispatcher_leaves_old_rows_while_work_is_due(app: Flask) -> None:
    """A pass after which a delivery is due at once leaves pruning for an idle one."""
    clock = FakeClock()
    dispatcher = Dispatcher(holder="test-a", clock=clock, rng=random.Random(7))
    setting = make_sms_setting(make_twilio_account(), [make_recipient()])
    old_log = _log(OLD).id
    notification = queue(setting, at=clock.now() + timedelta(seconds=0.1))
    dispatcher.run_once()
    assert _exists(RequestLog, old_log)

    clock.advance(1)
    dispatcher.run_once()
    db.session.expire_all()
    assert [d.status for d in notification.deliveries] == [DELIVERY_SENT]
    assert not _exists(RequestLog, old_log)


# --- the pages' queries use indexes ---

BIG_TABLES = ("request_logs", "alerts", "notifications", "deliveries", "attempts", "simulated_messages", "call_announcements")


def _plans(client: FlaskClient, url: str) -> list[tuple[str, list[str]]]:
    """(SQL, query plan) of every SELECT the page ran, on SQLite."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    raw = db.engine.raw_connection()
    try:
        return [(sql, [row[3] for row in raw.cursor().execute(f"EXPLAIN QUERY PLAN {sql}", params)]) for sql, params in seen]
    finally:
        raw.close()


def _full_scans_and_sorts(plans: list[tuple[str, list[str]]]) -> list[str]:
    """Steps that read a whole big table: a scan without LIMIT, or a page taken after a sort.

    A bare SCAN under a LIMIT walks the table in rowid order and stops early (the newest
    simulated messages, a capped count); one without LIMIT reads every row. A sort under a
    LIMIT sorts every matching row to show a page; without one it orders the few rows an
    IN list loaded (the notifications of a page's alerts).
    """
    bad = []
    for sql, plan in plans:
        limited = "LIMIT" in sql
        for step in plan:
            scan = re.match(r"SCAN (\w+)$", step)
            full_scan = bool(scan and scan.group(1) in BIG_TABLES and not limited)
            big_sort = "TEMP B-TREE FOR ORDER BY" in step and limited and any(table in sql for table in BIG_TABLES)
            if full_scan or big_sort:
                bad.append(f"{step}: {' '.join(sql.split())[:160]}")
    return bad


@pytest.fixture
def filled(app: Flask) -> FlaskClient:
    client = _admin(app)
    for n in range(3):
        _alert(timedelta(days=n), host=f"server{n}")
        _log(timedelta(days=n))
        _simulated(timedelta(days=n))
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/twilio/logs/",
        "/admin/twilio/logs/?start=2026-01-01&end=2026-12-31",
        "/admin/twilio/logs/?page=3",
        "/admin/twilio/logs/1",
        "/admin/twilio/logs/simulated",
        "/incidents/",
        "/incidents/?start=2026-01-01&end=2026-12-31",
        "/incidents/?page=3",
        "/incidents/1",
    ],
)
def test_the_pages_read_through_indexes(filled: FlaskClient, url: str) -> None:
    """No full scan of a big table and no sort of all its rows, on any of the page's queries."""
    assert _full_scans_and_sorts(_plans(filled, url)) == []


@pytest.mark.parametrize("url", ["/admin/twilio/logs/?kind=sms", "/incidents/?setting=sms:1"])
def test_the_setting_and_kind_filters_read_through_indexes(filled: FlaskClient, url: str) -> None:
    assert _full_scans_and_sorts(_plans(filled, url)) == []


def _prune_plans() -> dict[str, list[str]]:
    """The query plan of each kind's DELETE, on SQLite (foreign key actions included)."""
    raw = db.engine.raw_connection()
    plans = {}
    try:
        for name, statement, _most in retention.KINDS:
            compiled = statement(utcnow(), 10).compile(db.engine, compile_kwargs={"render_postcompile": True})
            params = [compiled.params[key] for key in compiled.positiontup or []]
            plans[name] = [row[3] for row in raw.cursor().execute(f"EXPLAIN QUERY PLAN {compiled}", params)]
    finally:
        raw.close()
    return plans


def test_pruning_finds_old_rows_through_indexes(app: Flask) -> None:
    plans = _prune_plans()
    assert "SEARCH request_logs USING COVERING INDEX ix_request_logs_created_at (created_at<?)" in plans["request_logs"]
    assert "SEARCH alerts USING COVERING INDEX ix_alerts_received_at (received_at<?)" in plans["alerts"]
    # What keeps an alert is looked up by key; pending acknowledgements through their queue index.
    assert "SEARCH acknowledgements USING INDEX ix_acknowledgements_queue (status=?)" in plans["alerts"]
    for name, plan in plans.items():
        scans = [step for step in plan if re.fullmatch(r"SCAN (request_logs|alerts|notifications|deliveries|attempts)", step)]
        assert scans == [], name


def test_deleting_an_alert_finds_what_hangs_on_it_through_indexes(app: Flask) -> None:
    """Without them each deleted alert reads both tables whole (ON DELETE CASCADE / SET NULL)."""
    plan = _prune_plans()["alerts"]
    assert "SCAN call_announcements" not in plan and "SCAN acknowledgements" not in plan

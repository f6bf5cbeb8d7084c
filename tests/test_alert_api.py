"""POST /api/v1/alerts: validation, tokens, limits, dedupe, ACKNOWLEDGEMENT, RECOVERY correlation."""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.dispatch_helpers import FakeClock
from tests.factories import make_recipient, make_simple_call_setting, make_sms_setting, make_twilio_account
from xmonbridge.dispatch.engine import Dispatcher
from xmonbridge.extensions import db
from xmonbridge.models import (
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    AlertRecord,
    ApiToken,
    Delivery,
    Notification,
    utcnow,
)

TOKEN = "xmb_test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def token(app: Flask) -> ApiToken:
    row = ApiToken(name="監視サーバ", token_hash=hashlib.sha256(TOKEN.encode()).hexdigest(), hint=TOKEN[:8])
    db.session.add(row)
    db.session.commit()
    return row


@pytest.fixture
def settings(app: Flask) -> dict[str, Any]:
    users = [make_recipient(login="sato", phone="+819001230001"), make_recipient(login="suzuki", name="鈴木", phone="+819001230002")]
    account = make_twilio_account()
    return {
        "simple": make_simple_call_setting(account, users, name="電話連絡"),
        "sms": make_sms_setting(account, users, name="SMS連絡"),
        "users": users,
    }


def problem(setting_ref: int, kind: str = "sms", **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "kind": kind,
        "setting_id": setting_ref,
        "type": "PROBLEM",
        "host": "web-server01",
        "host_address": "192.0.2.10",
        "service": "HTTP",
        "state": "CRITICAL",
        "output": "Connection refused",
        "problem_id": "41",
        "time": "1795900000",
    }
    fields.update(extra)
    return {k: v for k, v in fields.items() if v is not None}


def alerts() -> list[AlertRecord]:
    db.session.expire_all()
    return list(db.session.scalars(select(AlertRecord).order_by(AlertRecord.id)))


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


# --- accepted ---


def test_json_alert_is_stored_with_a_delivery_per_recipient(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    response = client.post("/api/v1/alerts", json=problem(settings["sms"].id), headers=AUTH)
    assert response.status_code == 202
    [alert] = alerts()
    assert response.get_json() == {"id": alert.id, "duplicate": False}
    assert (alert.host, alert.host_address, alert.service, alert.state) == ("web-server01", "192.0.2.10", "HTTP", "CRITICAL")
    assert alert.event_time == datetime(2026, 11, 28, 21, 6, 40)
    assert alert.token_name == "監視サーバ" and alert.setting_name == "SMS連絡"
    [notification] = alert.notifications
    assert notification.text == "[X-MON 障害] ホスト web-server01 のサービス HTTP"
    assert [(d.user_name, d.to_number, d.status) for d in notification.deliveries] == [
        ("佐藤 翔太", "+819001230001", DELIVERY_QUEUED),
        ("鈴木", "+819001230002", DELIVERY_QUEUED),
    ]


def test_form_encoded_alert_by_setting_name(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    fields = problem(settings["simple"].id, kind="simple_call", setting="電話連絡", setting_id=None)
    response = client.post("/api/v1/alerts", data=fields, headers=AUTH)
    assert response.status_code == 202
    [notification] = alerts()[0].notifications
    message = parse_qs(urlsplit(notification.url).query)["message"][0]
    assert message == "X-MON からの障害通知です。ホスト web-server01 のサービス HTTP で障害が発生しました。"
    assert notification.ring_seconds == 60


def test_host_alert_has_no_service(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    response = client.post("/api/v1/alerts", json=problem(settings["sms"].id, service=None, state="DOWN"), headers=AUTH)
    assert response.status_code == 202
    alert = alerts()[0]
    assert alert.service == "" and alert.is_host_alert
    assert alert.notifications[0].text == "[X-MON 障害] ホスト web-server01"


def test_last_use_of_the_token_is_recorded(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    assert token.last_used_at is None
    client.post("/api/v1/alerts", json=problem(settings["sms"].id), headers=AUTH)
    db.session.expire_all()
    assert db.session.get(ApiToken, token.id).last_used_at is not None


def test_a_recipient_without_a_number_is_failed_with_the_reason(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    settings["users"][1].phone = None
    db.session.commit()
    client.post("/api/v1/alerts", json=problem(settings["sms"].id), headers=AUTH)
    deliveries = alerts()[0].notifications[0].deliveries
    assert [d.status for d in deliveries] == [DELIVERY_QUEUED, DELIVERY_FAILED]
    assert "連絡先電話番号" in deliveries[1].error


# --- refused ---


@pytest.mark.parametrize(
    "changes,field,message",
    [
        ({"kind": None}, "kind", "kind: 通知設定の種類を指定してください"),
        ({"kind": "voice"}, "kind", "kind: 通知設定の種類は simple_call / button_call / sms のいずれかです。"),
        ({"setting_id": None}, "setting", "setting: 通知設定の名称(setting)または ID(setting_id)を指定してください。"),
        ({"setting_id": "abc"}, "setting_id", "setting_id: 通知設定の ID は正の整数で指定してください。"),
        ({"setting_id": 0}, "setting_id", "setting_id: 通知設定の ID は正の整数で指定してください。"),
        ({"setting_id": 2**63}, "setting_id", "setting_id: 通知設定の ID は正の整数で指定してください。"),
        ({"setting_id": "²"}, "setting_id", "setting_id: 通知設定の ID は正の整数で指定してください。"),
        ({"setting_id": "１"}, "setting_id", "setting_id: 通知設定の ID は正の整数で指定してください。"),
        ({"problem_id": "１２"}, "problem_id", "problem_id: 問題 ID は数字で指定してください。"),
        ({"time": "１７９５９０００００"}, "time", "time: 日時は UNIX 時刻"),
        ({"setting": "x" * 129}, "setting", "setting: 通知設定の名称は 128 文字以内です。"),
        ({"type": None}, "type", "type: 通知の種類($NOTIFICATIONTYPE$)を指定してください。"),
        ({"type": "OUTAGE"}, "type", "type: 通知の種類は PROBLEM, RECOVERY"),
        ({"host": None}, "host", "host: ホスト名を指定してください。"),
        ({"host": "   "}, "host", "host: ホスト名を指定してください。"),
        ({"host": "h" * 256}, "host", "host: 255 文字以内で指定してください。"),
        ({"host_address": "a" * 256}, "host_address", "host_address: 255 文字以内で指定してください。"),
        ({"service": "s" * 256}, "service", "service: 255 文字以内で指定してください。"),
        ({"host": "web\x00server"}, "host", "host: 制御文字は使用できません。"),
        ({"service": "HTTP\u202e"}, "service", "service: 制御文字は使用できません。"),
        ({"output": "a\ufffeb\uffffc"}, "output", "output: 制御文字は使用できません。"),  # XML cannot carry them
        ({"output": "o" * 8193}, "output", "output: 8,192 文字以内で指定してください。"),
        ({"state": None}, "state", "state: 状態を指定してください"),
        ({"state": "DOWN"}, "state", "state: サービスの状態は OK, WARNING, CRITICAL, UNKNOWN のいずれかです。"),
        ({"service": None, "state": "CRITICAL"}, "state", "state: ホストの状態は UP, DOWN, UNREACHABLE のいずれかです。"),
        ({"problem_id": "12a"}, "problem_id", "problem_id: 問題 ID は数字で指定してください。"),
        ({"last_problem_id": "-1"}, "last_problem_id", "last_problem_id: 問題 ID は数字で指定してください。"),
        ({"time": "yesterday"}, "time", "time: 日時は UNIX 時刻(秒)か、タイムゾーン付きの ISO 8601 形式で指定してください。"),
        ({"time": "2026-11-28T10:00:00"}, "time", "time: 日時は UNIX 時刻"),
        ({"colour": "red"}, "colour", "colour: 知らない項目です"),
        ({"host": ["a", "b"]}, "host", "host: 文字列または数値で指定してください。"),
    ],
)
def test_each_bad_field_is_listed_and_nothing_is_stored(
    client: FlaskClient, token: ApiToken, settings: dict[str, Any], changes: dict[str, Any], field: str, message: str
) -> None:
    response = client.post("/api/v1/alerts", json=problem(settings["sms"].id, **changes), headers=AUTH)
    assert response.status_code == 400
    errors = response.get_json()["errors"]
    assert any(e["field"] == field and e["message"].startswith(message) for e in errors), errors
    assert alerts() == [] and count(Notification) == 0


def test_every_problem_is_listed_at_once(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    response = client.post("/api/v1/alerts", json={"kind": "sms", "setting_id": "x", "type": "", "state": "?"}, headers=AUTH)
    assert response.status_code == 400
    assert {e["field"] for e in response.get_json()["errors"]} == {"setting_id", "type", "host", "state"}


def test_iso_time_with_a_zone_is_stored_as_utc(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    response = client.post("/api/v1/alerts", json=problem(settings["sms"].id, time="2026-11-28T10:00:00+09:00"), headers=AUTH)
    assert response.status_code == 202
    assert alerts()[0].event_time == datetime(2026, 11, 28, 1, 0, 0)


def test_a_json_body_that_is_not_an_object(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    response = client.post("/api/v1/alerts", data="[1, 2]", content_type="application/json", headers=AUTH)
    assert response.status_code == 400 and response.get_json()["errors"][0]["message"] == "JSON のオブジェクトを送ってください。"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "}],
    ids=["missing", "wrong", "not-bearer", "empty"],
)
def test_without_a_valid_token_401(client: FlaskClient, token: ApiToken, settings: dict[str, Any], headers: dict[str, str]) -> None:
    response = client.post("/api/v1/alerts", json=problem(settings["sms"].id), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert alerts() == []


def test_a_revoked_token_401(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    token.revoked_at = utcnow()
    db.session.commit()
    response = client.post("/api/v1/alerts", json=problem(settings["sms"].id), headers=AUTH)
    assert response.status_code == 401 and alerts() == []


@pytest.mark.parametrize(
    "changes",
    [{"setting_id": 999}, {"kind": "simple_call"}, {"kind": "button_call"}, {"setting_id": None, "setting": "ない設定"}],
    ids=["unknown-id", "other-kind", "button-call", "unknown-name"],
)
def test_unknown_setting_404(client: FlaskClient, token: ApiToken, settings: dict[str, Any], changes: dict[str, Any]) -> None:
    fields = problem(settings["sms"].id, **changes)
    if changes.get("kind") == "simple_call":
        fields["setting_id"] = settings["simple"].id + settings["sms"].id + 100
    response = client.post("/api/v1/alerts", json=fields, headers=AUTH)
    assert response.status_code == 404
    assert "の通知設定" in response.get_json()["errors"][0]["message"]
    assert alerts() == []


def test_oversized_body_413_json(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    body = problem(settings["sms"].id, output="x" * 70_000)
    response = client.post("/api/v1/alerts", json=body, headers=AUTH)
    assert response.status_code == 413
    assert response.get_json()["errors"][0]["message"] == "送信されたデータが大きすぎます。"
    response = client.post("/api/v1/alerts", data=body, headers=AUTH)
    assert response.status_code == 413
    assert alerts() == []


def test_other_methods_and_paths_answer_json(client: FlaskClient, token: ApiToken) -> None:
    response = client.get("/api/v1/alerts", headers=AUTH)
    assert response.status_code == 405 and "errors" in response.get_json()
    response = client.post("/api/v1/nothing", headers=AUTH)
    assert response.status_code == 404 and "errors" in response.get_json()


def test_no_csrf_token_is_needed(make_app: Any) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        db.session.add(ApiToken(name="t", token_hash=hashlib.sha256(TOKEN.encode()).hexdigest()))
        db.session.commit()
        setting = make_sms_setting(make_twilio_account(), [make_recipient()])
        response = app.test_client().post("/api/v1/alerts", json=problem(setting.id), headers=AUTH)
        assert response.status_code == 202


# --- dedupe ---


def test_the_same_notification_repeated_is_stored_once(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    first = client.post("/api/v1/alerts", json=problem(settings["sms"].id), headers=AUTH).get_json()
    again = client.post("/api/v1/alerts", json=problem(settings["sms"].id, output="still refused"), headers=AUTH)
    assert again.status_code == 202
    assert again.get_json() == {"id": first["id"], "duplicate": True}
    [alert] = alerts()
    assert alert.repeats == 1 and count(Notification) == 1
    # Another problem id, type, service or setting is another notification.
    for changes in ({"problem_id": "42"}, {"type": "RECOVERY", "state": "OK"}, {"service": "SSH"}):
        assert client.post("/api/v1/alerts", json=problem(settings["sms"].id, **changes), headers=AUTH).get_json()["duplicate"] is False
    assert client.post("/api/v1/alerts", json=problem(settings["simple"].id, kind="simple_call"), headers=AUTH).get_json()["duplicate"] is False
    assert len(alerts()) == 5


def test_after_the_window_a_repeat_is_stored_again(make_app: Any) -> None:
    app = make_app(ALERT_DEDUPE_SECONDS=0)
    with app.app_context():
        db.session.add(ApiToken(name="t", token_hash=hashlib.sha256(TOKEN.encode()).hexdigest()))
        db.session.commit()
        setting = make_sms_setting(make_twilio_account(), [make_recipient()])
        client = app.test_client()
        ids = {client.post("/api/v1/alerts", json=problem(setting.id), headers=AUTH).get_json()["id"] for _ in range(2)}
        assert len(ids) == 2


def test_twenty_identical_alerts_at_once_are_stored_once(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(20)

    fields = problem(settings["sms"].id)

    def send() -> None:
        barrier.wait()
        try:
            response = client.post("/api/v1/alerts", json=fields, headers=AUTH)
            answers.append({"status": response.status_code, **response.get_json()})
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            answers.append({"status": repr(error)})

    threads = [threading.Thread(target=send) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a["status"] for a in answers} == {202}
    assert len({a["id"] for a in answers}) == 1
    assert sum(1 for a in answers if not a["duplicate"]) == 1
    [alert] = alerts()
    assert alert.repeats == 19
    assert count(Notification) == 1 and count(Delivery) == 2


# --- ACKNOWLEDGEMENT and RECOVERY ---


def test_acknowledgement_is_recorded_and_places_nothing(
    live_app: Flask, fake_twilio: Any, settings_live: dict[str, Any]
) -> None:
    client = live_app.test_client()
    response = client.post("/api/v1/alerts", json=problem(settings_live["sms"].id, type="ACKNOWLEDGEMENT"), headers=AUTH)
    assert response.status_code == 202
    [alert] = alerts()
    assert alert.notification_type == "ACKNOWLEDGEMENT" and alert.notifications == []
    Dispatcher(holder="t", clock=FakeClock()).run_once()
    assert fake_twilio.requests_for("CreateMessage") == []


@pytest.fixture
def settings_live(live_app: Flask) -> dict[str, Any]:
    db.session.add(ApiToken(name="監視サーバ", token_hash=hashlib.sha256(TOKEN.encode()).hexdigest()))
    db.session.commit()
    users = [make_recipient(login="sato", phone="+819001230001")]
    account = make_twilio_account(cps=100)
    return {"sms": make_sms_setting(account, users, name="SMS連絡"), "simple": make_simple_call_setting(account, users, name="電話連絡")}


def test_api_to_twilio_end_to_end(live_app: Flask, fake_twilio: Any, settings_live: dict[str, Any]) -> None:
    client = live_app.test_client()
    client.post("/api/v1/alerts", json=problem(settings_live["sms"].id), headers=AUTH)
    client.post("/api/v1/alerts", json=problem(settings_live["simple"].id, kind="simple_call"), headers=AUTH)
    clock = FakeClock()
    Dispatcher(holder="t", clock=clock).run_once()
    [message] = fake_twilio.requests_for("CreateMessage")
    assert message.form["Body"] == "[X-MON 障害] ホスト web-server01 のサービス HTTP" and message.form["To"] == "+819001230001"
    [call] = fake_twilio.requests_for("CreateCall")
    assert fake_twilio.heard(next(iter(fake_twilio.calls_by_sid))) == (
        "X-MON からの障害通知です。ホスト web-server01 のサービス HTTP で障害が発生しました。"
    )


def test_service_recovery_is_tied_to_its_problem(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    sms = settings["sms"].id
    client.post("/api/v1/alerts", json=problem(sms, problem_id="7"), headers=AUTH)
    other = client.post("/api/v1/alerts", json=problem(sms, problem_id="8", service="SSH"), headers=AUTH).get_json()
    client.post("/api/v1/alerts", json=problem(sms, problem_id="9"), headers=AUTH)
    recovery = client.post(
        "/api/v1/alerts", json=problem(sms, type="RECOVERY", state="OK", problem_id="9", last_problem_id="9"), headers=AUTH
    ).get_json()
    by_id = {a.id: a for a in alerts()}
    assert by_id[recovery["id"]].problem_alert.problem_id == "9"
    assert by_id[recovery["id"]].notifications[0].text == "[X-MON 復旧] ホスト web-server01 のサービス HTTP"
    assert by_id[other["id"]].problem_alert_id is None


def test_host_recovery_uses_the_last_problem_id(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    sms = settings["sms"].id
    first = client.post("/api/v1/alerts", json=problem(sms, service=None, state="DOWN", problem_id="12"), headers=AUTH).get_json()
    # Nagios: a host RECOVERY has $HOSTPROBLEMID$=0 and the id in $LASTHOSTPROBLEMID$.
    recovery = client.post(
        "/api/v1/alerts",
        json=problem(sms, service=None, type="RECOVERY", state="UP", problem_id="0", last_problem_id="12"),
        headers=AUTH,
    ).get_json()
    by_id = {a.id: a for a in alerts()}
    assert by_id[recovery["id"]].problem_alert_id == first["id"]
    assert by_id[recovery["id"]].correlation_id == "12"


def test_other_types_read_naturally(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    client.post("/api/v1/alerts", json=problem(settings["simple"].id, kind="simple_call", type="DOWNTIMESTART", state="OK"), headers=AUTH)
    text = alerts()[0].notifications[0].text
    assert text == "X-MON からの通知です。ホスト web-server01 のサービス HTTP の計画停止が始まりました。"


def test_json_sent_as_plain_text_says_which_content_type_to_use(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    import json

    response = client.post("/api/v1/alerts", data=json.dumps(problem(settings["sms"].id)), content_type="text/plain", headers=AUTH)
    assert response.status_code == 400
    assert "Content-Type を application/json か application/x-www-form-urlencoded" in response.get_json()["errors"][0]["message"]
    assert alerts() == []


def test_a_form_field_given_twice_is_refused(client: FlaskClient, token: ApiToken, settings: dict[str, Any]) -> None:
    body = "kind=sms&kind=simple_call&setting_id=%d&type=PROBLEM&host=h&state=DOWN" % settings["sms"].id
    response = client.post("/api/v1/alerts", data=body, content_type="application/x-www-form-urlencoded", headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": "kind", "message": "kind: 1 回だけ指定してください。"}]
    assert alerts() == []

"""GET /healthz: what the monitor's self-check sees, without logging in."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient

from xmonbridge.dispatch.lease import Lease
from xmonbridge.extensions import db
from xmonbridge.models import LOG_CALL, LOG_STATUS_CALLBACK, RequestLog, utcnow

from tests.dispatch_helpers import queue
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    make_recipient,
    make_simple_call_setting,
    make_twilio_account,
    set_xmon_url,
)

XMON_URL = "https://xmon.example.jp/xmonbridge"


def _lead(seconds_ago: float = 0, lease: float = 10) -> str:
    holder = "box1:4242:cafe"
    Lease(holder, lease).acquire_or_renew(utcnow() - timedelta(seconds=seconds_ago))
    return holder


def test_healthy_with_a_running_dispatcher(app: Flask, client: FlaskClient) -> None:
    set_xmon_url(XMON_URL)
    holder = _lead(seconds_ago=2)

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response.headers
    body = response.get_json()
    assert body["status"] == "ok", body
    assert body["reasons"] == []
    assert body["database"] is True
    assert body["dispatcher"]["holder"] == holder
    assert body["dispatcher"]["running"] is True
    assert 2 <= body["dispatcher"]["heartbeat_age"] <= 4
    assert body["oldest_waiting"] == {"age": 0, "alert_id": None, "count": 0}
    assert body["twilio"]["last_error"] is None
    assert body["xmon_url_set"] is True


def test_stale_lease_is_critical(app: Flask, client: FlaskClient) -> None:
    set_xmon_url(XMON_URL)
    _lead(seconds_ago=60)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "critical"
    assert body["dispatcher"]["running"] is False
    assert body["dispatcher"]["heartbeat_age"] >= 60
    assert any("stale" in reason for reason in body["reasons"])


def test_no_dispatcher_ever_is_critical(app: Flask, client: FlaskClient) -> None:
    set_xmon_url(XMON_URL)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["dispatcher"]["holder"] is None
    assert body["reasons"] == ["no dispatcher has ever held the lease"]


def test_released_lease_is_critical(app: Flask, client: FlaskClient) -> None:
    set_xmon_url(XMON_URL)
    lease = Lease("box1:1:beef", 10)
    lease.acquire_or_renew(utcnow())
    lease.release(utcnow())
    assert client.get("/healthz").status_code == 503


def test_waiting_delivery_twilio_error_and_missing_url_warn(app: Flask, client: FlaskClient) -> None:
    account = make_twilio_account()
    setting = make_simple_call_setting(account, [make_recipient()])
    notification = queue(setting, at=utcnow() - timedelta(seconds=300))
    db.session.add(
        RequestLog(
            kind=LOG_CALL,
            account_id=account.id,
            account_name=account.name,
            destination="+819001230001",
            http_status=401,
            error_code=20003,
            error_message=f"Authenticate {AUTH_TOKEN}",
            success=False,
        )
    )
    # A webhook Twilio made to us is not a request to Twilio.
    db.session.add(RequestLog(kind=LOG_STATUS_CALLBACK, success=False, created_at=utcnow() + timedelta(seconds=1)))
    db.session.commit()
    _lead()

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "warning"
    assert body["oldest_waiting"]["alert_id"] == notification.alert_id
    assert body["oldest_waiting"]["count"] == 1
    assert 300 <= body["oldest_waiting"]["age"] <= 302
    error = body["twilio"]["last_error"]
    assert error["kind"] == LOG_CALL and error["error_code"] == 20003 and error["http_status"] == 401
    assert body["twilio"]["failing"] is True
    assert body["xmon_url_set"] is False
    assert len(body["reasons"]) == 3
    # Nothing secret: no AUTH TOKEN, no Account SID, no number, no error text.
    text = response.get_data(as_text=True)
    for secret in (AUTH_TOKEN, ACCOUNT_SID, "+819001230001", "Authenticate", app.config["SECRET_KEY"]):
        assert secret not in text


def test_a_later_success_clears_the_twilio_warning(app: Flask, client: FlaskClient) -> None:
    set_xmon_url(XMON_URL)
    now = utcnow()
    db.session.add(RequestLog(kind=LOG_CALL, success=False, http_status=500, created_at=now - timedelta(seconds=30)))
    db.session.add(RequestLog(kind=LOG_CALL, success=True, http_status=201, created_at=now - timedelta(seconds=10)))
    db.session.commit()
    _lead()
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok"
    assert body["twilio"]["last_error"]["http_status"] == 500
    assert body["twilio"]["failing"] is False


def test_unreachable_database_is_critical(make_app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'missing' / 'x.sqlite'}")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] is False
    assert body["reasons"] == ["database unreachable"]

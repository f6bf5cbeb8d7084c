"""Status callbacks: signed by the account's AUTH TOKEN over the public URL, or refused (B7, B9)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from tests.dispatch_helpers import FakeClock, queue
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    make_alert,
    make_recipient,
    make_simple_call_setting,
    make_sms_setting,
    make_twilio_account,
    make_user,
    set_xmon_url,
)
from xmonbridge.dispatch.engine import Dispatcher
from xmonbridge.extensions import db
from xmonbridge.models import DELIVERY_SENT, LOG_STATUS_CALLBACK, OUTCOME_PLACED, Attempt, Delivery, RequestLog
from xmonbridge.public_url import STATUS_CALLBACK_PATH
from xmonbridge.webhooks import callbacks

XMON_URL = "https://alerts.example.jp/xmon"
CALL_SID = "CA" + "a1" * 16
MESSAGE_SID = "SM" + "b2" * 16
OTHER_SID = "AC" + "99" * 16
OTHER_TOKEN = "5a" * 16


def public_url(token: str, query: str = "") -> str:
    return f"{XMON_URL}{STATUS_CALLBACK_PATH}{token}" + (f"?{query}" if query else "")


def sign(url: str, params: dict[str, str], auth_token: str = AUTH_TOKEN) -> str:
    return RequestValidator(auth_token).compute_signature(url, params)


def post(
    client: FlaskClient,
    token: str,
    params: dict[str, str],
    *,
    auth_token: str = AUTH_TOKEN,
    query: str = "",
    signature: str | None = "sign",
    signed_url: str | None = None,
) -> Any:
    """POST a callback to the local address, signed (by default) over the public URL."""
    if signature == "sign":
        signature = sign(signed_url or public_url(token, query), params, auth_token)
    headers = {callbacks.SIGNATURE_HEADER: signature} if signature is not None else {}
    path = f"{STATUS_CALLBACK_PATH}{token}" + (f"?{query}" if query else "")
    return client.post(path, data=params, headers=headers)


def call_params(status: str, **extra: str) -> dict[str, str]:
    params = {"AccountSid": ACCOUNT_SID, "CallSid": CALL_SID, "CallStatus": status, "To": "+819001230001"}
    params.update(extra)
    return params


@pytest.fixture
def attempt(app: Flask) -> Attempt:
    """A placed call whose callback is due, on the account of ACCOUNT_SID; another account exists."""
    set_xmon_url(XMON_URL)
    account = make_twilio_account()
    make_twilio_account(name="別チームアカウント", account_sid=OTHER_SID, auth_token=OTHER_TOKEN)
    setting = make_simple_call_setting(account, [make_recipient()])
    alert = make_alert(
        setting,
        deliveries=[
            {
                "user_name": "佐藤 翔太",
                "to_number": "+819001230001",
                "status": DELIVERY_SENT,
                "sid": CALL_SID,
                "attempts": [{"outcome": OUTCOME_PLACED, "sid": CALL_SID}],
            }
        ],
    )
    return alert.notifications[0].deliveries[0].attempts[0]


def fresh(attempt: Attempt) -> tuple[Attempt, Delivery]:
    db.session.expire_all()
    row = db.session.get(Attempt, attempt.id)
    assert row is not None
    return row, row.delivery


def callback_logs() -> list[RequestLog]:
    db.session.expire_all()
    return list(db.session.scalars(select(RequestLog).where(RequestLog.kind == LOG_STATUS_CALLBACK).order_by(RequestLog.id)))


def assert_nothing_recorded(attempt: Attempt) -> None:
    row, delivery = fresh(attempt)
    assert (row.final_status, row.final_at, row.answered_by, row.duration) == ("", None, "", None)
    assert delivery.final_status == ""


def assert_no_secret_logged(*secrets: str) -> None:
    for row in db.session.scalars(select(RequestLog)):
        text = json.dumps([getattr(row, c.name) for c in RequestLog.__table__.columns], default=str, ensure_ascii=False)
        for secret in secrets:
            assert secret not in text


def test_the_blueprint_serves_the_path_public_url_builds(app: Flask) -> None:
    from flask import url_for

    with app.test_request_context():
        assert url_for("webhooks.status", token="abc") == f"{STATUS_CALLBACK_PATH}abc"


def test_a_valid_callback_through_a_public_url_that_differs_from_the_local_one(
    client: FlaskClient, attempt: Attempt
) -> None:
    """Signed over https://alerts.example.jp/xmon/…, received at http://localhost/… (as behind a proxy)."""
    params = call_params("completed", AnsweredBy="human", CallDuration="37")
    signature = sign(public_url(attempt.callback_token), params)
    response = post(client, attempt.callback_token, params, signature=signature)

    assert response.status_code == 204 and response.data == b""
    row, delivery = fresh(attempt)
    assert (row.final_status, row.answered_by, row.duration) == ("completed", "human", 37)
    assert delivery.final_status == "completed"
    [logged] = callback_logs()
    assert logged.success and logged.http_status == 204 and logged.sid == CALL_SID
    assert logged.account_name == "運用チームアカウント" and logged.setting_name == "担当者への連絡"
    assert logged.destination == "+819001230001"
    summary = json.loads(logged.request_summary)
    assert summary["CallStatus"] == "completed"
    assert summary[callbacks.CHECK_KEY] == callbacks.CHECK_OK
    assert summary[callbacks.RESULT_KEY] == callbacks.RECORDED
    assert_no_secret_logged(attempt.callback_token, signature, AUTH_TOKEN)


def test_the_query_string_is_part_of_the_signed_url(client: FlaskClient, attempt: Attempt) -> None:
    response = post(client, attempt.callback_token, call_params("busy"), query="retry=1&x=%E3%81%82")
    assert response.status_code == 204
    assert fresh(attempt)[0].final_status == "busy"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("signed_over_local_url", callbacks.BAD_SIGNATURE),
        ("forged", callbacks.BAD_SIGNATURE),
        ("tampered", callbacks.BAD_SIGNATURE),
        ("missing", callbacks.NO_SIGNATURE),
        ("empty", callbacks.NO_SIGNATURE),
        ("other_accounts_token", callbacks.BAD_SIGNATURE),
        ("other_account_sid", callbacks.ACCOUNT_MISMATCH),
        ("no_account_sid", callbacks.NO_ACCOUNT_SID),
    ],
)
def test_it_refuses_callbacks_not_signed_by_the_attempts_account(
    client: FlaskClient, attempt: Attempt, case: str, reason: str
) -> None:
    token = attempt.callback_token
    params = call_params("completed", CallDuration="5")
    if case == "signed_over_local_url":
        # What a check against request.url would accept: the address the request arrived at.
        response = post(client, token, params, signed_url=f"http://localhost{STATUS_CALLBACK_PATH}{token}")
    elif case == "forged":
        response = post(client, token, params, signature="bm90IGEgcmVhbCBzaWduYXR1cmU=")
    elif case == "tampered":
        signature = sign(public_url(token), call_params("no-answer", CallDuration="5"))
        response = post(client, token, params, signature=signature)
    elif case == "missing":
        response = post(client, token, params, signature=None)
    elif case == "empty":
        response = post(client, token, params, signature="")
    elif case == "other_accounts_token":
        response = post(client, token, params, auth_token=OTHER_TOKEN)
    elif case == "other_account_sid":
        # Correctly signed by the other account: but this call was not placed through it.
        response = post(client, token, call_params("completed", AccountSid=OTHER_SID), auth_token=OTHER_TOKEN)
    else:
        params.pop("AccountSid")
        response = post(client, token, params)

    assert response.status_code == 403
    assert_nothing_recorded(attempt)
    [logged] = callback_logs()
    assert not logged.success and logged.http_status == 403
    assert logged.error_message == reason
    assert json.loads(logged.request_summary)[callbacks.CHECK_KEY] == reason
    assert logged.account_name == "運用チームアカウント"
    assert_no_secret_logged(token, AUTH_TOKEN, OTHER_TOKEN)


def test_the_japanese_reasons_name_the_check() -> None:
    assert callbacks.NO_SIGNATURE.startswith("署名なし")
    assert callbacks.BAD_SIGNATURE.startswith("署名が一致しません")
    assert callbacks.ACCOUNT_MISMATCH.startswith("アカウントが一致しません")


def test_an_unknown_token_is_404_and_adds_no_log_row(client: FlaskClient, attempt: Attempt) -> None:
    unknown = "x" * 32
    response = post(client, unknown, call_params("completed"))
    assert response.status_code == 404
    assert_nothing_recorded(attempt)
    # Anyone can post there: such requests must not fill ログ with their text.
    for n in range(5):
        assert post(client, f"junk{n}", {"CallStatus": "<b>spam</b>", "AccountSid": "ACx"}).status_code == 404
    assert callback_logs() == []
    # An absurdly long token is not even looked up.
    assert post(client, "y" * 500, call_params("completed")).status_code == 404


def test_without_an_xmon_url_nothing_can_be_verified(client: FlaskClient, attempt: Attempt) -> None:
    set_xmon_url("")
    response = post(client, attempt.callback_token, call_params("completed"))
    assert response.status_code == 403
    assert_nothing_recorded(attempt)
    assert callback_logs()[0].error_message == callbacks.NO_XMON_URL


def test_only_post_is_accepted(client: FlaskClient, attempt: Attempt) -> None:
    assert client.get(f"{STATUS_CALLBACK_PATH}{attempt.callback_token}").status_code == 405
    assert_nothing_recorded(attempt)


def test_out_of_order_and_duplicate_callbacks(client: FlaskClient, attempt: Attempt) -> None:
    token = attempt.callback_token
    sequence = [
        call_params("completed", CallDuration="20", AnsweredBy="human"),
        call_params("ringing"),
        call_params("completed", CallDuration="20", AnsweredBy="human"),
        call_params("in-progress"),
        call_params("failed"),
        call_params("completed", CallDuration="20", AnsweredBy="human"),
    ]
    assert [post(client, token, params).status_code for params in sequence] == [204] * 6
    row, delivery = fresh(attempt)
    assert (row.final_status, row.duration, row.answered_by, delivery.final_status) == ("completed", 20, "human", "completed")
    results = [json.loads(r.request_summary)[callbacks.RESULT_KEY] for r in callback_logs()]
    assert results == [
        callbacks.RECORDED,
        callbacks.INTERIM,
        callbacks.DUPLICATE,
        callbacks.INTERIM,
        callbacks.IGNORED.format(current="通話完了(completed)"),
        callbacks.DUPLICATE,
    ]


def test_sms_status_callbacks(client: FlaskClient, app: Flask) -> None:
    set_xmon_url(XMON_URL)
    setting = make_sms_setting(make_twilio_account(), [make_recipient()])
    alert = make_alert(
        setting,
        deliveries=[
            {
                "user_name": "佐藤 翔太",
                "to_number": "+819001230001",
                "status": DELIVERY_SENT,
                "sid": MESSAGE_SID,
                "attempts": [{"outcome": OUTCOME_PLACED, "sid": MESSAGE_SID}],
            }
        ],
    )
    attempt = alert.notifications[0].deliveries[0].attempts[0]

    def message(status: str, **extra: str) -> dict[str, str]:
        params = {"AccountSid": ACCOUNT_SID, "MessageSid": MESSAGE_SID, "SmsSid": MESSAGE_SID, "MessageStatus": status}
        params["SmsStatus"] = status
        params.update(extra)
        return params

    for params in (message("sent"), message("undelivered", ErrorCode="30003"), message("sent")):
        assert post(client, attempt.callback_token, params).status_code == 204
    row, delivery = fresh(attempt)
    assert (row.final_status, row.error_code, delivery.final_status) == ("undelivered", 30003, "undelivered")
    logged = callback_logs()
    assert [r.sid for r in logged] == [MESSAGE_SID] * 3
    assert logged[1].error_code == 30003 and "電源が切れているか圏外" in logged[1].error_message


def test_a_callback_for_another_sid_records_nothing(client: FlaskClient, attempt: Attempt) -> None:
    response = post(client, attempt.callback_token, call_params("completed", CallSid="CA" + "f" * 32))
    assert response.status_code == 204
    assert_nothing_recorded(attempt)
    assert json.loads(callback_logs()[0].request_summary)[callbacks.RESULT_KEY] == callbacks.SID_MISMATCH


def test_webhooks_need_no_csrf_token_while_admin_posts_do(make_app: Any) -> None:
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        set_xmon_url(XMON_URL)
        account = make_twilio_account()
        setting = make_simple_call_setting(account, [make_recipient()])
        alert = make_alert(
            setting,
            deliveries=[
                {
                    "user_name": "佐藤",
                    "to_number": "+819001230001",
                    "status": DELIVERY_SENT,
                    "sid": CALL_SID,
                    "attempts": [{"outcome": OUTCOME_PLACED, "sid": CALL_SID}],
                }
            ],
        )
        token = alert.notifications[0].deliveries[0].attempts[0].callback_token
        client = app.test_client()
        assert post(client, token, call_params("completed")).status_code == 204
        assert client.post("/login", data={"login": "admin", "password": "x"}).status_code == 400


def test_log_screen_lists_callbacks_beside_requests(client: FlaskClient, attempt: Attempt) -> None:
    make_user(login="admin", is_admin=True, is_approver=True)
    client.post("/login", data={"login": "admin", "password": "admin-pass-123"})
    post(client, attempt.callback_token, call_params("no-answer"))
    post(client, attempt.callback_token, call_params("completed"), signature=None)

    page = client.get("/admin/twilio/logs/").get_data(as_text=True)
    assert page.count("状態通知(Webhook)") >= 3  # two rows and the kind filter's option
    assert "受信した状態: 応答なし(no-answer)" in page
    assert callbacks.NO_SIGNATURE in page
    assert 'value="status_callback"' in page

    only = client.get("/admin/twilio/logs/?kind=status_callback&result=failure").get_data(as_text=True)
    assert callbacks.NO_SIGNATURE in only and "受信した状態: 応答なし" not in only

    refused, accepted = callback_logs()[1], callback_logs()[0]
    detail = client.get(f"/admin/twilio/logs/{accepted.id}").get_data(as_text=True)
    assert "応答した HTTP ステータス" in detail and "204" in detail
    assert "応答なし(no-answer)" in detail and callbacks.CHECK_OK in detail and callbacks.RECORDED in detail
    assert "受信内容" in detail and attempt.callback_token not in detail
    detail = client.get(f"/admin/twilio/logs/{refused.id}").get_data(as_text=True)
    assert callbacks.NO_SIGNATURE in detail and "403" in detail
    # Twilio's request explanations are not offered for a refused callback.
    assert 'id="log-explanation"' not in detail

    guide = client.get("/admin/twilio/logs/").get_data(as_text=True)
    assert 'id="log-help-callback"' in guide and "状態通知(Webhook)の HTTP 403" in guide


def test_a_call_placed_by_the_dispatcher_reports_back(live_app: Flask, fake_twilio: Any) -> None:
    """The StatusCallback the dispatcher gave Twilio, signed by Twilio, reaches the attempt."""
    set_xmon_url(XMON_URL)
    setting = make_simple_call_setting(make_twilio_account(cps=100), [make_recipient()])
    notification = queue(setting)
    clock = FakeClock()
    Dispatcher(holder="test", clock=clock, rng=random.Random(1)).run_once()

    [created] = fake_twilio.requests_for("CreateCall")
    callback_url = created.form["StatusCallback"]
    assert callback_url.startswith(f"{XMON_URL}{STATUS_CALLBACK_PATH}")
    sid = next(iter(fake_twilio.calls_by_sid))
    params = {"AccountSid": ACCOUNT_SID, "CallSid": sid, "CallStatus": "no-answer", "CallDuration": "0"}
    client = live_app.test_client()
    response = client.post(
        callback_url.removeprefix(XMON_URL), data=params, headers={callbacks.SIGNATURE_HEADER: sign(callback_url, params)}
    )
    assert response.status_code == 204
    db.session.expire_all()
    delivery = db.session.scalars(select(Delivery).where(Delivery.notification_id == notification.id)).one()
    assert delivery.final_status == "no-answer" and delivery.attempts[0].final_status == "no-answer"
    # The dispatcher no longer needs to ask Twilio about it.
    clock.advance(3600)
    Dispatcher(holder="test", clock=clock, rng=random.Random(1)).run_once()
    assert fake_twilio.requests_for("FetchCall") == []


def test_garbage_from_anyone_is_refused_and_logged_without_breaking(client: FlaskClient, attempt: Attempt) -> None:
    """Values of an unbelieved request still reach the log: cut, without control characters or overflow."""
    params = call_params("comp\x00leted" + "x" * 500, ErrorCode="9" * 40, CallDuration="-3", CallSid="CA\x00" + "z" * 300)
    response = post(client, attempt.callback_token, params, signature="forged")
    assert response.status_code == 403
    assert_nothing_recorded(attempt)
    [logged] = callback_logs()
    assert logged.error_code is None and "\x00" not in logged.sid and len(logged.sid) == 64
    summary = json.loads(logged.request_summary)
    assert len(summary["CallStatus"]) == 64 and "\x00" not in summary["CallStatus"]
    assert post(client, "\x00" * 10, params).status_code == 404


def test_the_access_log_of_serve_leaves_callback_tokens_out(tmp_path: Any, fake_twilio: Any) -> None:
    import urllib.error
    import urllib.request

    from tests.real_server import RealServer

    server = RealServer(tmp_path, api_base=fake_twilio.base_url)
    server.start(workers=1)
    try:
        request = urllib.request.Request(f"{server.base}/twilio/status/SECRETTOKEN123?x=1", data=b"CallStatus=completed")
        try:
            urllib.request.urlopen(request, timeout=10)
        except urllib.error.HTTPError as error:
            assert error.code == 404
    finally:
        server.stop()
    log = server.log()
    assert "/twilio/status/…" in log
    assert "SECRETTOKEN123" not in log

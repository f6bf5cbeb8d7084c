"""B9: after an AUTH TOKEN change, webhooks signed with the previous token are accepted for a while."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from tests.conftest import AuthActions
from tests.factories import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BIN_URL,
    make_alert,
    make_recipient,
    make_simple_call_setting,
    make_twilio_account,
    set_xmon_url,
)
from xmonbridge import secretbox
from xmonbridge.extensions import db
from xmonbridge.filters import jst
from xmonbridge.models import DELIVERY_SENT, OUTCOME_PLACED, Attempt, PendingChange, TwilioAccount, utcnow
from xmonbridge.public_url import STATUS_CALLBACK_PATH
from xmonbridge.webhooks import callbacks, signature

XMON_URL = "https://alerts.example.jp/xmon"
CALL_SID = "CA" + "c3" * 16
NEW_TOKEN = "0123abcd" * 4
EDIT_FORM = {"name": "運用チームアカウント", "account_sid": ACCOUNT_SID, "twiml_bin_url": BIN_URL}
LABEL = "変更前の AUTH TOKEN を受け付ける時間"


def _account() -> TwilioAccount:
    db.session.expire_all()
    account = db.session.scalar(select(TwilioAccount))
    assert account is not None
    return account


def _rotate(client: FlaskClient, account_id: int, hours: str | None = "24", **data: str) -> None:
    """編集と承認 with a new AUTH TOKEN."""
    form = {**EDIT_FORM, "auth_token": NEW_TOKEN, "submit_approve": "y", **data}
    if hours is not None:
        form["previous_token_hours"] = hours
    response = client.post(f"/admin/twilio/accounts/{account_id}/edit", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)


def _sentence(until: datetime) -> str:
    return f"変更前の AUTH TOKEN は {jst(until, '%Y-%m-%d %H:%M')} まで受け付けます。"


# --- the account screens ----------------------------------------------------------------------


def test_only_the_edit_form_asks_how_long(client: FlaskClient, logged_in: AuthActions) -> None:
    assert LABEL not in client.get("/admin/twilio/accounts/new").get_data(as_text=True)
    account = make_twilio_account()
    page = client.get(f"/admin/twilio/accounts/{account.id}/edit").get_data(as_text=True)
    assert f'<label class="form-label" for="previous_token_hours">{LABEL}</label>' in page
    field = re.search(r'<input[^>]*id="previous_token_hours"[^>]*>', page).group(0)  # type: ignore[union-attr]
    assert 'value="24"' in field
    assert "AUTH TOKEN を変更したときだけ使います。" in page


def test_an_approved_new_token_keeps_the_previous_one_until_the_time_shown(
    client: FlaskClient, logged_in: AuthActions
) -> None:
    account = make_twilio_account()
    client.post(
        f"/admin/twilio/accounts/{account.id}/edit",
        data={**EDIT_FORM, "auth_token": NEW_TOKEN, "previous_token_hours": "6", "submit": "y"},
    )
    # Waiting for approval: nothing rotates yet, and the approver sees the period.
    assert _account().previous_auth_token_encrypted is None
    approvals = client.get("/admin/twilio/approvals/").get_data(as_text=True)
    assert re.search(rf'<th scope="row">{LABEL}</th><td[^>]*></td><td[^>]*>6 時間</td>', approvals)
    change = db.session.scalar(select(PendingChange))
    before = utcnow()
    client.post(f"/admin/twilio/approvals/{change.id}/approve")  # type: ignore[union-attr]

    rotated = _account()
    assert secretbox.decrypt(rotated.auth_token_encrypted) == NEW_TOKEN
    assert secretbox.decrypt(rotated.previous_auth_token_encrypted or "") == AUTH_TOKEN
    assert rotated.previous_token_until is not None
    assert before + timedelta(hours=6) <= rotated.previous_token_until <= utcnow() + timedelta(hours=6)
    page = client.get(f"/admin/twilio/accounts/{account.id}").get_data(as_text=True)
    assert _sentence(rotated.previous_token_until) in page
    # Neither token is in the page.
    assert AUTH_TOKEN not in page and NEW_TOKEN not in page

    # Once the time has passed the page no longer says it.
    rotated.previous_token_until = utcnow() - timedelta(minutes=1)
    db.session.commit()
    assert "変更前の AUTH TOKEN は" not in client.get(f"/admin/twilio/accounts/{account.id}").get_data(as_text=True)


def test_a_blank_period_is_the_default_of_24_hours(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    _rotate(client, account.id, hours="")
    until = _account().previous_token_until
    assert until is not None and abs(until - (utcnow() + timedelta(hours=24))) < timedelta(minutes=1)


def test_zero_hours_stops_the_previous_token_at_once(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    _rotate(client, account.id, hours="0")
    rotated = _account()
    assert (rotated.previous_auth_token_encrypted, rotated.previous_token_until) == (None, None)
    assert "変更前の AUTH TOKEN は" not in client.get(f"/admin/twilio/accounts/{account.id}").get_data(as_text=True)


def test_edits_that_keep_the_token_keep_the_rotation_as_it_is(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    _rotate(client, account.id)
    until = _account().previous_token_until
    # Another field only: no period in the change, nothing rotates.
    client.post(f"/admin/twilio/accounts/{account.id}/edit", data={**EDIT_FORM, "name": "新しい名前", "cps": "2", "submit": "y"})
    approvals = client.get("/admin/twilio/approvals/").get_data(as_text=True)
    assert "新しい名前" in approvals and LABEL not in approvals
    # The same token typed again is no change either.
    _rotate(client, account.id, hours="1")
    rotated = _account()
    assert rotated.previous_token_until == until
    assert secretbox.decrypt(rotated.previous_auth_token_encrypted or "") == AUTH_TOKEN


def test_a_token_for_another_account_sid_keeps_no_previous_token(client: FlaskClient, logged_in: AuthActions) -> None:
    account = make_twilio_account()
    _rotate(client, account.id, account_sid="AC" + "ab" * 16)
    rotated = _account()
    assert (rotated.previous_auth_token_encrypted, rotated.previous_token_until) == (None, None)


@pytest.mark.parametrize("hours", ["-1", "169", "1.5", "abc"])
def test_a_period_out_of_range_saves_nothing(client: FlaskClient, logged_in: AuthActions, hours: str) -> None:
    account = make_twilio_account()
    response = client.post(
        f"/admin/twilio/accounts/{account.id}/edit",
        data={**EDIT_FORM, "auth_token": NEW_TOKEN, "previous_token_hours": hours, "submit_approve": "y"},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="previous_token_hours-error"' in page
    assert secretbox.decrypt(_account().auth_token_encrypted) == AUTH_TOKEN
    assert db.session.scalar(select(PendingChange)) is None


# --- webhooks signed with either token ----------------------------------------------------------


@pytest.fixture
def attempt(app: Flask) -> Attempt:
    """A placed call on the account of ACCOUNT_SID, whose status callback is due."""
    set_xmon_url(XMON_URL)
    setting = make_simple_call_setting(make_twilio_account(), [make_recipient()])
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


def _callback(client: FlaskClient, attempt: Attempt, status: str, token: str | None) -> int:
    """POST a status callback signed with token over the public URL (None: a forged signature)."""
    params = {"AccountSid": ACCOUNT_SID, "CallSid": CALL_SID, "CallStatus": status}
    url = f"{XMON_URL}{STATUS_CALLBACK_PATH}{attempt.callback_token}"
    signed = RequestValidator(token).compute_signature(url, params) if token else "Zm9yZ2VkIHNpZ25hdHVyZQ=="
    path = f"{STATUS_CALLBACK_PATH}{attempt.callback_token}"
    return client.post(path, data=params, headers={callbacks.SIGNATURE_HEADER: signed}).status_code


def _recorded(attempt: Attempt) -> str:
    db.session.expire_all()
    row = db.session.get(Attempt, attempt.id)
    assert row is not None
    return row.final_status


def test_the_previous_token_signs_webhooks_until_its_time_is_up(
    client: FlaskClient, logged_in: AuthActions, attempt: Attempt
) -> None:
    account = _account()
    _rotate(client, account.id)

    # During the period: the previous token, the current one, never a forged signature.
    assert _callback(client, attempt, "ringing", None) == 403
    assert _callback(client, attempt, "ringing", "f" * 32) == 403
    assert _callback(client, attempt, "in-progress", AUTH_TOKEN) == 204
    assert _callback(client, attempt, "in-progress", NEW_TOKEN) == 204

    # Move past the period: the previous token is refused and records nothing.
    account = _account()
    account.previous_token_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert _callback(client, attempt, "completed", AUTH_TOKEN) == 403
    assert _recorded(attempt) == ""
    refused = db.session.scalars(select(callbacks.RequestLog).order_by(callbacks.RequestLog.id.desc())).first()
    assert refused is not None and refused.error_message == callbacks.BAD_SIGNATURE
    assert _callback(client, attempt, "completed", NEW_TOKEN) == 204
    assert _recorded(attempt) == "completed"


def test_a_previous_token_the_key_cannot_read_is_ignored(app: Flask, attempt: Attempt) -> None:
    """After a new fernet.key the previous token is unreadable: the current one still works."""
    account = _account()
    account.previous_auth_token_encrypted = "gAAAAAnot-a-token-of-this-key"
    account.previous_token_until = utcnow() + timedelta(hours=1)
    db.session.commit()
    assert signature.auth_tokens(account) == [AUTH_TOKEN]
    assert _callback(app.test_client(), attempt, "completed", AUTH_TOKEN) == 204


def test_auth_tokens_follow_the_clock_given(app: Flask) -> None:
    account = make_twilio_account()
    account.previous_auth_token_encrypted = secretbox.encrypt(NEW_TOKEN)
    account.previous_token_until = datetime(2026, 1, 1, 12, 0)
    assert signature.auth_tokens(account, datetime(2026, 1, 1, 11, 59)) == [AUTH_TOKEN, NEW_TOKEN]
    assert signature.auth_tokens(account, datetime(2026, 1, 1, 12, 0)) == [AUTH_TOKEN]
    account.previous_auth_token_encrypted = None
    assert signature.auth_tokens(account, datetime(2026, 1, 1, 11, 0)) == [AUTH_TOKEN]

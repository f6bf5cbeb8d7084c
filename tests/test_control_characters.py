"""Control characters (NUL, line breaks, ESC, bidi overrides) are refused in every form."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from xmonbridge import replacement_lists
from xmonbridge.extensions import db
from xmonbridge.forms import has_control_characters
from xmonbridge.models import REPLACEMENT_SIMPLE, PendingChange, TwilioAccount, User, XmonSettings
from tests.conftest import AuthActions
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, BIN_URL

MESSAGE = "制御文字は使用できません。"
BAD = ["\x00", "\r\n", "\x1b", "\u202e", "\t", "\x7f", "\x85", "\u2066", "\u200f", "\u2028", "\u061c", "\u200b", "\ufeff"]
ACCOUNT = {"name": "運用", "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "twiml_bin_url": BIN_URL}


def _error(response: Any, field: str) -> str | None:
    """The message shown under a field, or None."""
    found = re.search(rf'id="{field}-error">(.*?)</div>', response.get_data(as_text=True), re.S)
    return html.unescape(found.group(1)) if found else None


def _count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def _assert_not_echoed(response: Any, bad: str) -> None:
    page = response.get_data(as_text=True)
    for char in bad.replace("\r\n", ""):  # the page's own line breaks are fine
        assert char not in page, repr(char)


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("field", ["login", "name", "password", "phone", "email"])
def test_user_fields_refuse_control_characters(
    client: FlaskClient, logged_in: AuthActions, field: str, bad: str
) -> None:
    values = {"login": "sato", "name": "佐藤", "password": "sato-pass-123", "phone": "+81-90-0123-0001", "email": "s@example.com"}
    values[field] = values[field][:2] + bad + values[field][2:]
    response = client.post("/admin/users/new", data=values)
    assert response.status_code == 200
    assert _error(response, field) == MESSAGE
    assert _count(User) == 1  # the administrator only
    _assert_not_echoed(response, bad)


@pytest.mark.parametrize("bad", ["\x00", "\r\n", "\x1b", "\u202e"])
def test_user_edit_refuses_them_and_keeps_the_old_values(
    client: FlaskClient, logged_in: AuthActions, admin: User, bad: str
) -> None:
    response = client.post(
        f"/admin/users/{admin.id}/edit", data={"login": "admin", "name": f"管理{bad}者", "is_admin": "y", "is_approver": "y"}
    )
    assert _error(response, "name") == MESSAGE
    db.session.expire_all()
    assert admin.name == ""


@pytest.mark.parametrize("bad", ["\x00", "\r\n", "\x1b", "\u202e"])
def test_xmon_url_refuses_them(client: FlaskClient, logged_in: AuthActions, bad: str) -> None:
    response = client.post("/admin/xmon-settings/", data={"xmon_url": f"https://xmon{bad}.example.com", "voice": "Polly.Mizuki"})
    assert response.status_code == 200
    assert _error(response, "xmon_url") == MESSAGE
    db.session.expire_all()
    assert XmonSettings.get().xmon_url is None


@pytest.mark.parametrize("bad", ["\x00", "\r\n", "\x1b", "\u202e"])
@pytest.mark.parametrize("button", ["submit", "submit_approve"])
def test_twilio_account_refuses_them(client: FlaskClient, logged_in: AuthActions, bad: str, button: str) -> None:
    response = client.post("/admin/twilio/accounts/new", data={**ACCOUNT, "name": f"運用{bad}チーム", button: "y"})
    assert response.status_code == 200
    assert _error(response, "name") == MESSAGE
    assert _count(TwilioAccount) == 0 and _count(PendingChange) == 0


@pytest.mark.parametrize("bad", ["\x00", "\r\n", "\x1b", "\u202e"])
@pytest.mark.parametrize("field", ["login", "password"])
def test_login_refuses_them(client: FlaskClient, admin: User, auth: AuthActions, field: str, bad: str) -> None:
    values = {"login": "admin", "password": "admin-pass-123"}
    values[field] += bad
    response = client.post("/login", data=values)
    assert response.status_code == 200
    assert _error(response, field) == MESSAGE
    assert client.get("/admin/users/").status_code == 302  # not logged in


def test_a_textarea_keeps_line_breaks_and_tabs(client: FlaskClient, logged_in: AuthActions) -> None:
    url = "/admin/twilio/simple-calls/replacements"
    response = client.post(url, data={"content": "DB,データベース\r\nTRAFFIC,\tトラフィック", "submit_approve": "y"})
    assert response.status_code == 302
    db.session.expire_all()
    row = replacement_lists.find(REPLACEMENT_SIMPLE)
    assert row is not None and "\n" in row.content


@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\u202e", "\x0b"])
def test_a_textarea_refuses_other_control_characters(client: FlaskClient, logged_in: AuthActions, bad: str) -> None:
    url = "/admin/twilio/simple-calls/replacements"
    response = client.post(url, data={"content": f"DB,データ{bad}ベース\nA,B", "submit_approve": "y"})
    assert response.status_code == 200
    assert _error(response, "content") == MESSAGE
    assert replacement_lists.find(REPLACEMENT_SIMPLE) is None and _count(PendingChange) == 0


@pytest.mark.parametrize(
    "text,multi_line,refused",
    [
        ("普通の文字 ABC 123 ー〜", False, False),
        ("a\tb", False, True),
        ("a\tb\r\nc\n", True, False),
        ("a\u2028b", False, True),
        ("a\u200db", False, False),  # zero width joiner (emoji sequences) is not a control
        ("\u202atext", True, True),
        ("\x9b", True, True),
        ("a\ufffeb", True, True),  # noncharacters and surrogates: XML (TwiML) cannot carry them
        ("a\ud800b", False, True),
        ("\U0001fffe", False, True),
        ("😀 \uff5e", False, False),
    ],
)
def test_what_counts_as_a_control_character(text: str, multi_line: bool, refused: bool) -> None:
    assert has_control_characters(text, multi_line) is refused

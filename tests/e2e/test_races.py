"""Requests that race each other on the real server (`xmonbridge serve --workers 2`).

Each test logs in once, then fires the same POST from several threads at once (with the
same session cookie and CSRF token, as double clicks and two browser tabs do), and checks
what the users see, what the database holds (read with sqlite3) and what the server logged.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.e2e.conftest import CREDENTIALS, ParallelServer

RACERS = 10
ACCOUNT = {
    "account_sid": "AC" + "0123456789abcdef" * 2,
    "auth_token": "fedcba9876543210" * 2,
    "twiml_bin_url": "https://handler.twilio.com/twiml/EH" + "0" * 32,
}


def _session() -> requests.Session:
    http = requests.Session()
    http.trust_env = False  # no proxy for 127.0.0.1, whatever the environment says
    return http


def _csrf_token(page: str) -> str:
    tag = re.search(r'<input[^>]*name="csrf_token"[^>]*>', page)
    assert tag is not None, page
    value = re.search(r'value="([^"]+)"', tag.group(0))
    assert value is not None, tag.group(0)
    return value.group(1)


@pytest.fixture
def admin(parallel_server: ParallelServer) -> requests.Session:
    """A session logged in as the approving administrator."""
    http = _session()
    token = _csrf_token(http.get(f"{parallel_server.base}/login", timeout=30).text)
    response = http.post(
        f"{parallel_server.base}/login",
        data={"login": "admin", "password": CREDENTIALS["admin"], "csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, response.text
    return http


def _race(
    server: ParallelServer, admin: requests.Session, path: str, data: dict[str, str]
) -> list[tuple[requests.Response, requests.Session]]:
    """POST data to path from RACERS threads released together; each with its own cookie jar."""
    token = _csrf_token(admin.get(f"{server.base}/admin/users/new", timeout=30).text)
    barrier = threading.Barrier(RACERS)

    def one(_index: int) -> tuple[requests.Response, requests.Session]:
        http = _session()
        http.cookies.update(admin.cookies)
        barrier.wait(timeout=30)
        response = http.post(
            f"{server.base}{path}", data={**data, "csrf_token": token}, allow_redirects=False, timeout=60
        )
        return response, http

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(one, range(RACERS)))


def _query(server: ParallelServer, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.instance / "xmonbridge.sqlite") as connection:
        return connection.execute(sql, params).fetchall()


def _statuses(results: list[tuple[requests.Response, requests.Session]]) -> list[int]:
    return sorted(response.status_code for response, _http in results)


def test_parallel_creation_of_one_login_keeps_one_user(parallel_server: ParallelServer, admin: requests.Session) -> None:
    data = {"login": "racer", "name": "競合 太郎", "password": "racer-pass-12345", "submit": "作成"}
    results = _race(parallel_server, admin, "/admin/users/new", data)

    assert _statuses(results) == [200] * (RACERS - 1) + [302]
    assert _query(parallel_server, "SELECT count(*) FROM users WHERE login = ?", "racer") == [(1,)]
    for response, _http in results:
        if response.status_code == 200:
            assert "このログイン名は既に使われています。" in response.text
            # The form again, with the message under ログイン名, not an error page.
            assert 'name="login"' in response.text and "エラー" not in response.text
    output = parallel_server.log.read_text(errors="replace")
    for secret in ("pbkdf2", "scrypt", "[parameters:"):
        assert secret not in output


def test_parallel_creates_of_one_name_record_one_pending_change(
    parallel_server: ParallelServer, admin: requests.Session
) -> None:
    data = {**ACCOUNT, "name": "競合アカウント", "submit": "作成"}
    results = _race(parallel_server, admin, "/admin/twilio/accounts/new", data)

    assert _statuses(results) == [200] * (RACERS - 1) + [302]
    rows = _query(
        parallel_server,
        "SELECT action, status FROM pending_changes WHERE kind = 'twilio_account' AND target_name = ?",
        "競合アカウント",
    )
    assert rows == [("create", "pending")]
    for response, _http in results:
        if response.status_code == 200:
            assert "作成を承認待ちの" in response.text and "があります。" in response.text


def test_parallel_deletes_of_one_account_record_one_pending_delete(
    parallel_server: ParallelServer, admin: requests.Session
) -> None:
    token = _csrf_token(admin.get(f"{parallel_server.base}/admin/twilio/accounts/new", timeout=30).text)
    created = admin.post(
        f"{parallel_server.base}/admin/twilio/accounts/new",
        data={**ACCOUNT, "name": "削除競合アカウント", "submit_approve": "作成と承認", "csrf_token": token},
        allow_redirects=False,
        timeout=30,
    )
    assert created.status_code == 302, created.text
    account_id = int(created.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    results = _race(parallel_server, admin, f"/admin/twilio/accounts/{account_id}/delete", {"submit": "削除"})

    assert _statuses(results) == [302] * RACERS
    rows = _query(
        parallel_server,
        "SELECT status FROM pending_changes WHERE kind = 'twilio_account' AND action = 'delete' AND target_id = ?",
        account_id,
    )
    assert rows == [("pending",)]
    refused = 0
    for response, http in results:
        page = http.get(f"{parallel_server.base}{response.headers['Location']}", timeout=30)
        assert page.status_code == 200
        refused += "削除は既に承認待ちです。" in page.text
    assert refused == RACERS - 1

"""ログ (R13, manual §9): the request log list, filters, paging, detail, help; simulated calls."""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from xmonbridge import telephony
from xmonbridge.extensions import db
from xmonbridge.models import LOG_SMS, LOG_TEST_CALL, RequestLog, TwilioAccount
from tests.conftest import AuthActions
from tests.factories import AUTH_TOKEN, BIN_URL, make_twilio_account, make_user

URL = "/admin/twilio/logs/"


def _login(app: Flask) -> FlaskClient:
    client = app.test_client()
    make_user(login="admin", is_admin=True, is_approver=True)
    AuthActions(client).login()
    return client


def _listed(page: str) -> list[int]:
    """IDs of the log rows shown, in page order."""
    return [int(n) for n in re.findall(r'<tr data-log-id="(\d+)">', page)]


def _ids() -> list[int]:
    """IDs of all log rows, oldest first."""
    db.session.expire_all()
    return list(db.session.scalars(select(RequestLog.id).order_by(RequestLog.id)))


def _set_time(log_id: int, when: datetime) -> None:
    db.session.execute(update(RequestLog).where(RequestLog.id == log_id).values(created_at=when))
    db.session.commit()


@pytest.fixture
def live_admin(live_app: Flask) -> FlaskClient:
    return _login(live_app)


@pytest.fixture
def four_requests(live_app: Flask, fake_twilio: Any) -> list[int]:
    """A call, a refused test call (21211), an SMS and a refused number listing (20003), in that order."""
    account = make_twilio_account()
    other = make_twilio_account(name="予備アカウント")
    telephony.place_call(account, to="+819001230001", from_="+815012340001", url=BIN_URL, timeout=60)
    fake_twilio.fail_next(400, code=21211)
    with pytest.raises(telephony.TwilioError):
        telephony.place_call(
            account,
            to="+819001230002",
            from_="+815012340001",
            url=BIN_URL,
            timeout=30,
            context=telephony.LogContext(LOG_TEST_CALL, "simple_call", 1, "担当者への電話連絡"),
        )
    telephony.send_sms(
        other,
        to="+819001230003",
        from_="+815012340001",
        body="障害が発生しました",
        context=telephony.LogContext(LOG_SMS, "sms", 1, "SMS通知"),
    )
    fake_twilio.fail_next(401, code=20003)
    with pytest.raises(telephony.TwilioError):
        telephony.list_numbers(account)
    return _ids()


def test_it_lists_every_request_newest_first(live_admin: FlaskClient, four_requests: list[int]) -> None:
    call, refused, sms, numbers = four_requests
    page = live_admin.get(URL).get_data(as_text=True)
    assert _listed(page) == [numbers, sms, refused, call]
    rows = db.session.scalars(select(RequestLog).order_by(RequestLog.id)).all()
    assert rows[0].sid.startswith("CA") and rows[0].sid in page
    assert rows[2].sid.startswith("SM") and rows[2].sid in page
    body = page.split('<tbody>', 1)[1]
    for text in ("発信", "テスト通話", "SMS", "番号取得", "担当者への電話連絡", "SMS通知", "予備アカウント",
                 "+81-90-0123-0001", "+81-90-0123-0002", ">201<", ">400<", ">401<", "21211", "20003",
                 "Invalid &#39;To&#39; Phone Number", "成功", "失敗"):
        assert text in body, text
    assert "シミュレーション</span>" not in body
    assert "全 4 件中 1–4 件" in page
    assert f'href="/admin/twilio/logs/{call}"' in page


def test_the_tab_and_labels_follow_the_manual(live_admin: FlaskClient) -> None:
    page = live_admin.get(URL).get_data(as_text=True)
    assert re.search(r'<a class="nav-link active" aria-current="page"\s+href="/admin/twilio/logs/">ログ</a>', page)
    for label in ("種別", "Twilio アカウント", "設定", "結果", "期間 開始日", "期間 終了日", "宛先"):
        assert re.search(rf'<label class="form-label" for="\w+">{label}</label>', page), label
    assert "条件をクリア" in page and ">検索</button>" in page
    assert 'name="csrf_token"' not in page.split('id="log-search"')[1].split("</form>")[0]
    # The simulated calls tab belongs to simulate mode only.
    assert not re.search(r'<a class="nav-link"\s+href="/admin/twilio/logs/simulated">', page)


@pytest.mark.parametrize(
    "query,expected",
    [
        ("kind=sms", [2]),
        ("kind=test_call", [1]),
        ("account=予備アカウント", [2]),
        ("account=運用チームアカウント", [3, 1, 0]),
        ("setting=電話", [1]),
        ("setting=%25", []),  # a literal %, not a wildcard
        ("result=success", [2, 0]),
        ("result=failure", [3, 1]),
        ("destination=%2B81-90-0123-0001", [0]),
        ("destination=%2B819001230002", [1]),
        ("destination=0123-0003", [2]),
        ("destination=+81 90 0123", [2, 1, 0]),
        ("kind=test_call&result=success", []),
    ],
)
def test_each_filter_narrows_the_list(
    live_admin: FlaskClient, four_requests: list[int], query: str, expected: list[int]
) -> None:
    page = live_admin.get(f"{URL}?{query}").get_data(as_text=True)
    assert _listed(page) == [four_requests[i] for i in expected]
    assert "検索条件に誤りがあります" not in page
    if not expected:
        assert "該当するログはありません。" in page


def test_the_period_is_whole_jst_days(live_admin: FlaskClient, four_requests: list[int]) -> None:
    call, refused, sms, numbers = four_requests
    _set_time(call, datetime(2026, 3, 31, 14, 59, 59))  # 2026-03-31 23:59:59 JST
    _set_time(refused, datetime(2026, 3, 31, 15, 0, 0))  # 2026-04-01 00:00:00 JST
    _set_time(sms, datetime(2026, 4, 1, 14, 59, 59))  # 2026-04-01 23:59:59 JST
    _set_time(numbers, datetime(2026, 4, 2, 3, 0, 0))  # 2026-04-02 12:00:00 JST
    assert _listed(live_admin.get(f"{URL}?start=2026-04-01&end=2026-04-01").get_data(as_text=True)) == [sms, refused]
    assert _listed(live_admin.get(f"{URL}?start=2026-04-01").get_data(as_text=True)) == [numbers, sms, refused]
    assert _listed(live_admin.get(f"{URL}?end=2026-03-31").get_data(as_text=True)) == [call]
    page = live_admin.get(f"{URL}?start=2026-04-01&end=2026-04-01").get_data(as_text=True)
    assert "2026-04-01 00:00:00" in page and "2026-04-01 23:59:59" in page
    assert 'value="2026-04-01"' in page  # the search stays in the form


@pytest.mark.parametrize(
    "query,field,message",
    [
        ("start=2026-04-02&end=2026-04-01", "end", "終了日は開始日と同じか、それより後の日付を入力してください。"),
        ("start=2026-13-45", "start", "日付は YYYY-MM-DD の形式で入力してください。"),
        ("destination=abc", "destination", "宛先は電話番号(数字、+、-)で入力してください。"),
        ("kind=bogus", "kind", "選択肢が正しくありません。"),
    ],
)
def test_bad_filters_are_explained_next_to_the_field(
    live_admin: FlaskClient, four_requests: list[int], query: str, field: str, message: str
) -> None:
    response = live_admin.get(f"{URL}?{query}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f'<div class="invalid-feedback d-block" id="{field}-error">{message}</div>' in page
    assert _listed(page) == []
    assert "検索条件に誤りがあります" in page


def test_paging_keeps_the_filters(make_app: Any, fake_twilio: Any) -> None:
    app = make_app(TWILIO_MODE="live", TWILIO_API_BASE=fake_twilio.base_url, PAGE_SIZE=2)
    with app.app_context():
        client = _login(app)
        account = make_twilio_account()
        for n in range(5):
            telephony.send_sms(account, to=f"+81900123000{n}", from_="+815012340001", body="テスト")
        telephony.list_numbers(account)
        sms = _ids()[:5]
        first = client.get(f"{URL}?kind=sms").get_data(as_text=True)
        assert _listed(first) == [sms[4], sms[3]]
        assert "全 5 件中 1–2 件" in first and "前へ" not in first
        assert 'rel="next" href="/admin/twilio/logs/?page=2&amp;kind=sms"' in first
        second = client.get(f"{URL}?page=2&kind=sms").get_data(as_text=True)
        assert _listed(second) == [sms[2], sms[1]] and "全 5 件中 3–4 件" in second
        assert 'rel="prev" href="/admin/twilio/logs/?page=1&amp;kind=sms"' in second
        third = client.get(f"{URL}?page=3&kind=sms").get_data(as_text=True)
        assert _listed(third) == [sms[0]] and "全 5 件中 5–5 件" in third and "次へ" not in third
        assert _listed(client.get(f"{URL}?page=x").get_data(as_text=True)) == [_ids()[5], sms[4]]


def test_the_detail_shows_every_column(live_admin: FlaskClient, four_requests: list[int]) -> None:
    refused = four_requests[1]
    page = live_admin.get(f"{URL}{refused}").get_data(as_text=True)
    for text in ("テスト通話", "担当者への電話連絡", "運用チームアカウント", "+81-90-0123-0002", "+81-50-1234-0001",
                 ">400<", "21211", "Invalid &#39;To&#39; Phone Number", "失敗", "所要時間(ms)",
                 telephony.EXPLANATIONS[21211], "再試行しても成功しない"):
        assert text in page, text
    summary = re.search(r'<pre[^>]*id="log-summary">(.*?)</pre>', page, re.S).group(1)  # type: ignore[union-attr]
    assert summary == '{\n  &#34;Timeout&#34;: 30,\n  &#34;Url&#34;: &#34;' + BIN_URL + '&#34;\n}'
    assert live_admin.get(f"{URL}999").status_code == 404


def test_no_secret_on_any_log_page(live_admin: FlaskClient, four_requests: list[int]) -> None:
    encrypted = db.session.scalars(select(TwilioAccount.auth_token_encrypted)).all()
    pages = [URL, f"{URL}?kind=sms", f"{URL}simulated"] + [f"{URL}{n}" for n in four_requests]
    for url in pages:
        html = live_admin.get(url).get_data(as_text=True)
        assert AUTH_TOKEN not in html and not any(token in html for token in encrypted), url


def test_the_help_explains_columns_and_errors(client: FlaskClient, logged_in: AuthActions) -> None:
    page = client.get(URL).get_data(as_text=True)
    assert 'data-bs-target="#log-help">ログの見方について</button>' in page
    help_html = page.split('id="log-help"', 1)[1]
    for column in ("日時", "種別", "Twilio アカウント", "設定", "宛先", "HTTP ステータス", "SID", "エラー", "所要時間(ms)", "結果"):
        assert f">{column}</dt>" in help_html, column
    found = re.findall(r'<th scope="row" class="text-nowrap">(.*?)</th>\s*<td>(.*?)</td>\s*<td[^>]*>(.*?)</td>', help_html)
    table = {label: (text, retry) for label, text, retry in found}
    assert table["21211"] == ("宛先の電話番号が正しくありません。国番号から始まる番号か確認してください。", "再試行しても成功しない")
    for code in ("21210", "21212", "21214", "21215", "21217", "21219", "21408", "21606", "21608", "21610", "21612",
                 "21614", "21617", "20003"):
        assert table[code] == (html.escape(telephony.EXPLANATIONS[int(code)], quote=False), "再試行しても成功しない"), code
    assert "Geographic Permissions" in table["21215"][0] and "Geographic Permissions" in table["21408"][0]
    assert table["21617"][0] == "SMS の本文が長すぎます(1,600 文字まで)。"
    # Carriers can fail valid numbers: retried, but only twice.
    assert table["13224"] == (telephony.EXPLANATIONS[13224], "時間をおいて再試行(最大 2 回)")
    for label in ("20429 / HTTP 429", "HTTP 5xx(番号取得・通話照会・検索)", "タイムアウト(番号取得・通話照会・検索)",
                  "接続エラー(HTTP ステータスなし)"):
        assert table[label][1] == "時間をおいて再試行", label
    assert table["タイムアウト(番号取得・通話照会・検索)"][0] == telephony.TIMEOUT_TEXT
    for label in ("HTTP 5xx(発信・SMS 送信)", "タイムアウト・切断(発信・SMS 送信)"):
        assert table[label][0].startswith("発信されたか確認できません。"), label
        assert "Twilio Console" in table[label][0] and table[label][1] == "発信・送信されたか確認してから再試行", label
    assert "通話検索・SMS検索" in help_html


def test_it_requires_login(client: FlaskClient) -> None:
    for url in (URL, f"{URL}1", f"{URL}simulated"):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), url


def test_simulate_mode_lists_what_would_have_been_placed(
    client: FlaskClient, logged_in: AuthActions, fake_twilio: Any
) -> None:
    account = make_twilio_account()
    spoken = "障害が発生しました。ホスト web-server01 サービス HTTP は CRITICAL です。"
    url = f"{BIN_URL}?message={quote(spoken)}"
    call_sid = telephony.place_call(account, to="+819001230001", from_="+815012340002", url=url, timeout=45)
    sms_sid = telephony.send_sms(account, to="+819001230002", from_="+815012340001", body="【障害】web-server01 HTTP")
    page = client.get(f"{URL}simulated").get_data(as_text=True)
    assert fake_twilio.requests == []
    assert page.index(sms_sid) < page.index(call_sid)  # newest first
    call_row = page.split(f'<tr data-sid="{call_sid}">')[1].split("</tr>")[0]
    assert f'<div class="simulated-text">{spoken}</div>' in call_row
    assert "電話" in call_row and "+81-90-0123-0001" in call_row and "+81-50-1234-0002" in call_row
    assert "呼び出し 45 秒" in call_row and "queued" in call_row
    sms_row = page.split(f'<tr data-sid="{sms_sid}">')[1].split("</tr>")[0]
    assert '<div class="simulated-text">【障害】web-server01 HTTP</div>' in sms_row and "SMS" in sms_row
    assert "全 2 件中 1–2 件" in page
    # The tab shows in simulate mode, and the log marks both requests as simulated.
    assert re.search(r'<a class="nav-link active" aria-current="page"\s+href="/admin/twilio/logs/simulated">', page)
    log = client.get(URL).get_data(as_text=True)
    assert log.count('<span class="badge bg-warning text-dark">シミュレーション</span>') == 2
    assert 'href="/admin/twilio/logs/simulated"' in log
    call_log = db.session.scalar(select(RequestLog.id).where(RequestLog.sid == call_sid))
    detail = client.get(f"{URL}{call_log}").get_data(as_text=True)
    assert f'<dd class="col-sm-9" id="log-spoken">{spoken}</dd>' in detail


def test_the_simulated_list_is_paged(make_app: Any) -> None:
    app = make_app(PAGE_SIZE=2)
    with app.app_context():
        client = _login(app)
        account = make_twilio_account()
        sids = [telephony.send_sms(account, to="+819001230001", from_="+815012340001", body=f"本文{n}") for n in range(3)]
        first = client.get(f"{URL}simulated").get_data(as_text=True)
        assert sids[2] in first and sids[1] in first and sids[0] not in first
        assert 'rel="next" href="/admin/twilio/logs/simulated?page=2"' in first
        second = client.get(f"{URL}simulated?page=2").get_data(as_text=True)
        assert sids[0] in second and "全 3 件中 3–3 件" in second


@pytest.mark.parametrize(
    "query,message",
    [
        ("start=0001-01-01", "日付は 2000-01-01 から 2100-12-31 の範囲で入力してください。"),
        ("end=9999-12-31", "日付は 2000-01-01 から 2100-12-31 の範囲で入力してください。"),
        ("page=99999999999999999999999", "全 0 件"),
    ],
)
def test_odd_queries_get_an_answer_not_an_error(client: FlaskClient, logged_in: object, query: str, message: str) -> None:
    response = client.get(f"/admin/twilio/logs/?{query}")
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert client.get(f"/admin/twilio/logs/simulated?{query}").status_code == 200


def test_failures_without_an_answer_are_listed_in_japanese(app: Flask) -> None:
    from xmonbridge.models import RequestLog
    from xmonbridge.twilio_errors import LOGGED_TIMEOUT, LOGGED_WAITING

    client = _login(app)
    db.session.add_all(
        [
            RequestLog(kind="call", destination="+819001230001", error_message=LOGGED_WAITING),
            RequestLog(kind="numbers", error_message=LOGGED_TIMEOUT),
        ]
    )
    db.session.commit()
    page = html.unescape(client.get("/admin/twilio/logs/").get_data(as_text=True))
    assert "no answer recorded" not in page and ">timeout<" not in page
    assert "発信されたか確認できません。" in page

"""インシデント: alerts newest first, filtered, each with its notifications, recipients and attempts."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions
from tests.factories import (
    PASSWORD,
    make_alert,
    make_recipient,
    make_simple_call_setting,
    make_sms_setting,
    make_twilio_account,
    make_user,
)
from xmonbridge.models import (
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    DELIVERY_SENT,
    OUTCOME_PERMANENT,
    OUTCOME_PLACED,
    OUTCOME_TEMPORARY,
    AlertRecord,
)
from xmonbridge.twilio_errors import EXPLANATIONS

SID1, SID2, SID3 = ("CA" + c * 32 for c in "123")


def utc(text: str) -> datetime:
    """A naive UTC time, as the columns store it."""
    return datetime.fromisoformat(text)


def sent(name: str, number: str, sid: str, final: str = "", **attempt: Any) -> dict[str, Any]:
    fields = {"outcome": OUTCOME_PLACED, "sid": sid, "final_status": final}
    fields.update(attempt)
    return {"user_name": name, "to_number": number, "status": DELIVERY_SENT, "sid": sid, "final_status": final, "attempts": [fields]}


def failed(name: str, number: str, code: int, message: str = "") -> dict[str, Any]:
    attempt = {"outcome": OUTCOME_PERMANENT, "error_code": code, "error_message": message}
    return {"user_name": name, "to_number": number, "status": DELIVERY_FAILED, "error": "宛先の電話番号が正しくありません。", "attempts": [attempt]}


@pytest.fixture
def settings(app: Flask) -> dict[str, Any]:
    users = [
        make_recipient("sato", "佐藤 翔太", "+819001230001"),
        make_recipient("suzuki", "鈴木 花子", "+819001230002"),
        make_recipient("tanaka", "田中 一郎", "+819001230003"),
    ]
    account = make_twilio_account()
    return {
        "call": make_simple_call_setting(account, users, name="サーバー担当"),
        "sms": make_sms_setting(account, users, name="SMS 連絡網"),
        "users": users,
    }


@pytest.fixture
def viewer(app: Flask, client: FlaskClient) -> AuthActions:
    """A logged-in user who is not an administrator."""
    make_user(login="viewer", name="閲覧 花子")
    auth = AuthActions(client)
    auth.login("viewer", PASSWORD)
    return auth


def page(client: FlaskClient, url: str = "/incidents/") -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def row_of(html: str, alert: AlertRecord) -> str:
    match = re.search(rf'<tr data-alert-id="{alert.id}"(.*?)</tr>', html, re.S)
    assert match, f"alert {alert.id} not listed"
    return match.group(0)


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-alert-id="(\d+)"', html)]


@pytest.mark.parametrize("url", ["/incidents/", "/incidents/1"])
def test_it_requires_login(client: FlaskClient, app: Flask, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_list_shows_alerts_newest_first_with_what_each_caused(
    client: FlaskClient, settings: dict[str, Any], viewer: AuthActions
) -> None:
    older = make_alert(
        settings["call"],
        received_at=utc("2026-04-01 01:23:45"),
        deliveries=[
            sent("佐藤 翔太", "+819001230001", SID1, "completed"),
            sent("鈴木 花子", "+819001230002", SID2),
            sent("田中 一郎", "+819001230003", SID3, "completed"),
        ],
    )
    newer = make_alert(
        settings["sms"],
        received_at=utc("2026-04-02 03:00:00"),
        host="db-server02",
        service="",
        state="DOWN",
        notification_type="RECOVERY",
        deliveries=[sent("佐藤 翔太", "+819001230001", "SM" + "4" * 32, "delivered"), failed("鈴木 花子", "+819001230002", 21211)],
    )
    ack = make_alert(received_at=utc("2026-04-02 04:00:00"), notification_type="ACKNOWLEDGEMENT", setting_name="サーバー担当")

    html = page(client)
    assert listed_ids(html) == [ack.id, newer.id, older.id]
    row = row_of(html, older)
    assert "2026-04-01 10:23:45" in row  # JST
    assert "通話設定(シンプル通話): サーバー担当" in row and "障害(PROBLEM)" in row
    assert "web-server01" in row and "HTTP" in row and "CRITICAL" in row
    assert "3 名中 3 名に発信済み" in row
    assert "佐藤 翔太: 発信済み・通話完了(completed)" in row and "鈴木 花子: 発信済み" in row
    assert "table-danger" not in row
    row = row_of(html, newer)
    assert "SMS 通知設定: SMS 連絡網" in row and "復旧(RECOVERY)" in row and "(ホストの通知)" in row
    assert "2 名中 1 名に送信済み、1 名失敗" in row
    assert "鈴木 花子: 失敗" in row
    assert "通知なし(認知の記録のみ)" in row_of(html, ack)
    assert f'href="/incidents/{older.id}"' in row_of(html, older)


@pytest.mark.parametrize(
    "deliveries",
    [
        pytest.param(
            [failed("佐藤 翔太", "+819001230001", 21211), failed("鈴木 花子", "+819001230002", 21214)], id="all-stopped"
        ),
        pytest.param(
            [sent("佐藤 翔太", "+819001230001", SID1, "no-answer"), sent("鈴木 花子", "+819001230002", SID2, "busy")],
            id="all-final-failing",
        ),
        pytest.param(
            [failed("佐藤 翔太", "+819001230001", 21211), sent("鈴木 花子", "+819001230002", SID2, "failed")], id="mixed"
        ),
    ],
)
def test_a_notification_that_failed_for_everyone_stands_out(
    client: FlaskClient, settings: dict[str, Any], logged_in: AuthActions, deliveries: list[dict[str, Any]]
) -> None:
    alert = make_alert(settings["call"], deliveries=deliveries)
    fine = make_alert(settings["call"], deliveries=[sent("佐藤 翔太", "+819001230001", SID3, "completed")])

    html = page(client)
    row = row_of(html, alert)
    assert 'class="table-danger"' in row and '<span class="badge bg-danger">全員失敗</span>' in row
    assert "2 名全員に届きませんでした" in row
    assert "table-danger" not in row_of(html, fine) and "全員失敗" not in row_of(html, fine)

    detail = page(client, f"/incidents/{alert.id}")
    assert "border-danger" in detail and "2 名全員に届きませんでした。" in detail
    assert "全員失敗(2 名)" in detail


def test_partly_failed_or_still_sending_is_not_failed_for_everyone(
    client: FlaskClient, settings: dict[str, Any], logged_in: AuthActions
) -> None:
    waiting = {"user_name": "田中 一郎", "to_number": "+819001230003", "status": DELIVERY_QUEUED}
    alert = make_alert(settings["call"], deliveries=[failed("佐藤 翔太", "+819001230001", 21211), waiting])
    row = row_of(page(client), alert)
    assert "全員失敗" not in row and "table-danger" not in row
    assert "2 名中 0 名に発信済み、1 名失敗、1 名発信待ち" in row


def test_filters_by_setting_host_and_period(client: FlaskClient, settings: dict[str, Any], logged_in: AuthActions) -> None:
    a = make_alert(settings["call"], host="web-server01", received_at=utc("2026-03-31 14:59:59"))  # 03-31 23:59:59 JST
    b = make_alert(settings["call"], host="db-server01", received_at=utc("2026-03-31 15:00:00"))  # 04-01 00:00 JST
    c = make_alert(settings["sms"], host="web-server02", received_at=utc("2026-04-01 14:59:59"))  # 04-01 23:59:59 JST
    d = make_alert(settings["sms"], host="WEB-proxy", received_at=utc("2026-04-01 15:00:00"))  # 04-02 JST

    html = page(client)
    assert listed_ids(html) == [d.id, c.id, b.id, a.id]
    # Every filter field has its label.
    for field, label in (("setting", "設定"), ("host", "ホスト"), ("start", "期間 開始日"), ("end", "期間 終了日")):
        assert f'<label class="form-label" for="{field}">{label}</label>' in html
    assert '<option value="simple_call:%d">通話設定(シンプル通話): サーバー担当</option>' % settings["call"].id in html

    assert listed_ids(page(client, f"/incidents/?setting=sms:{settings['sms'].id}")) == [d.id, c.id]
    assert listed_ids(page(client, "/incidents/?host=web")) == [d.id, c.id, a.id]  # case-insensitive substring
    assert listed_ids(page(client, "/incidents/?host=%25")) == []  # a literal %, not a wildcard
    assert listed_ids(page(client, "/incidents/?start=2026-04-01&end=2026-04-01")) == [c.id, b.id]
    assert listed_ids(page(client, f"/incidents/?setting=simple_call:{settings['call'].id}&host=db&start=2026-04-01")) == [b.id]


def test_bad_filters_say_what_is_wrong(client: FlaskClient, settings: dict[str, Any], logged_in: AuthActions) -> None:
    make_alert(settings["call"])
    html = page(client, "/incidents/?start=2026-04-02&end=2026-04-01")
    assert "終了日は開始日と同じか、それより後の日付を入力してください。" in html and listed_ids(html) == []
    assert "日付は YYYY-MM-DD の形式で入力してください。" in page(client, "/incidents/?start=yesterday")
    html = page(client, "/incidents/?setting=simple_call:999999")
    assert "検索条件に誤りがあります" in html and listed_ids(html) == []


def test_a_deleted_settings_alerts_stay_filterable(client: FlaskClient, app: Flask, logged_in: AuthActions) -> None:
    alert = make_alert(setting_type="sms", setting_id=77, setting_name="廃止した連絡網")
    html = page(client)
    assert '<option value="sms:77">SMS 通知設定: 廃止した連絡網</option>' in html
    assert listed_ids(page(client, "/incidents/?setting=sms:77")) == [alert.id]


def test_it_pages_and_keeps_the_search(make_app: Any) -> None:
    app = make_app(PAGE_SIZE=2)
    with app.app_context():
        make_user(login="admin", is_admin=True)
        alerts = [make_alert(host=f"web-{i}", received_at=utc(f"2026-04-01 0{i}:00:00")) for i in range(5)]
        client = app.test_client()
        AuthActions(client).login()
        first = page(client, "/incidents/?host=web")
        assert listed_ids(first) == [alerts[4].id, alerts[3].id]
        assert "全 5 件中 1–2 件" in first and 'href="/incidents/?page=2&amp;host=web"' in first
        third = page(client, "/incidents/?page=3&host=web")
        assert listed_ids(third) == [alerts[0].id] and 'rel="prev"' in third


def test_detail_lists_notifications_deliveries_and_attempts(
    client: FlaskClient, settings: dict[str, Any], viewer: AuthActions
) -> None:
    problem = make_alert(settings["call"], received_at=utc("2026-04-01 01:00:00"), correlation_id="42")
    recovery = make_alert(
        settings["call"],
        notification_type="RECOVERY",
        state="OK",
        received_at=utc("2026-04-01 02:00:00"),
        problem_alert_id=problem.id,
        deliveries=[
            {
                "user_name": "佐藤 翔太",
                "to_number": "+819001230001",
                "status": DELIVERY_SENT,
                "sid": SID2,
                "final_status": "completed",
                "tries": 2,
                "attempts": [
                    {
                        "outcome": OUTCOME_TEMPORARY,
                        "started_at": utc("2026-04-01 02:00:01"),
                        "error_code": 20429,
                        "error_message": EXPLANATIONS[20429],
                        "next_retry_at": utc("2026-04-01 02:00:31"),
                    },
                    {
                        "outcome": OUTCOME_PLACED,
                        "started_at": utc("2026-04-01 02:00:31"),
                        "sid": SID2,
                        "final_status": "completed",
                        "answered_by": "human",
                        "duration": 23,
                    },
                ],
            },
            failed("鈴木 花子", "+819001230002", 21211),
            sent("田中 一郎", "+819001230003", SID3, "no-answer"),
        ],
    )

    html = page(client, f"/incidents/{recovery.id}")
    assert "復旧(RECOVERY)" in html and "通話設定(シンプル通話): サーバー担当" in html
    # The PROBLEM this RECOVERY ends, linked.
    assert f'<a href="/incidents/{problem.id}">2026-04-01 10:00:00 障害(PROBLEM) web-server01 / HTTP</a>' in html
    # Each recipient with the number as the app shows numbers.
    # A non-administrator sees recipients' numbers masked, as 電話番号の変更履歴 shows them.
    assert "佐藤 翔太" in html and "+81-**-****-0001" in html and "+81-**-****-0002" in html
    assert "+81-90-0123-0001" not in html
    # Attempts: time (JST), SID, outcome, error code with its Japanese explanation, next retry, final status.
    attempts = re.search(r'data-delivery-id="[^"]+">\s*<h4 class="h6">佐藤 翔太.*?</table>', html, re.S)
    assert attempts is not None
    block = attempts.group(0)
    assert "2026-04-01 11:00:01" in block and "一時的な失敗(再試行)" in block
    assert "20429" in block and EXPLANATIONS[20429] in block and "2026-04-01 11:00:31" in block
    assert SID2 in block and "発信済み" in block and "通話完了(completed)" in block
    assert "人(human)" in block and "23 秒" in block
    # A permanent error recorded with only its code is explained from EXPLANATIONS.
    assert "21211" in html and EXPLANATIONS[21211] in html and "失敗(再試行なし)" in html
    assert "応答なし(no-answer)" in html
    assert "3 名中 1 名に発信済み、2 名失敗" in html

    problem_page = page(client, f"/incidents/{problem.id}")
    assert f'href="/incidents/{recovery.id}"' in problem_page and "この障害の続報" in problem_page


def test_detail_of_an_acknowledgement_says_there_was_no_notification(
    client: FlaskClient, app: Flask, logged_in: AuthActions
) -> None:
    alert = make_alert(notification_type="ACKNOWLEDGEMENT", output="Acknowledged by nagiosadmin")
    html = page(client, f"/incidents/{alert.id}")
    assert "通知なし(認知の記録のみ)" in html and "認知(ACKNOWLEDGEMENT)" in html
    assert "Acknowledged by nagiosadmin" in html


def test_detail_of_an_unknown_alert_is_404(client: FlaskClient, app: Flask, logged_in: AuthActions) -> None:
    assert client.get("/incidents/999").status_code == 404


def test_it_is_in_the_side_menu_and_on_the_home_page(client: FlaskClient, app: Flask) -> None:
    make_user(login="admin", is_admin=True)
    make_user(login="viewer")
    auth = AuthActions(client)
    auth.login()
    assert '<a href="/incidents/">インシデント</a>' in page(client, "/admin/twilio/logs/")
    auth.logout()
    auth.login("viewer", PASSWORD)
    assert 'href="/incidents/"' in page(client, "/home")


def test_administrators_see_recipients_numbers_in_full(
    client: FlaskClient, settings: dict[str, Any], logged_in: AuthActions
) -> None:
    alert = make_alert(settings["call"], deliveries=[{"user_name": "佐藤 翔太", "to_number": "+819001230001"}])
    assert "+81-90-0123-0001" in page(client, f"/incidents/{alert.id}")

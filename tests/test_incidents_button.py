"""インシデント and ログ show every step of a button call (R9, R12, R13).

A scripted handset (tests/handset.py) works a real 輪番 call through the app's webhooks, as in
test_button_calls.py: the first user presses 2#, the second does not answer and is called
again, then presses 1# and 3#; the dispatcher sends the two acknowledgements to a monitor over
HTTP, which accepts one and refuses the other. The pages then say, to an administrator and
(numbers masked) to any logged-in user, what happened at each step.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import AuthActions
from tests.factories import PASSWORD, make_alert, make_user
from tests.test_button_calls import NAMES, PHONES, World, _work
from xmonbridge.acks import sink
from xmonbridge.calls import flow
from xmonbridge.extensions import db
from xmonbridge.models import (
    ACK_DONE,
    ACK_FAILED,
    ACK_HTTP,
    LOG_ACK,
    LOG_CALL_LIMIT,
    LOG_CALL,
    LOG_GATHER,
    LOG_VOICE,
    Acknowledgement,
    Notification,
    RequestLog,
    XmonSettings,
)
from xmonbridge.webhooks import callbacks

ACK_REFUSED = "通知先が HTTP 400 で拒否しました。"


class _Monitor(BaseHTTPRequestHandler):
    """A monitor's acknowledgement endpoint: accepts web01, refuses anything else (400)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200 if body.get("host") == "web01" else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def monitor() -> Iterator[str]:
    """The endpoint's URL while it runs on 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Monitor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ack"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Rotation:
    """The alerts and the notification of the worked rotation."""

    web: int
    db: int
    recovery: int
    notification_id: int
    sids: list[str]


def work_a_rotation(world: World) -> Rotation:
    """2# by the first user, no answer and a re-call of the second, 1# and 3# by the second.

    Acknowledgements go to a monitor over HTTP, which accepts web01 and refuses db01.
    """
    with monitor() as url:
        settings = XmonSettings.for_update()
        settings.ack_mode, settings.ack_http_url = ACK_HTTP, url
        db.session.commit()
        setting = world.setting("rotation", recall_seconds=30, max_calls=3, name="当番への電話")
        web = world.alert(setting, host="web01", service="HTTP")
        db_alert = world.alert(setting, host="db01", service="")
        world.run()
        first = world.handset.expect_call(PHONES[0])
        _work(world, first, "2")
        world.handset.hang_up(first)
        world.run()
        second = world.handset.expect_call(PHONES[1])
        world.handset.hang_up(second, "no-answer", duration=0)
        recovery = world.alert(setting, host="app01", service="PING", type_="RECOVERY", problem_id="7")
        world.run(10)
        world.handset.expect_no_call()  # the interval has not passed
        world.run(21)
        again = world.handset.expect_call(PHONES[1])
        _work(world, again, "1", "3")
        world.handset.hang_up(again, duration=42)
        world.run()  # the acknowledgements are sent
    db.session.expire_all()
    acks = db.session.scalars(select(Acknowledgement).order_by(Acknowledgement.id)).all()
    assert [(a.host, a.service, a.status) for a in acks] == [("web01", "HTTP", ACK_DONE), ("db01", "", ACK_FAILED)]
    notification = world.notification()
    return Rotation(web, db_alert, recovery, notification.id, [first.sid, second.sid, again.sid])


@pytest.fixture
def world(live_app: Flask, fake_twilio: Any) -> World:
    return World(live_app, fake_twilio)


@pytest.fixture
def rotation(world: World) -> Rotation:
    return work_a_rotation(world)


def login(app: Flask, admin: bool) -> FlaskClient:
    client = app.test_client()
    make_user(login="admin" if admin else "viewer", name="閲覧 花子", is_admin=admin)
    AuthActions(client).login("admin" if admin else "viewer", PASSWORD)
    return client


def page(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def text(html: str) -> str:
    """The page's text, tags removed and white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def rows(html: str, table_class: str) -> list[str]:
    """The text of each body row of the table with that class."""
    table = re.search(rf'<table class="[^"]*\b{table_class}\b.*?<tbody>(.*?)</tbody>', html, re.S)
    assert table, f"no table {table_class}"
    return [text(row).strip() for row in re.findall(r"<tr.*?</tr>", table.group(1), re.S)]


def list_row(html: str, alert_id: int) -> str:
    match = re.search(rf'<tr data-alert-id="{alert_id}"(.*?)</tr>', html, re.S)
    assert match, f"alert {alert_id} not listed"
    return match.group(0)


# --- インシデント 詳細 ---


def test_the_detail_shows_every_step_of_the_rotation(world: World, rotation: Rotation) -> None:
    client = login(world.app, admin=True)
    html = page(client, f"/incidents/{rotation.web}")
    body = text(html)
    n = rotation.notification_id

    assert f"ボタン操作付き通話 #{n}: 通話設定(ボタン操作付き): 当番への電話" in body
    assert "通知設定種別 輪番通知" in body and "処理の状態 完了" in body
    assert f"終了の理由 {NAMES[1]} さんが 3# で障害を認知済みにしたため、通知を終了しました。" in body
    assert "再発信までの間隔 30 秒" in body and "発信回数の上限 1 ユーザあたり 3 回" in body

    # Every alert of the call, with links, and the calls that read each out.
    alerts = rows(html, "button-alerts")
    assert len(alerts) == 3
    assert "障害(PROBLEM) 通知の開始 web01 HTTP CRITICAL #1 、 #3 送信済み この通知" in alerts[0]
    assert "障害(PROBLEM) db01 (ホストの通知) DOWN #1 、 #3 失敗 詳細" in alerts[1]
    assert "復旧(RECOVERY) app01 PING OK #3" in alerts[2]
    for alert_id in (rotation.db, rotation.recovery):
        assert f'href="/incidents/{alert_id}"' in html

    # Each recipient in the rotation's order, with their state and why.
    recipients = rows(html, "button-recipients")
    assert recipients[0] == f"1 {NAMES[0]} +81-90-0123-0001 発信済み 1 回 2# 次のユーザへ"
    assert recipients[1] == f"2 {NAMES[1]} +81-90-0123-0002 発信済み 2 回 3# 認知済み"
    assert recipients[2] == f"3 {NAMES[2]} +81-90-0123-0003 取り消し 0 回 {flow.CANCELED}"

    # Every call, oldest first: answered or not, keys, why it ended, re-called or not.
    calls = rows(html, "button-calls")
    assert len(calls) == 3
    first, missed, again = calls
    assert "#1" in first and NAMES[0] in first and "1 回目" in first and rotation.sids[0] in first
    assert "応答(" in first and "2#" in first and "2# 次のユーザへ" in first and "不要" in first
    assert "障害 2 件・復旧 0 件" in first
    assert NAMES[1] in missed and "1 回目" in missed and "応答なし" in missed
    assert "応答なし(no-answer)" in missed and "再発信しました(" in missed and "再発信 " not in missed.split("1 回目")[1][:5]
    assert NAMES[1] in again and "2 回目 再発信" in again and rotation.sids[2] in again
    assert "1# 3#" in again and "3# 認知済み" in again and "42 秒" in again and "障害 2 件・復旧 1 件" in again

    # The acknowledgements sent back to the monitor: sink, result, tries, error.
    acks = rows(html, "button-acks")
    assert f"web01 / HTTP {NAMES[1]} HTTP で POST する 送信済み 1 回" in acks[0]
    assert f"db01(ホスト) {NAMES[1]} HTTP で POST する 失敗 1 回 {ACK_REFUSED}" in acks[1]
    assert 'class="table-danger"' in re.findall(r"<tr data-ack-id.*?>", html)[1]


def test_a_joined_alert_shows_the_same_call_and_says_it_joined(world: World, rotation: Rotation) -> None:
    client = login(world.app, admin=True)
    html = page(client, f"/incidents/{rotation.recovery}")
    n = rotation.notification_id
    assert f'id="notification-{n}-joined"' in html and f"処理中のボタン操作付き通話 #{n}に合流しました" in html
    assert len(rows(html, "button-calls")) == 3 and len(rows(html, "button-acks")) == 2
    assert "復旧(RECOVERY) app01 PING OK #3 この通知" in rows(html, "button-alerts")[2]


def test_the_list_summarises_the_call_once_and_links_the_joined_alerts(world: World, rotation: Rotation) -> None:
    client = login(world.app, admin=True)
    html = page(client, "/incidents/")
    n = rotation.notification_id

    starter = text(list_row(html, rotation.web))
    assert "電話(ボタン操作付き) 輪番通知" in starter and f"ボタン操作付き通話 #{n}・ 完了" in starter
    assert "障害 2 件・復旧 1 件、発信 3 回、 認知済みの通知 2 件(送信済み 1・失敗 1)" in starter
    assert f"終了: {NAMES[1]} さんが 3# で障害を認知済みにしたため" in starter
    assert f"1. {NAMES[0]}: 発信済み(発信 1 回)" in starter and f"2. {NAMES[1]}: 発信済み(発信 2 回)" in starter
    for alert_id in (rotation.db, rotation.recovery):
        row = list_row(html, alert_id)
        assert f'<a href="/incidents/{rotation.web}#notification-{n}">ボタン操作付き通話 #{n} に合流</a>' in row
        assert "輪番通知" not in row and "発信 3 回" not in row  # the summary is shown once
    assert html.count("認知済みの通知 2 件") == 1


def test_the_list_says_who_is_called_now_and_why_a_recall_waits(world: World) -> None:
    setting = world.setting("rotation", recall_seconds=60)
    world.alert(setting, host="web01")
    world.run()
    first = world.handset.expect_call(PHONES[0])
    world.handset.answer(first)
    client = login(world.app, admin=True)

    assert f"処理中 障害 1 件・復旧 0 件、発信 1 回 通話中: {NAMES[0]}" in text(page(client, "/incidents/"))
    world.handset.hang_up(first, "busy", duration=0)
    listed = text(page(client, "/incidents/"))
    assert "再発信待ち(" in listed and f"以降): {NAMES[0]}" in listed
    detail = text(page(client, f"/incidents/{world.notification().alert_id}"))
    assert "前回の通話が正常に終了しなかったため(話し中)、60 秒後に再発信します。" in detail
    assert "再発信の予定(" in detail and "話し中(busy)" in detail
    assert f"2 {NAMES[1]} +81-90-0123-0002 待機中 0 回" in detail


def test_a_capped_recipient_is_shown_as_such_in_all_mode(world: World) -> None:
    setting = world.setting("all", users=world.users[:1], max_calls=1)
    alert_id = world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    world.handset.hang_up(call, "no-answer", duration=0)
    world.run(600)
    world.handset.expect_no_call()
    client = login(world.app, admin=True)
    html = page(client, f"/incidents/{alert_id}")
    assert "一斉通知" in html
    [recipient] = rows(html, "button-recipients")
    assert f"上限到達 1 回 応答なし {flow.CAPPED_ALL.format(cap=1)}" in recipient
    assert "なし(上限到達)" in rows(html, "button-calls")[0]
    listed = list_row(page(client, "/incidents/"), alert_id)
    assert "table-danger" in listed and "全員失敗" in listed


def test_a_non_administrator_sees_masked_numbers(world: World, rotation: Rotation) -> None:
    client = login(world.app, admin=False)
    for url in (f"/incidents/{rotation.web}", f"/incidents/{rotation.recovery}", "/incidents/"):
        html = page(client, url)
        assert not any(number in html for number in ("+81-90-0123-000", "+81901230", "090-0123")), url
    detail = page(client, f"/incidents/{rotation.web}")
    assert "+81-**-****-0001" in detail and "+81-**-****-0002" in detail and "+81-**-****-0003" in detail


def test_the_setting_filter_offers_button_settings(world: World, rotation: Rotation) -> None:
    client = login(world.app, admin=True)
    notification = db.session.get(Notification, rotation.notification_id)
    option = f'<option value="button_call:{notification.setting_id}">通話設定(ボタン操作付き): 当番への電話</option>'
    assert option in page(client, "/incidents/")
    listed = page(client, f"/incidents/?setting=button_call:{notification.setting_id}")
    assert re.findall(r'<tr data-alert-id="(\d+)"', listed) == [str(rotation.recovery), str(rotation.db), str(rotation.web)]


def test_simple_calls_keep_their_display(world: World) -> None:
    from tests.factories import make_simple_call_setting

    setting = make_simple_call_setting(world.account, world.users[:1], name="サーバー担当")
    alert = make_alert(setting, deliveries=[{"user_name": NAMES[0], "to_number": PHONES[0]}])
    client = login(world.app, admin=True)
    row = text(list_row(page(client, "/incidents/"), alert.id))
    assert "電話 1 名中 0 名に発信済み、1 名発信待ち" in row and "ボタン操作付き" not in row


def test_a_test_call_is_labelled_as_the_message_templates(world: World) -> None:
    from xmonbridge.calls.testcall import start_test_call

    notification = start_test_call(world.account, "+815012340001", world.users[0], "開始", "終了")
    db.session.commit()
    client = login(world.app, admin=True)
    row = text(list_row(page(client, "/incidents/"), notification.alert_id))
    assert "メッセージテンプレート: テスト通話" in row and "輪番通知" in row


# --- ログ ---


def log_rows(kind: str) -> list[RequestLog]:
    return list(db.session.scalars(select(RequestLog).where(RequestLog.kind == kind).order_by(RequestLog.id)))


def test_the_log_shows_the_key_and_the_signature_check_of_a_gather(world: World, rotation: Rotation) -> None:
    client = login(world.app, admin=True)
    listed = page(client, "/admin/twilio/logs/?kind=gather")
    body = text(listed)
    assert "ボタン操作(Webhook)" in body
    assert "押されたボタン: 2#" in body and "押されたボタン: 1#" in body and "押されたボタン: 3#" in body
    assert "記録: 3# 認知済み(2 件)" in body

    three = log_rows(LOG_GATHER)[-1]
    detail = page(client, f"/admin/twilio/logs/{three.id}")
    dl = text(detail)
    assert "種別 ボタン操作(Webhook)" in dl and "応答した HTTP ステータス 200" in dl
    assert "押されたボタン 3#" in dl and f"署名の検証 {callbacks.CHECK_OK}" in dl
    assert "記録 3# 認知済み(2 件)" in dl and "受信した状態 通話中(in-progress)" in dl
    assert 'id="log-explanation"' not in detail and "受信内容" in detail
    voice = log_rows(LOG_VOICE)[0]
    assert "記録 応答" in text(page(client, f"/admin/twilio/logs/{voice.id}"))


def test_a_refused_webhook_says_why_without_twilios_explanations(world: World) -> None:
    setting = world.setting("rotation", users=world.users[:1])
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    heard = world.handset.answer(call)
    assert world.handset.press(call, heard, "3", token="0" * 32).status == 403
    client = login(world.app, admin=True)
    refused = [row for row in log_rows(LOG_GATHER) if row.http_status == 403]
    assert len(refused) == 1
    detail = page(client, f"/admin/twilio/logs/{refused[0].id}")
    assert f"署名の検証 {callbacks.BAD_SIGNATURE}" in text(detail)
    assert "押されたボタン 3#" in text(detail) and 'id="log-explanation"' not in detail
    assert callbacks.BAD_SIGNATURE in text(page(client, "/admin/twilio/logs/?result=failure"))


def test_the_log_shows_each_acknowledgement_sent_to_the_monitor(world: World, rotation: Rotation) -> None:
    client = login(world.app, admin=True)
    body = text(page(client, "/admin/twilio/logs/?kind=ack"))
    assert "認知済み通知" in body and f"認知: web01 / HTTP({NAMES[1]})" in body and f"認知: db01(ホスト)({NAMES[1]})" in body
    assert ACK_REFUSED in body

    done, refused = log_rows(LOG_ACK)
    done_page = page(client, f"/admin/twilio/logs/{done.id}")
    done_text = text(done_page)
    assert "認知した障害 web01 / HTTP" in done_text and f"認知したユーザ {NAMES[1]}" in done_text
    assert "送信先 HTTP で POST する" in done_text and "試行 1 回目" in done_text and f"結果 {sink.HTTP_DONE.format(status=200)}" in done_text
    assert "HTTP ステータス" not in done_text and "(応答なし)" not in done_text
    refused_page = page(client, f"/admin/twilio/logs/{refused.id}")
    assert f"結果 {ACK_REFUSED}" in text(refused_page) and "送信先 HTTP で POST する" in text(refused_page) and "認知した障害 db01(ホスト)" in text(refused_page)
    assert 'id="log-explanation"' not in refused_page


def test_the_log_help_explains_the_new_kinds(client: FlaskClient, logged_in: AuthActions) -> None:
    html = page(client, "/admin/twilio/logs/")
    for label in ("通話開始(Webhook)", "ボタン操作(Webhook)", "留守番電話判定(Webhook)", "通話切断", "発信上限", "認知済み通知"):
        assert re.search(rf'<dt class="col-sm-3">{re.escape(label)}</dt>', html), label
    assert 'id="log-help-button"' in html


def test_a_machine_and_the_per_number_limit_are_shown_with_their_reasons(world: World) -> None:
    settings = XmonSettings.for_update()
    settings.calls_per_15min = 2
    db.session.commit()
    setting = world.setting("rotation", users=world.users[:1], machine_detection=True, recall_seconds=10)
    alert_id = world.alert(setting)
    world.run()
    machine = world.handset.expect_call(PHONES[0])
    world.handset.answer(machine)
    assert world.handset.amd(machine, "machine_start") == 204
    world.run()
    world.handset.hang_up(machine, answered_by="machine_start")
    world.run(11)
    missed = world.handset.expect_call(PHONES[0])
    world.handset.hang_up(missed, "no-answer", duration=0)
    world.run(11)
    world.handset.expect_no_call()  # held back: two calls to this number within 15 minutes

    client = login(world.app, admin=True)
    html = page(client, f"/incidents/{alert_id}")
    first, second = rows(html, "button-calls")
    assert "応答者: 留守番電話(machine_start)" in first and "留守番電話が応答" in first
    assert "応答なし" in second and "再発信の予定(" in second
    [recipient] = rows(html, "button-recipients")
    assert "再発信待ち(" in recipient and "上限(2 回/15 分)" in recipient

    listed = text(page(client, "/admin/twilio/logs/"))
    assert "留守番電話判定(Webhook)" in listed and "応答者: 留守番電話(machine_start)" in listed
    assert "記録: 留守番電話のため切断します(再発信します)。" in listed
    assert "通話切断" in listed and "発信上限" in listed and "上限(2 回/15 分)" in listed
    [limit] = log_rows(LOG_CALL_LIMIT)
    detail = page(client, f"/admin/twilio/logs/{limit.id}")
    assert f"発信を見送った理由 {limit.error_message}" in text(detail) and "上限(2 回/15 分)" in limit.error_message
    assert 'id="log-explanation"' not in detail and "(応答なし)" not in detail


def test_the_webhook_tokens_stay_out_of_the_log(world: World) -> None:
    """Like the access log, ログ shows a call's voice and status URLs without their tokens."""
    setting = world.setting("rotation", users=world.users[:1])
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    token = call.url.rsplit("/", 1)[1]
    assert len(token) > 16 and call.form["Url"].endswith(token)
    client = login(world.app, admin=True)
    placed = log_rows(LOG_CALL)[0]
    detail = page(client, f"/admin/twilio/logs/{placed.id}")
    assert "/twilio/voice/…" in placed.request_summary and token not in placed.request_summary
    assert token not in detail and call.status_callback.rsplit("/", 1)[1] not in detail

"""The heartbeat SMS: texts a chosen user, through the fake Twilio, when the phone path is broken.

The check (xmonbridge/heartbeat.py) runs in this process against the fake Twilio; the last
test runs a real `xmonbridge serve` whose watchdog threads do it. ハートビート通知, the page
that chooses who is texted, is tested through the test client here and in a browser in
tests/e2e/test_heartbeat_settings.py.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from xmonbridge import heartbeat
from xmonbridge.dispatch.lease import Lease
from xmonbridge.extensions import db
from xmonbridge.filters import jst
from xmonbridge.models import LOG_CALL, LOG_SMS, RequestLog, SmsSetting, User, XmonSettings, utcnow

from tests.conftest import ADMIN_PASSWORD
from tests.factories import make_recipient, make_sms_setting, make_twilio_account, make_user
from tests.fake_twilio import FakeTwilio
from tests.real_server import RealServer, wait_for

HOST = socket.gethostname()
HOLDER = "box1:4242:cafe"
SATO = "+819001230001"
FROM = "+815012340001"


# -- helpers ------------------------------------------------------------------------------


def configure(dispatcher_minutes: int = 10, twilio_minutes: int = 30) -> tuple[User, SmsSetting]:
    """A user with a number and an SMS setting, chosen on ハートビート通知."""
    account = make_twilio_account()
    user = make_recipient()
    setting = make_sms_setting(account, [user], name="運用チームへの SMS")
    settings = XmonSettings.for_update()
    settings.heartbeat_user_id = user.id
    settings.heartbeat_sms_setting_id = setting.id
    settings.heartbeat_dispatcher_minutes = dispatcher_minutes
    settings.heartbeat_twilio_minutes = twilio_minutes
    db.session.commit()
    return user, setting


def lead(renewed: datetime, holder: str = HOLDER) -> None:
    """The dispatcher lease, last renewed at `renewed`."""
    Lease(holder, 10).acquire_or_renew(renewed)


def request_log(at: datetime, success: bool, kind: str = LOG_CALL, code: int | None = 20003) -> None:
    """A request to Twilio as telephony.py logs it."""
    db.session.add(
        RequestLog(
            kind=kind,
            created_at=at,
            success=success,
            http_status=201 if success else 401,
            error_code=None if success else code,
            destination=SATO,
        )
    )
    db.session.commit()


def sent(fake: FakeTwilio) -> list[str]:
    """Bodies of the SMS Twilio accepted."""
    return [m.form["Body"] for m in fake.messages() if m.response_status == 201]


def state() -> XmonSettings:
    db.session.expire_all()
    return XmonSettings.get()


# -- the check ---------------------------------------------------------------------------


def test_a_stale_lease_texts_the_user_once(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    user, setting = configure()
    renewed = utcnow() - timedelta(minutes=15)
    lead(renewed)

    result = heartbeat.check()

    assert result.sent == ["dispatcher"]
    messages = fake_twilio.messages()
    assert len(messages) == 1
    assert messages[0].form["To"] == SATO and messages[0].form["From"] == FROM
    assert messages[0].form["Body"] == (
        f"【xmonbridge】配信処理が {jst(renewed, '%m/%d %H:%M')} から止まっています(15 分間)。"
        f"電話・SMS の通知が送られません。最後の配信処理: box1(ホスト: {HOST})"
    )
    assert state().heartbeat_dispatcher_sent_at is not None

    # The same outage is not texted again, by this check or a later one.
    for minutes in (0, 1, 60):
        assert heartbeat.check(utcnow() + timedelta(minutes=minutes)).sent == []
    assert len(fake_twilio.messages()) == 1

    # ログ lists the text as the heartbeat's, not as an SMS setting's.
    rows = db.session.scalars(select(RequestLog).where(RequestLog.setting_type == "heartbeat")).all()
    assert len(rows) == 1
    logged = rows[0]
    assert (logged.kind, logged.setting_name, logged.success, logged.destination) == (LOG_SMS, "ハートビート通知", True, SATO)


def test_the_log_page_names_the_heartbeat(live_app: Flask, live_logged_in: FlaskClient, fake_twilio: FakeTwilio) -> None:
    configure()
    lead(utcnow() - timedelta(minutes=15))
    heartbeat.check()
    page = live_logged_in.get("/admin/twilio/logs/").get_data(as_text=True)
    assert "ハートビート通知" in page


@pytest.mark.parametrize("checks", [2, 4])
def test_checks_at_the_same_time_text_once(any_db_live_app: Flask, fake_twilio: FakeTwilio, checks: int) -> None:
    configure()
    lead(utcnow() - timedelta(minutes=30))
    # Twilio has refused everything for an hour too: two problems, each texted once.
    request_log(utcnow() - timedelta(minutes=60), False)
    request_log(utcnow() - timedelta(minutes=1), False)
    db.session.remove()
    start = threading.Barrier(checks)
    results: list[heartbeat.Result] = []
    errors: list[BaseException] = []

    def run() -> None:
        with any_db_live_app.app_context():
            try:
                start.wait()
                results.append(heartbeat.check())
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(checks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(results) == checks
    assert all({p.kind for p in r.problems} == {"dispatcher", "twilio"} for r in results)
    bodies = sent(fake_twilio)
    assert len(bodies) == 2, bodies
    assert sum("配信処理が" in body for body in bodies) == 1
    assert sum("Twilio が" in body for body in bodies) == 1
    assert sorted(what for r in results for what in r.sent) == ["dispatcher", "twilio"]


def test_a_fresh_lease_or_a_short_stop_texts_nothing(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    configure(dispatcher_minutes=10)
    lead(utcnow() - timedelta(seconds=2))
    assert heartbeat.check().problems == []
    # Stopped, but for less than the 10 minutes chosen.
    lead(utcnow() - timedelta(minutes=9))
    assert heartbeat.check().problems == []
    assert fake_twilio.messages() == []
    assert state().heartbeat_dispatcher_sent_at is None


def test_no_dispatcher_ever_is_texted(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    configure()
    assert heartbeat.check().sent == ["dispatcher"]
    assert sent(fake_twilio) == [f"【xmonbridge】配信処理が一度も動いていません。電話・SMS の通知が送られません。(ホスト: {HOST})"]
    assert heartbeat.check().sent == []
    # A dispatcher starts: that is a recovery.
    lead(utcnow())
    assert heartbeat.check().sent == ["dispatcher recovered"]


def test_twilio_refusing_longer_than_the_window_texts_once(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    configure(twilio_minutes=30)
    now = utcnow()
    lead(now)
    request_log(now - timedelta(hours=2), True)
    request_log(now - timedelta(minutes=40), False, code=20003)
    request_log(now - timedelta(minutes=20), False, kind=LOG_SMS, code=20003)
    request_log(now - timedelta(minutes=1), False, code=20003)

    result = heartbeat.check(now)

    assert result.sent == ["twilio"]
    since = jst(now - timedelta(minutes=40), "%m/%d %H:%M")
    last = jst(now - timedelta(minutes=1), "%m/%d %H:%M")
    assert sent(fake_twilio) == [
        f"【xmonbridge】Twilio が {since} から要求を拒否し続けています(40 分間、最後は {last} に エラー 20003)。"
        f"電話・SMS の通知が届いていない可能性があります。(ホスト: {HOST})"
    ]
    # The heartbeat's own text succeeded, yet it is no success of the phone path: no 復旧,
    # and more refused requests of the same outage are not texted again.
    request_log(now + timedelta(seconds=30), False)
    assert heartbeat.check(now + timedelta(minutes=1)).sent == []
    assert len(fake_twilio.messages()) == 1


@pytest.mark.parametrize(
    ("failures", "success"),
    [
        pytest.param([10, 1], None, id="refused-for-10-minutes-only"),
        pytest.param([60, 45], None, id="nothing-refused-within-the-window"),
        pytest.param([60, 1], 20, id="a-success-within-the-window"),
    ],
)
def test_twilio_not_refusing_for_the_whole_window_texts_nothing(
    live_app: Flask, fake_twilio: FakeTwilio, failures: list[int], success: int | None
) -> None:
    configure(twilio_minutes=30)
    now = utcnow()
    lead(now)
    for minutes in failures:
        request_log(now - timedelta(minutes=minutes), False)
    if success is not None:
        request_log(now - timedelta(minutes=success), True)
    assert heartbeat.check(now).problems == []
    assert fake_twilio.messages() == []


def test_a_dispatcher_that_recovers_and_stops_again_is_texted_again(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    configure(dispatcher_minutes=10)
    lead(utcnow() - timedelta(minutes=12))
    assert heartbeat.check().sent == ["dispatcher"]

    # The dispatcher runs again: 「復旧」 once, and the outage is forgotten.
    resumed = utcnow()
    lead(resumed)
    assert heartbeat.check().sent == ["dispatcher recovered"]
    assert state().heartbeat_dispatcher_sent_at is None
    assert heartbeat.check().sent == []

    # It stops again, for longer than 10 minutes.
    assert heartbeat.check(resumed + timedelta(minutes=11)).sent == ["dispatcher"]
    bodies = sent(fake_twilio)
    assert len(bodies) == 3
    assert bodies[0].startswith("【xmonbridge】配信処理が ")
    assert bodies[1].startswith("【xmonbridge】復旧: 配信処理が再開しました。")
    assert bodies[1].endswith(f"に通知した問題は解消しています。(ホスト: {HOST})")
    assert bodies[2] == (
        f"【xmonbridge】配信処理が {jst(resumed, '%m/%d %H:%M')} から止まっています(11 分間)。"
        f"電話・SMS の通知が送られません。最後の配信処理: box1(ホスト: {HOST})"
    )


def test_twilio_that_recovers_and_refuses_again_is_texted_again(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    configure(dispatcher_minutes=1440, twilio_minutes=30)
    now = utcnow()
    lead(now)
    request_log(now - timedelta(minutes=45), False)
    request_log(now - timedelta(minutes=5), False)
    assert heartbeat.check(now).sent == ["twilio"]

    # A call goes through: 「復旧」.
    request_log(now + timedelta(minutes=1), True)
    assert heartbeat.check(now + timedelta(minutes=2)).sent == ["twilio recovered"]
    assert heartbeat.check(now + timedelta(minutes=3)).sent == []

    # Refused again from minute 4 to minute 40.
    request_log(now + timedelta(minutes=4), False, code=20429)
    request_log(now + timedelta(minutes=40), False, code=20429)
    assert heartbeat.check(now + timedelta(minutes=20)).sent == []
    assert heartbeat.check(now + timedelta(minutes=41)).sent == ["twilio"]
    bodies = sent(fake_twilio)
    assert [body.split("。")[0] for body in bodies] == [
        f"【xmonbridge】Twilio が {jst(now - timedelta(minutes=45), '%m/%d %H:%M')} から要求を拒否し続けています(45 分間、最後は {jst(now - timedelta(minutes=5), '%m/%d %H:%M')} に エラー 20003)",
        "【xmonbridge】復旧: Twilio への要求が成功しました",
        f"【xmonbridge】Twilio が {jst(now + timedelta(minutes=4), '%m/%d %H:%M')} から要求を拒否し続けています(37 分間、最後は {jst(now + timedelta(minutes=40), '%m/%d %H:%M')} に エラー 20429)",
    ]


def test_off_texts_nothing(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    user, setting = configure()
    lead(utcnow() - timedelta(hours=1))
    request_log(utcnow() - timedelta(hours=1), False)
    request_log(utcnow(), False)

    settings = XmonSettings.for_update()
    settings.heartbeat_user_id = None
    db.session.commit()
    assert heartbeat.check().enabled is False

    # A user but no SMS setting to text through: off too.
    settings = XmonSettings.for_update()
    settings.heartbeat_user_id, settings.heartbeat_sms_setting_id = user.id, None
    db.session.commit()
    assert heartbeat.check().enabled is False

    # The user's number was removed.
    settings = XmonSettings.for_update()
    settings.heartbeat_sms_setting_id = setting.id
    user.phone = None
    db.session.commit()
    assert heartbeat.check().enabled is False

    assert fake_twilio.messages() == []
    assert state().heartbeat_dispatcher_sent_at is None and state().heartbeat_twilio_sent_at is None


def test_a_text_refused_for_now_is_tried_at_the_next_check(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    configure()
    lead(utcnow() - timedelta(minutes=15))
    fake_twilio.fail_next(429, operation="CreateMessage")

    first = heartbeat.check()
    assert first.sent == [] and len(first.failed) == 1
    assert state().heartbeat_dispatcher_sent_at is None

    assert heartbeat.check().sent == ["dispatcher"]
    assert len(sent(fake_twilio)) == 1


def test_a_text_that_may_have_gone_out_is_not_sent_again(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    configure()
    lead(utcnow() - timedelta(minutes=15))
    # Twilio creates the message but answers 500: it may have reached the user.
    fake_twilio.fail_next(500, operation="CreateMessage", after_create=True)

    assert heartbeat.check().failed != []
    assert heartbeat.check().sent == []
    assert len(fake_twilio.messages()) == 1


def test_the_command_checks_once(live_app: Flask, fake_twilio: FakeTwilio) -> None:
    runner = live_app.test_cli_runner()
    result = runner.invoke(args=["heartbeat"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("heartbeat is off")

    configure()
    lead(utcnow() - timedelta(minutes=15))
    result = runner.invoke(args=["heartbeat"])
    assert result.exit_code == 0, result.output
    assert result.output == "heartbeat: dispatcher; texted dispatcher\n"
    result = runner.invoke(args=["heartbeat"])
    assert result.output == "heartbeat: dispatcher; texted nothing\n"
    assert len(fake_twilio.messages()) == 1


# -- ハートビート通知 (管理者メニュー → その他設定) ------------------------------------------


PAGE = "/admin/heartbeat/"
LABELS = {
    "user_id": "通知先ユーザ",
    "sms_setting_id": "送信に使う SMS 通知設定",
    "dispatcher_minutes": "配信処理が止まってから通知するまでの時間(分)",
    "twilio_minutes": "Twilio が要求を拒否し続けてから通知するまでの時間(分)",
}


def form_values(user: User | None, setting: SmsSetting | None, dispatcher: str = "15", twilio: str = "45") -> dict[str, str]:
    return {
        "user_id": str(user.id) if user else "",
        "sms_setting_id": str(setting.id) if setting else "",
        "dispatcher_minutes": dispatcher,
        "twilio_minutes": twilio,
        "submit": "y",
    }


@pytest.fixture
def page_setup(live_app: Flask) -> Iterator[tuple[User, SmsSetting]]:
    account = make_twilio_account()
    user = make_recipient()
    make_user(login="nophone", name="番号なし", password=None, login_disabled=True)
    yield user, make_sms_setting(account, [user], name="運用チームへの SMS")


def test_the_page_is_for_administrators(live_app: Flask, live_client: FlaskClient) -> None:
    assert live_client.get(PAGE).status_code == 302
    make_user(login="viewer", is_admin=False)
    live_client.post("/login", data={"login": "viewer", "password": ADMIN_PASSWORD})
    assert live_client.get(PAGE).status_code == 403
    assert live_client.post(PAGE, data={"submit": "y"}).status_code == 403


def test_the_page_shows_labelled_fields_and_saves(
    live_logged_in: FlaskClient, page_setup: tuple[User, SmsSetting], fake_twilio: FakeTwilio
) -> None:
    user, setting = page_setup
    page = live_logged_in.get(PAGE).get_data(as_text=True)
    for name, label in LABELS.items():
        assert f'<label class="form-label" for="{name}">{label}</label>' in page
    assert '<a href="/admin/heartbeat/">ハートビート通知</a>' in page  # the side menu
    # Only users with a number; 通知しない first, and chosen while off.
    assert re.search(r'<option selected value="">通知しない</option>', page)
    assert "+81-90-0123-0001(佐藤 翔太)" in page and "番号なし" not in page
    assert 'value="10"' in page and 'value="30"' in page  # the defaults
    assert "設定を反映" in page and "テスト送信" in page

    response = live_logged_in.post(PAGE, data=form_values(user, setting), follow_redirects=True)
    assert "ハートビート通知の設定を反映しました。" in response.get_data(as_text=True)
    saved = state()
    assert (saved.heartbeat_user_id, saved.heartbeat_sms_setting_id) == (user.id, setting.id)
    assert (saved.heartbeat_dispatcher_minutes, saved.heartbeat_twilio_minutes) == (15, 45)

    # 通知しない turns it off; the thresholds stay.
    live_logged_in.post(PAGE, data=form_values(None, setting, "20", "40"))
    saved = state()
    assert saved.heartbeat_user_id is None and saved.heartbeat_dispatcher_minutes == 20
    assert fake_twilio.messages() == []


def test_choosing_another_user_texts_them_about_an_ongoing_outage(
    live_logged_in: FlaskClient, page_setup: tuple[User, SmsSetting], fake_twilio: FakeTwilio
) -> None:
    user, setting = page_setup
    other = make_recipient(login="suzuki", name="鈴木 花子", phone="+819001230002")
    live_logged_in.post(PAGE, data=form_values(user, setting))
    lead(utcnow() - timedelta(minutes=30))
    assert heartbeat.check().sent == ["dispatcher"]
    # Saving the same choice again does not repeat the text ...
    live_logged_in.post(PAGE, data=form_values(user, setting))
    assert heartbeat.check().sent == []
    # ... another user is told.
    live_logged_in.post(PAGE, data=form_values(other, setting))
    assert heartbeat.check().sent == ["dispatcher"]
    assert [m.form["To"] for m in fake_twilio.messages()] == [SATO, "+819001230002"]


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        pytest.param(
            {"dispatcher_minutes": "0", "twilio_minutes": "abc"},
            {"dispatcher_minutes": "1 から 1440 までの整数(分)で入力してください。", "twilio_minutes": "1 から 1440 までの整数(分)で入力してください。"},
            id="minutes",
        ),
        pytest.param(
            {"dispatcher_minutes": "", "twilio_minutes": "1441"},
            {"dispatcher_minutes": "このフィールドは必須です。", "twilio_minutes": "1 から 1440 までの整数(分)で入力してください。"},
            id="blank-and-too-many",
        ),
        pytest.param(
            {"sms_setting_id": ""},
            {"sms_setting_id": "通知先ユーザを選んだときは、送信に使う SMS 通知設定を選択してください。"},
            id="user-without-sms-setting",
        ),
        pytest.param(
            {"user_id": "9999", "sms_setting_id": "x"},
            {"user_id": "通知先ユーザを一覧から選択してください。", "sms_setting_id": "SMS 通知設定を一覧から選択してください。"},
            id="not-in-the-lists",
        ),
        pytest.param({"user_id": "nophone"}, {"user_id": "通知先ユーザを一覧から選択してください。"}, id="user-without-number"),
    ],
)
def test_the_page_refuses_bad_input_and_saves_nothing(
    live_logged_in: FlaskClient,
    page_setup: tuple[User, SmsSetting],
    fake_twilio: FakeTwilio,
    values: dict[str, str],
    errors: dict[str, str],
) -> None:
    user, setting = page_setup
    data = form_values(user, setting)
    data.update(values)
    if data["user_id"] == "nophone":
        data["user_id"] = str(db.session.scalars(select(User.id).where(User.login == "nophone")).one())
    response = live_logged_in.post(PAGE, data=data)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for name, message in errors.items():
        assert f'<div class="invalid-feedback d-block" id="{name}-error">{message}</div>' in page, name
    assert page.count("invalid-feedback") == len(errors)
    assert db.session.get(XmonSettings, 1) is None  # nothing saved, not even the row
    # What was typed stays in the form.
    for name in ("dispatcher_minutes", "twilio_minutes"):
        if data[name] and data[name] in values.values():
            assert f'value="{data[name]}"' in page
    assert fake_twilio.messages() == []


def test_send_test_texts_the_chosen_user_without_saving(
    live_logged_in: FlaskClient, page_setup: tuple[User, SmsSetting], fake_twilio: FakeTwilio
) -> None:
    user, setting = page_setup
    data = form_values(user, setting, "12", "34")
    del data["submit"]
    data["send_test"] = "y"
    page = live_logged_in.post(PAGE, data=data).get_data(as_text=True)

    messages = fake_twilio.messages()
    assert len(messages) == 1
    assert messages[0].form == {
        "To": SATO,
        "From": FROM,
        "Body": f"【xmonbridge】ハートビート通知のテストです。配信処理が 12 分止まったとき、Twilio が 34 分要求を拒否し続けたときに、"
        f"この番号へ SMS を送ります。(ホスト: {HOST})",
    }
    sid = messages[0].response_body["sid"]
    assert f"テスト送信の SMS を +81-90-0123-0001(佐藤 翔太) に送信しました。Message SID: {sid}" in page
    assert 'value="12"' in page and 'value="34"' in page
    assert db.session.get(XmonSettings, 1) is None
    row = db.session.scalars(select(RequestLog).where(RequestLog.sid == sid)).first()
    assert row is not None and row.kind == "test_sms" and row.setting_name == "ハートビート通知"


def test_send_test_says_why_it_failed_and_needs_a_user(
    live_logged_in: FlaskClient, page_setup: tuple[User, SmsSetting], fake_twilio: FakeTwilio
) -> None:
    user, setting = page_setup
    data = form_values(None, setting)
    del data["submit"]
    data["send_test"] = "y"
    page = live_logged_in.post(PAGE, data=data).get_data(as_text=True)
    assert "テスト送信には通知先ユーザを選択してください。" in page
    assert fake_twilio.messages() == []

    fake_twilio.fail_next(400, code=21211, operation="CreateMessage")
    data["user_id"] = str(user.id)
    page = live_logged_in.post(PAGE, data=data).get_data(as_text=True)
    assert "テスト送信に失敗しました。宛先の電話番号が正しくありません。" in page
    assert db.session.get(XmonSettings, 1) is None


# -- a real server ---------------------------------------------------------------------------


def test_a_real_server_without_a_running_dispatcher_texts_once_then_recovery(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    """Two `serve` workers' watchdogs, no dispatcher: one text; a dispatcher starts: one 「復旧」."""
    server = RealServer(
        tmp_path, mode="live", api_base=fake_twilio.base_url, DISPATCHER_ENABLED=False, HEARTBEAT_CHECK_SECONDS=0.5
    )
    try:
        with server.app_context():
            configure(dispatcher_minutes=1)
            # The last leader stopped renewing five minutes ago.
            lead(utcnow() - timedelta(minutes=5), holder="box9:77:ff")
        server.start(workers=2)
        wait_for(lambda: len(fake_twilio.messages()) >= 1, 20, "the heartbeat text")
        time.sleep(3)  # both workers checked several times meanwhile
        bodies = sent(fake_twilio)
        assert len(bodies) == 1, bodies
        assert bodies[0].startswith("【xmonbridge】配信処理が ")
        assert "(5 分間)" in bodies[0] and "最後の配信処理: box9" in bodies[0]
        with server.app_context():
            assert XmonSettings.get().heartbeat_dispatcher_sent_at is not None

        server.terminate()
        server.env["XMONBRIDGE_DISPATCHER_ENABLED"] = "true"
        server.start(workers=2)
        wait_for(lambda: len(fake_twilio.messages()) >= 2, 20, "the recovery text")
        time.sleep(2)
        bodies = sent(fake_twilio)
        assert len(bodies) == 2, bodies
        assert bodies[1].startswith("【xmonbridge】復旧: 配信処理が再開しました。")
    finally:
        server.stop()

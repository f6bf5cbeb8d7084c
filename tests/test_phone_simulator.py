"""電話シミュレータ (B4): phones that ring for simulated calls and SMS, worked through the page's endpoints.

Alerts go in through intake; the dispatcher (a clock moved by hand) places calls with the
simulator; the administrator's page polls the phones' state and presses 応答, keys and 切断.
Every step must reach the real webhooks signed as Twilio signs them (ログ shows each request
and its signature check) and the real state machine (インシデント shows what it did). Time
passing (a ring or a <Gather> running out) is simulated by moving the rows' clocks back.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.conftest import ADMIN_PASSWORD
from tests.dispatch_helpers import FakeClock
from tests.factories import (
    make_button_call_setting,
    make_recipient,
    make_simple_call_setting,
    make_sms_setting,
    make_twilio_account,
    make_user,
    set_xmon_url,
)
from xmonbridge.alerts import intake
from xmonbridge.calls import simphone
from xmonbridge.dispatch.engine import Dispatcher
from xmonbridge.extensions import db
from xmonbridge.models import (
    LOG_AMD,
    LOG_GATHER,
    LOG_STATUS_CALLBACK,
    LOG_VOICE,
    NOTIFICATION_DONE,
    REPLACEMENT_BUTTON,
    Acknowledgement,
    AlertRecord,
    Attempt,
    Notification,
    ReplacementList,
    RequestLog,
    SimulatedMessage,
    UserMessageTemplate,
    XmonSettings,
    utcnow,
)

XMON = "https://xmon.example.jp/bridge"
URL = "/admin/phone-simulator"
NAMES = ["佐藤 翔太", "鈴木 花子"]
PHONES = ["+819001230001", "+819001230002"]
VOICE = "Polly.Mizuki"
GREETING = "こちらは運用チームのXMONです。"
GREETING_SAID = "こちらは運用チームのエックスモンです。"


class Phones:
    """Two users with phones, an account, the X-MON URL, a dispatcher, and the admin's page."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self.app = app
        self.client = client
        set_xmon_url(XMON)
        self.users = [make_recipient(f"u{i}", NAMES[i], PHONES[i]) for i in range(2)]
        self.account = make_twilio_account(cps=100)
        self.clock = FakeClock()
        self.dispatcher = Dispatcher(holder="test", clock=self.clock, rng=random.Random(5))
        self.problem_ids = iter(range(100, 100000))

    def alert(self, setting: Any, kind: str = "button_call", host: str = "web01", service: str = "HTTP") -> int:
        values = {
            "kind": kind,
            "setting_id": str(setting.id),
            "type": "PROBLEM",
            "host": host,
            "service": service,
            "state": "CRITICAL" if service else "DOWN",
            "output": f"{host} {service} CRITICAL",
            "problem_id": str(next(self.problem_ids)),
        }
        return intake.accept(values).alert_id

    def run(self, seconds: float = 0) -> None:
        """Move the dispatcher's clock (never behind the real time), then one pass."""
        self.clock.moment = max(self.clock.moment, utcnow())
        self.clock.advance(seconds)
        self.dispatcher.run_once()

    def state(self) -> dict[str, dict[str, Any]]:
        """The phones as the page polls them, by user name."""
        response = self.client.get(f"{URL}/state")
        assert response.status_code == 200
        return {phone["name"]: phone for phone in response.get_json()["phones"]}

    def phone(self, index: int) -> dict[str, Any]:
        return self.state()[NAMES[index]]

    def press(self, index: int, what: str, **fields: str) -> Any:
        call = self.phone(index)["call"]
        assert call, f"no call on {NAMES[index]}'s phone"
        return self.client.post(f"{URL}/calls/{call['id']}/{what}", data=fields)

    def said(self, index: int) -> list[str]:
        """What the phone's call said, as the card shows it: 「voice: text」."""
        call = self.phone(index)["call"]
        return [f"{line['voice']}: {line['text']}" for line in call["lines"] if line["kind"] == "say"]

    def lines(self, index: int) -> list[str]:
        return [line["text"] for line in self.phone(index)["call"]["lines"]]

    def logs(self, kind: str) -> list[dict[str, Any]]:
        db.session.expire_all()
        rows = db.session.scalars(select(RequestLog).where(RequestLog.kind == kind).order_by(RequestLog.id)).all()
        return [dict(json.loads(row.request_summary), http_status=row.http_status) for row in rows]

    def age(self, seconds: int) -> None:
        """Time passes for every simulated call: rings and key waits began that much earlier."""
        db.session.expire_all()
        for row in db.session.scalars(select(SimulatedMessage)):
            row.created_at -= timedelta(seconds=seconds)
            state = json.loads(row.body or "{}")
            if state.get("gather_until"):
                until = simphone.datetime.fromisoformat(state["gather_until"]) - timedelta(seconds=seconds)
                state["gather_until"] = until.isoformat()
                row.body = json.dumps(state, ensure_ascii=False)
        db.session.commit()


@pytest.fixture
def phones(app: Flask, client: FlaskClient, logged_in: Any) -> Phones:
    return Phones(app, client)


def _greet_first_user() -> None:
    db.session.add(UserMessageTemplate(user_id=_user_id(NAMES[0]), opening_message=GREETING, closing_message="よろしくお願いします。"))
    db.session.add(ReplacementList(scope=REPLACEMENT_BUTTON, name="読み", content="XMON,エックスモン"))
    db.session.commit()


def _user_id(name: str) -> int:
    from xmonbridge.models import User

    return int(db.session.scalar(select(User.id).where(User.name == name)))


# --- who may use it ---


@pytest.mark.parametrize("method,path", [("get", "/"), ("get", "/state"), ("post", "/calls/1/answer"), ("post", "/calls/1/keys"), ("post", "/calls/1/hangup")])
def test_it_requires_an_administrator(app: Flask, client: FlaskClient, method: str, path: str) -> None:
    anonymous = getattr(client, method)(URL + path)
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    make_user(login="viewer", name="閲覧 花子")
    client.post("/login", data={"login": "viewer", "password": ADMIN_PASSWORD})
    assert getattr(client, method)(URL + path).status_code == 403


def test_the_page_has_a_card_per_user_with_a_phone_and_the_sound_switch(phones: Phones) -> None:
    page = phones.client.get(URL + "/")
    html = page.get_data(as_text=True)

    assert page.status_code == 200
    assert "<h1 class=\"h4\">電話シミュレータ</h1>" in html
    assert '<label class="form-check-label" for="phone-speech">音声を再生</label>' in html
    assert "js/phone_simulator.js" in html and "<script>" not in html and " style=" not in html
    assert "応答" in html and "切断" in html
    side_menu = phones.client.get("/admin/xmon-settings/").get_data(as_text=True)
    assert f'href="{URL}/">電話シミュレータ</a>' in side_menu
    state = phones.state()
    assert sorted(state) == sorted(NAMES)  # the administrator has no phone
    assert state[NAMES[0]]["number"] == "+81-90-0123-0001"
    assert all(p["state"] == "idle" and p["state_label"] == "待機中" and p["call"] is None for p in state.values())


def test_without_an_x_mon_url_the_page_says_button_calls_need_one(app: Flask, client: FlaskClient, logged_in: Any) -> None:
    html = client.get(URL + "/").get_data(as_text=True)
    assert "X-MON URL が設定されていないため、ボタン操作付き通話は発信されません。" in html


# --- a button call, played ---


def test_answer_fetches_the_voice_webhook_and_shows_what_is_said_with_the_voice(phones: Phones) -> None:
    _greet_first_user()
    setting = make_button_call_setting(phones.account, phones.users, mode="rotation")
    phones.alert(setting)
    phones.run()

    ringing = phones.phone(0)
    assert ringing["state"] == "ringing" and ringing["state_label"] == "着信中"
    assert ringing["call"]["from"] == "+81-50-1234-0001"
    assert ringing["call"]["setting"] == setting.name
    assert phones.phone(1)["state"] == "idle"  # 輪番: one at a time

    answered = phones.press(0, "answer")

    assert answered.status_code == 200
    talking = phones.phone(0)
    assert talking["state"] == "talking" and talking["call"]["waiting_for_keys"]
    said = phones.said(0)
    # The user's greeting after the button calls' replacement list, then the summary and the key guide.
    assert said[:2] == [f"{VOICE}: {GREETING_SAID}", f"{VOICE}: 障害が1件、復旧が0件あります。"]
    assert "次の担当者に通知するには2と#" in said[2] and said[2].startswith(VOICE)
    # Twilio's request reached the real webhook, signed over the public URL, and was believed.
    (voice,) = phones.logs(LOG_VOICE)
    assert voice["http_status"] == 200 and voice["署名の検証"] == "一致しました" and voice["CallStatus"] == "in-progress"


def test_keys_go_to_the_gather_webhook_and_the_details_are_shown(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, phones.users, mode="rotation")
    phones.alert(setting, host="web01", service="HTTP")
    phones.run()
    phones.press(0, "answer")

    phones.press(0, "keys", keys="1")

    lines = phones.lines(0)
    assert "押したボタン: 1#" in lines
    assert any("障害1件目。ホスト web01 のサービス HTTPがCRITICALです。" in line for line in lines)
    assert phones.phone(0)["call"]["waiting_for_keys"]
    (gather,) = phones.logs(LOG_GATHER)
    assert gather["Digits"] == "1" and gather["署名の検証"] == "一致しました" and gather["http_status"] == 200
    attempt = db.session.scalars(select(Attempt)).one()
    assert attempt.keys == "1#"


def test_a_key_press_signed_with_a_wrong_token_is_refused(phones: Phones, monkeypatch: pytest.MonkeyPatch) -> None:
    setting = make_button_call_setting(phones.account, phones.users, mode="rotation")
    phones.alert(setting)
    phones.run()
    phones.press(0, "answer")
    monkeypatch.setattr(simphone, "_auth_token", lambda account_sid: "0" * 32)

    phones.press(0, "keys", keys="3")

    (gather,) = phones.logs(LOG_GATHER)
    assert gather["http_status"] == 403 and gather["署名の検証"].startswith("署名が一致しません")
    assert "アプリケーションエラーが発生しました(Webhook の応答: HTTP 403)。Twilio はここで通話を終了します。" in phones.lines(0)
    assert not db.session.scalars(select(Acknowledgement)).all()  # 3# did nothing
    assert phones.phone(0)["state"] == "idle"


def test_a_key_press_after_the_x_mon_url_changed_is_refused_like_twilios(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, phones.users, mode="rotation")
    phones.alert(setting)
    phones.run()
    phones.press(0, "answer")
    set_xmon_url("https://other.example.jp")  # Twilio still has, and signs, the URL it was given

    phones.press(0, "keys", keys="1")

    (gather,) = phones.logs(LOG_GATHER)
    assert gather["http_status"] == 403


def test_rotation_two_rings_the_next_phone_and_three_acknowledges(phones: Phones) -> None:
    XmonSettings.for_update().ack_mode = "none"
    db.session.commit()
    setting = make_button_call_setting(phones.account, phones.users, mode="rotation")
    alert_id = phones.alert(setting, host="web01", service="HTTP")
    phones.run()
    phones.press(0, "answer")

    phones.press(0, "keys", keys="2")

    first = phones.phone(0)
    assert first["state"] == "idle" and first["call"]["ended"] == "通話完了(completed)"
    assert "次の担当者に通知します。" in phones.lines(0)
    phones.run()
    assert phones.phone(1)["state"] == "ringing"
    phones.press(1, "answer")
    phones.press(1, "keys", keys="3")

    assert "1件の障害を認知済みにしました。以降の担当者には通知しません。" in phones.lines(1)
    state = phones.state()
    assert [state[name]["state"] for name in NAMES] == ["idle", "idle"]
    # Both calls ended with a status callback the app believed and recorded.
    callbacks = phones.logs(LOG_STATUS_CALLBACK)
    assert [(c["CallStatus"], c["署名の検証"], c["記録"]) for c in callbacks] == [("completed", "一致しました", "最終状態を記録しました。")] * 2
    notification = db.session.scalars(select(Notification)).one()
    assert notification.status == NOTIFICATION_DONE
    ack = db.session.scalars(select(Acknowledgement)).one()
    assert (ack.host, ack.service, ack.author) == ("web01", "HTTP", NAMES[1])
    incident = phones.client.get(f"/incidents/{alert_id}").get_data(as_text=True)
    assert "3# 認知済み" in incident and "2# 次のユーザへ" in incident
    assert f'<td class="text-nowrap">{NAMES[1]}</td>' in incident  # who acknowledged
    phones.run(600)
    assert all(p["state"] == "idle" for p in phones.state().values())


def test_a_ring_nobody_answers_ends_as_no_answer_and_the_user_is_called_again(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, phones.users, mode="rotation", ring_seconds=30, recall_seconds=60)
    phones.alert(setting)
    phones.run()
    first_call = phones.phone(0)["call"]["id"]

    phones.age(31)

    ended = phones.phone(0)
    assert ended["state"] == "idle" and ended["call"]["ended"] == "応答なし(no-answer)"
    assert "呼び出し時間(30 秒)が過ぎました。" in phones.lines(0)
    (callback,) = phones.logs(LOG_STATUS_CALLBACK)
    assert callback["CallStatus"] == "no-answer" and callback["署名の検証"] == "一致しました"
    assert phones.press(0, "answer").status_code == 409  # too late
    phones.run(30)
    assert phones.phone(0)["state"] == "idle"  # the interval has not passed
    phones.run(31)
    again = phones.phone(0)
    assert again["state"] == "ringing" and again["call"]["id"] != first_call
    assert phones.phone(1)["state"] == "idle"


def test_with_a_cap_of_one_call_a_ring_that_runs_out_passes_to_the_next_phone(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, phones.users, mode="rotation", ring_seconds=20, max_calls=1)
    phones.alert(setting)
    phones.run()

    phones.age(21)
    phones.state()
    phones.run()

    assert phones.phone(0)["state"] == "idle"
    assert phones.phone(1)["state"] == "ringing"


def test_hanging_up_declines_a_ring_as_busy_and_ends_a_call_without_keys(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, [phones.users[0]], recall_seconds=60)
    phones.alert(setting)
    phones.run()

    phones.press(0, "hangup")

    assert phones.phone(0)["call"]["ended"] == "話し中(busy)"
    phones.run(61)
    assert phones.phone(0)["state"] == "ringing"  # called again after the interval
    phones.press(0, "answer")
    phones.press(0, "hangup")
    assert phones.phone(0)["call"]["ended"] == "通話完了(completed)"
    statuses = [c["CallStatus"] for c in phones.logs(LOG_STATUS_CALLBACK)]
    assert statuses == ["busy", "completed"]
    attempts = db.session.scalars(select(Attempt).order_by(Attempt.id)).all()
    assert [a.end_reason for a in attempts] == ["busy", "hung_up"]
    phones.run(61)
    assert phones.phone(0)["state"] == "ringing"  # hung up without a key: called again


def test_no_keys_within_the_gather_timeout_posts_an_empty_result(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, [phones.users[0]])
    phones.alert(setting)
    phones.run()
    phones.press(0, "answer")

    phones.age(31)

    lines = phones.lines(0)
    assert "ボタン操作がないまま 30 秒が過ぎました。" in lines
    assert "ボタン操作が確認できなかったため、通話を終了します。" in " ".join(lines)
    assert phones.phone(0)["state"] == "idle"
    (gather,) = phones.logs(LOG_GATHER)
    assert "Digits" not in gather and gather["http_status"] == 200
    assert phones.press(0, "keys", keys="1").status_code == 409


def test_machine_detection_is_answered_by_a_person(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, [phones.users[0]], machine_detection=True)
    phones.alert(setting)
    phones.run()

    phones.press(0, "answer")

    (amd,) = phones.logs(LOG_AMD)
    assert amd["AnsweredBy"] == "human" and amd["署名の検証"] == "一致しました"
    assert phones.phone(0)["state"] == "talking"


def test_keys_other_than_the_keypad_are_refused(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, [phones.users[0]])
    phones.alert(setting)
    phones.run()
    phones.press(0, "answer")

    refused = phones.press(0, "keys", keys="1a")

    assert refused.status_code == 400
    assert refused.get_json()["error"] == "ボタンは 0〜9 と * を 16 個までです(# で送信します)。"
    assert not phones.logs(LOG_GATHER)


# --- SMS and simple calls ---


def test_sms_appear_on_each_phone_and_are_reported_delivered(phones: Phones) -> None:
    setting = make_sms_setting(phones.account, phones.users, from_number="XMON")
    phones.alert(setting, kind="sms", host="db01", service="PGSQL")
    phones.run()

    state = phones.state()

    for name in NAMES:
        (message,) = state[name]["messages"]
        assert message["from"] == "XMON" and "db01" in message["body"] and "PGSQL" in message["body"]
        assert state[name]["state"] == "idle"
    callbacks = phones.logs(LOG_STATUS_CALLBACK)
    assert [(c["MessageStatus"], c["署名の検証"]) for c in callbacks] == [("delivered", "一致しました")] * 2
    db.session.expire_all()
    assert [a.final_status for a in db.session.scalars(select(Attempt))] == ["delivered", "delivered"]


def test_a_simple_call_plays_its_twiml_bin_message_and_hangs_up(phones: Phones) -> None:
    setting = make_simple_call_setting(phones.account, [phones.users[0]], ring_seconds=40)
    phones.alert(setting, kind="simple_call", host="fw01", service="")
    phones.run()
    assert phones.phone(0)["state"] == "ringing"

    phones.press(0, "answer")

    said = phones.said(0)
    assert len(said) == 1 and said[0].startswith(f"{VOICE}: ") and "fw01" in said[0]
    assert phones.phone(0)["call"]["ended"] == "通話完了(completed)"
    (callback,) = phones.logs(LOG_STATUS_CALLBACK)
    assert callback["CallStatus"] == "completed" and callback["記録"] == "最終状態を記録しました。"


# --- live mode: a rehearsal, in the page only ---


def test_live_mode_rehearses_a_rotation_without_placing_anything(live_app: Flask, live_logged_in: FlaskClient, fake_twilio: Any) -> None:
    client = live_logged_in
    users = [make_recipient(f"u{i}", NAMES[i], PHONES[i]) for i in range(2)]
    db.session.add(UserMessageTemplate(user_id=users[0].id, opening_message="リハーサルです。", closing_message="おつかれさまです。"))
    db.session.commit()
    account = make_twilio_account()
    setting = make_button_call_setting(account, users, mode="rotation", name="当番への電話")
    page = client.get(URL + "/").get_data(as_text=True)
    assert '<label class="form-label" for="rehearsal-setting">通話設定(ボタン操作付き)</label>' in page
    assert "当番への電話(輪番通知)" in page
    first, second = users[0].id, users[1].id

    def step(user_id: int, keys: str | None = None) -> dict[str, Any]:
        data = {"setting_id": str(setting.id), "user_id": str(user_id)}
        if keys is None:
            response = client.post(f"{URL}/rehearsal/answer", data=data)
        else:
            response = client.post(f"{URL}/rehearsal/keys", data={**data, "keys": keys})
        assert response.status_code == 200, response.get_data(as_text=True)
        return dict(response.get_json())

    answered = step(first)
    details = step(first, "1")
    passed = step(first, "2")
    acknowledged = step(second, "3")

    said = [f"{line['voice']}: {line['text']}" for line in answered["lines"]]
    assert said[:2] == [f"{VOICE}: リハーサルです。", f"{VOICE}: 障害が1件、復旧が0件あります。"]
    assert answered["waiting_for_keys"] and answered["next_user_id"] is None
    assert "ホスト web-server01 のサービス HTTPがCRITICALです。" in details["lines"][0]["text"]
    assert [line["text"] for line in passed["lines"]] == ["次の担当者に通知します。", "おつかれさまです。"]
    assert passed["next_user_id"] == second and not passed["waiting_for_keys"]
    assert acknowledged["lines"][0]["text"] == "テスト通話のため、監視には認知済みを送りません。"
    # Nothing was placed or kept: no request to Twilio, no alert, notification or log row.
    assert not fake_twilio.requests
    db.session.expire_all()
    for model in (AlertRecord, Notification, Attempt, Acknowledgement, RequestLog):
        assert db.session.scalar(select(func.count()).select_from(model)) == 0
    # The simulated calls' endpoints are not there in live mode, nor the rehearsal in simulate mode.
    assert client.post(f"{URL}/calls/1/answer").status_code == 404
    assert client.post(f"{URL}/rehearsal/answer", data={"setting_id": str(setting.id), "user_id": "999"}).status_code == 404


def test_simulate_mode_has_no_rehearsal(phones: Phones) -> None:
    setting = make_button_call_setting(phones.account, phones.users)
    response = phones.client.post(f"{URL}/rehearsal/answer", data={"setting_id": str(setting.id), "user_id": str(phones.users[0].id)})
    assert response.status_code == 404


def test_with_the_page_closed_rings_still_run_out_and_texts_arrive(phones: Phones) -> None:
    """The dispatcher's thread lets time pass on the phones: nobody has to be looking."""
    import time

    from xmonbridge.dispatch.runner import Runner

    call_setting = make_button_call_setting(phones.account, phones.users[:1], mode="rotation", ring_seconds=30)
    text_setting = make_sms_setting(phones.account, phones.users[1:], from_number="XMON")
    phones.alert(call_setting)
    phones.run()
    phones.age(31)
    phones.alert(text_setting, kind="sms", host="db01", service="PGSQL")
    phones.run()
    phones.dispatcher.release()  # the thread below leads from here on

    def settled() -> bool:
        statuses = {(c.get("CallStatus"), c.get("MessageStatus")) for c in phones.logs(LOG_STATUS_CALLBACK)}
        return statuses == {("no-answer", None), (None, "delivered")}

    runner = Runner(phones.app)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        runner.stop(timeout=20)
    assert settled()
    # What the page shows when it is opened later.
    state = phones.state()
    assert state[NAMES[0]]["call"]["ended"] == "応答なし(no-answer)"
    assert "db01" in state[NAMES[1]]["messages"][0]["body"]


def test_every_poll_hands_the_page_a_fresh_csrf_token(phones: Phones) -> None:
    """A page left open for hours keeps working: its token is renewed with each poll."""
    body = phones.client.get(f"{URL}/state").get_json()
    assert body["csrf"]
    phones.app.config["WTF_CSRF_ENABLED"] = True
    setting = make_button_call_setting(phones.account, phones.users[:1], mode="rotation")
    phones.alert(setting)
    phones.run()
    call = phones.phone(0)["call"]
    token = phones.client.get(f"{URL}/state").get_json()["csrf"]
    refused = phones.client.post(f"{URL}/calls/{call['id']}/answer", data={})
    assert refused.status_code == 400
    answered = phones.client.post(f"{URL}/calls/{call['id']}/answer", data={"csrf_token": token})
    assert answered.status_code == 200

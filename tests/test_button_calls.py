"""Button calls end to end (R7–R9, B1, B2, B8): a scripted handset against the fake Twilio.

Alerts go in through intake; the dispatcher (a clock moved by hand) places the calls at the
fake Twilio; the handset answers them as Twilio would (signed requests through the public
X-MON URL), hears the <Say> texts, presses keys and hangs up; each scenario asserts what the
callee hears and which calls the fake receives next.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from tests.dispatch_helpers import FakeClock
from twilio.request_validator import RequestValidator

from tests.factories import AUTH_TOKEN, make_button_call_setting, make_recipient, make_twilio_account, set_xmon_url
from tests.handset import Call, Handset
from xmonbridge import secretbox
from xmonbridge.alerts import intake
from xmonbridge.calls import flow
from xmonbridge.dispatch.engine import Dispatcher
from xmonbridge.extensions import db
from xmonbridge.models import (
    ACK_PENDING,
    LOG_CALL_LIMIT,
    LOG_GATHER,
    LOG_VOICE,
    NOTIFICATION_ACTIVE,
    NOTIFICATION_DONE,
    Acknowledgement,
    Attempt,
    Notification,
    RequestLog,
    UserMessageTemplate,
    XmonSettings,
    utcnow,
)

XMON = "https://xmon.example.jp/bridge"
PHONES = ["+819001230001", "+819001230002", "+819001230003"]
NAMES = ["佐藤 翔太", "鈴木 花子", "高橋 一郎"]
GUIDE_ROTATION_KEYS = ("1と#", "7と#", "8と#", "2と#", "3と#", "9と#")


class World:
    """Three recipients, an account, the X-MON URL, a clock, a dispatcher and the handset."""

    def __init__(self, app: Flask, fake: Any) -> None:
        self.app = app
        self.fake = fake
        set_xmon_url(XMON)
        self.users = [make_recipient(login=f"u{i}", name=NAMES[i], phone=p) for i, p in enumerate(PHONES)]
        self.account = make_twilio_account(cps=100)
        self.clock = FakeClock()
        self.dispatcher = Dispatcher(holder="test", clock=self.clock, rng=random.Random(3))
        self.handset = Handset(app.test_client(), fake, XMON)
        self.problem_ids = iter(range(100, 100000))

    def setting(self, mode: str = "all", users: list[Any] | None = None, **overrides: Any) -> Any:
        return make_button_call_setting(self.account, self.users if users is None else users, mode=mode, **overrides)

    def alert(self, setting: Any, type_: str = "PROBLEM", host: str = "web01", service: str = "HTTP", **extra: Any) -> int:
        state = {"PROBLEM": "CRITICAL", "RECOVERY": "OK", "ACKNOWLEDGEMENT": "CRITICAL"}[type_]
        values = {
            "kind": "button_call",
            "setting_id": str(setting.id),
            "type": type_,
            "host": host,
            "service": service,
            "state": state if service else {"CRITICAL": "DOWN", "OK": "UP"}[state],
            "output": f"{host} {service} {state}",
            "problem_id": extra.pop("problem_id", str(next(self.problem_ids))),
        }
        values.update(extra)
        return intake.accept(values).alert_id

    def run(self, seconds: float = 0) -> None:
        """Move the clock (never behind the real time webhooks use), then one dispatcher pass."""
        self.clock.moment = max(self.clock.moment, utcnow())
        self.clock.advance(seconds)
        self.dispatcher.run_once()

    def notification(self) -> Notification:
        db.session.expire_all()
        return db.session.scalars(select(Notification).order_by(Notification.id.desc())).first()


@pytest.fixture
def world(live_app: Flask, fake_twilio: Any) -> World:
    return World(live_app, fake_twilio)


def _work(world: World, call: Call, *keys: str | None) -> list[Any]:
    """Answer, then press each key; return everything heard."""
    heard = [world.handset.answer(call)]
    for key in keys:
        heard.append(world.handset.press(call, heard[-1], key))
    return heard


# --- what the callee hears ---


def test_answer_reads_the_users_message_the_summary_and_the_rotation_guide(world: World) -> None:
    db.session.add(UserMessageTemplate(user_id=world.users[0].id, opening_message="こちらは運用チームです。", closing_message="対応をお願いします。"))
    db.session.commit()
    setting = world.setting("rotation")
    world.alert(setting, host="web01", service="HTTP")
    world.alert(setting, host="db01", service="PGSQL")
    world.alert(setting, host="web02", service="HTTP", type_="RECOVERY", problem_id="7")
    world.run()

    call = world.handset.expect_call(PHONES[0])
    assert call.form["Url"] == f"{XMON}/twilio/voice/" + call.url.rsplit("/", 1)[1]
    assert call.form["StatusCallback"].startswith(f"{XMON}/twilio/status/")
    assert call.form["Timeout"] == "60"
    heard = world.handset.answer(call)

    assert heard.status == 200
    assert heard.says == ["こちらは運用チームです。", "障害が2件、復旧が1件あります。"]
    assert all(key in heard.guide for key in GUIDE_ROTATION_KEYS)
    assert heard.gather["input"] == "dtmf" and heard.gather["finishOnKey"] == "#"
    assert heard.gather["timeout"] == "30" and heard.gather["actionOnEmptyResult"] == "true"
    assert heard.action.startswith(f"{XMON}/twilio/gather/")
    assert heard.voices == {XmonSettings.get().effective_voice}
    assert not heard.hangup


def test_one_seven_and_eight_read_details_and_the_message_again_in_both_modes(world: World) -> None:
    for mode in ("all", "rotation"):
        setting = world.setting(mode, users=[world.users[0]], name=f"設定 {mode}")
        world.alert(setting, host="web01", service="HTTP")
        world.alert(setting, host="db01", service="", type_="RECOVERY", problem_id="9")
        world.run()
        call = world.handset.expect_call(PHONES[0])
        answered, one, seven, eight = _work(world, call, "1", "7", "8")

        assert "障害1件目。ホスト web01 のサービス HTTPがCRITICALです。詳細、web01 HTTP CRITICAL。" in one.text
        assert one.guide == answered.guide and one.action
        assert "復旧1件目。ホスト db01がUPに復旧しました。" in seven.text
        assert eight.says == answered.says
        if mode == "all":
            assert "2と#" not in answered.guide and "3と#" not in answered.guide and "9と#" in answered.guide
        world.handset.press(call, eight, "9")
        world.handset.hang_up(call)


def test_eight_reads_alerts_that_arrived_during_the_call(world: World) -> None:
    setting = world.setting("all", users=[world.users[0]])
    world.alert(setting, host="web01")
    world.run()
    call = world.handset.expect_call(PHONES[0])
    answered = world.handset.answer(call)
    assert "障害が1件" in answered.text
    world.alert(setting, host="web02")
    world.alert(setting, host="web03")

    again = world.handset.press(call, answered, "8")
    details = world.handset.press(call, again, "1")

    assert "障害が3件、復旧が0件あります。" in again.text
    assert all(f"ホスト {h}" in details.text for h in ("web01", "web02", "web03"))
    world.run()
    world.handset.expect_no_call()  # the new alerts joined the call in progress


def test_invalid_keys_say_so_and_repeat_the_guide(world: World) -> None:
    setting = world.setting("all", users=[world.users[0]])
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    answered, two, three, five, long, odd = _work(world, call, "2", "3", "5", "12", "3\x00a")

    for heard in (two, three, five, long, odd):
        assert heard.says == ["無効な操作です。"]
        assert heard.guide == answered.guide and not heard.hangup
    attempt = db.session.scalars(select(Attempt).where(Attempt.sid == call.sid)).one()
    assert attempt.keys == "2#,3#,5#,12#,3??#"
    assert world.notification().status == NOTIFICATION_ACTIVE


# --- 輪番通知 ---


def test_rotation_two_passes_to_the_next_user_and_wraps_to_the_first(world: World) -> None:
    db.session.add(UserMessageTemplate(user_id=world.users[0].id, opening_message="", closing_message="佐藤さん、おやすみなさい。"))
    db.session.commit()
    setting = world.setting("rotation")
    world.alert(setting)
    world.run()
    first = world.handset.expect_call(PHONES[0])
    world.run()
    world.handset.expect_no_call()  # one at a time

    passed = _work(world, first, "2")[-1]
    assert passed.says == ["次の担当者に通知します。", "佐藤さん、おやすみなさい。"] and passed.hangup
    world.run()
    second = world.handset.expect_call(PHONES[1])
    _work(world, second, "2")
    world.handset.hang_up(first)
    world.run()
    third = world.handset.expect_call(PHONES[2])
    _work(world, third, "2")
    world.handset.hang_up(second)
    world.run()
    again = world.handset.expect_call(PHONES[0])
    assert again.sid != first.sid
    world.handset.hang_up(third)
    world.run(120)
    world.handset.expect_no_call()


def test_rotation_three_acknowledges_what_was_announced_and_stops_everyone(world: World) -> None:
    XmonSettings.for_update().ack_mode = "none"
    db.session.commit()
    setting = world.setting("rotation")
    world.alert(setting, host="web01", service="HTTP")
    world.alert(setting, host="db01", service="")
    world.run()
    call = world.handset.expect_call(PHONES[0])
    answered = world.handset.answer(call)
    world.alert(setting, host="late01", service="DISK")  # after the announcement: not acknowledged

    done = world.handset.press(call, answered, "3")

    assert done.says[0] == "2件の障害を認知済みにしました。以降の担当者には通知しません。" and done.hangup
    acks = db.session.scalars(select(Acknowledgement).order_by(Acknowledgement.id)).all()
    assert [(a.host, a.service, a.author) for a in acks] == [("web01", "HTTP", NAMES[0]), ("db01", "", NAMES[0])]
    assert "3#" in acks[0].comment
    first, later = db.session.scalars(select(Notification).order_by(Notification.id)).all()
    assert first.status == NOTIFICATION_DONE and "3#" in first.end_reason
    world.handset.hang_up(call)
    world.run()
    # Only the fault nobody heard is called about again, from the top of the list.
    again = world.handset.expect_call(PHONES[0])
    assert "障害が1件" in _work(world, again, "9")[0].text
    world.handset.hang_up(again)
    world.run(600)
    world.handset.expect_no_call()


@pytest.mark.parametrize("key", ["3", "9"])
def test_a_fault_nobody_heard_is_not_closed_with_the_call(world: World, key: str) -> None:
    """A fault that arrives while the callee listens is neither acknowledged nor dropped by 3# / 9#."""
    XmonSettings.for_update().ack_mode = "none"
    db.session.commit()
    setting = world.setting("rotation")
    world.alert(setting, host="web01", service="HTTP")
    world.run()
    call = world.handset.expect_call(PHONES[0])
    heard = world.handset.answer(call)
    world.alert(setting, host="db01", service="PGSQL")  # after the announcement

    done = world.handset.press(call, heard, key)

    assert "この通話の間に新しい障害が1件届いたため、あらためて通知します。" in done.says and done.hangup
    acks = db.session.scalars(select(Acknowledgement)).all()
    assert [(a.host, a.service) for a in acks] == ([("web01", "HTTP")] if key == "3" else [])
    world.handset.hang_up(call)
    world.run()
    again = world.handset.expect_call(PHONES[0])
    details = world.handset.press(again, world.handset.answer(again), "1")
    assert "障害1件目。ホスト db01 のサービス PGSQL" in details.text and "web01" not in details.text
    notifications = db.session.scalars(select(Notification).order_by(Notification.id)).all()
    assert [n.status for n in notifications] == [NOTIFICATION_DONE, NOTIFICATION_ACTIVE]


def test_rotation_nine_ends_the_call_and_nobody_is_called_after(world: World) -> None:
    setting = world.setting("rotation")
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    bye = _work(world, call, "9")[-1]
    assert bye.says == ["通話を終了します。"] and bye.hangup
    world.handset.hang_up(call)
    world.run(600)
    world.handset.expect_no_call()
    assert world.notification().status == NOTIFICATION_DONE
    assert not db.session.scalars(select(Acknowledgement)).all()


def test_rotation_cap_passes_to_the_next_user(world: World) -> None:
    setting = world.setting("rotation", max_calls=2, recall_seconds=30)
    world.alert(setting)
    world.run()
    first = world.handset.expect_call(PHONES[0])
    world.handset.hang_up(first, "no-answer", duration=0)
    world.run(10)
    world.handset.expect_no_call()  # the interval has not passed
    world.run(25)
    second_try = world.handset.expect_call(PHONES[0])
    world.handset.hang_up(second_try, "busy", duration=0)
    world.run()

    world.handset.expect_call(PHONES[1])
    delivery = world.notification().deliveries[0]
    assert "上限(2 回)" in delivery.error and "次のユーザ" in delivery.error


# --- 一斉通知 ---


def test_all_calls_everyone_and_ends_when_each_pressed_nine(world: World) -> None:
    setting = world.setting("all")
    world.alert(setting)
    world.run()
    calls = world.handset.expect_calls(*PHONES)
    for call in calls:
        assert _work(world, call, "9")[-1].hangup
        world.handset.hang_up(call)
    world.run(600)
    world.handset.expect_no_call()
    notification = world.notification()
    assert notification.status == NOTIFICATION_DONE


def test_all_a_user_who_hangs_up_is_called_again_the_others_not(world: World) -> None:
    setting = world.setting("all", recall_seconds=60)
    world.alert(setting)
    world.run()
    a, b, c = world.handset.expect_calls(*PHONES)
    _work(world, a, "9")
    _work(world, c, "9")
    world.handset.answer(b)
    for call in (a, b, c):
        world.handset.hang_up(call)  # b hangs up without a key
    world.run(30)
    world.handset.expect_no_call()
    world.run(31)
    again = world.handset.expect_call(PHONES[1])
    assert _work(world, again, "9")[-1].hangup
    world.handset.hang_up(again)
    world.run(600)
    world.handset.expect_no_call()
    assert world.notification().status == NOTIFICATION_DONE


def test_all_cap_stops_calling_that_user(world: World) -> None:
    setting = world.setting("all", users=world.users[:2], max_calls=1)
    world.alert(setting)
    world.run()
    a, b = world.handset.expect_calls(*PHONES[:2])
    world.handset.hang_up(a, "no-answer", duration=0)
    _work(world, b, "9")
    world.handset.hang_up(b)
    world.run(600)
    world.handset.expect_no_call()
    notification = world.notification()
    assert notification.status == NOTIFICATION_DONE
    assert "上限(1 回)" in notification.deliveries[0].error


# --- not a normal end: the same user again ---


@pytest.mark.parametrize("mode", ["all", "rotation"])
def test_no_input_within_30_seconds_ends_the_call_and_calls_again(world: World, mode: str) -> None:
    setting = world.setting(mode, users=[world.users[0]], recall_seconds=45)
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    silent = _work(world, call, None)[-1]
    assert silent.says[0] == "ボタン操作が確認できなかったため、通話を終了します。" and silent.hangup
    world.handset.hang_up(call)
    world.run(44)
    world.handset.expect_no_call()
    world.run(2)
    world.handset.expect_call(PHONES[0])
    attempt = db.session.scalars(select(Attempt).order_by(Attempt.id)).first()
    assert attempt.end_reason == "no_input" and attempt.keys == "(入力なし)"


@pytest.mark.parametrize("status", ["completed", "busy", "no-answer", "failed", "canceled"])
def test_a_call_that_ends_without_a_key_is_placed_again(world: World, status: str) -> None:
    setting = world.setting("rotation", recall_seconds=60)
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    if status == "completed":
        world.handset.answer(call)
    world.handset.hang_up(call, status)
    world.run(61)
    world.handset.expect_call(PHONES[0])
    delivery = world.notification().deliveries[0]
    assert delivery.attempts[0].end_reason in (status, "hung_up")


# --- aggregation ---


def test_two_hundred_alerts_while_ringing_make_one_call_per_recipient(world: World) -> None:
    setting = world.setting("all", users=world.users[:2])
    world.alert(setting, host="host000")
    world.run()
    a, b = world.handset.expect_calls(*PHONES[:2])
    for number in range(1, 200):
        world.alert(setting, host=f"host{number:03d}")
    world.run()
    world.handset.expect_no_call()

    heard = world.handset.answer(a)
    details = world.handset.press(a, heard, "1")

    assert "障害が200件、復旧が0件あります。" in heard.text
    assert "障害10件目" in details.text and "障害11件目" not in details.text
    assert "ほか190件の障害があります。" in details.text
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1


@pytest.mark.parametrize("mode", ["rotation", "all"])
def test_a_notification_of_recoveries_only_is_not_called_again(world: World, mode: str) -> None:
    setting = world.setting(mode, users=world.users[:2])
    world.alert(setting, type_="RECOVERY", problem_id="5")
    world.run()
    first = world.handset.new_calls()
    assert [c.to for c in first] == ([PHONES[0]] if mode == "rotation" else PHONES[:2])
    for call in first:
        world.handset.hang_up(call, "no-answer", duration=0)
    world.run(600)
    world.handset.expect_no_call()
    notification = world.notification()
    assert notification.status == NOTIFICATION_DONE
    assert all(d.error == flow.NO_FAULT_NO_RECALL for d in notification.deliveries if d.to_number in [c.to for c in first])


def test_a_later_alert_after_the_end_starts_a_new_notification(world: World) -> None:
    setting = world.setting("rotation", users=[world.users[0]])
    world.alert(setting, host="web01")
    world.run()
    call = world.handset.expect_call(PHONES[0])
    _work(world, call, "9")
    world.handset.hang_up(call)
    world.alert(setting, host="web02")
    world.run()
    again = world.handset.expect_call(PHONES[0])
    heard = world.handset.answer(again)
    details = world.handset.press(again, heard, "1")
    assert "web02" in details.text and "web01" not in details.text


def test_faults_acknowledged_in_the_monitor_stop_the_rotation(world: World) -> None:
    setting = world.setting("rotation", recall_seconds=30)
    world.alert(setting, host="web01", service="HTTP", problem_id="501")
    world.alert(setting, host="db01", service="", problem_id="502")
    world.run()
    call = world.handset.expect_call(PHONES[0])
    world.handset.hang_up(call, "no-answer", duration=0)  # a re-call is due in 30 s
    world.alert(setting, host="web01", service="HTTP", type_="ACKNOWLEDGEMENT", problem_id="501")
    assert world.notification().status == NOTIFICATION_ACTIVE
    world.alert(setting, host="db01", service="", type_="RECOVERY", problem_id="502")

    notification = world.notification()
    assert notification.status == NOTIFICATION_DONE and "復旧" in notification.end_reason
    world.run(600)
    world.handset.expect_no_call()


def test_a_call_in_progress_says_everything_was_resolved(world: World) -> None:
    setting = world.setting("all", users=[world.users[0]])
    world.alert(setting, host="web01", problem_id="601")
    world.run()
    call = world.handset.expect_call(PHONES[0])
    heard = world.handset.answer(call)
    world.alert(setting, host="web01", type_="RECOVERY", problem_id="601")

    after = world.handset.press(call, heard, "1")

    assert "すべての障害が復旧、または認知済みになったため、通知を終了します。" in after.text and after.hangup


# --- signatures ---


def test_forged_or_missing_signatures_are_refused_and_change_nothing(world: World) -> None:
    setting = world.setting("rotation")
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])

    assert world.handset.answer(call, signature="").status == 403
    assert world.handset.answer(call, token="0" * 32).status == 403
    heard = world.handset.answer(call)
    forged = world.handset.press(call, heard, "3", token="0" * 32)
    unsigned = world.handset.press(call, heard, "9", signature="")
    # Signed for the address the request arrives at instead of the public URL Twilio was given.
    path = heard.action[len(XMON) :]
    params = {"AccountSid": world.handset.account_sid, "CallSid": call.sid, "Digits": "3"}
    local_signature = RequestValidator(AUTH_TOKEN).compute_signature(f"http://localhost{path}", params)
    local = world.handset.client.post(path, data=params, headers={"X-Twilio-Signature": local_signature})

    assert forged.status == 403 and unsigned.status == 403 and local.status_code == 403
    assert world.notification().status == NOTIFICATION_ACTIVE
    assert not db.session.scalars(select(Acknowledgement)).all()
    refused = db.session.scalars(select(RequestLog).where(RequestLog.kind.in_([LOG_VOICE, LOG_GATHER]), RequestLog.http_status == 403)).all()
    assert len(refused) == 5
    assert world.handset.press(call, heard, "9").hangup  # the real one still works


def test_during_rotation_the_previous_token_signs_the_call_until_it_expires(world: World) -> None:
    """B9: after a new AUTH TOKEN, a call signed with the previous one is worked until its time is up."""
    new_token = "b" * 32
    world.account.auth_token_encrypted = secretbox.encrypt(new_token)
    world.account.previous_auth_token_encrypted = secretbox.encrypt(AUTH_TOKEN)
    world.account.previous_token_until = utcnow() + timedelta(hours=1)
    db.session.commit()
    setting = world.setting("rotation")
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])

    heard = world.handset.answer(call, token=AUTH_TOKEN)
    assert heard.status == 200 and "障害が1件" in heard.text
    details = world.handset.press(call, heard, "1", token=AUTH_TOKEN)
    assert "障害1件目" in details.text

    world.account.previous_token_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert world.handset.press(call, details, "3", token=AUTH_TOKEN).status == 403
    assert not db.session.scalars(select(Acknowledgement)).all()
    done = world.handset.press(call, details, "3", token=new_token)
    assert done.hangup and "認知済みにしました" in done.text
    assert world.notification().status == NOTIFICATION_DONE


def test_unknown_webhook_tokens_are_404_without_a_log_row(world: World) -> None:
    client = world.handset.client
    for path in ("/twilio/voice/nope", "/twilio/gather/nope", "/twilio/amd/nope"):
        assert client.post(path, data={"Digits": "3"}).status_code == 404
    assert not db.session.scalars(select(RequestLog)).all()


# --- answering-machine detection (B1) ---


def test_a_machine_is_hung_up_and_called_again_a_human_goes_on(world: World) -> None:
    setting = world.setting("rotation", users=[world.users[0]], machine_detection=True, recall_seconds=30)
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    assert call.form["MachineDetection"] == "Enable" and call.form["AsyncAmd"] == "true"
    assert call.form["AsyncAmdStatusCallback"].startswith(f"{XMON}/twilio/amd/")
    world.handset.answer(call)

    assert world.handset.amd(call, "machine_start") == 204
    world.run()
    hangups = world.fake.requests_for("UpdateCall")
    assert [(r.path.rsplit("/", 1)[1], r.form["Status"]) for r in hangups] == [(f"{call.sid}.json", "completed")]
    world.handset.hang_up(call, answered_by="machine_start")
    world.run(31)

    again = world.handset.expect_call(PHONES[0])
    world.handset.answer(again)
    assert world.handset.amd(again, "human") == 204
    world.run()
    assert len(world.fake.requests_for("UpdateCall")) == 1
    bye = world.handset.press(again, world.handset.answer(again), "9")
    assert bye.hangup
    assert db.session.scalars(select(Attempt).order_by(Attempt.id)).first().end_reason == "machine"


# --- per-number limits (B8) ---


def test_the_per_number_limit_holds_calls_back_and_logs_it(world: World) -> None:
    settings = XmonSettings.for_update()
    settings.calls_per_15min = 2
    db.session.commit()
    setting = world.setting("rotation", users=[world.users[0]], recall_seconds=10)
    world.alert(setting)
    world.run()
    for _ in range(2):
        call = world.handset.expect_call(PHONES[0])
        world.handset.hang_up(call, "no-answer", duration=0)
        world.run(11)

    world.handset.expect_no_call()
    limits = db.session.scalars(select(RequestLog).where(RequestLog.kind == LOG_CALL_LIMIT)).all()
    assert len(limits) == 1 and "15 分" in limits[0].error_message and limits[0].destination == PHONES[0]
    delivery = world.notification().deliveries[0]
    assert "上限(2 回/15 分)" in delivery.error
    world.run(15 * 60)
    world.handset.expect_call(PHONES[0])


def test_texts_to_the_number_do_not_count_towards_its_call_limit(world: World) -> None:
    from tests.factories import make_sms_setting

    settings = XmonSettings.for_update()
    settings.calls_per_15min = 2
    db.session.commit()
    sms = make_sms_setting(world.account, [world.users[0]], from_number="+815012340001")
    for number in range(3):
        intake.accept(
            {"kind": "sms", "setting_id": str(sms.id), "type": "PROBLEM", "host": f"web{number}", "state": "DOWN", "problem_id": str(number)}
        )
        world.run()
    assert len([r for r in world.fake.requests_for("CreateMessage") if r.form.get("To") == PHONES[0]]) == 3
    setting = world.setting("rotation", users=[world.users[0]])
    world.alert(setting)
    world.run()
    world.handset.expect_call(PHONES[0])
    assert not db.session.scalars(select(RequestLog).where(RequestLog.kind == LOG_CALL_LIMIT)).all()


def test_acknowledgements_wait_for_the_sink(world: World) -> None:
    setting = world.setting("rotation", users=[world.users[0]])
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    _work(world, call, "3")
    ack = db.session.scalars(select(Acknowledgement)).one()
    assert ack.status == ACK_PENDING


def test_a_slow_monitor_never_holds_calls_back(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Acknowledgements get a slice of each pass; the calls due are placed between them."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from xmonbridge.dispatch import engine

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(0.3)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(engine, "ACK_PASS_BUDGET", 0.1)
    settings = XmonSettings.for_update()
    settings.ack_mode = "http"
    settings.ack_http_url = f"http://127.0.0.1:{server.server_address[1]}/ack"
    db.session.commit()
    try:
        setting = world.setting("rotation", users=[world.users[0]])
        for number in range(5):
            world.alert(setting, host=f"web{number}")
        world.run()
        call = world.handset.expect_call(PHONES[0])
        _work(world, call, "3")
        other = world.setting("all", users=[world.users[1]], name="別の設定")
        world.alert(other, host="db01")

        world.run()  # places the other setting's call, then one acknowledgement
        world.handset.expect_call(PHONES[1])
        db.session.expire_all()
        assert sorted(a.tries for a in db.session.scalars(select(Acknowledgement))) == [0, 0, 0, 0, 1]
        for _ in range(4):
            world.run()
        db.session.expire_all()
        assert all(a.status == "done" for a in db.session.scalars(select(Acknowledgement)))
    finally:
        server.shutdown()
        server.server_close()


# --- both databases ---


@pytest.fixture
def any_db_world(any_db_live_app: Flask, fake_twilio: Any) -> World:
    return World(any_db_live_app, fake_twilio)


def test_rotation_on_both_databases(any_db_world: World) -> None:
    world = any_db_world
    setting = world.setting("rotation", users=world.users[:2], recall_seconds=20)
    world.alert(setting)
    world.run()
    first = world.handset.expect_call(PHONES[0])
    world.handset.hang_up(first, "no-answer", duration=0)
    world.run(21)
    again = world.handset.expect_call(PHONES[0])
    _work(world, again, "2")
    world.handset.hang_up(again)
    world.run()
    second = world.handset.expect_call(PHONES[1])
    _work(world, second, "9")
    world.handset.hang_up(second)
    world.run(600)
    world.handset.expect_no_call()
    assert world.notification().status == NOTIFICATION_DONE


def test_alerts_racing_in_parallel_share_one_notification(any_db_world: World) -> None:
    """Intakes of one button setting at the same moment never start two notifications."""
    import threading

    world = any_db_world
    setting = world.setting("all", users=world.users[:1])
    setting_id = setting.id
    errors: list[BaseException] = []
    start = threading.Barrier(12)

    def send(number: int) -> None:
        with world.app.app_context():
            try:
                start.wait()
                intake.accept(
                    {
                        "kind": "button_call",
                        "setting_id": str(setting_id),
                        "type": "PROBLEM",
                        "host": f"race{number:02d}",
                        "service": "HTTP",
                        "state": "CRITICAL",
                        "problem_id": str(900 + number),
                    }
                )
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 1
    world.run()
    call = world.handset.expect_call(PHONES[0])
    assert "障害が12件" in world.handset.answer(call).text


@pytest.mark.parametrize("key", ["3", "2"])
def test_copies_of_one_ending_key_act_once(any_db_world: World, key: str) -> None:
    """Twilio may send a request twice; a replay may race the first: only one copy acts."""
    import threading

    from tests.handset import parse

    world = any_db_world
    XmonSettings.for_update().ack_mode = "none"
    db.session.commit()
    setting = world.setting("rotation")
    world.alert(setting, host="web01", service="HTTP")
    world.alert(setting, host="db01", service="")
    world.run()
    call = world.handset.expect_call(PHONES[0])
    heard = world.handset.answer(call)
    params = world.handset._params(call, CallStatus="in-progress", Digits=key, FinishedOnKey="#")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(heard.action, params)
    path = heard.action[len(XMON) :]
    start = threading.Barrier(8)
    replies: list[Any] = []

    def send() -> None:
        with world.app.app_context():
            client = world.app.test_client()
            start.wait()
            response = client.post(path, data=params, headers={"X-Twilio-Signature": signature})
            replies.append(parse(response.status_code, response.get_data(as_text=True)))
            db.session.remove()

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # And once more after all of them, as a late retry.
    late = world.handset.press(call, heard, key)

    assert len(replies) == 8 and all(r.status == 200 and r.hangup for r in replies + [late])
    acting = "認知済みにしました" if key == "3" else "次の担当者に通知します"
    assert sum(acting in r.text for r in replies) == 1 and acting not in late.text
    db.session.expire_all()
    acks = db.session.scalars(select(Acknowledgement)).all()
    assert len(acks) == (2 if key == "3" else 0)
    attempt = db.session.scalars(select(Attempt).where(Attempt.sid == call.sid)).one()
    assert attempt.end_key == key and attempt.end_reason == {"3": flow.END_KEY_3, "2": flow.END_KEY_2}[key]
    world.handset.hang_up(call)
    world.run(120)
    if key == "2":
        assert [c.to for c in world.handset.new_calls()] == [PHONES[1]]
    else:
        world.handset.expect_no_call()


def test_a_call_whose_status_callback_never_came_is_settled_from_twilio(world: World) -> None:
    """Ring time plus the grace period later the dispatcher asks Twilio, then calls again."""
    setting = world.setting("rotation", users=world.users[:1], recall_seconds=30, ring_seconds=40)
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    world.fake.set_call_status(call.sid, "no-answer")  # ... and the callback is lost
    grace = world.app.config["DISPATCH_CHECK_GRACE_CALLBACK_SECONDS"]
    world.run(40 + grace - 5)
    assert not world.fake.requests_for("FetchCall")
    world.run(10)
    assert [r.path.rsplit("/", 1)[1] for r in world.fake.requests_for("FetchCall")] == [f"{call.sid}.json"]
    world.run(31)
    world.handset.expect_call(PHONES[0])
    assert world.notification().deliveries[0].attempts[0].end_reason == "no-answer"


def test_a_call_twilio_never_ends_is_settled_after_an_hour(world: World) -> None:
    """Otherwise the notification would stay active and swallow every later alert unheard."""
    setting = world.setting("rotation", users=world.users[:1], recall_seconds=30)
    world.alert(setting)
    world.run()
    call = world.handset.expect_call(PHONES[0])
    world.fake.set_call_status(call.sid, "in-progress")
    for _ in range(7):
        world.run(600)
    world.run(31)
    world.handset.expect_call(PHONES[0])
    assert world.notification().deliveries[0].attempts[0].end_reason == "lost"


def test_a_call_worked_before_its_create_answer_was_recorded_is_settled_by_its_webhook(world: World) -> None:
    """The process placing the call died during the create: Twilio made the call, no SID was stored.

    The callee answers and presses 2# before any dispatcher has found the call at Twilio; the
    signed webhook's CallSid settles the attempt, and the call is neither lost nor placed again.
    """
    setting = world.setting("rotation", users=world.users[:2])
    world.alert(setting)
    world.run()
    first = world.handset.expect_call(PHONES[0])
    attempt = world.notification().deliveries[0].attempts[0]
    # As the dead process left it: in flight, without the SID Twilio's answer carried.
    attempt.outcome, attempt.sid, attempt.finished_at = "", "", None
    attempt.delivery.status, attempt.delivery.sid = "sending", ""
    db.session.commit()

    assert _work(world, first, "2")[-1].says[0] == "次の担当者に通知します。"
    world.handset.hang_up(first)
    world.run(world.dispatcher.timing.orphan_after + 1)
    second = world.handset.expect_call(PHONES[1])
    world.run(600)
    world.handset.expect_no_call()  # the first call is not looked up and placed again
    delivery = world.notification().deliveries[0]
    assert [(a.sid, a.outcome, a.end_reason, a.final_status) for a in delivery.attempts] == [
        (first.sid, "placed", flow.END_KEY_2, "completed")
    ]
    assert second.sid != first.sid

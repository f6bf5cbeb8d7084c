"""Who an active button call stops calling: users taken off the setting, deleted users, and
「通知を終了」 on インシデント.

The scripted handset and the dispatcher of test_button_calls.py work the calls; the setting is
edited through its form (編集と承認) and users are deleted through ユーザ管理, as an
administrator would; each scenario asserts which calls the fake Twilio receives next and what
インシデント shows.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions
from tests.factories import PASSWORD, make_user
from tests.test_button_calls import PHONES, World, _work
from tests.test_incidents_button import rows, text
from xmonbridge.calls import flow, recipients
from xmonbridge.models import NOTIFICATION_ACTIVE, NOTIFICATION_DONE

EDIT = "/admin/twilio/button-calls/{id}/edit"


@pytest.fixture
def world(live_app: Flask, fake_twilio: Any) -> World:
    return World(live_app, fake_twilio)


def admin(app: Flask, approver: bool = True) -> FlaskClient:
    client = app.test_client()
    make_user(login="admin", name="管理 太郎", is_admin=True, is_approver=approver)
    AuthActions(client).login("admin", PASSWORD)
    return client


def edit_recipients(client: FlaskClient, setting: Any, users: list[Any]) -> None:
    """編集と承認 of the setting with only these users in 宛先の電話番号(To)."""
    data = {
        "mode": setting.mode,
        "name": setting.name,
        "account_id": str(setting.account_id),
        "from_number": setting.from_number,
        "ring_seconds": str(setting.ring_seconds),
        "recall_seconds": str(setting.recall_seconds),
        "max_calls": str(setting.max_calls),
        "submit_approve": "y",
        **{f"recipients-{i}": str(u.id) for i, u in enumerate(users)},
    }
    response = client.post(EDIT.format(id=setting.id), data=data)
    assert response.status_code == 302, response.get_data(as_text=True)


def incident(client: FlaskClient, alert_id: int) -> str:
    response = client.get(f"/incidents/{alert_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_rotation_a_removed_user_in_turn_passes_to_the_next_and_is_never_called_again(world: World) -> None:
    setting = world.setting("rotation", recall_seconds=30)
    alert = world.alert(setting)
    world.run()
    first = world.handset.expect_call(PHONES[0])
    world.handset.answer(first)
    world.handset.hang_up(first)  # no key: the first user would be called again after 30 s
    client = admin(world.app)
    assert "再発信待ち" in rows(incident(client, alert), "button-recipients")[0]

    edit_recipients(client, setting, world.users[1:])
    world.run(31)
    second = world.handset.expect_call(PHONES[1])
    world.handset.answer(second)
    world.handset.hang_up(second)  # no key: the second user is called again, not the first
    world.run(31)
    world.handset.expect_call(PHONES[1])
    world.run(600)
    world.handset.expect_no_call()

    recipients_shown = rows(incident(client, alert), "button-recipients")
    assert "発信停止" in recipients_shown[0] and recipients.REMOVED in recipients_shown[0]
    assert "再発信待ち" not in recipients_shown[0]


def test_rotation_a_removed_user_on_the_phone_finishes_the_call_then_the_next_is_called(world: World) -> None:
    setting = world.setting("rotation", recall_seconds=30)
    world.alert(setting)
    world.run()
    first = world.handset.expect_call(PHONES[0])
    world.handset.answer(first)
    edit_recipients(admin(world.app), setting, [world.users[2]])
    world.run(5)
    world.handset.expect_no_call()  # the first user's call is still on: nobody else yet
    world.handset.hang_up(first)
    world.run()
    world.handset.expect_call(PHONES[2])
    world.run(600)
    assert {c.form["To"] for c in world.handset.new_calls()} <= {PHONES[2]}


def test_rotation_with_nobody_left_ends_with_a_reason(world: World) -> None:
    setting = world.setting("rotation", users=world.users[:2], recall_seconds=30)
    alert = world.alert(setting)
    world.run()
    first = world.handset.expect_call(PHONES[0])
    world.handset.hang_up(first, "no-answer", duration=0)
    client = admin(world.app)
    edit_recipients(client, setting, [world.users[2]])
    world.run(600)
    world.handset.expect_no_call()
    assert world.notification().status == NOTIFICATION_DONE
    assert flow.NOBODY_LEFT in text(incident(client, alert))


def test_all_only_the_remaining_user_is_called_again(world: World) -> None:
    setting = world.setting("all", users=world.users[:2], recall_seconds=60)
    alert = world.alert(setting)
    world.run()
    a, b = world.handset.expect_calls(*PHONES[:2])
    for call in (a, b):
        world.handset.answer(call)
        world.handset.hang_up(call)  # both would be called again
    client = admin(world.app)
    edit_recipients(client, setting, [world.users[1]])
    world.run(61)
    again = world.handset.expect_call(PHONES[1])
    assert _work(world, again, "9")[-1].hangup
    world.handset.hang_up(again)
    world.run(600)
    world.handset.expect_no_call()
    assert world.notification().status == NOTIFICATION_DONE
    shown = rows(incident(client, alert), "button-recipients")
    assert recipients.REMOVED in shown[0] and "再発信待ち" not in shown[0]


def test_a_deleted_user_is_never_called(world: World) -> None:
    setting = world.setting("all", users=world.users[:2], recall_seconds=60)
    other = world.setting("all", users=[world.users[0]], recall_seconds=60, name="別の連絡")
    world.alert(setting)
    world.alert(other, host="db01")
    world.run()
    calls = world.handset.expect_calls(PHONES[0], PHONES[1], PHONES[0])
    for call in calls:
        world.handset.hang_up(call, "no-answer", duration=0)
    client = admin(world.app)
    # Taken off both settings (ユーザ管理 refuses to delete a recipient), then deleted.
    edit_recipients(client, setting, [world.users[1]])
    other_users_left = [world.users[1]]
    edit_recipients(client, other, other_users_left)
    response = client.post(f"/admin/users/{world.users[0].id}/delete")
    assert response.status_code == 302
    world.run(61)
    world.handset.expect_call(PHONES[1])  # the other setting's call has nobody left
    world.run(600)
    assert PHONES[0] not in {c.form["To"] for c in world.handset.new_calls()}


def test_deleting_a_user_stops_a_call_they_were_taken_off_of(world: World) -> None:
    """Deletion alone (no edit hook ran) also stops the user's re-calls."""
    setting = world.setting("all", users=world.users[:2], recall_seconds=60)
    world.alert(setting)
    world.run()
    for call in world.handset.expect_calls(*PHONES[:2]):
        world.handset.hang_up(call, "no-answer", duration=0)
    # The To row is gone without the edit hook (e.g. an older change), then the user is deleted.
    from xmonbridge.extensions import db

    setting.recipients = [r for r in setting.recipients if r.user_id != world.users[0].id]
    db.session.commit()
    client = admin(world.app)
    assert client.post(f"/admin/users/{world.users[0].id}/delete").status_code == 302
    world.run(61)
    world.handset.expect_call(PHONES[1])
    world.run(600)
    assert PHONES[0] not in {c.form["To"] for c in world.handset.new_calls()}


def test_end_notification_button_ends_it_and_hangs_up_the_call(world: World) -> None:
    setting = world.setting("rotation", recall_seconds=30)
    alert = world.alert(setting)
    world.run()
    first = world.handset.expect_call(PHONES[0])
    world.handset.answer(first)
    client = admin(world.app, approver=False)
    page = incident(client, alert)
    form = re.search(r'<form method="post" action="(/incidents/notifications/\d+/end)"[^>]*data-confirm="([^"]+)"', page)
    assert form is not None and "通知を終了" in page
    assert 'name="csrf_token"' in page and "終了しますか" in form.group(2)
    response = client.post(form.group(1), data={"alert_id": str(alert)})
    assert response.status_code == 302
    world.run()
    hangups = world.fake.requests_for("UpdateCall")
    assert [r.path.rsplit("/", 1)[1] for r in hangups] == [f"{first.sid}.json"]
    world.handset.hang_up(first)
    world.run(600)
    world.handset.expect_no_call()
    body = text(incident(client, alert))
    assert "終了の理由 管理者(管理 太郎)が通知を終了しました。" in body
    assert 'action="/incidents/notifications/' not in incident(client, alert)


def test_only_administrators_may_end_a_notification(world: World) -> None:
    setting = world.setting("rotation")
    alert = world.alert(setting)
    world.run()
    world.handset.expect_call(PHONES[0])
    n = world.notification().id
    client = world.app.test_client()
    make_user(login="viewer", name="閲覧 花子")
    AuthActions(client).login("viewer", PASSWORD)
    assert "通知を終了" not in incident(client, alert)
    assert client.post(f"/incidents/notifications/{n}/end", data={"alert_id": str(alert)}).status_code == 403
    assert world.notification().status == NOTIFICATION_ACTIVE

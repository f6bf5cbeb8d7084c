"""A real Nagios → xmonbridge notify → a button call answered with 3# → acknowledged in Nagios (R12).

A service and a host go CRITICAL / DOWN; Nagios runs the setting's `xmonbridge notify`
command blocks; the dispatcher places one 輪番 call at the fake Twilio; the scripted handset
answers through the real server, hears both faults, presses 3#; the acknowledgements are
written to Nagios' external command file, and Nagios' status.dat shows both problems
acknowledged by that user. The ACKNOWLEDGEMENT notifications Nagios sends next call nobody.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.factories import make_button_call_setting, make_recipient, make_twilio_account, set_xmon_url
from tests.handset import Handset, HttpClient
from tests.nagios_commands import command_line
from tests.nagios_fixture import HOST, HOST2, SERVICE, nagios  # noqa: F401 - the fixture
from tests.real_server import RealServer, wait_for
from xmonbridge.alerts import commands
from xmonbridge.extensions import db
from xmonbridge.models import ACK_COMMAND_FILE, ACK_DONE, Acknowledgement, AlertRecord, XmonSettings

PHONES = ["+819001230001", "+819001230002"]
NAMES = ["佐藤 翔太", "鈴木 花子"]


def _escaped(block: str) -> str:
    """A block's command_line as NF_*_NOTIFY_CMD takes it (a literal ; written as \\;)."""
    return command_line(block).replace(";", "\\;")


def _comments(status: str, kind: str) -> list[dict[str, str]]:
    """The hostcomment / servicecomment blocks of status.dat."""
    found = []
    for body in re.findall(kind + r" \{(.*?)\}", status, re.S):
        fields = dict(line.strip().split("=", 1) for line in body.strip().splitlines() if "=" in line)
        found.append(fields)
    return found


def test_three_from_the_phone_acknowledges_a_service_and_a_host_in_nagios(
    tmp_path: Path, fake_twilio: Any, nagios: Any  # noqa: F811
) -> None:
    server = RealServer(tmp_path, api_base=fake_twilio.base_url)
    with server.app_context():
        set_xmon_url(server.base)
        users = [make_recipient(login=f"u{i}", name=NAMES[i], phone=p) for i, p in enumerate(PHONES)]
        setting = make_button_call_setting(make_twilio_account(cps=10), users, name="当番への電話", mode="rotation")
        blocks = {
            (b.variant, b.target): b.text
            for b in commands.blocks("button_call", setting.id, setting.name, server.base, commands.installed_notify_path())
        }
    token = server.make_token()
    monitor = nagios(
        svc_cmd=_escaped(blocks[("notify", commands.SERVICE)]),
        host_cmd=_escaped(blocks[("notify", commands.HOST)]),
        resource_lines=[f"$USER9$={token}"],
    )
    with server.app_context():
        settings = XmonSettings.for_update()
        settings.ack_mode = ACK_COMMAND_FILE
        settings.ack_command_file = str(monitor.folder / "nagios.cmd")
        db.session.commit()
    server.start(workers=2)
    handset = Handset(HttpClient(server.base), fake_twilio, server.base)
    try:
        monitor.svc_state(2)
        monitor.host_state(2)
        monitor.wait_notify("PROBLEM", HOST, SERVICE)
        monitor.wait_notify("PROBLEM", HOST2, None)

        def problems() -> int:
            with server.app_context():
                return db.session.scalar(
                    select(func.count()).select_from(AlertRecord).where(AlertRecord.notification_type == "PROBLEM")
                ) or 0

        wait_for(lambda: problems() == 2 and fake_twilio.requests_for("CreateCall"), 30, "both PROBLEMs and a call")
        call = handset.expect_call(PHONES[0])  # 輪番: only the first user
        heard = handset.answer(call)
        assert "障害が2件、復旧が0件あります。" in heard.text
        details = handset.press(call, heard, "1")
        assert f"ホスト {HOST} のサービス {SERVICE}" in details.text and f"ホスト {HOST2}が" in details.text
        done = handset.press(call, details, "3")
        assert done.says[0] == "2件の障害を認知済みにしました。以降の担当者には通知しません。" and done.hangup
        handset.hang_up(call)

        monitor.wait_ack("svc")
        monitor.wait_ack("host")
        status = (monitor.folder / "status.dat").read_text(errors="replace")
        service_comments = [c for c in _comments(status, "servicecomment") if c.get("host_name") == HOST]
        host_comments = [c for c in _comments(status, "hostcomment") if c.get("host_name") == HOST2]
        assert [c["author"] for c in service_comments] == [NAMES[0]]
        assert [c["author"] for c in host_comments] == [NAMES[0]]
        assert "3#" in service_comments[0]["comment_data"]

        # Nagios now sends ACKNOWLEDGEMENT notifications; they reach xmonbridge and call nobody.
        monitor.wait_notify("ACKNOWLEDGEMENT", HOST, SERVICE)

        def acks_received() -> int:
            with server.app_context():
                return db.session.scalar(
                    select(func.count()).select_from(AlertRecord).where(AlertRecord.notification_type == "ACKNOWLEDGEMENT")
                ) or 0

        wait_for(lambda: acks_received() >= 1, 30, "the ACKNOWLEDGEMENT alert")
        time.sleep(2)  # give a wrongly placed call the time to show up
        handset.expect_no_call()
        with server.app_context():
            acks = db.session.scalars(select(Acknowledgement)).all()
            # The two faults reach xmonbridge in whichever order Nagios ran its notify commands.
            assert sorted((a.host, a.service, a.status) for a in acks) == sorted(
                [(HOST, SERVICE, ACK_DONE), (HOST2, "", ACK_DONE)]
            )
    finally:
        server.stop()

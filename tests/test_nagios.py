"""A real Nagios Core 4 runs the command blocks copied from a setting's page (R11)."""

from __future__ import annotations

from typing import Any

from tests.nagios_fixture import HOST, SERVICE, nagios  # noqa: F401 - the fixture


def test_the_fixture_reports_problem_and_recovery_with_one_problem_id(nagios: Any) -> None:  # noqa: F811
    monitor = nagios()
    monitor.svc_state(2)
    problem = monitor.wait_notify("PROBLEM", HOST, SERVICE)
    assert problem["SERVICESTATE"] == "CRITICAL" and problem["SERVICEPROBLEMID"] not in ("", "0")
    monitor.svc_state(0)
    recovery = monitor.wait_notify("RECOVERY", HOST, SERVICE)
    assert recovery["SERVICEPROBLEMID"] == problem["SERVICEPROBLEMID"]


# --- the whole path: Nagios → command block → xmonbridge → (fake) Twilio ---

import html  # noqa: E402
import http.cookiejar  # noqa: E402
import re  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import select  # noqa: E402

from tests.factories import (  # noqa: E402
    make_recipient,
    make_simple_call_setting,
    make_sms_setting,
    make_twilio_account,
    set_xmon_url,
)
from tests.nagios_commands import command_line  # noqa: E402
from tests.real_server import RealServer, wait_for  # noqa: E402
from xmonbridge.extensions import db  # noqa: E402
from xmonbridge.models import AlertRecord  # noqa: E402

PHONES = ["+819001230001", "+819001230002"]
PASSWORD = "nagios-e2e-pass-1"


def _page_blocks(server: RealServer, path: str) -> dict[str, str]:
    """Log in as an admin and read the command blocks shown on a setting's page."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    login = opener.open(f"{server.base}/login").read().decode()
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login)
    data = {"login": "admin", "password": PASSWORD, **({"csrf_token": csrf.group(1)} if csrf else {})}
    opener.open(f"{server.base}/login", data=urllib.parse.urlencode(data).encode()).read()
    page = opener.open(f"{server.base}{path}").read().decode()
    found = re.findall(r'<pre class="nagios-command" id="(command-[a-z]+-[a-z]+)"[^>]*>(.*?)</pre>', page, re.S)
    return {block_id: html.unescape(text) for block_id, text in found}


@pytest.mark.parametrize("variant", ["notify", "curl"])
def test_a_service_failure_reaches_people_by_call_and_sms_and_its_recovery_by_sms(
    tmp_path: Path, fake_twilio: Any, nagios: Any, variant: str  # noqa: F811
) -> None:
    server = RealServer(tmp_path, api_base=fake_twilio.base_url)
    server.cli("create-user", "admin", "--password", PASSWORD, "--admin", "--approver")
    with server.app_context():
        set_xmon_url(server.base)
        users = [make_recipient(login=f"u{i}", name=f"担当者{i}", phone=p) for i, p in enumerate(PHONES)]
        account = make_twilio_account(cps=10)
        call_id = make_simple_call_setting(account, users, name="電話連絡").id
        sms_id = make_sms_setting(account, users, name="SMS連絡").id
    token = server.make_token()
    server.start(workers=2)
    try:
        call_block = _page_blocks(server, f"/admin/twilio/simple-calls/{call_id}")[f"command-{variant}-service"]
        sms_block = _page_blocks(server, f"/admin/twilio/sms-settings/{sms_id}")[f"command-{variant}-service"]
        assert "define command" in call_block and token not in call_block and "$USER9$" in call_block
        # One notification command that runs both commands, as two escalation entries would.
        both = f"{command_line(call_block).replace(';', chr(92) + ';')} \\; {command_line(sms_block).replace(';', chr(92) + ';')}"
        monitor = nagios(svc_cmd=both, resource_lines=[f"$USER9$={token}"])

        monitor.svc_state(2)
        problem = monitor.wait_notify("PROBLEM")
        wait_for(
            lambda: len(fake_twilio.requests_for("CreateCall")) == 2 and len(fake_twilio.requests_for("CreateMessage")) == 2,
            30,
            "the calls and SMS of the PROBLEM" + monitor.log()[-2000:],
        )
        assert sorted(r.form["To"] for r in fake_twilio.requests_for("CreateCall")) == PHONES
        for sid in fake_twilio.calls_by_sid:
            assert fake_twilio.heard(sid) == "X-MON からの障害通知です。ホスト fixture-host のサービス fixture-svc で障害が発生しました。"
        assert {r.form["Body"] for r in fake_twilio.requests_for("CreateMessage")} == {
            "[X-MON 障害] ホスト fixture-host のサービス fixture-svc"
        }

        monitor.svc_state(0)
        monitor.wait_notify("RECOVERY")
        wait_for(lambda: len(fake_twilio.requests_for("CreateMessage")) == 4, 30, "the recovery SMS")
        bodies = [r.form["Body"] for r in fake_twilio.requests_for("CreateMessage")]
        assert bodies[2:] == ["[X-MON 復旧] ホスト fixture-host のサービス fixture-svc"] * 2
    finally:
        server.stop()
    with server.app_context():
        alerts = db.session.scalars(select(AlertRecord).order_by(AlertRecord.id)).all()
        problems = [a for a in alerts if a.notification_type == "PROBLEM"]
        recoveries = [a for a in alerts if a.notification_type == "RECOVERY"]
        assert {a.problem_id for a in problems} == {problem["SERVICEPROBLEMID"]}
        # Nagios's own problem id ties each RECOVERY to the PROBLEM of its setting.
        assert sorted((r.setting_type, r.setting_id, r.problem_alert.setting_type, r.problem_alert.setting_id) for r in recoveries) == [
            ("simple_call", call_id, "simple_call", call_id),
            ("sms", sms_id, "sms", sms_id),
        ]

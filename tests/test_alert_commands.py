"""Escalation commands (R11): the `define command` blocks of a setting's detail page, and that they
post alerts the API accepts when run the way Nagios runs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests import nagios_commands
from tests.app_server import serving
from tests.conftest import AuthActions
from tests.factories import make_recipient, make_simple_call_setting, make_sms_setting, make_twilio_account, set_xmon_url
from xmonbridge.alerts import commands
from xmonbridge.api_tokens import tokens
from xmonbridge.extensions import db
from xmonbridge.models import AlertRecord, User

XMONBRIDGE = str(Path(sys.executable).parent / "xmonbridge")

SERVICE_BLOCK = """\
# xmonbridge: SMS連絡 (サービス通知用, curl)
define command {
    command_name    xmonbridge-sms-3-service
    command_line    printf 'Authorization: Bearer %s\\n' '$USER9$' | /usr/bin/curl -sS -f --max-time 5 --retry 2 -H @- \
--data-urlencode kind=sms --data-urlencode setting_id=3 --data-urlencode 'type=$NOTIFICATIONTYPE$' \
--data-urlencode 'host=$HOSTNAME$' --data-urlencode 'host_address=$HOSTADDRESS$' \
--data-urlencode 'service=$SERVICEDESC$' --data-urlencode 'state=$SERVICESTATE$' \
--data-urlencode 'output=$SERVICEOUTPUT$' --data-urlencode 'problem_id=$SERVICEPROBLEMID$' \
--data-urlencode 'last_problem_id=$LASTSERVICEPROBLEMID$' --data-urlencode 'time=$TIMET$' \
https://xmonbridge.example.com/api/v1/alerts
}
"""


KNOWN_MACROS = {
    "USER9", "NOTIFICATIONTYPE", "HOSTNAME", "HOSTADDRESS", "TIMET",
    "SERVICEDESC", "SERVICESTATE", "SERVICEOUTPUT", "SERVICEPROBLEMID", "LASTSERVICEPROBLEMID",
    "HOSTSTATE", "HOSTOUTPUT", "HOSTPROBLEMID", "LASTHOSTPROBLEMID",
}


def by(blocks: list[commands.CommandBlock], variant: str, target: str) -> commands.CommandBlock:
    [block] = [b for b in blocks if b.variant == variant and b.target == target]
    return block


# --- the text ---


def test_the_curl_service_block_reads_as_nagios_expects() -> None:
    blocks = commands.blocks("sms", 3, "SMS連絡", "https://xmonbridge.example.com/")
    assert [(b.variant, b.target, b.name) for b in blocks] == [
        ("curl", "service", "xmonbridge-sms-3-service"),
        ("curl", "host", "xmonbridge-sms-3-host"),
        ("notify", "service", "xmonbridge-sms-3-service"),
        ("notify", "host", "xmonbridge-sms-3-host"),
    ]
    assert by(blocks, "curl", "service").text == SERVICE_BLOCK


def test_host_blocks_read_host_macros_only() -> None:
    blocks = commands.blocks("simple_call", 12, "電話連絡", "https://xmonbridge.example.com")
    for variant in ("curl", "notify"):
        host = nagios_commands.command_line(by(blocks, variant, "host").text)
        service = nagios_commands.command_line(by(blocks, variant, "service").text)
        assert "SERVICE" not in host
        for macro in ("$HOSTSTATE$", "$HOSTOUTPUT$", "$HOSTPROBLEMID$", "$LASTHOSTPROBLEMID$", "$HOSTNAME$", "$TIMET$"):
            assert macro in host
        for macro in ("$SERVICEDESC$", "$SERVICESTATE$", "$SERVICEOUTPUT$", "$SERVICEPROBLEMID$", "$LASTSERVICEPROBLEMID$"):
            assert macro in service
        assert "$HOSTSTATE$" not in service
        assert "simple_call" in host and "12" in host
    assert by(blocks, "notify", "host").name == "xmonbridge-simple-call-12-host"


def test_literal_semicolons_and_dollars_are_escaped() -> None:
    blocks = commands.blocks("sms", 3, "A;B $x", "https://xmb.example.com/p;q$r", "/opt/x;y/xmonbridge")
    for block in blocks:
        line = block.text.split("command_line", 1)[1].split("\n", 1)[0]
        assert ";" not in line.replace("\\;", "")
        assert "p\\;q$$r" in line
        # Every other $ opens a macro.
        macros = set(line.replace("$$", "").split("$")[1::2])
        assert macros <= KNOWN_MACROS
    notify = by(blocks, "notify", "service").text
    assert "/opt/x\\;y/xmonbridge" in notify
    # Nagios reads back the literal text.
    assert nagios_commands.substitute(nagios_commands.command_line(notify), {}).count("https://xmb.example.com/p;q$r") == 1


def test_the_token_is_never_part_of_a_block() -> None:
    for block in commands.blocks("sms", 3, "SMS", "https://xmonbridge.example.com"):
        assert "$USER9$" in block.text and "xmb_" not in block.text
        assert "--token" not in block.text
    assert commands.resource_line("xmb_abc") == "$USER9$=xmb_abc"


def test_no_blocks_without_an_x_mon_url() -> None:
    assert commands.blocks("sms", 3, "SMS", None) == []
    assert commands.blocks("sms", 3, "SMS", "") == []


# --- run as Nagios runs them ---

SERVICE_PROBLEM = {
    "NOTIFICATIONTYPE": "PROBLEM",
    "HOSTNAME": "web-server01",
    "HOSTADDRESS": "192.0.2.10",
    "SERVICEDESC": "HTTP",
    "SERVICESTATE": "CRITICAL",
    # Nagios removes ' " $ ` & | < > ~ from the output before the shell sees it.
    "SERVICEOUTPUT": "CRITICAL - it's $(down) & `out`; see <log>",
    "SERVICEPROBLEMID": "41",
    "LASTSERVICEPROBLEMID": "40",
    "TIMET": "1795900000",
}
HOST_DOWN = {
    "NOTIFICATIONTYPE": "PROBLEM",
    "HOSTNAME": "db01",
    "HOSTADDRESS": "192.0.2.20",
    "HOSTSTATE": "DOWN",
    "HOSTOUTPUT": "PING CRITICAL - Packet loss = 100%",
    "HOSTPROBLEMID": "12",
    "LASTHOSTPROBLEMID": "11",
    "TIMET": "1795900000",
}
HOST_RECOVERY = {**HOST_DOWN, "NOTIFICATIONTYPE": "RECOVERY", "HOSTSTATE": "UP", "HOSTOUTPUT": "PING OK", "HOSTPROBLEMID": "0", "LASTHOSTPROBLEMID": "12"}


@pytest.fixture
def served(app: Flask) -> Iterator[dict[str, Any]]:
    """The app over HTTP, its X-MON URL set to where it listens, a token and two settings."""
    admin = User(login="admin", is_admin=True)
    db.session.add(admin)
    db.session.commit()
    _, token = tokens.create("監視サーバ", admin)
    account = make_twilio_account()
    users = [make_recipient()]
    sms = make_sms_setting(account, users, name="SMS連絡")
    simple = make_simple_call_setting(account, users, name="電話連絡")
    with serving(app) as base:
        set_xmon_url(base)
        yield {"base": base, "token": token, "sms": sms, "simple": simple}


def alerts() -> list[AlertRecord]:
    db.session.expire_all()
    return list(db.session.scalars(select(AlertRecord).order_by(AlertRecord.id)))


@pytest.mark.parametrize("variant", ["curl", "notify"])
def test_the_blocks_post_service_and_host_alerts(served: dict[str, Any], variant: str) -> None:
    blocks = commands.blocks("sms", served["sms"].id, "SMS連絡", served["base"], XMONBRIDGE)
    resource = {"USER9": served["token"]}
    service = nagios_commands.run(by(blocks, variant, "service").text, {**SERVICE_PROBLEM, **resource})
    assert service.returncode == 0, service.stderr
    down = nagios_commands.run(by(blocks, variant, "host").text, {**HOST_DOWN, **resource})
    up = nagios_commands.run(by(blocks, variant, "host").text, {**HOST_RECOVERY, **resource})
    assert down.returncode == 0 and up.returncode == 0, (down.stderr, up.stderr)

    first, host_down, host_up = alerts()
    assert (first.setting_name, first.notification_type, first.host, first.host_address, first.service) == (
        "SMS連絡", "PROBLEM", "web-server01", "192.0.2.10", "HTTP"
    )
    assert (first.state, first.problem_id, first.last_problem_id) == ("CRITICAL", "41", "40")
    assert first.output == "CRITICAL - its (down)  out; see log"
    assert first.token_name == "監視サーバ"
    assert (host_down.service, host_down.state, host_down.output) == ("", "DOWN", "PING CRITICAL - Packet loss = 100%")
    assert (host_up.notification_type, host_up.state, host_up.correlation_id) == ("RECOVERY", "UP", "12")
    assert host_up.problem_alert_id == host_down.id
    assert [n.text for n in first.notifications] == ["[X-MON 障害] ホスト web-server01 のサービス HTTP"]


def test_a_wrong_token_makes_the_curl_command_fail(served: dict[str, Any]) -> None:
    blocks = commands.blocks("simple_call", served["simple"].id, "電話連絡", served["base"])
    result = nagios_commands.run(by(blocks, "curl", "service").text, {**SERVICE_PROBLEM, "USER9": "xmb_wrong"})
    assert result.returncode == 22  # curl -f: the server answered 4xx
    assert "401" in result.stderr
    assert alerts() == []


# --- the detail pages ---


@pytest.fixture
def settings(app: Flask) -> dict[str, Any]:
    account = make_twilio_account()
    users = [make_recipient()]
    return {"sms": make_sms_setting(account, users, name="SMS連絡"), "simple": make_simple_call_setting(account, users, name="電話連絡")}


@pytest.mark.parametrize(("kind", "path"), [("sms", "sms-settings"), ("simple", "simple-calls")])
def test_the_detail_page_shows_the_blocks_to_copy(
    client: FlaskClient, logged_in: AuthActions, settings: dict[str, Any], kind: str, path: str
) -> None:
    set_xmon_url("https://xmonbridge.example.com/bridge")
    setting = settings[kind]
    _, token = tokens.create("監視サーバ", db.session.scalar(select(User).where(User.login == "admin")))
    db.session.commit()
    page = client.get(f"/admin/twilio/{path}/{setting.id}").get_data(as_text=True)
    assert "エスカレーション設定用コマンド" in page
    setting_type = "sms" if kind == "sms" else "simple_call"
    for block in commands.blocks(setting_type, setting.id, setting.name, "https://xmonbridge.example.com/bridge", commands.installed_notify_path()):
        escaped = block.text.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped in page
        assert f'data-copy-target="command-{block.variant}-{block.target}"' in page
    assert "https://xmonbridge.example.com/bridge/api/v1/alerts" in page
    assert "$USER9$=&lt;API トークン&gt;" in page and 'data-copy-target="resource-line"' in page
    assert 'href="/admin/api-tokens/"' in page
    assert token not in page


def test_without_an_x_mon_url_the_page_says_so(client: FlaskClient, logged_in: AuthActions, settings: dict[str, Any]) -> None:
    page = client.get(f"/admin/twilio/sms-settings/{settings['sms'].id}").get_data(as_text=True)
    assert "X-MON URL が設定されていないため、エスカレーション設定用コマンドを表示できません。" in page
    assert "define command" not in page
    assert 'href="/admin/xmon-settings/"' in page


def test_the_token_never_reaches_curls_command_line(tmp_path: Path) -> None:
    """`ps` shows a process's arguments: the header goes to curl on its standard input."""
    block = [b for b in commands.blocks("sms", 3, "SMS連絡", "https://x.example") if b.variant == "curl"][0]
    line = nagios_commands.substitute(nagios_commands.command_line(block.text), {"USER9": "xmb_SECRET"})
    fake_curl = tmp_path / "curl"
    fake_curl.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$0.args"\ncat > "$0.stdin"\n')
    fake_curl.chmod(0o755)
    subprocess.run(["/bin/sh", "-c", line.replace("/usr/bin/curl", str(fake_curl))], check=True, timeout=30)
    assert "xmb_SECRET" not in (tmp_path / "curl.args").read_text()
    assert (tmp_path / "curl.stdin").read_text() == "Authorization: Bearer xmb_SECRET\n"

"""`xmonbridge notify`: options, NAGIOS_* variables, URL and token sources, retries, one-line errors,
and a start that loads neither Flask nor SQLAlchemy nor the Twilio SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from tests.app_server import serving
from tests.factories import make_recipient, make_sms_setting, make_twilio_account, make_user
from xmonbridge import notify_command
from xmonbridge.api_tokens import tokens
from xmonbridge.extensions import db
from xmonbridge.models import AlertRecord

XMONBRIDGE = str(Path(sys.executable).parent / "xmonbridge")
HEAVY = ("flask", "sqlalchemy", "twilio", "werkzeug", "jinja2", "click", "flask_sqlalchemy")


@pytest.fixture
def api(app: Flask) -> Iterator[dict[str, Any]]:
    """The test app served over HTTP, an SMS setting and a valid token."""
    admin = make_user(login="admin", is_admin=True)
    setting = make_sms_setting(make_twilio_account(), [make_recipient()], name="SMS連絡")
    _, token = tokens.create("監視サーバ", admin)
    db.session.commit()
    with serving(app) as base:
        yield {"base": base, "token": token, "setting": setting}


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script, as Nagios runs it (no XMONBRIDGE_* or NAGIOS_* but those given)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("XMONBRIDGE_", "NAGIOS_"))}
    environment.update(env or {}, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return subprocess.run([XMONBRIDGE, "notify", *args], env=environment, capture_output=True, text=True, timeout=60)


def alerts() -> list[AlertRecord]:
    db.session.expire_all()
    return list(db.session.scalars(select(AlertRecord).order_by(AlertRecord.id)))


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("xmonbridge notify: ")
    return lines[0]


# --- against the app ---


def test_options_post_an_alert(api: dict[str, Any]) -> None:
    result = run(
        ["--url", api["base"], "--kind", "sms", "--setting-id", str(api["setting"].id), "--type", "PROBLEM",
         "--host", "web-server01", "--host-address", "192.0.2.10", "--service", "HTTP", "--state", "CRITICAL",
         "--output", "-- Connection refused", "--problem-id", "41", "--last-problem-id", "40", "--time", "1795900000"],
        {"XMONBRIDGE_TOKEN": api["token"]},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    [alert] = alerts()
    assert result.stdout == f"xmonbridge notify: accepted (alert {alert.id})\n"
    assert (alert.setting_name, alert.notification_type, alert.host, alert.host_address, alert.service) == (
        "SMS連絡", "PROBLEM", "web-server01", "192.0.2.10", "HTTP"
    )
    assert (alert.state, alert.output, alert.problem_id, alert.last_problem_id) == ("CRITICAL", "-- Connection refused", "41", "40")
    assert alert.token_name == "監視サーバ" and alert.event_time is not None
    # The same notification again is the first alert (the server's dedupe).
    again = run(
        ["--url", api["base"] + "/api/v1/alerts", "--token", api["token"], "--kind", "sms", "--setting", "SMS連絡",
         "--type", "PROBLEM", "--host", "web-server01", "--service", "HTTP", "--state", "CRITICAL", "--problem-id", "41"]
    )
    assert again.returncode == 0 and f"repeat of alert {alert.id}" in again.stdout


NAGIOS_SERVICE = {
    "NAGIOS_NOTIFICATIONTYPE": "PROBLEM",
    "NAGIOS_HOSTNAME": "db01",
    "NAGIOS_HOSTADDRESS": "192.0.2.20",
    "NAGIOS_SERVICEDESC": "PostgreSQL",
    "NAGIOS_SERVICESTATE": "WARNING",
    "NAGIOS_SERVICEOUTPUT": "slow queries",
    "NAGIOS_SERVICEPROBLEMID": "77",
    "NAGIOS_LASTSERVICEPROBLEMID": "76",
    "NAGIOS_HOSTSTATE": "UP",
    "NAGIOS_HOSTOUTPUT": "PING OK",
    "NAGIOS_HOSTPROBLEMID": "0",
    "NAGIOS_LASTHOSTPROBLEMID": "5",
    "NAGIOS_TIMET": "1795900000",
}


def test_nagios_environment_variables_fill_what_the_options_leave_out(api: dict[str, Any]) -> None:
    server = {"XMONBRIDGE_URL": api["base"], "XMONBRIDGE_TOKEN": api["token"]}
    setting = ["--kind", "sms", "--setting-id", str(api["setting"].id)]
    # A service notification: the service macros.
    assert run(setting, {**server, **NAGIOS_SERVICE}).returncode == 0
    # A host notification: no service, so the host macros.
    host = {**NAGIOS_SERVICE, "NAGIOS_SERVICEDESC": "", "NAGIOS_NOTIFICATIONTYPE": "RECOVERY"}
    assert run(setting, {**server, **host}).returncode == 0
    # An option wins over its variable, even empty ("$SERVICEDESC$" of a host notification).
    result = run([*setting, "--host", "db02", "--service", "", "--state", "DOWN"], {**server, **NAGIOS_SERVICE})
    assert result.returncode == 0, result.stderr
    service, host_alert, option = alerts()
    assert (service.service, service.state, service.output, service.problem_id, service.last_problem_id) == (
        "PostgreSQL", "WARNING", "slow queries", "77", "76"
    )
    assert (service.host, service.host_address, service.notification_type) == ("db01", "192.0.2.20", "PROBLEM")
    assert (host_alert.service, host_alert.state, host_alert.output, host_alert.problem_id, host_alert.last_problem_id) == (
        "", "UP", "PING OK", "0", "5"
    )
    assert host_alert.notification_type == "RECOVERY" and host_alert.correlation_id == "5"
    assert (option.host, option.service, option.state) == ("db02", "", "DOWN")


def test_url_and_token_from_a_private_config_file(api: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "notify.conf"
    config.write_text(f"# xmonbridge\nurl = {api['base']}\ntoken = \"{api['token']}\"\n")
    config.chmod(0o600)
    args = ["--config", str(config), "--kind", "sms", "--setting-id", str(api["setting"].id), "--type", "PROBLEM",
            "--host", "web01", "--state", "DOWN"]
    assert run(args).returncode == 0
    config.chmod(0o400)
    assert run([*args, "--host", "web02"]).returncode == 0
    assert len(alerts()) == 2

    config.chmod(0o644)
    result = run([*args, "--host", "web03"])
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert f"refusing config file {config}" in line and "0644" in line and "chmod 600" in line
    assert len(alerts()) == 2

    missing = run(["--config", str(tmp_path / "none.conf"), *args[2:]])
    assert missing.returncode == 2 and "does not exist" in one_line(missing.stderr)
    config.write_text("tokn = x\n")
    config.chmod(0o600)
    assert "line 1" in one_line(run(args).stderr)


def test_a_refused_alert_exits_non_zero_with_one_line(api: dict[str, Any]) -> None:
    server = {"XMONBRIDGE_URL": api["base"], "XMONBRIDGE_TOKEN": api["token"]}
    result = run(["--kind", "sms", "--setting-id", str(api["setting"].id), "--type", "OOPS", "--host", "web01", "--state", "SLEEPY"], server)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("xmonbridge notify: refused (400): ")
    assert "type: 通知の種類は" in line and "state: ホストの状態は" in line

    unknown = run(["--kind", "sms", "--setting-id", "999", "--type", "PROBLEM", "--host", "web01", "--state", "DOWN"], server)
    assert unknown.returncode == 1 and "refused (404)" in one_line(unknown.stderr)

    wrong = run(["--kind", "sms", "--setting-id", "1"], {**server, "XMONBRIDGE_TOKEN": "xmb_wrong"})
    assert wrong.returncode == 1
    assert "refused (401): API トークンがないか、正しくないか、無効化されています。" in one_line(wrong.stderr)
    assert alerts() == []


def test_usage_errors_are_one_line() -> None:
    # The default /etc/xmonbridge/notify.conf is read only when it exists (not on a test machine).
    no_url = run(["--kind", "sms"], {"XMONBRIDGE_TOKEN": "x"})
    assert no_url.returncode == 2 and "no URL" in one_line(no_url.stderr)
    no_token = run(["--url", "http://127.0.0.1:9"])
    assert no_token.returncode == 2 and "no API token" in one_line(no_token.stderr)
    bad_option = run(["--colour", "red"], {"XMONBRIDGE_TOKEN": "x"})
    assert bad_option.returncode == 2 and "unrecognized arguments" in one_line(bad_option.stderr)
    no_wait = run(["--url", "http://127.0.0.1:9", "--timeout", "0"], {"XMONBRIDGE_TOKEN": "x"})
    assert no_wait.returncode == 2 and "--timeout" in one_line(no_wait.stderr)
    ftp = run(["--url", "ftp://example.com"], {"XMONBRIDGE_TOKEN": "x"})
    assert ftp.returncode == 2 and "http://" in one_line(ftp.stderr)


# --- retries, against a tiny server ---


class Scripted:
    """An HTTP server on 127.0.0.1 answering POSTs with scripted (status, body) pairs."""

    def __init__(self, answers: list[tuple[int, dict[str, Any]]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "json": json.loads(body)})
                status, payload = outer.answers[min(len(outer.requests), len(outer.answers)) - 1]
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


UNAVAILABLE = (503, {"errors": [{"field": "", "message": "メンテナンス中です。"}]})
ARGS = ["--kind", "sms", "--setting-id", "1", "--type", "PROBLEM", "--host", "web01", "--state", "DOWN"]


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify_command, "RETRY_DELAYS", (0.01, 0.01))


def test_a_503_is_tried_again_until_it_is_accepted(quick_retries: None, capsys: pytest.CaptureFixture[str]) -> None:
    with Scripted([UNAVAILABLE, (202, {"id": 7, "duplicate": False})]) as server:
        code = notify_command.main(["--url", server.base, *ARGS], {"XMONBRIDGE_TOKEN": "xmb_t"})
    assert code == 0
    assert len(server.requests) == 2
    assert {r["path"] for r in server.requests} == {"/api/v1/alerts"}
    assert {r["auth"] for r in server.requests} == {"Bearer xmb_t"}
    assert server.requests[0]["json"] == {"kind": "sms", "setting_id": "1", "type": "PROBLEM", "host": "web01", "state": "DOWN"}
    assert capsys.readouterr().err == ""


def test_it_gives_up_after_three_tries_with_one_line(quick_retries: None, capsys: pytest.CaptureFixture[str]) -> None:
    with Scripted([UNAVAILABLE]) as server:
        code = notify_command.main(["--url", server.base, *ARGS], {"XMONBRIDGE_TOKEN": "xmb_t"})
    assert code == 1 and len(server.requests) == 3
    line = one_line(capsys.readouterr().err)
    assert line == "xmonbridge notify: server error 503: メンテナンス中です。 (gave up after 3 tries)"


@pytest.mark.parametrize("status", [400, 401, 404, 413, 429])
def test_a_4xx_is_not_tried_again(quick_retries: None, capsys: pytest.CaptureFixture[str], status: int) -> None:
    with Scripted([(status, {"errors": [{"field": "host", "message": "host: だめです。"}]})]) as server:
        code = notify_command.main(["--url", server.base, *ARGS], {"XMONBRIDGE_TOKEN": "xmb_t"})
    assert code == 1 and len(server.requests) == 1
    assert one_line(capsys.readouterr().err) == f"xmonbridge notify: refused ({status}): host: だめです。"


def test_an_unreachable_server_is_tried_three_times(quick_retries: None, capsys: pytest.CaptureFixture[str]) -> None:
    with Scripted([]) as server:
        base = server.base
    code = notify_command.main(["--url", base, *ARGS], {"XMONBRIDGE_TOKEN": "xmb_t"})
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"xmonbridge notify: cannot reach {base}/api/v1/alerts: ") and line.endswith("(gave up after 3 tries)")


def test_the_console_script_retries_a_503_within_seconds() -> None:
    """The real command, with its real pauses between tries (about 3 seconds)."""
    with Scripted([UNAVAILABLE, UNAVAILABLE, (202, {"id": 9, "duplicate": True})]) as server:
        result = run(["--url", server.base, *ARGS], {"XMONBRIDGE_TOKEN": "xmb_t"})
    assert result.returncode == 0, result.stderr
    assert len(server.requests) == 3
    assert result.stdout == "xmonbridge notify: accepted (repeat of alert 9)\n"


def test_a_redirect_is_reported_not_followed(capsys: pytest.CaptureFixture[str]) -> None:
    with Scripted([(308, {})]) as server:
        code = notify_command.main(["--url", server.base, *ARGS], {"XMONBRIDGE_TOKEN": "xmb_t"})
    assert code == 1 and len(server.requests) == 1
    assert "answered 308" in one_line(capsys.readouterr().err)


# --- a light start ---


def test_it_imports_neither_flask_nor_sqlalchemy_nor_twilio(api: dict[str, Any]) -> None:
    """The console script's path for `notify`, run to the end against the app, in a fresh interpreter."""
    script = (
        "import json, sys\n"
        "from xmonbridge import entry\n"
        f"sys.argv = ['xmonbridge', 'notify', '--url', {api['base']!r}, '--kind', 'sms', '--setting-id', "
        f"'{api['setting'].id}', '--type', 'PROBLEM', '--host', 'web01', '--state', 'DOWN']\n"
        "try:\n"
        "    entry.main()\n"
        "except SystemExit as done:\n"
        "    code = done.code\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMONBRIDGE_")}
    env.update(XMONBRIDGE_TOKEN=api["token"], NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome == {"code": 0, "heavy": []}, result.stderr
    assert len(alerts()) == 1

    # `import xmonbridge` is light too, as python -X importtime shows it.
    timing = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import xmonbridge.entry, xmonbridge.notify_command"],
        capture_output=True, text=True, timeout=60,
    )
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timing.stderr.splitlines() if "|" in line}
    assert "xmonbridge" in imported and not imported & set(HEAVY)


def test_the_console_script_lists_notify_and_still_runs_the_flask_commands() -> None:
    help_text = subprocess.run([XMONBRIDGE, "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "notify" in help_text and "serve" in help_text
    notify_help = subprocess.run([XMONBRIDGE, "notify", "--help"], capture_output=True, text=True, timeout=60)
    assert notify_help.returncode == 0
    assert "--setting-id" in notify_help.stdout and "NAGIOS_" in notify_help.stdout


@pytest.mark.parametrize(
    "extra,environ,expected",
    [
        (["--timeout", "inf"], {"XMONBRIDGE_TOKEN": "xmb_t"}, "--timeout must be at most"),
        ([], {"XMONBRIDGE_TOKEN": "xmb_a\nX: 1"}, "the token holds spaces, control or non-ASCII characters"),
        ([], {"XMONBRIDGE_TOKEN": "xmb_日本"}, "the token holds spaces, control or non-ASCII characters"),
        (["--url", "http://[::1"], {"XMONBRIDGE_TOKEN": "xmb_t"}, "cannot send with this URL or token"),
        (["--url", "http://127.0.0.1:9/日本"], {"XMONBRIDGE_TOKEN": "xmb_t"}, "percent-encode them"),
        (["--url", "http://h/a b"], {"XMONBRIDGE_TOKEN": "xmb_t"}, "percent-encode them"),
        (["--url", "ftp://h/"], {"XMONBRIDGE_TOKEN": "xmb_t"}, "must start with http:// or https://"),
    ],
)
def test_a_url_or_token_no_request_can_carry_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], environ: dict[str, str], expected: str
) -> None:
    argv = [*ARGS, "--url", "http://127.0.0.1:9", *extra]
    assert notify_command.main(argv, environ) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err and "Traceback" not in err


def test_a_config_file_with_a_bom_is_read(api: dict[str, Any], tmp_path: Path) -> None:
    config = tmp_path / "notify.conf"
    config.write_text(f"\ufeffurl = {api['base']}\ntoken = {api['token']}\n", encoding="utf-8")
    config.chmod(0o600)
    args = ["--config", str(config), "--kind", "sms", "--setting-id", str(api["setting"].id), "--type", "PROBLEM",
            "--host", "bom01", "--state", "DOWN"]
    assert run(args).returncode == 0

"""`xmonbridge notify`: light imports, options and NAGIOS_* variables, config file, retries, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from xmonbridge import notify_cli

XMONBRIDGE = str(Path(sys.executable).parent / "xmonbridge")
BASE = ["--kind", "sms", "--setting-id", "3"]
URL = ["--url", "http://127.0.0.1:1", "--token", "t"]


class FakeApi:
    """A tiny alert API on 127.0.0.1 answering scripted (status, body) pairs, then 202."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                api.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "type": self.headers.get("Content-Type"),
                        "form": dict(urllib.parse.parse_qsl(body, keep_blank_values=True)),
                    }
                )
                status, answer = api.answers.pop(0) if api.answers else (202, {"id": len(api.requests), "duplicate": False})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    yield server
    server.close()


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NAGIOS_", "XMONBRIDGE_"))}
    env.update(values)
    return env


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([XMONBRIDGE, "notify", *args], env=env or _env(), capture_output=True, text=True, timeout=60)


def test_imports_stay_light() -> None:
    code = (
        "import sys, xmonbridge, xmonbridge.entry, xmonbridge.notify_cli\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'sqlalchemy', 'twilio', 'werkzeug', 'jinja2'))\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_options() -> None:
    url, token, fields = notify_cli.build(
        [*BASE, "--type", "PROBLEM", "--host", "web01", "--host-address", "192.0.2.1", "--service", "HTTP",
         "--state", "CRITICAL", "--output", "Connection refused; port 80", "--problem-id", "12",
         "--last-problem-id", "0", "--time", "1700000000", "--url", "https://mon.example.com/xmb/", "--token", "tok"],
        {},
    )
    assert url == "https://mon.example.com/xmb/api/v1/alerts" and token == "tok"
    assert fields == {
        "kind": "sms", "setting_id": "3", "type": "PROBLEM", "host": "web01", "host_address": "192.0.2.1",
        "service": "HTTP", "state": "CRITICAL", "output": "Connection refused; port 80", "problem_id": "12",
        "last_problem_id": "0", "time": "1700000000",
    }


def test_setting_by_name_and_full_url() -> None:
    url, _token, fields = notify_cli.build(
        ["--kind", "simple_call", "--setting", "夜間当番", "--url", "http://h:8000/api/v1/alerts", "--token", "t"], {}
    )
    assert url == "http://h:8000/api/v1/alerts"
    assert fields == {"kind": "simple_call", "setting": "夜間当番"}


NAGIOS = {
    "NAGIOS_NOTIFICATIONTYPE": "PROBLEM",
    "NAGIOS_HOSTNAME": "web01",
    "NAGIOS_HOSTADDRESS": "192.0.2.1",
    "NAGIOS_HOSTSTATE": "UP",
    "NAGIOS_HOSTOUTPUT": "PING OK",
    "NAGIOS_HOSTPROBLEMID": "0",
    "NAGIOS_LASTHOSTPROBLEMID": "5",
    "NAGIOS_TIMET": "1700000000",
}


def test_service_notification_from_environment() -> None:
    env = {**NAGIOS, "NAGIOS_SERVICEDESC": "HTTP", "NAGIOS_SERVICESTATE": "CRITICAL",
           "NAGIOS_SERVICEOUTPUT": "refused", "NAGIOS_SERVICEPROBLEMID": "42", "NAGIOS_LASTSERVICEPROBLEMID": "41",
           "XMONBRIDGE_URL": "http://127.0.0.1:8000", "XMONBRIDGE_TOKEN": "envtok"}
    url, token, fields = notify_cli.build(BASE, env)
    assert (url, token) == ("http://127.0.0.1:8000/api/v1/alerts", "envtok")
    assert fields == {"kind": "sms", "setting_id": "3", "type": "PROBLEM", "host": "web01", "host_address": "192.0.2.1",
                      "service": "HTTP", "state": "CRITICAL", "output": "refused", "problem_id": "42",
                      "last_problem_id": "41", "time": "1700000000"}


def test_host_notification_from_environment() -> None:
    env = {**NAGIOS, "NAGIOS_NOTIFICATIONTYPE": "RECOVERY", "NAGIOS_SERVICEDESC": "", "NAGIOS_SERVICESTATE": "OK"}
    _url, _token, fields = notify_cli.build([*BASE, *URL], env)
    assert "service" not in fields
    assert fields["type"] == "RECOVERY" and fields["state"] == "UP" and fields["output"] == "PING OK"
    assert fields["problem_id"] == "0" and fields["last_problem_id"] == "5"


def test_options_win_over_environment_and_empty_options_fall_back() -> None:
    _url, _token, fields = notify_cli.build([*BASE, *URL, "--host", "db01", "--service", ""], {**NAGIOS})
    assert fields["host"] == "db01" and "service" not in fields and fields["state"] == "UP"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--setting-id", "1", *URL], "--kind is required"),
        (["--kind", "sms", *URL], "--setting-id or --setting is required"),
        ([*BASE, "--url", "ftp://x", "--token", "t"], "is not an http:// or https:// URL"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(notify_cli.UsageError, match=message):
        notify_cli.build(args, {})


def _config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_config_file(tmp_path: Path) -> None:
    conf = _config(tmp_path / "notify.conf", "# xmonbridge\nurl = http://127.0.0.1:8000\ntoken = \"xmb_secret\"\n")
    url, token, _fields = notify_cli.build([*BASE, "--config", str(conf)], {})
    assert (url, token) == ("http://127.0.0.1:8000/api/v1/alerts", "xmb_secret")
    # An option or the environment wins over the file.
    assert notify_cli.build([*BASE, "--config", str(conf)], {"XMONBRIDGE_TOKEN": "e"})[1] == "e"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_config_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    conf = _config(tmp_path / "notify.conf", "url = http://127.0.0.1:8000\ntoken = x\n", mode)
    result = _run(*BASE, "--config", str(conf))
    assert result.returncode == 2
    assert result.stderr == f"xmonbridge notify: config file {conf} is open to group or others (mode {mode:04o}); chmod 600 {conf}\n"


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(notify_cli.UsageError, match="does not exist"):
        notify_cli.build([*BASE, "--config", str(tmp_path / "missing")], {})
    conf = _config(tmp_path / "bad.conf", "url http://x\n")
    with pytest.raises(notify_cli.UsageError, match="line 1: expected"):
        notify_cli.build([*BASE, "--config", str(conf)], {})
    empty = _config(tmp_path / "empty.conf", "url = http://127.0.0.1:8000\n")
    with pytest.raises(notify_cli.UsageError, match="no API token"):
        notify_cli.build([*BASE, "--config", str(empty)], {})


def test_posts_form_encoded_and_exits_zero(api: FakeApi, tmp_path: Path) -> None:
    conf = _config(tmp_path / "notify.conf", f"url = {api.url}/\ntoken = xmb_abc\n")
    env = _env(NAGIOS_NOTIFICATIONTYPE="PROBLEM", NAGIOS_HOSTNAME="web01", NAGIOS_SERVICEDESC="HTTP",
               NAGIOS_SERVICESTATE="CRITICAL", NAGIOS_SERVICEOUTPUT="応答なし; 503")
    result = _run(*BASE, "--config", str(conf), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert api.requests == [
        {
            "path": "/api/v1/alerts",
            "auth": "Bearer xmb_abc",
            "type": "application/x-www-form-urlencoded",
            "form": {"kind": "sms", "setting_id": "3", "type": "PROBLEM", "host": "web01", "service": "HTTP",
                     "state": "CRITICAL", "output": "応答なし; 503"},
        }
    ]


def test_retries_on_503_then_succeeds(api: FakeApi) -> None:
    api.answers = [(503, {"errors": ["busy"]}), (502, {})]
    pauses: list[float] = []
    answer = notify_cli.post(f"{api.url}/api/v1/alerts", "t", {"kind": "sms"}, sleep=pauses.append)
    assert json.loads(answer) == {"id": 3, "duplicate": False}
    assert len(api.requests) == 3 and len(pauses) == 2 and sum(pauses) <= 5


def test_retries_on_503_through_the_command(api: FakeApi) -> None:
    api.answers = [(503, {"errors": ["busy"]})]
    result = _run(*BASE, "--url", api.url, "--token", "t", "--host", "h", "--type", "PROBLEM")
    assert result.returncode == 0, result.stderr
    assert len(api.requests) == 2


def test_gives_up_after_three_5xx(api: FakeApi) -> None:
    api.answers = [(500, {"errors": ["x"]})] * 3
    with pytest.raises(notify_cli.Failed) as failure:
        notify_cli.post(f"{api.url}/api/v1/alerts", "t", {}, sleep=lambda _s: None)
    assert str(failure.value) == f"{api.url}/api/v1/alerts answered 500: x (gave up after 3 tries)"
    assert len(api.requests) == 3


def test_connection_refused_is_retried() -> None:
    pauses: list[float] = []
    with pytest.raises(notify_cli.Failed, match=r"cannot reach http://127.0.0.1:1/api/v1/alerts: .*gave up after 3 tries"):
        notify_cli.post("http://127.0.0.1:1/api/v1/alerts", "t", {}, sleep=pauses.append)
    assert len(pauses) == 2


@pytest.mark.parametrize(
    "status,body,line",
    [
        (401, {"errors": ["API トークンが正しくありません。"]}, "answered 401: API トークンが正しくありません。"),
        (400, {"errors": ["type: PROBLEM, RECOVERY, … のいずれかを指定してください。", "host: 必須です。"]},
         "answered 400: type: PROBLEM, RECOVERY, … のいずれかを指定してください。"),
        (404, {"error": "setting not found"}, "answered 404: setting not found"),
    ],
)
def test_refusals_are_one_line_and_not_retried(api: FakeApi, status: int, body: dict[str, Any], line: str) -> None:
    api.answers = [(status, body)]
    result = _run(*BASE, "--url", api.url, "--token", "t")
    assert result.returncode == 1
    assert result.stderr == f"xmonbridge notify: {api.url}/api/v1/alerts {line}\n"
    assert len(api.requests) == 1


def test_missing_url_and_token_say_where_to_put_them(tmp_path: Path) -> None:
    result = _run(*BASE, "--config", str(_config(tmp_path / "c", "")))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no URL: give --url, XMONBRIDGE_URL" in result.stderr

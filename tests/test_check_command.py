"""`xmonbridge check`, the Nagios plugin, against a real `xmonbridge serve` and a closed port."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from xmonbridge import check_command
from xmonbridge.dispatch.lease import Lease
from xmonbridge.models import utcnow

from tests.factories import set_xmon_url
from tests.real_server import RealServer, cli_path, free_port, wait_for

OK_LINE = re.compile(
    r"^XMONBRIDGE OK - dispatcher \S+ renewed \d+s ago, nothing waiting"
    r" \| lease_age=\d+s;30;60;0 oldest_waiting=0s;120;600;0 waiting=0;;;0$"
)


def check(*args: str) -> tuple[int, str]:
    result = subprocess.run(
        [cli_path(), "check", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return result.returncode, lines[0]


def health_status(base: str) -> int:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RealServer]:
    server = RealServer(tmp_path, mode="simulate", DISPATCH_LEASE_SECONDS=3)
    with server.app_context():
        set_xmon_url("https://xmon.example.jp/xmonbridge")
    yield server
    server.stop()


def test_ok_then_critical_when_the_dispatcher_stops(server: RealServer) -> None:
    server.start()
    wait_for(lambda: health_status(server.base) == 200, 20, "the dispatcher to take the lease")

    code, line = check("--url", server.base)
    assert code == 0, line
    assert OK_LINE.match(line), line
    # The URL may name /healthz itself.
    assert check("--url", f"{server.base}/healthz/")[0] == 0

    # A clean stop gives the lease up; a server without a dispatcher leaves it stale.
    server.terminate()
    server.env["XMONBRIDGE_DISPATCHER_ENABLED"] = "false"
    server.start()
    code, line = check("--url", server.base)
    assert code == 2, line
    assert line.startswith("XMONBRIDGE CRITICAL - dispatcher lease is stale (last renewed "), line
    assert " | lease_age=" in line


def test_critical_without_a_dispatcher_and_with_a_stale_lease(server: RealServer) -> None:
    server.env["XMONBRIDGE_DISPATCHER_ENABLED"] = "false"
    server.start()
    code, line = check("--url", server.base)
    assert code == 2, line
    assert line == (
        "XMONBRIDGE CRITICAL - no dispatcher has ever held the lease | oldest_waiting=0s;120;600;0 waiting=0;;;0"
    )

    # A leader on another box that stopped renewing two minutes ago.
    with server.app_context():
        Lease("box9:77:ff", 3).acquire_or_renew(utcnow() - timedelta(seconds=120))
    code, line = check("--url", server.base)
    assert code == 2, line
    assert re.match(r"^XMONBRIDGE CRITICAL - dispatcher lease is stale \(last renewed 12\ds ago\) \| lease_age=12\ds;30;60;0 ", line), line


def test_critical_when_nothing_answers() -> None:
    port = free_port()
    code, line = check("--url", f"http://127.0.0.1:{port}", "--timeout", "2")
    assert code == 2
    assert line == f"XMONBRIDGE CRITICAL - http://127.0.0.1:{port}/healthz does not answer: [Errno 111] Connection refused"


@pytest.mark.parametrize(
    "args",
    [
        ("--lease-warning", "soon"),
        ("--lease-warning", "90", "--lease-critical", "60"),
        ("--url", "127.0.0.1:8000"),
        ("--timeout", "0"),
        ("--no-such-option",),
    ],
)
def test_unknown_for_bad_arguments(args: tuple[str, ...]) -> None:
    code, line = check(*args)
    assert code == 3
    assert line.startswith("XMONBRIDGE UNKNOWN - bad arguments: "), line


def _args(**overrides: int) -> argparse.Namespace:
    values = {"lease_warning": 30, "lease_critical": 60, "waiting_warning": 120, "waiting_critical": 600}
    values.update(overrides)
    return argparse.Namespace(**values)


def _report(**parts: object) -> dict[str, object]:
    body: dict[str, object] = {
        "status": "ok",
        "reasons": [],
        "database": True,
        "dispatcher": {"holder": "box1:1:ab", "heartbeat_age": 2, "running": True},
        "oldest_waiting": {"age": 0, "alert_id": None, "count": 0},
        "twilio": {"last_error": None},
        "xmon_url_set": True,
    }
    body.update(parts)
    return body


def test_thresholds_raise_the_state() -> None:
    waiting = {"age": 200, "alert_id": 7, "count": 3}
    state, summary, perf = check_command.evaluate(_report(oldest_waiting=waiting), _args())
    assert (state, summary) == (1, "oldest delivery waiting 200s")
    assert perf == "lease_age=2s;30;60;0 oldest_waiting=200s;120;600;0 waiting=3;;;0"
    state, summary, _ = check_command.evaluate(_report(oldest_waiting=waiting), _args(waiting_critical=150))
    assert state == 2
    lease = {"holder": "box1:1:ab", "heartbeat_age": 45, "running": True}
    state, summary, _ = check_command.evaluate(_report(dispatcher=lease), _args())
    assert (state, summary) == (1, "dispatcher lease last renewed 45s ago")
    # A wait the server already names is said once.
    server = "3 delivery(ies) waiting, oldest for 200s"
    state, summary, _ = check_command.evaluate(_report(status="warning", reasons=[server], oldest_waiting=waiting), _args())
    assert (state, summary) == (1, server)
    state, summary, _ = check_command.evaluate(
        _report(status="warning", reasons=[server], oldest_waiting=waiting), _args(waiting_critical=150)
    )
    assert (state, summary) == (2, server)
    # The server's own warnings come through, one line, no "|".
    state, summary, _ = check_command.evaluate(_report(status="warning", reasons=["X-MON URL is not set |\nx"]), _args())
    assert (state, summary) == (1, "X-MON URL is not set / x")


def test_unknown_for_an_answer_that_is_not_a_health_report(tmp_path: Path) -> None:
    for body in ([], {"status": "fine"}, _report(dispatcher={"heartbeat_age": "abc"})):
        with pytest.raises(check_command._Unknown):
            check_command.evaluate(json.loads(json.dumps(body)), _args())

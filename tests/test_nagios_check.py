"""A real Nagios Core 4 runs `xmonbridge check` as fixture-svc's active check (the README's service)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.factories import set_xmon_url
from tests.nagios_fixture import HOST, SERVICE, nagios  # noqa: F401 - the fixture
from tests.real_server import RealServer, cli_path


def _wait_state(monitor: Any, state: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    output = ""
    while time.monotonic() < deadline:
        if monitor.svc_status("current_state") == state and monitor.svc_status("has_been_checked") == "1":
            return monitor.svc_status("plugin_output")
        output = monitor.svc_status("plugin_output")
        time.sleep(0.3)
    raise AssertionError(f"fixture-svc never reached state {state}; last output {output!r}\n{monitor.log()[-2000:]}")


def test_nagios_pages_when_xmonbridge_stops(nagios: Any, tmp_path: Path) -> None:  # noqa: F811
    server = RealServer(tmp_path, mode="simulate", DISPATCH_LEASE_SECONDS=3)
    with server.app_context():
        set_xmon_url("https://xmon.example.jp/xmonbridge")
    server.start()
    try:
        monitor = nagios(svc_check=f"{cli_path()} check --url {server.base} --timeout 5")
        output = _wait_state(monitor, "0")
        assert output.startswith("XMONBRIDGE OK - dispatcher "), output
        perfdata = monitor.svc_status("performance_data")
        assert perfdata.startswith("lease_age=") and "oldest_waiting=0s;120;600;0" in perfdata, perfdata

        server.terminate()
        output = _wait_state(monitor, "2")
        assert output.startswith(f"XMONBRIDGE CRITICAL - {server.base}/healthz does not answer"), output
        problem = monitor.wait_notify("PROBLEM", HOST, SERVICE)
        assert problem["SERVICESTATE"] == "CRITICAL"
    finally:
        server.stop()

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

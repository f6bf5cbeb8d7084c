"""A real Nagios Core 4 for tests, driven through tests/nagios/nagios_fixture.sh.

    def test_x(nagios):
        monitor = nagios(svc_cmd='/path/notify --host "$HOSTNAME$" …', resource_lines=["$USER9$=token"])
        monitor.svc_state(2)                       # fixture-host/fixture-svc goes CRITICAL
        monitor.wait_notify("PROBLEM", "fixture-host", "fixture-svc")
        monitor.stop()                             # also done at teardown

The script installs the Debian package nagios4-core when it is missing (as root), never starts
the system's own Nagios, and runs notification commands as NF_NAGIOS_USER (root here, because
pytest's tmp folders and the virtualenv are not readable by the nagios user).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "nagios" / "nagios_fixture.sh"
HOST = "fixture-host"
SERVICE = "fixture-svc"
HOST2 = "fixture-host2"


class Nagios:
    """One running Nagios in its own folder."""

    def __init__(
        self,
        folder: Path,
        svc_cmd: str = "",
        host_cmd: str = "",
        resource_lines: list[str] | None = None,
        svc_check: str = "",
    ) -> None:
        self.folder = folder
        env = dict(os.environ, NF_NAGIOS_USER="root", NF_INTERVAL="1")
        if svc_check:
            env["NF_SVC_CHECK_CMD"] = svc_check
        if svc_cmd:
            env["NF_SVC_NOTIFY_CMD"] = svc_cmd
        if host_cmd:
            env["NF_HOST_NOTIFY_CMD"] = host_cmd
        if resource_lines:
            env["NF_RESOURCE_LINES"] = "\n".join(resource_lines)
        self.env = env
        self.running = False
        self.run(timeout=600)  # the first start may install nagios4-core
        self.running = True

    def run(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            ["bash", str(SCRIPT), str(self.folder), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            log = self.folder / "nagios.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"nagios_fixture.sh {' '.join(args)} exited {result.returncode}: {result.stderr}\n{tail}")
        return result.stdout

    def svc_state(self, code: int) -> None:
        self.run("svc-state", str(code))

    def host_state(self, code: int) -> None:
        self.run("host-state", str(code))

    def wait_notify(self, kind: str, host: str = HOST, service: str | None = SERVICE, timeout: int = 60) -> dict[str, str]:
        """The fixture's own record of a notification Nagios sent: its macros, key=value."""
        line = self.run("wait-notify", kind, host, service or "-", str(timeout), timeout=timeout + 10)
        fields = {}
        for part in line.strip().split("\t"):
            key, _, value = part.partition("=")
            fields[key] = value
        return fields

    def wait_ack(self, kind: str, timeout: int = 30) -> str:
        return self.run("wait-ack", kind, *([HOST, SERVICE] if kind == "svc" else [HOST2]), str(timeout), timeout=timeout + 10)

    def svc_status(self, field: str) -> str:
        """A field of fixture-svc's entry in status.dat (current_state, plugin_output, …)."""
        return self.run("status-field", "servicestatus", HOST, SERVICE, field).strip()

    def log(self) -> str:
        path = self.folder / "nagios.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.run("stop")


@pytest.fixture
def nagios(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Nagios]]:
    """A factory starting a real Nagios with the given notification commands; stopped at teardown."""
    started: list[Nagios] = []
    if not Path("/usr/sbin/nagios4").exists() and os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("nagios4-core is not installed and the tests do not run as root")
        pytest.skip("nagios4-core is not installed (run scripts/test.sh as root to install it)")

    def start(**kwargs: object) -> Nagios:
        monitor = Nagios(tmp_path_factory.mktemp("nagios"), **kwargs)  # type: ignore[arg-type]
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        monitor.stop()

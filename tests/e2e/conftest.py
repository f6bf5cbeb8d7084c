"""End-to-end fixtures: the real `xmonbridge serve` and a headless Chromium driven by Playwright.

Self-contained on purpose: nothing here uses tests/conftest.py (only the fake Twilio of
tests/fake_twilio.py). Servers are started the way the README does it (init, create-user,
serve), each in a fresh instance folder:

* `server`: TWILIO_MODE=simulate, users admin (管理者 + 承認権限) and operator (管理者 only);
* `live_server`: TWILIO_MODE=live with TWILIO_API_BASE pointing at the session's fake Twilio
  (`fake_twilio`), the same two users plus notification targets with phone numbers;
* `quickstart_server`: another simulate server, for the quick start's flow, so that it does not
  change what the §2–§4 walkthrough expects of `server`.

The browser is Debian's Chromium (never `playwright install`), and every request that does not
go to 127.0.0.1 is aborted, so nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Route, sync_playwright

from tests.fake_twilio import FakeTwilio

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# Users created with `xmonbridge create-user`: an approver, and an admin without 承認権限.
CREDENTIALS = {
    "admin": "admin-e2e-pass-1",
    "operator": "operator-e2e-pass-2",
}
LOGIN_USERS = (
    ["create-user", "admin", "--password", CREDENTIALS["admin"], "--admin", "--approver"],
    ["create-user", "operator", "--password", CREDENTIALS["operator"], "--admin"],
)
# Notification targets (they cannot log in) of `live_server` and `quickstart_server`, as
# §3 would create them; login -> (表示名, 連絡先電話番号).
PHONE_USERS = {
    "sato": ("佐藤 翔太", "+81-90-0123-0001"),
    "suzuki": ("鈴木 花子", "+81-90-0123-0002"),
}

SERVER_START_TIMEOUT = 30.0
DEFAULT_TIMEOUT_MS = 10_000

# Server name -> its output file / how it ended, when it did not end well.
_SERVER_LOGS = pytest.StashKey[dict[str, Path]]()
_SERVER_CRASHED = pytest.StashKey[dict[str, str]]()
_SCREENSHOTS = pytest.StashKey[Path]()


def _cli() -> str:
    """The `xmonbridge` console script of the virtualenv running pytest."""
    script = Path(sys.executable).parent / "xmonbridge"
    if not script.exists():
        pytest.fail(f"console script not found: {script} (install the package into this venv)")
    return str(script)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(instance: Path, mode: str = "simulate", api_base: str | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Outside settings must not leak into the app (XMONBRIDGE_* become config keys).
        if not k.startswith("XMONBRIDGE_") and k not in ("DATABASE_URL", "TWILIO_API_BASE", "TWILIO_MODE")
    }
    env.update(XMONBRIDGE_INSTANCE=str(instance), TWILIO_MODE=mode, PYTHONUNBUFFERED="1")
    if api_base is not None:
        env["TWILIO_API_BASE"] = api_base
    # gunicorn >= 25 opens a control socket in $XDG_RUNTIME_DIR or ~/.gunicorn/, shared by
    # every gunicorn of the user; keep ours next to the instance folder.
    env["XDG_RUNTIME_DIR"] = str(instance.parent)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _run_cli(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(
        [_cli(), *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        pytest.fail(
            f"`xmonbridge {' '.join(args)}` exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result.stdout


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Attach the servers' output to the report of every failing e2e test."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for name, log in item.config.stash.get(_SERVER_LOGS, {}).items():
        if log.exists():
            report.sections.append((f"xmonbridge serve output ({name})", log.read_text(errors="replace")[-20_000:]))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say where the screenshots are; show a server's output if it died (failing tests carry it)."""
    folder = config.stash.get(_SCREENSHOTS, None)
    if folder is not None:
        count = len(list(folder.glob("*.png")))
        terminalreporter.write_line(f"e2e screenshots ({count}): {folder}")
    logs = config.stash.get(_SERVER_LOGS, {})
    for name, crashed in config.stash.get(_SERVER_CRASHED, {}).items():
        log = logs.get(name)
        if log is not None and log.exists():
            terminalreporter.section(f"xmonbridge serve output ({name}){crashed}")
            terminalreporter.write_line(log.read_text(errors="replace")[-20_000:])


@pytest.fixture(scope="session")
def credentials() -> dict[str, str]:
    """Login name -> password of the users the `server` fixture creates."""
    return dict(CREDENTIALS)


@contextlib.contextmanager
def running_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    *,
    mode: str = "simulate",
    api_base: str | None = None,
    phone_users: bool = False,
    workers: int = 1,
) -> Iterator[str]:
    """Start one app (init, create-user, serve) in a fresh instance; yield its base URL.

    The users are those of CREDENTIALS, plus those of PHONE_USERS when `phone_users`; the
    server is stopped when the block ends. `name` labels its folder and output in reports;
    the instance folder is `<its folder>/instance`, next to the output `serve.log`.
    """
    root = tmp_path_factory.mktemp(f"xmonbridge-{name}")
    instance = root / "instance"
    env = _server_env(instance, mode, api_base)
    _run_cli(["init"], env)
    for args in LOGIN_USERS:
        _run_cli(args, env)
    if phone_users:
        for login, (display_name, number) in PHONE_USERS.items():
            _run_cli(["create-user", login, "--name", display_name, "--phone", number, "--no-login"], env)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = root / "serve.log"
    request.config.stash.setdefault(_SERVER_LOGS, {})[name] = log_path
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [_cli(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_until_up(proc, f"{base}/login", log_path)
        print(f"xmonbridge ({name}, TWILIO_MODE={mode}) serving {base} from {instance}")
        yield base
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.returncode not in (0, -15):
            request.config.stash.setdefault(_SERVER_CRASHED, {})[name] = f" (exited {proc.returncode})"


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app in simulate mode (users admin and operator); yields its base URL."""
    with running_server(request, tmp_path_factory, "simulate") as base:
        yield base


@dataclass(frozen=True)
class ParallelServer:
    """A server with two gunicorn workers, where requests really run at the same time."""

    base: str
    instance: Path
    log: Path


@pytest.fixture(scope="session")
def parallel_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ParallelServer]:
    """The app in simulate mode served by `--workers 2`, as in production (users admin and operator)."""
    with running_server(request, tmp_path_factory, "parallel", workers=2) as base:
        log = request.config.stash[_SERVER_LOGS]["parallel"]
        yield ParallelServer(base, log.parent / "instance", log)


@pytest.fixture(scope="session")
def quickstart_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another app in simulate mode, as the quick start runs it, with PHONE_USERS too."""
    with running_server(request, tmp_path_factory, "quickstart", phone_users=True) as base:
        yield base


@pytest.fixture
def fake_twilio(fake_twilio_server: FakeTwilio) -> Iterator[FakeTwilio]:
    """The run's fake Twilio (tests/conftest.py), its records cleared but its numbers kept for
    the live server; the test fails on any invalid request."""
    fake_twilio_server.clear()
    yield fake_twilio_server
    fake_twilio_server.assert_no_violations()


@pytest.fixture(scope="session")
def live_server_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_twilio_server: FakeTwilio
) -> Iterator[str]:
    """The app in live mode against the fake Twilio, with PHONE_USERS; yields its base URL."""
    fake_twilio_server.reset()  # default numbers, whatever tests ran before
    with running_server(
        request, tmp_path_factory, "live", mode="live", api_base=fake_twilio_server.base_url, phone_users=True
    ) as base:
        yield base


@pytest.fixture
def live_server(live_server_session: str, fake_twilio: FakeTwilio) -> str:
    """Base URL of the live-mode app; using it checks the fake's violations after the test."""
    return live_server_session


def _wait_until_up(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    # No proxy for the readiness probe, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"xmonbridge serve exited {proc.returncode} before answering\n"
                + log_path.read_text(errors="replace")
            )
        try:
            with opener.open(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last_error = exc
        time.sleep(0.1)
    proc.terminate()
    proc.wait(timeout=10)
    pytest.fail(
        f"xmonbridge serve did not answer {url} within {SERVER_START_TIMEOUT}s ({last_error})\n"
        + log_path.read_text(errors="replace")
    )


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    """The Playwright driver, started once."""
    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    """Debian's headless Chromium, launched once per session."""
    instance = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="session")
def screenshot_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots of every screen go; the folder is printed at the end."""
    folder = tmp_path_factory.mktemp("screenshots")
    request.config.stash[_SCREENSHOTS] = folder
    print(f"screenshots in {folder}")
    return folder


@pytest.fixture(scope="session")
def shot(screenshot_dir: Path) -> Callable[[Page, str], Path]:
    """shot(page, "name") saves a full-page screenshot as NN_name.png and returns its path."""
    counter = itertools.count(1)

    def take(page: Page, name: str) -> Path:
        path = screenshot_dir / f"{next(counter):02d}_{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


class BrowserProblems:
    """What the browser complained about during one test."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.blocked: list[str] = []

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(f"{page.url}: {error}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        # A Content-Security-Policy violation is an error, or a warning for report-only rules.
        if message.type == "error" or "Content Security Policy" in message.text:
            self.console_errors.append(f"{message.location.get('url', '')}: {message.text}")

    def report(self) -> str:
        lines = []
        for title, items in (
            ("console errors", self.console_errors),
            ("page errors", self.page_errors),
            ("requests blocked (not to 127.0.0.1)", self.blocked),
        ):
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  {item}" for item in items)
        return "\n".join(lines)


@pytest.fixture
def context(browser: Browser, server: str) -> Iterator[BrowserContext]:
    """A fresh browser profile per test (ja-JP), with everything but 127.0.0.1 blocked."""
    ctx = browser.new_context(locale="ja-JP", timezone_id="Asia/Tokyo", viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page of the test's context; the test fails on console errors, page errors or escapes."""
    problems = BrowserProblems()

    def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            problems.blocked.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", only_local)
    new_page = context.new_page()
    problems.watch(new_page)
    yield new_page
    complaints = problems.report()
    if complaints:
        pytest.fail("the browser reported problems:\n" + complaints, pytrace=False)

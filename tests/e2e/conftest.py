"""End-to-end fixtures: the real `xmonbridge serve` and a headless Chromium driven by Playwright.

Self-contained on purpose: nothing here uses tests/conftest.py. The server is started the
way the README does it (init, create-user, serve) in a fresh instance folder with
TWILIO_MODE=simulate; the browser is Debian's Chromium (never `playwright install`), and
every request that does not go to 127.0.0.1 is aborted, so nothing leaves the machine.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Route, sync_playwright

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

SERVER_START_TIMEOUT = 30.0
DEFAULT_TIMEOUT_MS = 10_000

_SERVER_LOG = pytest.StashKey[Path]()
_SERVER_CRASHED = pytest.StashKey[str]()
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


def _server_env(instance: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Outside settings must not leak into the app (XMONBRIDGE_* become config keys).
        if not k.startswith("XMONBRIDGE_") and k not in ("DATABASE_URL", "TWILIO_API_BASE", "TWILIO_MODE")
    }
    env.update(XMONBRIDGE_INSTANCE=str(instance), TWILIO_MODE="simulate", PYTHONUNBUFFERED="1")
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
    """Attach the server's output to the report of every failing e2e test."""
    outcome = yield
    report = outcome.get_result()
    log = item.config.stash.get(_SERVER_LOG, None)
    if report.failed and log is not None and log.exists():
        report.sections.append(("xmonbridge serve output", log.read_text(errors="replace")[-20_000:]))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Say where the screenshots are; show the server's output if it died (failing tests carry it)."""
    folder = config.stash.get(_SCREENSHOTS, None)
    if folder is not None:
        count = len(list(folder.glob("*.png")))
        terminalreporter.write_line(f"e2e screenshots ({count}): {folder}")
    log = config.stash.get(_SERVER_LOG, None)
    crashed = config.stash.get(_SERVER_CRASHED, "")
    if log is not None and log.exists() and crashed:
        terminalreporter.section(f"xmonbridge serve output{crashed}")
        terminalreporter.write_line(log.read_text(errors="replace")[-20_000:])


@pytest.fixture(scope="session")
def credentials() -> dict[str, str]:
    """Login name -> password of the users the `server` fixture creates."""
    return dict(CREDENTIALS)


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the real app (init, create-user, serve) and yield its base URL."""
    root = tmp_path_factory.mktemp("xmonbridge")
    instance = root / "instance"
    env = _server_env(instance)
    _run_cli(["init"], env)
    _run_cli(["create-user", "admin", "--password", CREDENTIALS["admin"], "--admin", "--approver"], env)
    _run_cli(["create-user", "operator", "--password", CREDENTIALS["operator"], "--admin"], env)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = root / "serve.log"
    request.config.stash[_SERVER_LOG] = log_path
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [_cli(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_until_up(proc, f"{base}/login", log_path)
        print(f"xmonbridge serving {base} from {instance}")
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
            request.config.stash[_SERVER_CRASHED] = f" (exited {proc.returncode})"


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
        if message.type == "error":
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

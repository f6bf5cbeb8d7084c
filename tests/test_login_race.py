"""Parallel wrong passwords against a real `xmonbridge serve --workers 2`: guesses stay bounded."""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

XMONBRIDGE = str(Path(sys.executable).parent / "xmonbridge")
PASSWORD = "race-pass-123"
MAX_FAILURES = 5  # LOGIN_MAX_FAILURES of xmonbridge/config.py
PARALLEL = 50
BAD_LOGIN = "ログイン名またはパスワードが正しくありません。"
LOCKED = "一時的にロックされています"


def _env(instance: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("XMONBRIDGE_") and k not in ("DATABASE_URL", "TWILIO_API_BASE", "TWILIO_MODE")
    }
    # gunicorn's control socket and proxies stay out of the way (as in tests/e2e/conftest.py).
    env.update(XMONBRIDGE_INSTANCE=str(instance), TWILIO_MODE="simulate", XDG_RUNTIME_DIR=str(instance.parent))
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([XMONBRIDGE, *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Browser:
    """One client with its own cookie jar, which does not follow redirects."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            self._NoRedirect(),
        )
        self.token = ""

    def open_login(self) -> None:
        with self.opener.open(f"{self.base}/login", timeout=30) as response:
            page = response.read().decode()
        self.token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    def login(self, password: str) -> tuple[int, str]:
        """POST the login form; return the status and the page (or the redirect target)."""
        data = urllib.parse.urlencode({"login": "admin", "password": password, "csrf_token": self.token}).encode()
        try:
            with self.opener.open(f"{self.base}/login", data=data, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Location", "") or error.read().decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`xmonbridge init`, `create-user admin`, `serve --workers 2`; yield the base URL and env."""
    env = _env(tmp_path / "instance")
    _cli(env, "init")
    _cli(env, "create-user", "admin", "--password", PASSWORD, "--admin", "--approver")
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [XMONBRIDGE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                Browser(base).open_login()
                break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        yield base, env
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_parallel_wrong_passwords_get_at_most_the_allowed_guesses(served: tuple[str, dict[str, str]]) -> None:
    base, env = served
    browsers = [Browser(base) for _ in range(PARALLEL)]
    for browser in browsers:
        browser.open_login()
    start = threading.Barrier(PARALLEL)

    def guess(browser: Browser) -> tuple[int, str]:
        start.wait()
        return browser.login("wrong-password")

    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(guess, browsers))

    refused = sum(BAD_LOGIN in page for _status, page in results)
    locked = sum(LOCKED in page for _status, page in results)
    assert refused <= MAX_FAILURES, f"{refused} passwords were checked"
    assert refused + locked == PARALLEL
    # After the batch even the right password is refused: the guesses are used up.
    late = Browser(base)
    late.open_login()
    assert LOCKED in late.login(PASSWORD)[1]

    assert "unlocked admin" in _cli(env, "unlock", "admin")
    assert late.login(PASSWORD) == (302, "/admin/twilio/accounts/")
    assert "nothing to unlock" in _cli(env, "unlock", "admin")

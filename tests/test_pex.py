"""The one-file build: scripts/build-pex.sh makes xmonbridge.pex, which runs with no virtualenv.

The PEX is built once per session from the test virtualenv (`--venv`, no network: every proxy
points at a closed port and pip may use no index), then copied into an empty folder and run
there with Debian's /usr/bin/python3.11 and a bare environment, as an admin would after
copying it to a box: init, create-user, serve, log in, an API token, `notify` in simulate
mode, the alert in インシデント and the SMS in シミュレーション発信履歴, and `check`. HOME is a
file, so nothing can be written under it (like ProtectHome= in a systemd unit): the PEX
unpacks under PEX_ROOT only.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_recipient, make_sms_setting, make_twilio_account, set_xmon_url
from tests.real_server import free_port, wait_for
from xmonbridge import create_app
from xmonbridge.extensions import db

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pex-admin-pass-123"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
TOKEN = re.compile(r"xmb_[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="session")
def pex_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/xmonbridge.pex as scripts/build-pex.sh makes it, built offline from this virtualenv."""
    out = tmp_path_factory.mktemp("pex-build")
    closed = "http://127.0.0.1:9"
    env = dict(os.environ, PEX_ROOT=str(out / "pex-root"), PIP_NO_INDEX="1")
    env.update({name: closed for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy")})
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-pex.sh"), "--venv", sys.prefix, "--output", str(out / "xmonbridge.pex")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().startswith(f"built {out / 'xmonbridge.pex'} ("), result.stdout
    return out / "xmonbridge.pex"


@pytest.fixture(scope="session")
def pex_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the PEX unpacks itself: the unit's Environment=PEX_ROOT=… (shared by the tests)."""
    return tmp_path_factory.mktemp("run-pex-root")


def bare_env(tmp_path: Path, pex_root: Path, **extra: str) -> dict[str, str]:
    """No virtualenv on PATH, no XMONBRIDGE_* or Twilio settings, and a HOME nothing can be written under."""
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "PEX_ROOT": str(pex_root)}
    env.update(extra)
    assert not any(part.startswith(sys.prefix) for part in env["PATH"].split(":"))
    return env


def run(pex: Path, *args: str, env: dict[str, str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(pex), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL
    )
    if ok:
        assert result.returncode == 0, f"{pex.name} {' '.join(args)} exited {result.returncode}: {result.stdout}{result.stderr}"
    return result


def seed(instance: Path, monkeypatch: pytest.MonkeyPatch, base: str) -> int:
    """An SMS setting with one recipient and the X-MON URL, written with this checkout's models."""
    for name in [k for k in os.environ if k.startswith("XMONBRIDGE_")] + ["DATABASE_URL", "TWILIO_MODE", "TWILIO_API_BASE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XMONBRIDGE_INSTANCE", str(instance))
    app = create_app()
    with app.app_context():
        try:
            set_xmon_url(base)
            user = make_recipient(login="sato", name="佐藤 翔太", phone="+819001230001")
            setting = make_sms_setting(make_twilio_account(), [user], name="SMS連絡")
            return setting.id
        finally:
            db.session.remove()
            db.engine.dispose()


class Browser:
    """Cookies and CSRF tokens over plain HTTP to 127.0.0.1, no proxy."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[int, str]:
        with self.opener.open(self.base + path, timeout=15) as response:
            return response.status, response.read().decode()

    def post_form(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        """GET the page, then POST its form with the page's CSRF token."""
        _, page = self.get(path)
        token = CSRF.search(page)
        assert token, page[:2000]
        data = urllib.parse.urlencode({**fields, "csrf_token": token.group(1)}).encode()
        with self.opener.open(self.base + path, data=data, timeout=15) as response:
            return response.status, response.read().decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started by a test, stopped with SIGTERM (as systemd does) at its end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def start_serve(pex: Path, port: int, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(pex), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {log.read_text(errors='replace')[-4000:]}")
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{port}/login", timeout=1
            ).close()
            return proc
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"serve did not come up: {log.read_text(errors='replace')[-4000:]}")


def test_the_pex_runs_from_an_empty_folder_without_a_virtualenv(
    pex_file: Path, pex_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[Any]
) -> None:
    box = tmp_path / "box"
    box.mkdir()
    pex = box / "xmonbridge.pex"
    shutil.copy2(pex_file, pex)
    env = bare_env(tmp_path, pex_root)

    # The instance folder defaults to the one beside the .pex, not the PEX's cache.
    init = run(pex, "init", env=env, cwd=box)
    assert f"xmonbridge instance ready in {box / 'instance'}" in init.stdout
    assert (box / "instance" / "xmonbridge.sqlite").is_file() and (box / "instance" / "fernet.key").is_file()
    created = run(pex, "create-user", "admin", "--password", PASSWORD, "--name", "管理者", "--admin", "--approver", env=env, cwd=box)
    assert "created user admin (admin) (approver)" in created.stdout

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    setting_id = seed(box / "instance", monkeypatch, base)
    served.append(start_serve(pex, port, env, box, tmp_path / "serve.log"))

    browser = Browser(base)
    status, page = browser.post_form("/login", {"login": "admin", "password": PASSWORD})
    assert status == 200 and "ログアウト" in page, page[:2000]
    # Package data: the app's own style and script, Bootstrap-Flask's local Bootstrap.
    assets = re.findall(r'(?:src|href)="(/[^"?]*static/[^"?]+)', page)
    assert {"/static/css/app.css", "/static/js/app.js"} <= set(assets) and any("bootstrap" in a for a in assets), assets
    for asset in assets:
        assert browser.get(asset)[0] == 200, asset

    # An API token made on the API トークン screen, as an admin does for resource.cfg.
    _, shown = browser.post_form("/admin/api-tokens/new", {"name": "X-MON 本番"})
    token = TOKEN.search(shown)
    assert token, shown[:2000]

    notify_env = dict(env, XMONBRIDGE_TOKEN=token.group(0))
    notified = run(
        pex,
        "notify",
        "--url", base,
        "--kind", "sms",
        "--setting-id", str(setting_id),
        "--type", "PROBLEM",
        "--host", "web-pex01",
        "--service", "HTTP",
        "--state", "CRITICAL",
        "--output", "Connection refused",
        env=notify_env,
        cwd=box,
    )
    assert notified.stdout.startswith("xmonbridge notify: accepted"), notified.stdout

    _, incidents = browser.get("/incidents/")
    assert "web-pex01" in incidents and "SMS連絡" in incidents
    # The dispatcher in the served process texts the recipient (simulate mode: nothing leaves).
    wait_for(lambda: "+81-90-0123-0001" in browser.get("/admin/twilio/logs/simulated")[1], 30, "the simulated SMS")
    _, simulated = browser.get("/admin/twilio/logs/simulated")
    assert "web-pex01" in simulated

    check = run(pex, "check", "--url", base, env=env, cwd=box, ok=False)
    assert check.returncode == 0 and check.stdout.startswith("XMONBRIDGE OK - dispatcher "), check.stdout + check.stderr

    # Nothing but the .pex and its instance in the folder; the unpacked copy runs Debian's
    # Python from PEX_ROOT.
    assert sorted(p.name for p in box.iterdir()) == ["instance", "xmonbridge.pex"]
    configs = list(pex_root.glob("venvs/**/pyvenv.cfg"))
    assert configs and all("home = /usr/bin" in c.read_text() for c in configs), [c.read_text() for c in configs]

    proc = served[0]
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_xmonbridge_instance_overrides_the_folder_beside_the_pex(pex_file: Path, pex_root: Path, tmp_path: Path) -> None:
    opt = tmp_path / "opt"
    opt.mkdir()
    pex = opt / "xmonbridge.pex"
    shutil.copy2(pex_file, pex)
    link = tmp_path / "bin" / "xmonbridge"
    link.parent.mkdir()
    link.symlink_to(pex)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # As the systemd unit runs it: the instance named by XMONBRIDGE_INSTANCE.
    state = tmp_path / "var-lib" / "instance"
    env = bare_env(tmp_path, pex_root, XMONBRIDGE_INSTANCE=str(state))
    assert f"xmonbridge instance ready in {state}" in run(link, "init", env=env, cwd=elsewhere).stdout
    assert (state / "xmonbridge.sqlite").is_file() and not (opt / "instance").exists()

    # Through a symlink from another folder, without it: beside the real .pex file.
    env = bare_env(tmp_path, pex_root)
    refused = run(link, "create-user", "admin", "--password", PASSWORD, env=env, cwd=elsewhere, ok=False)
    assert refused.returncode != 0 and str(opt / "instance") in refused.stderr, refused.stderr
    assert list(elsewhere.iterdir()) == []

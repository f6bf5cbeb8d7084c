"""xmonbridge behind a real nginx running deploy/nginx/xmonbridge.conf (R14).

`xmonbridge serve` listens on 127.0.0.1 with the environment of deploy/systemd/xmonbridge.service;
nginx (tests/nginx_fixture.py) serves it as https://xmon.example.test:PORT/xmonbridge/, a host
name, scheme, port and path prefix that all differ from the local http://127.0.0.1:PORT/.
The tests reach the public name on 127.0.0.1 with TLS SNI and Host set (tests/web_client.py),
as a browser, the monitor and Twilio would after resolving it, and prove through the proxy:
login with a Secure cookie and pages under the prefix, the alert API, and a button call whose
webhooks are accepted when signed for the public URL and refused when signed for the local one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.factories import AUTH_TOKEN, make_button_call_setting, make_recipient, make_twilio_account, make_user
from tests.handset import Handset, HttpResponse
from tests.nginx_fixture import NGINX, SITE, SITE_PREFIX, Nginx, Ports, render_site, self_signed
from tests.real_server import RealServer
from tests.web_client import WebClient

UNIT = Path(__file__).parents[1] / "deploy" / "systemd" / "xmonbridge.service"
PUBLIC_HOST = "xmon.example.test"
PASSWORD = "proxy-admin-123"
PHONE = "+819001230001"

def unit_environment() -> dict[str, str]:
    """The Environment= lines of the systemd unit."""
    env = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
    return env


@dataclass
class Deployment:
    """serve behind nginx, with an administrator, a button-call setting and an API token."""

    server: RealServer
    nginx: Nginx
    token: str
    setting_id: int

    @property
    def public(self) -> str:
        """The public base URL: what the admin enters as the X-MON URL."""
        return f"https://{PUBLIC_HOST}:{self.nginx.ports.https}{SITE_PREFIX}"

    def browser(self) -> WebClient:
        return WebClient(self.public, cafile=str(self.nginx.cert))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, fake_twilio_server: Any) -> Iterator[Deployment]:
    env = unit_environment()
    config = {k.removeprefix("XMONBRIDGE_"): v for k, v in env.items() if k.startswith("XMONBRIDGE_") and k != "XMONBRIDGE_INSTANCE"}
    root = tmp_path_factory.mktemp("proxied")
    server = RealServer(root, mode="live", api_base=fake_twilio_server.base_url, **config)
    with server.app_context():
        make_user(login="admin", is_admin=True, is_approver=True, password=PASSWORD)
        account = make_twilio_account(cps=10)
        setting = make_button_call_setting(account, [make_recipient(phone=PHONE)], name="当番への電話", mode="rotation")
        setting_id = setting.id
    token = server.make_token()
    nginx = Nginx(root / "nginx", PUBLIC_HOST, server.port)
    server.start(workers=2)
    try:
        nginx.start()
        yield Deployment(server, nginx, token, setting_id)
    finally:
        nginx.stop()
        server.stop()


def test_plain_http_is_redirected_to_https(deployment: Deployment) -> None:
    plain = WebClient(f"http://{PUBLIC_HOST}:{deployment.nginx.ports.http}{SITE_PREFIX}")
    page = plain.get("/login?x=1")
    assert page.status == 301
    assert page.header("Location") == f"https://{PUBLIC_HOST}{SITE_PREFIX}/login?x=1"


def test_login_over_the_proxy_sets_a_secure_cookie_and_pages_use_the_prefix(deployment: Deployment) -> None:
    browser = deployment.browser()
    # The site's root leads to the app; a page behind login leads to the login form, all
    # under the prefix (the app learnt it from X-Forwarded-Prefix).
    origin = f"https://{PUBLIC_HOST}:{deployment.nginx.ports.https}"
    root = WebClient(origin, cafile=str(deployment.nginx.cert)).get("/")
    assert (root.status, root.header("Location")) == (302, f"{origin}{SITE_PREFIX}/")
    start = browser.get("/admin/xmon-settings/")
    assert start.status == 302
    login_path = start.header("Location") or ""
    assert login_path == f"{SITE_PREFIX}/login?next=" + urllib.parse.quote(f"{SITE_PREFIX}/admin/xmon-settings/", safe="")
    form = browser.get(login_path.removeprefix(SITE_PREFIX))
    assert form.status == 200
    assets = re.findall(r'(?:href|src)="(/[^"]*)"', form.text)
    assert assets and all(a.startswith(f"{SITE_PREFIX}/") for a in assets), assets

    answer = browser.submit(login_path.removeprefix(SITE_PREFIX), None, {"login": "admin", "password": PASSWORD})
    assert answer.status == 302, answer.text[:500]
    assert answer.header("Location") == f"{SITE_PREFIX}/admin/xmon-settings/"
    session = [c for c in answer.set_cookies() if c.startswith("session=")]
    assert len(session) == 1
    flags = [part.strip().lower() for part in session[0].split(";")[1:]]
    assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags
    # Only under the prefix: the host's other applications never receive it.
    assert f"path={SITE_PREFIX}" in flags

    page = browser.get("/admin/xmon-settings/")
    assert page.status == 200 and "X-MON 設定" in page.text
    assert f'action="{SITE_PREFIX}/logout"' in page.text
    # The app's own headers pass through, and nginx adds HSTS.
    assert page.header("Content-Security-Policy") and page.header("Strict-Transport-Security")
    assert f"POST {SITE_PREFIX}/login" in deployment.nginx.access_log()


def test_alert_api_and_a_button_calls_webhooks_through_the_proxy(deployment: Deployment, fake_twilio: Any) -> None:
    browser = deployment.browser()
    assert browser.login("admin", PASSWORD).status == 302
    # X-MON 設定: the public URL, entered in the screen through the proxy.
    saved = browser.submit("/admin/xmon-settings/", "xmon-settings", {"xmon_url": deployment.public})
    assert saved.status == 302, saved.text[:2000]
    assert f'value="{deployment.public}"' in browser.get("/admin/xmon-settings/").text

    # The monitor's alert API through the proxy.
    monitor = deployment.browser()
    alert = {
        "kind": "button_call",
        "setting_id": deployment.setting_id,
        "type": "PROBLEM",
        "host": "web-server01",
        "service": "HTTP",
        "state": "CRITICAL",
        "output": "Connection refused",
        "problem_id": "4242",
    }
    body = json.dumps(alert).encode()
    json_type = {"Content-Type": "application/json"}
    assert monitor.request("POST", "/api/v1/alerts", body, json_type).status == 401
    accepted = monitor.request("POST", "/api/v1/alerts", body, {**json_type, "Authorization": f"Bearer {deployment.token}"})
    assert accepted.status == 202, accepted.text

    # The dispatcher places the call with webhook URLs under the public URL.
    handset = Handset(_ThroughProxy(deployment.browser()), fake_twilio, deployment.public)
    _wait_for_call(fake_twilio)
    call = handset.expect_call(PHONE)
    for url in (call.url, call.status_callback):
        assert url.startswith(f"{deployment.public}/twilio/"), url

    # Signed for the local address the request reaches serve at: refused.
    local_url = f"{deployment.server.base}{call.url.removeprefix(deployment.public)}"
    params = handset._params(call, CallStatus="in-progress")
    local_signature = RequestValidator(AUTH_TOKEN).compute_signature(local_url, params)
    assert handset.answer(call, signature=local_signature).status == 403

    # Signed for the public URL, as Twilio signs: the TwiML of the call.
    heard = handset.answer(call)
    assert heard.status == 200 and "障害が1件" in heard.text
    assert heard.action and heard.action.startswith(f"{deployment.public}/twilio/gather/")
    details = handset.press(call, heard, "1")
    assert details.status == 200 and "web-server01" in details.text
    done = handset.press(call, details, "3")
    assert done.status == 200 and done.hangup and "認知済み" in done.text
    # The status callback likewise: refused when signed for the local URL, then taken.
    ended = handset._params(call, CallStatus="completed", CallDuration="20")
    local_callback = f"{deployment.server.base}{call.status_callback.removeprefix(deployment.public)}"
    assert handset.hang_up(call, signature=RequestValidator(AUTH_TOKEN).compute_signature(local_callback, ended)) == 403
    assert handset.hang_up(call) == 204

    incidents = browser.get("/incidents/")
    assert incidents.status == 200 and "web-server01" in incidents.text
    log = deployment.nginx.access_log()
    assert f"POST {SITE_PREFIX}/twilio/voice/... HTTP/1.1" in log and f"POST {SITE_PREFIX}/api/v1/alerts" in log
    secret = call.url.rsplit("/", 1)[1]
    assert secret not in log and call.status_callback.rsplit("/", 1)[1] not in log


def test_nginx_stops_an_oversized_alert_before_the_app(deployment: Deployment) -> None:
    monitor = deployment.browser()
    page = monitor.request("POST", "/api/v1/alerts", b"x" * (65 * 1024), {"Content-Type": "application/json"})
    assert page.status == 413 and "nginx" in page.text


class _ThroughProxy:
    """Handset's client: POSTs to a path under the public URL, through nginx."""

    def __init__(self, web: WebClient) -> None:
        self.web = web

    def post(self, path: str, data: dict[str, str], headers: dict[str, str]) -> HttpResponse:
        page = self.web.post(path, data, headers)
        return HttpResponse(page.status, page.text.encode())


def _wait_for_call(fake: Any) -> None:
    from tests.real_server import wait_for

    wait_for(lambda: bool(fake.requests_for("CreateCall")), 30, "the button call")


def test_the_site_fits_debians_nginx_conf(tmp_path: Path) -> None:
    """Included where Debian's nginx.conf includes sites-enabled/, the site passes `nginx -t`."""
    main = Path("/etc/nginx/nginx.conf")
    if not main.exists():
        pytest.skip("no /etc/nginx/nginx.conf")
    cert, key = self_signed(tmp_path, PUBLIC_HOST)
    site = tmp_path / "xmonbridge.conf"
    site.write_text(render_site(SITE.read_text(), PUBLIC_HOST, Ports(18443, 18080, 18000), cert, key, tmp_path / "access.log"))
    text = main.read_text()
    assert "include /etc/nginx/sites-enabled/*;" in text
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace("include /etc/nginx/sites-enabled/*;", f"include {site};"))
    result = subprocess.run([NGINX, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_unit_and_the_site_agree() -> None:
    """The unit serves where the site proxies to, writes its instance, trusts one proxy."""
    unit = UNIT.read_text()
    env = unit_environment()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M)
    assert exec_start and exec_start.group(1).split()[:2] == ["/opt/xmonbridge/xmonbridge.pex", "serve"]
    port = re.search(r"--port (\d+)", exec_start.group(1))
    assert port and f"server 127.0.0.1:{port.group(1)};" in SITE.read_text()
    assert "--host 127.0.0.1" in exec_start.group(1)
    assert env["XMONBRIDGE_PROXY_FIX_X_FOR"] == "1"
    assert f"ReadWritePaths={env['XMONBRIDGE_INSTANCE']}" in unit.splitlines()
    assert "ProtectSystem=strict" in unit.splitlines() and "User=xmonbridge" in unit.splitlines()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_parses_the_unit() -> None:
    """`systemd-analyze verify` reports nothing but the PEX this box has not installed."""
    result = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    missing = "Command /opt/xmonbridge/xmonbridge.pex is not executable: No such file or directory"
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip() and missing not in line]
    assert complaints == []
    assert result.returncode == 0 or missing in result.stderr

"""How `xmonbridge notify` talks HTTP: a plain socket for http:// (the start-up budget), urllib
for https:// and behind a proxy from the environment; answers parsed however the server frames them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from xmonbridge import notify_command

ARGS = ["--kind", "sms", "--setting-id", "1", "--type", "PROBLEM", "--host", "web01"]
LIGHT = ("http.client", "urllib.request", "email", "ssl", "flask", "sqlalchemy", "twilio")


class RawServer:
    """A TCP server on 127.0.0.1 that answers each request with the next scripted bytes."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + body)
                conn.sendall(self.answers.pop(0) if self.answers else accepted(1))

    def close(self) -> None:
        # shutdown() wakes the accept() of the serving thread; close() alone would leave it listening.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)


def accepted(alert_id: int) -> bytes:
    body = json.dumps({"id": alert_id, "duplicate": False}).encode()
    return b"HTTP/1.1 202 ACCEPTED\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify_command, "RETRY_DELAYS", (0.01, 0.01))
    for name in notify_command.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def raw() -> Iterator[Any]:
    servers: list[RawServer] = []

    def make(answers: list[bytes]) -> RawServer:
        servers.append(RawServer(answers))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_the_request_on_the_wire(quick_retries: None, raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = raw([])
    assert notify_command.main(["--url", server.base + "/", *ARGS, "--output", "応答なし; 503"], {"XMONBRIDGE_TOKEN": "xmb_t"}) == 0
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /api/v1/alerts HTTP/1.1"
    assert f"Host: {server.base[len('http://'):]}" in lines
    assert {"Authorization: Bearer xmb_t", "Content-Type: application/json", "Connection: close"} <= set(lines)
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == {"kind": "sms", "setting_id": "1", "type": "PROBLEM", "host": "web01", "output": "応答なし; 503"}
    assert capsys.readouterr().out == "xmonbridge notify: accepted (alert 1)\n"


def test_a_chunked_answer(quick_retries: None, raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    body = json.dumps({"id": 41, "duplicate": True}).encode()
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:])
    server = raw([b"HTTP/1.1 202 ACCEPTED\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked])
    assert notify_command.main(["--url", server.base, *ARGS], {"XMONBRIDGE_TOKEN": "t"}) == 0
    assert capsys.readouterr().out == "xmonbridge notify: accepted (repeat of alert 41)\n"


def test_an_answer_that_is_not_http_is_tried_again(quick_retries: None, raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = raw([b"SSH-2.0-OpenSSH_9.2\r\n\r\n", accepted(5)])
    assert notify_command.main(["--url", server.base, *ARGS], {"XMONBRIDGE_TOKEN": "t"}) == 0
    assert len(server.requests) == 2


def test_a_refusal_without_json_says_the_reason(quick_retries: None, raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = raw([b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden"])
    assert notify_command.main(["--url", server.base, *ARGS], {"XMONBRIDGE_TOKEN": "t"}) == 1
    assert capsys.readouterr().err == "xmonbridge notify: refused (403): Forbidden\n"


def test_a_token_with_a_line_break_is_refused_before_sending(quick_retries: None, raw: Any, capsys: pytest.CaptureFixture[str]) -> None:
    server = raw([])
    assert notify_command.main(["--url", server.base, "--token", "xmb_a\nX-Evil: 1", *ARGS], {}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "token" in err
    assert server.requests == []


def test_a_proxy_from_the_environment_is_used(quick_retries: None, raw: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = raw([accepted(3)])
    monkeypatch.setenv("http_proxy", proxy.base)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    target = "http://xmonbridge.invalid:8000"
    assert notify_command.main(["--url", target, *ARGS], {"XMONBRIDGE_TOKEN": "t"}) == 0
    assert proxy.requests[0].startswith(f"POST {target}/api/v1/alerts HTTP/1.1".encode())


def test_an_http_notify_loads_no_http_library(raw: Any) -> None:
    """The plain-socket path: not even http.client, email or ssl (each costs start-up time)."""
    server = raw([])
    script = (
        "import json, sys\n"
        "from xmonbridge import entry\n"
        f"sys.argv = ['xmonbridge', 'notify', '--url', {server.base!r}, *{ARGS!r}]\n"
        "try:\n"
        "    entry.main()\n"
        "except SystemExit as done:\n"
        "    code = done.code\n"
        f"loaded = sorted(m for m in sys.modules if m in {LIGHT!r} or m.split('.')[0] in {LIGHT!r})\n"
        "print(json.dumps({'code': code, 'loaded': loaded}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in notify_command.PROXY_VARIABLES}
    env["XMONBRIDGE_TOKEN"] = "t"
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30)
    assert json.loads(result.stdout.splitlines()[-1]) == {"code": 0, "loaded": []}, result.stderr


def test_through_urllib_the_same_retries_and_lines(
    quick_retries: None, raw: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unavailable = b'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 24\r\n\r\n{"errors": ["restart"]}\n'
    refused = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 19\r\n\r\n" + b'{"errors": ["bad"]}'
    proxy = raw([unavailable, accepted(8), refused])
    monkeypatch.setenv("http_proxy", proxy.base)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    target = ["--url", "http://xmonbridge.invalid", *ARGS]
    assert notify_command.main(target, {"XMONBRIDGE_TOKEN": "t"}) == 0
    assert notify_command.main(target, {"XMONBRIDGE_TOKEN": "t"}) == 1
    assert len(proxy.requests) == 3
    assert capsys.readouterr().err == "xmonbridge notify: refused (401): bad\n"
    proxy.close()
    assert notify_command.main(target, {"XMONBRIDGE_TOKEN": "t"}) == 1
    line = capsys.readouterr().err
    assert line.startswith("xmonbridge notify: cannot reach http://xmonbridge.invalid/api/v1/alerts: ")
    assert line.endswith("(gave up after 3 tries)\n") and line.count("\n") == 1

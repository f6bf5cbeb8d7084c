"""acks/sink.py: the lines Nagios reads from its command FIFO, and the HTTP POST (R12)."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from xmonbridge import secretbox
from xmonbridge.acks.sink import AckError, AckRequest, command_line, send
from xmonbridge.models import ACK_COMMAND_FILE, ACK_HTTP, ACK_NONE, XmonSettings

AT = datetime(2026, 11, 28, 1, 2, 3)
SERVICE_ACK = AckRequest(host="web01", service="HTTP", author="佐藤 翔太", comment="電話で 3#; 認知", at=AT)
HOST_ACK = AckRequest(host="db01", service="", author="佐藤\n翔太", comment="電話で 3#", at=AT)


def _settings(**values: Any) -> XmonSettings:
    defaults: dict[str, Any] = {"id": 1, "voice": "Polly.Mizuki", "ack_command_file": "", "ack_http_url": ""}
    return XmonSettings(**(defaults | values))


def test_command_lines_are_nagios_external_commands() -> None:
    assert command_line(SERVICE_ACK) == "[1795827723] ACKNOWLEDGE_SVC_PROBLEM;web01;HTTP;2;1;1;佐藤 翔太;電話で 3#, 認知\n"
    assert command_line(HOST_ACK) == "[1795827723] ACKNOWLEDGE_HOST_PROBLEM;db01;2;1;1;佐藤 翔太;電話で 3#\n"
    with pytest.raises(AckError) as refused:
        command_line(AckRequest(host="a;b", service="", author="x", comment="y", at=AT))
    assert not refused.value.temporary and "セミコロン" in str(refused.value)


def test_a_line_reaches_a_reader_of_the_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader_open = threading.Event()

    def read() -> None:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        reader_open.set()
        try:
            for _ in range(200):
                try:
                    chunk = os.read(fd, 4096)
                except BlockingIOError:
                    chunk = b""
                if chunk:
                    received.append(chunk)
                    return
                threading.Event().wait(0.01)
        finally:
            os.close(fd)

    thread = threading.Thread(target=read)
    thread.start()
    reader_open.wait(5)
    result = send(SERVICE_ACK, _settings(ack_mode=ACK_COMMAND_FILE, ack_command_file=str(fifo)))
    thread.join(5)
    assert "書き込みました" in result
    assert b"".join(received).decode() == command_line(SERVICE_ACK)


def test_nobody_reading_the_fifo_is_temporary(tmp_path: Path) -> None:
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo)
    with pytest.raises(AckError) as error:
        send(SERVICE_ACK, _settings(ack_mode=ACK_COMMAND_FILE, ack_command_file=str(fifo)))
    assert error.value.temporary and "読み込んでいません" in str(error.value)


def test_a_full_fifo_times_out(tmp_path: Path) -> None:
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                os.write(writer, b"x" * 4096)
            except BlockingIOError:
                break
        with pytest.raises(AckError) as error:
            send(SERVICE_ACK, _settings(ack_mode=ACK_COMMAND_FILE, ack_command_file=str(fifo)))
        assert error.value.temporary and "秒以内に終わりませんでした" in str(error.value)
    finally:
        os.close(writer)
        os.close(reader)


def test_a_regular_file_or_nothing_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "nagios.cmd"
    plain.write_text("")
    with pytest.raises(AckError) as not_fifo:
        send(SERVICE_ACK, _settings(ack_mode=ACK_COMMAND_FILE, ack_command_file=str(plain)))
    assert not not_fifo.value.temporary and "FIFO ではありません" in str(not_fifo.value)
    assert plain.read_text() == ""
    with pytest.raises(AckError) as missing:
        send(SERVICE_ACK, _settings(ack_mode=ACK_COMMAND_FILE, ack_command_file=str(tmp_path / "none")))
    assert missing.value.temporary
    with pytest.raises(AckError) as unset:
        send(SERVICE_ACK, _settings(ack_mode=ACK_NONE))
    assert not unset.value.temporary and "設定されていません" in str(unset.value)


class _Monitor(BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[tuple[dict[str, str], Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((dict(self.headers), json.loads(body)))
        self.send_response(type(self).answers.pop(0))
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def monitor() -> Any:
    _Monitor.answers, _Monitor.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Monitor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_posts_json_with_the_bearer_token(app: Any, monitor: Any) -> None:
    url = f"http://127.0.0.1:{monitor.server_address[1]}/acks"
    settings = _settings(ack_mode=ACK_HTTP, ack_http_url=url, ack_http_token_encrypted=secretbox.encrypt("s3cret-token"))
    _Monitor.answers = [204, 500, 400]

    assert "204" in send(SERVICE_ACK, settings)
    headers, body = _Monitor.seen[0]
    assert headers["Authorization"] == "Bearer s3cret-token"
    assert body == {
        "type": "service",
        "host": "web01",
        "service": "HTTP",
        "author": "佐藤 翔太",
        "comment": "電話で 3#; 認知",
        "time": "2026-11-28T01:02:03Z",
    }
    with pytest.raises(AckError) as server_error:
        send(HOST_ACK, settings)
    assert server_error.value.temporary and "500" in str(server_error.value)
    with pytest.raises(AckError) as refused:
        send(HOST_ACK, settings)
    assert not refused.value.temporary and "400" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_http_unreachable_is_temporary(app: Any) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = _settings(ack_mode=ACK_HTTP, ack_http_url=f"http://127.0.0.1:{port}/acks")
    with pytest.raises(AckError) as error:
        send(SERVICE_ACK, settings)
    assert error.value.temporary and "接続できませんでした" in str(error.value)

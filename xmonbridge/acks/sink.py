"""Acknowledgements back to the monitor (R12): Nagios' external command file, or an HTTP POST.

No request code; the dispatcher calls `send()` for each queued acknowledgement and retries what
fails temporarily.

* Command file: Nagios reads commands from a FIFO (`command_file`, e.g.
  /var/lib/nagios4/rw/nagios.cmd). One line per acknowledgement:
  `[epoch] ACKNOWLEDGE_SVC_PROBLEM;host;service;2;1;1;author;comment` (sticky, notify,
  persistent) or `ACKNOWLEDGE_HOST_PROBLEM;host;2;1;1;author;comment`. The FIFO is opened without
  blocking (nobody reading = Nagios is down: try later) and the line written with a timeout; a
  line is shorter than PIPE_BUF, so it arrives whole or not at all.
* HTTP: a JSON POST for a monitor on another host, with an optional bearer token.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone

from .. import secretbox
from ..models import ACK_COMMAND_FILE, ACK_HTTP, XmonSettings

# Longest line written to the FIFO: below PIPE_BUF (4,096 on Linux), so the write is atomic.
MAX_LINE = 4000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

NOT_SET = "認知済みの通知先が設定されていません(X-MON 設定の「認知済みの通知先」)。"
NOT_FIFO = "外部コマンドファイル {path} が FIFO ではありません(Nagios の command_file を指定してください)。"
MISSING = "外部コマンドファイル {path} がありません(Nagios が起動していないか、パスが違います)。"
NO_READER = "Nagios が外部コマンドファイル {path} を読み込んでいません(Nagios が停止している可能性があります)。"
DENIED = "外部コマンドファイル {path} に書き込む権限がありません。"
WRITE_TIMEOUT = "外部コマンドファイル {path} への書き込みが {seconds:g} 秒以内に終わりませんでした。"
WRITE_FAILED = "外部コマンドファイル {path} に書き込めませんでした: {error}"
SEMICOLON = "ホスト名またはサービス名にセミコロン(;)が含まれているため、Nagios のコマンドにできません。"
TOO_LONG = "コマンドが長すぎるため書き込みませんでした。"
WRITTEN = "外部コマンドファイルに書き込みました。"
HTTP_DONE = "HTTP {status} で受け付けられました。"
HTTP_REFUSED = "通知先が HTTP {status} で拒否しました。"
HTTP_FAILED = "通知先が HTTP {status} を返しました(後で再送します)。"
HTTP_UNREACHABLE = "通知先に接続できませんでした: {reason}"
NO_URL = "通知先 URL が設定されていません(X-MON 設定)。"
TOKEN_UNREADABLE = "通知先のトークンを復号できません。fernet.key を確認してください。"


@dataclass(frozen=True)
class AckRequest:
    """One fault to acknowledge."""

    host: str
    service: str  # "" for a host
    author: str
    comment: str
    at: datetime  # naive UTC


class AckError(Exception):
    """The acknowledgement did not reach the monitor; str() is a Japanese reason."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


def _free_text(text: str) -> str:
    """Author and comment: no control characters, and `;` (a field separator) as `,`."""
    return _CONTROL.sub(" ", text).replace(";", ",").strip()


def command_line(request: AckRequest) -> str:
    """The external command line, ending with a newline; raises AckError for names it cannot hold."""
    names = [request.host] + ([request.service] if request.service else [])
    if any(";" in name or _CONTROL.search(name) for name in names):
        raise AckError(SEMICOLON, temporary=False)
    epoch = int(request.at.replace(tzinfo=timezone.utc).timestamp())
    author, comment = _free_text(request.author), _free_text(request.comment)
    if request.service:
        body = f"ACKNOWLEDGE_SVC_PROBLEM;{request.host};{request.service};2;1;1;{author};{comment}"
    else:
        body = f"ACKNOWLEDGE_HOST_PROBLEM;{request.host};2;1;1;{author};{comment}"
    line = f"[{epoch}] {body}\n"
    if len(line.encode()) > MAX_LINE:
        raise AckError(TOO_LONG, temporary=False)
    return line


def send(request: AckRequest, settings: XmonSettings, *, timeout: float = 5.0) -> str:
    """Deliver one acknowledgement where X-MON 設定 says; return a short result (AckError on failure)."""
    if settings.ack_mode == ACK_COMMAND_FILE:
        return write_command(settings.ack_command_file, command_line(request), timeout)
    if settings.ack_mode == ACK_HTTP:
        token = None
        if settings.ack_http_token_encrypted:
            try:
                token = secretbox.decrypt(settings.ack_http_token_encrypted)
            except secretbox.SecretError as error:
                raise AckError(TOKEN_UNREADABLE, temporary=False) from error
        return post(settings.ack_http_url, request, token, timeout)
    raise AckError(NOT_SET, temporary=False)


def check_command_file(path: str) -> str | None:
    """Why path cannot be Nagios' command file, or None when it is a FIFO."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return MISSING.format(path=path)
    except OSError as error:
        return WRITE_FAILED.format(path=path, error=error.strerror)
    if not stat.S_ISFIFO(mode):
        return NOT_FIFO.format(path=path)
    return None


def write_command(path: str, line: str, timeout: float) -> str:
    """Write one line to the FIFO at path, giving up after timeout seconds."""
    problem = check_command_file(path)
    if problem:
        # A missing FIFO comes back when Nagios starts again; a regular file does not.
        raise AckError(problem, temporary=not os.path.lexists(path))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise AckError(NO_READER.format(path=path), temporary=True) from error
        if error.errno in (errno.EACCES, errno.EPERM):
            raise AckError(DENIED.format(path=path), temporary=False) from error
        raise AckError(WRITE_FAILED.format(path=path, error=error.strerror), temporary=True) from error
    try:
        data = line.encode()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not poller.poll(int(timeout * 1000)):
            raise AckError(WRITE_TIMEOUT.format(path=path, seconds=timeout), temporary=True)
        try:
            written = os.write(fd, data)
        except BlockingIOError as error:
            raise AckError(WRITE_TIMEOUT.format(path=path, seconds=timeout), temporary=True) from error
        except OSError as error:
            raise AckError(WRITE_FAILED.format(path=path, error=error.strerror), temporary=True) from error
        if written != len(data):  # pragma: no cover - a FIFO write below PIPE_BUF is all or nothing
            raise AckError(WRITE_FAILED.format(path=path, error="short write"), temporary=True)
    finally:
        os.close(fd)
    return WRITTEN


def post(url: str, request: AckRequest, token: str | None, timeout: float) -> str:
    """POST the acknowledgement as JSON; 2xx is done, 4xx refused for good, the rest retried."""
    if not url:
        raise AckError(NO_URL, temporary=False)
    body = {
        "type": "service" if request.service else "host",
        "host": request.host,
        "service": request.service,
        "author": request.author,
        "comment": request.comment,
        "time": request.at.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    headers = {"Content-Type": "application/json", "User-Agent": "xmonbridge"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    http = urllib.request.Request(url, data=json.dumps(body, ensure_ascii=False).encode(), headers=headers, method="POST")
    # No proxy from the environment and no redirects followed: the token goes to this URL only.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    try:
        with opener.open(http, timeout=timeout) as response:
            return HTTP_DONE.format(status=response.status)
    except urllib.error.HTTPError as error:
        error.close()  # it holds the connection
        if 400 <= error.code < 500 and error.code not in (408, 429):
            raise AckError(HTTP_REFUSED.format(status=error.code), temporary=False) from None
        raise AckError(HTTP_FAILED.format(status=error.code), temporary=True) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise AckError(HTTP_UNREACHABLE.format(reason=reason), temporary=True) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None

"""`xmonbridge notify`: hand one Nagios notification to xmonbridge's alert API.

Run by the monitor's notification command, once per notification and contact, so hundreds of
times in a storm: it imports the standard library only (no Flask, SQLAlchemy or Twilio SDK)
and is started by xmonbridge/entry.py before anything heavy is loaded.

* Fields come from options that mirror the Nagios macros (`--type "$NOTIFICATIONTYPE$"
  --host "$HOSTNAME$" …`); an option not given falls back to the macro's `NAGIOS_*`
  environment variable (`enable_environment_macros=1`). The server validates every field.
* The URL and token come from `--url`/`--token`, else `XMONBRIDGE_URL`/`XMONBRIDGE_TOKEN`,
  else the config file (`--config`, default /etc/xmonbridge/notify.conf: `url = …` and
  `token = …` lines), which is refused unless only its owner may read it. A token given with
  `--token` is visible to every local user in `ps`: prefer the environment (from a Nagios
  resource macro) or the config file.
* Connection errors, timeouts and 5xx are tried again (3 tries, 1 and 2 seconds apart; the
  server stores a repeated notification once); a 4xx is not. Exit 0 when the alert was
  accepted (202), otherwise non-zero with one line on stderr (Nagios logs only that).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import sys
import time
import urllib.parse

# typing.TYPE_CHECKING would import typing, which this command does not need at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, NoReturn

PROG = "xmonbridge notify"
DEFAULT_CONFIG = "/etc/xmonbridge/notify.conf"
API_PATH = "/api/v1/alerts"
TRIES = 3
# Seconds to wait before the second and the third try.
RETRY_DELAYS = (1.0, 2.0)
TIMEOUT = 5.0
CONFIG_KEYS = ("url", "token")

EXIT_OK = 0
EXIT_FAILED = 1  # the alert was refused, or never reached the server
EXIT_USAGE = 2  # bad options or configuration

# (API field, option, Nagios environment variable for services, … for hosts). The service
# variant is used when the notification has a service description, the host one otherwise.
MACROS: tuple[tuple[str, str, str, str], ...] = (
    ("type", "type", "NAGIOS_NOTIFICATIONTYPE", "NAGIOS_NOTIFICATIONTYPE"),
    ("host", "host", "NAGIOS_HOSTNAME", "NAGIOS_HOSTNAME"),
    ("host_address", "host_address", "NAGIOS_HOSTADDRESS", "NAGIOS_HOSTADDRESS"),
    ("state", "state", "NAGIOS_SERVICESTATE", "NAGIOS_HOSTSTATE"),
    ("output", "output", "NAGIOS_SERVICEOUTPUT", "NAGIOS_HOSTOUTPUT"),
    ("problem_id", "problem_id", "NAGIOS_SERVICEPROBLEMID", "NAGIOS_HOSTPROBLEMID"),
    ("last_problem_id", "last_problem_id", "NAGIOS_LASTSERVICEPROBLEMID", "NAGIOS_LASTHOSTPROBLEMID"),
    ("time", "time", "NAGIOS_TIMET", "NAGIOS_TIMET"),
)


class Failure(Exception):
    """Why notify gives up: one line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (Nagios logs a single line)."""

    def error(self, message: str) -> NoReturn:
        raise Failure(f"{message} (see `{PROG} --help`)", EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Send one Nagios notification to xmonbridge (POST /api/v1/alerts). "
        "Options not given are read from the NAGIOS_* environment variables.",
        epilog="The token is read from XMONBRIDGE_TOKEN or the config file rather than --token, "
        "which every local user can see in `ps`. Exit status: 0 accepted, 1 refused or "
        "unreachable, 2 bad options or configuration.",
    )
    setting = parser.add_argument_group("notification setting")
    setting.add_argument("--kind", help="simple_call, button_call or sms")
    setting.add_argument("--setting-id", help="the setting's id (its detail page shows it)")
    setting.add_argument("--setting", help="the setting's name (instead of --setting-id)")
    macros = parser.add_argument_group("notification (default: the NAGIOS_* environment variables)")
    macros.add_argument("--type", help='"$NOTIFICATIONTYPE$" (PROBLEM, RECOVERY, ...)')
    macros.add_argument("--host", help='"$HOSTNAME$"')
    macros.add_argument("--host-address", help='"$HOSTADDRESS$"')
    macros.add_argument("--service", help='"$SERVICEDESC$"; empty or absent for a host notification')
    macros.add_argument("--state", help='"$SERVICESTATE$" or "$HOSTSTATE$"')
    macros.add_argument("--output", help='"$SERVICEOUTPUT$" or "$HOSTOUTPUT$"')
    macros.add_argument("--problem-id", help='"$SERVICEPROBLEMID$" or "$HOSTPROBLEMID$"')
    macros.add_argument("--last-problem-id", help='"$LASTSERVICEPROBLEMID$" or "$LASTHOSTPROBLEMID$"')
    macros.add_argument("--time", help='"$TIMET$" (epoch seconds) or ISO 8601 with a time zone')
    server = parser.add_argument_group("server")
    server.add_argument("--url", help="xmonbridge's URL (default: XMONBRIDGE_URL, then the config file)")
    server.add_argument("--token", help="API token (default: XMONBRIDGE_TOKEN, then the config file)")
    server.add_argument("--config", help=f"file with url = ... and token = ... lines, mode 0600 (default {DEFAULT_CONFIG})")
    server.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per try (default {TIMEOUT:g})")
    return parser


def fields_from(options: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """The API fields: each option, or its NAGIOS_* variable when the option was not given.

    An option given empty stays empty (a host notification's "$SERVICEDESC$"). Empty fields
    are left out of the request.
    """
    service = options.service if options.service is not None else environ.get("NAGIOS_SERVICEDESC", "")
    values = {"kind": options.kind, "setting_id": options.setting_id, "setting": options.setting, "service": service}
    for field, option, service_variable, host_variable in MACROS:
        value = getattr(options, option)
        if value is None:
            value = environ.get(service_variable if service else host_variable, "")
        values[field] = value
    return {field: value for field, value in values.items() if value}


def read_config(path: str, explicit: bool) -> dict[str, str]:
    """The `key = value` lines of the config file; {} when the default file does not exist.

    The file holds the token, so it is refused unless only its owner may read it (0600/0400).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if explicit:
            raise Failure(f"config file {path} does not exist", EXIT_USAGE) from None
        return {}
    except OSError as error:
        raise Failure(f"cannot read config file {path}: {error.strerror}", EXIT_USAGE) from None
    if not stat.S_ISREG(info.st_mode):
        raise Failure(f"config file {path} is not a regular file", EXIT_USAGE)
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise Failure(
            f"refusing config file {path}: mode {mode:04o} lets other users read the token; run chmod 600 {path}",
            EXIT_USAGE,
        )
    try:
        with open(path, encoding="utf-8-sig") as handle:  # a BOM some editors write is fine
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise Failure(f"cannot read config file {path}: {error}", EXIT_USAGE) from None
    values: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        key = key.strip().lower()
        if not equals or key not in CONFIG_KEYS:
            raise Failure(f"{path} line {number}: expected url = ... or token = ...", EXIT_USAGE)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def server_of(options: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str]:
    """The alert API's URL and the token: options, then environment, then the config file."""
    url = options.url or environ.get("XMONBRIDGE_URL", "")
    token = options.token or environ.get("XMONBRIDGE_TOKEN", "")
    if not url or not token:
        config = read_config(options.config or DEFAULT_CONFIG, explicit=options.config is not None)
        url = url or config.get("url", "")
        token = token or config.get("token", "")
    if not url:
        raise Failure(f"no URL: give --url, set XMONBRIDGE_URL or put url = ... in {options.config or DEFAULT_CONFIG}", EXIT_USAGE)
    if not token:
        raise Failure(
            f"no API token: set XMONBRIDGE_TOKEN or put token = ... in {options.config or DEFAULT_CONFIG}", EXIT_USAGE
        )
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise Failure(f"URL {url} must start with http:// or https://", EXIT_USAGE)
    if not url.endswith(API_PATH):
        url += API_PATH
    return url, token.strip()


def _problems(body: bytes) -> str:
    """The server's messages ({"errors": [...]}), joined into one line."""
    try:
        errors = json.loads(body.decode("utf-8"))["errors"]
        texts = [e["message"] if isinstance(e, dict) else str(e) for e in errors]
    except (ValueError, KeyError, TypeError):
        return ""
    return " / ".join(texts)


# Proxy variables for an http:// URL; with one set, urllib.request takes the request so that
# http_proxy and no_proxy mean what they mean to curl.
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
# The most of an answer that is read (the API answers with a few hundred bytes).
MAX_ANSWER = 1 << 20


class _BadAnswer(Exception):
    """The server's answer was not HTTP (retried like a connection error)."""


def _plain_http(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, str, dict[str, str], bytes]:
    """POST over a plain socket: http.client and urllib.request cost a Python start-up more.

    One request per connection (Connection: close), so the answer ends where the stream ends.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 80
    authority = f"[{host}]" if ":" in host else host
    if parts.port:
        authority += f":{parts.port}"
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {authority}", f"Content-Length: {len(body)}", "Connection: close"]
    for name, value in headers.items():
        if any(c in value for c in "\r\n\0"):
            raise Failure(f"the {name} header would hold a line break; check the token", EXIT_USAGE)
        lines.append(f"{name}: {value}")
    try:
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    except UnicodeEncodeError:
        raise Failure("the token or URL holds characters other than ASCII; check them", EXIT_USAGE) from None
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(head + body)
        chunks = []
        size = 0
        while size <= MAX_ANSWER:
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    answer = b"".join(chunks)
    header_block, separator, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    version, _space, rest = status_line.partition(" ")
    code, _space, reason = rest.partition(" ")
    if not separator or not version.startswith("HTTP/") or not code.isdigit():
        raise _BadAnswer(f"not an HTTP answer: {status_line[:60]!r}")
    fields = {}
    for line in header_lines:
        name, _colon, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if "chunked" in fields.get("transfer-encoding", "").lower():
        content = _dechunked(content)
    elif fields.get("content-length", "").isdigit():
        content = content[: int(fields["content-length"])]
    return int(code), reason.strip(), fields, content


def _dechunked(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _crlf, data = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(data[:size])
        data = data[size + 2 :]
    return b"".join(out)


def _with_urllib(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, str, dict[str, str], bytes]:
    """POST with urllib.request: https, or a proxy from the environment. Redirects are not followed."""
    import http.client
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        # urllib would turn the POST into a GET.
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=timeout) as response:
            return response.status, response.reason, {k.lower(): v for k, v in response.headers.items()}, response.read(MAX_ANSWER)
    except urllib.error.HTTPError as error:
        return error.code, str(error.reason), {k.lower(): v for k, v in error.headers.items()}, error.read(MAX_ANSWER)
    except urllib.error.URLError as error:
        # Refused, unreachable, timed out: like the plain socket's OSError, with the same reason.
        reason = error.reason
        raise (reason if isinstance(reason, OSError) else OSError(str(reason))) from None
    except http.client.HTTPException as error:  # a reset or garbled answer: tried again
        raise _BadAnswer(str(error) or type(error).__name__) from None


def _send(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, str, dict[str, str], bytes]:
    if url.startswith("http://") and not any(os.environ.get(name) for name in PROXY_VARIABLES):
        return _plain_http(url, body, headers, timeout)
    return _with_urllib(url, body, headers, timeout)


def post(url: str, token: str, fields: Mapping[str, str], timeout: float, sleep: Any = time.sleep) -> dict[str, Any]:
    """POST the fields as JSON; return the 202 answer, or raise Failure after the tries."""
    body = json.dumps(fields, ensure_ascii=False).encode("utf-8")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "User-Agent": "xmonbridge-notify"}
    last = ""
    for attempt in range(TRIES):
        if attempt:
            sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1])
        try:
            status, reason, answer_headers, answer = _send(url, body, headers, timeout)
        except (OSError, _BadAnswer) as error:  # refused, unreachable, timed out, reset, not HTTP
            last = f"cannot reach {url}: {error}"
            continue
        if 300 <= status < 400:
            raise Failure(f"{url} answered {status} (redirect to {answer_headers.get('location', '?')}); use that URL")
        if 400 <= status < 500:
            raise Failure(f"refused ({status}): {_problems(answer) or reason}")
        if status >= 500:
            last = f"server error {status}: {_problems(answer) or reason}"
            continue
        if status != 202:
            raise Failure(f"unexpected answer {status} from {url}")
        try:
            result: dict[str, Any] = json.loads(answer.decode("utf-8"))
        except ValueError:
            result = {}
        return result
    raise Failure(f"{last} (gave up after {TRIES} tries)")


# The longest wait per try a notification command may ask for (Nagios kills it after 30 s).
MAX_TIMEOUT = 60


def _check_config(url: str, token: str) -> None:
    """Refuse a URL or token that cannot be sent as given, before any try."""
    parts = urllib.parse.urlsplit(url)  # raises ValueError for e.g. an unclosed IPv6 bracket
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Failure(f"the URL {url!r} is not an http(s) URL", EXIT_USAGE)
    if any(ord(c) < 33 or ord(c) > 126 for c in url):
        raise Failure(f"the URL {url!r} holds spaces, control or non-ASCII characters; percent-encode them", EXIT_USAGE)
    if any(ord(c) < 33 or ord(c) > 126 for c in token):
        raise Failure("the token holds spaces, control or non-ASCII characters; copy it again from API トークン", EXIT_USAGE)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Send one notification; return the exit status (errors: one line on stderr)."""
    environ = os.environ if environ is None else environ
    try:
        options = _parser().parse_args(argv)
        if not options.timeout > 0:
            raise Failure(f"--timeout must be more than 0 seconds, not {options.timeout:g}", EXIT_USAGE)
        if options.timeout > MAX_TIMEOUT:
            raise Failure(f"--timeout must be at most {MAX_TIMEOUT} seconds, not {options.timeout:g}", EXIT_USAGE)
        url, token = server_of(options, environ)
        _check_config(url, token)
        result = post(url, token, fields_from(options, environ), options.timeout)
    except Failure as failure:
        print(f"{PROG}: {failure}", file=sys.stderr)
        return failure.code
    except (ValueError, UnicodeError) as error:
        # A URL or token no request can carry (the socket, urllib): a configuration error.
        print(f"{PROG}: cannot send with this URL or token: {error}", file=sys.stderr)
        return EXIT_USAGE
    what = "repeat of alert" if result.get("duplicate") else "alert"
    print(f"{PROG}: accepted ({what} {result.get('id', '?')})")
    return EXIT_OK

"""`xmonbridge notify`: post one Nagios notification to the alert API (stdlib only).

A notification command runs this once per notification, hundreds of times in a storm, so it
imports neither Flask nor SQLAlchemy nor the Twilio SDK: only argparse, http.client and
urllib.parse. Macros come as options or from the NAGIOS_* environment variables; the URL and
token from options, XMONBRIDGE_URL / XMONBRIDGE_TOKEN, or a config file readable by its owner
only (`url = …`, `token = …`). Exit 0 when the API accepted the alert, 1 when it refused it or
could not be reached, 2 for a usage or configuration error; failures print one line on stderr.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import time
import urllib.parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

PROG = "xmonbridge notify"
DEFAULT_CONFIG = "/etc/xmonbridge/notify.conf"
API_PATH = "/api/v1/alerts"
TRIES = 3
# Pauses between tries: three tries within about five seconds (plus each try's time).
PAUSES = (1.5, 3.0)
TIMEOUT = 10.0
USER_AGENT = "xmonbridge-notify/1"

# (form field, option, environment variable; for state, output and the problem ids the
# variable depends on whether NAGIOS_SERVICEDESC is set: see _from_environment).
FIELDS = (
    ("type", "--type", "NAGIOS_NOTIFICATIONTYPE"),
    ("host", "--host", "NAGIOS_HOSTNAME"),
    ("host_address", "--host-address", "NAGIOS_HOSTADDRESS"),
    ("service", "--service", "NAGIOS_SERVICEDESC"),
    ("state", "--state", "NAGIOS_{}STATE"),
    ("output", "--output", "NAGIOS_{}OUTPUT"),
    ("problem_id", "--problem-id", "NAGIOS_{}PROBLEMID"),
    ("last_problem_id", "--last-problem-id", "NAGIOS_LAST{}PROBLEMID"),
    ("time", "--time", "NAGIOS_TIMET"),
)


class UsageError(Exception):
    """Exit 2 with this one line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Post a Nagios notification to xmonbridge's alert API (POST <url>/api/v1/alerts).",
        epilog="Each macro option falls back to its NAGIOS_* environment variable. Keep the token out of "
        "the command line (ps shows it): put it in the config file (mode 0600) or pass a Nagios "
        'resource macro, --token "$USER9$".',
    )
    parser.add_argument("--kind", choices=("simple_call", "button_call", "sms"), help="the setting's kind")
    parser.add_argument("--setting-id", help="the setting's id (as on its detail page)")
    parser.add_argument("--setting", help="the setting's name (instead of --setting-id)")
    for _field, option, _env in FIELDS:
        parser.add_argument(option)
    parser.add_argument("--url", help="xmonbridge's base URL (the X-MON URL); env XMONBRIDGE_URL")
    parser.add_argument("--token", help="API token; env XMONBRIDGE_TOKEN")
    parser.add_argument("--config", help=f"config file with url = / token = lines (default {DEFAULT_CONFIG})")
    return parser


def _from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The macros Nagios exports as NAGIOS_*; service variables only in service notifications."""
    scope = "SERVICE" if environ.get("NAGIOS_SERVICEDESC") else "HOST"
    values = {}
    for field, _option, env in FIELDS:
        value = environ.get(env.format(scope), "")
        if value:
            values[field] = value
    return values


def read_config(path: str, required: bool) -> dict[str, str]:
    """`key = value` lines; refused when group or others may read the file (it holds the token)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if required:
            raise UsageError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as handle:
        mode = os.fstat(handle.fileno()).st_mode & 0o777
        if mode & 0o077:
            raise UsageError(f"config file {path} is open to group or others (mode {mode:04o}); chmod 600 {path}")
        text = handle.read()
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in ("url", "token"):
            raise UsageError(f"config file {path} line {number}: expected 'url = …' or 'token = …'")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def build(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str, dict[str, str]]:
    """(endpoint URL, token, form fields) from options, environment and config file."""
    args = _parser().parse_args(list(argv))
    if not args.kind:
        raise UsageError("--kind is required (simple_call, button_call or sms)")
    if not (args.setting_id or args.setting):
        raise UsageError("--setting-id or --setting is required")
    fields = {"kind": args.kind}
    if args.setting_id:
        fields["setting_id"] = args.setting_id
    else:
        fields["setting"] = args.setting
    fallback = _from_environment(environ)
    for field, option, _env in FIELDS:
        value = getattr(args, option[2:].replace("-", "_"))
        # An empty option (a macro empty in this notification) leaves the field to the environment.
        value = value or fallback.get(field, "")
        if value:
            fields[field] = value
    url = args.url or environ.get("XMONBRIDGE_URL", "")
    token = args.token or environ.get("XMONBRIDGE_TOKEN", "")
    if args.config or not (url and token):
        config = read_config(args.config or DEFAULT_CONFIG, required=bool(args.config))
        url = url or config.get("url", "")
        token = token or config.get("token", "")
    where = f"--config {args.config}" if args.config else f"{DEFAULT_CONFIG}"
    if not url:
        raise UsageError(f"no URL: give --url, XMONBRIDGE_URL or 'url = …' in {where}")
    if not token:
        raise UsageError(f"no API token: give 'token = …' in {where}, XMONBRIDGE_TOKEN or --token")
    return endpoint(url), token, fields


def endpoint(url: str) -> str:
    """<url>/api/v1/alerts (a URL already ending in it is kept)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"URL {url!r} is not an http:// or https:// URL")
    path = parts.path.rstrip("/")
    if not path.endswith(API_PATH):
        path += API_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class Failed(Exception):
    """Exit 1 with this one line."""


def _first_error(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        import json

        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            first = errors[0]
            if isinstance(first, dict):
                first = ": ".join(str(v) for v in first.values())
            return str(first)
        for key in ("error", "message", "description"):
            if data.get(key):
                return str(data[key])
    return " ".join(text.split())[:200]


def _post_once(url: str, token: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request(
            "POST",
            parts.path,
            body=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        response = connection.getresponse()
        return response.status, response.read(65536)
    finally:
        connection.close()


def post(
    url: str,
    token: str,
    fields: Mapping[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    timeout: float = TIMEOUT,
) -> bytes:
    """POST the alert; retry connection errors and 5xx, never 4xx. Returns the accepted body."""
    body = urllib.parse.urlencode(fields).encode("ascii")
    problem = ""
    for attempt in range(TRIES):
        if attempt:
            sleep(PAUSES[min(attempt - 1, len(PAUSES) - 1)])
        try:
            status, answer = _post_once(url, token, body, timeout)
        except (OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            problem = f"cannot reach {url}: {reason}"
            continue
        if 200 <= status < 300:
            return answer
        message = f"{url} answered {status}"
        detail = _first_error(answer)
        if detail:
            message += f": {detail}"
        if status < 500:
            raise Failed(message)
        problem = message
    raise Failed(f"{problem} (gave up after {TRIES} tries)")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run `xmonbridge notify`; returns the exit status."""
    try:
        url, token, fields = build(sys.argv[2:] if argv is None else argv, os.environ if environ is None else environ)
        answer = post(url, token, fields)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. a token with a line break, refused by http.client
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    print(answer.decode("utf-8", "replace").strip())
    return 0

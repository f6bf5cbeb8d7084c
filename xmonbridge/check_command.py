"""`xmonbridge check`: a Nagios plugin that asks xmonbridge's `GET /healthz` whether it works.

Run by the monitor as an active service check, so it imports the standard library only and
is started by xmonbridge/entry.py before anything heavy is loaded (like `notify`); it needs no
instance folder and may run on another box.

Prints one line, `XMONBRIDGE <STATE> - <summary> | <perfdata>`, and exits with the state:
0 OK, 1 WARNING, 2 CRITICAL (also when the server does not answer), 3 UNKNOWN (bad arguments,
an answer that is not xmonbridge's health report). The state is the worst of the server's own
status and the thresholds given here for the age of the dispatcher's last lease renewal and
for the oldest delivery that is due but not being worked.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NoReturn

PROG = "xmonbridge check"
HEALTH_PATH = "/healthz"

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SERVER_STATES = {"ok": OK, "warning": WARNING, "critical": CRITICAL}


class _Unknown(Exception):
    """Ends the check with UNKNOWN and this message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse exits 2, which Nagios reads as CRITICAL; a bad argument is UNKNOWN.
        raise _Unknown(f"bad arguments: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Nagios plugin: check xmonbridge through its GET /healthz.")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="xmonbridge's base URL (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default %(default)s)")
    parser.add_argument("--lease-warning", type=int, default=30, metavar="SECONDS",
                        help="WARNING when the dispatcher's lease was last renewed longer ago (default %(default)s)")
    parser.add_argument("--lease-critical", type=int, default=60, metavar="SECONDS",
                        help="CRITICAL when the dispatcher's lease was last renewed longer ago (default %(default)s)")
    parser.add_argument("--waiting-warning", type=int, default=120, metavar="SECONDS",
                        help="WARNING when a delivery has been due this long (default %(default)s)")
    parser.add_argument("--waiting-critical", type=int, default=600, metavar="SECONDS",
                        help="CRITICAL when a delivery has been due this long (default %(default)s)")
    return parser


def _health_url(base: str) -> str:
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _Unknown(f"bad arguments: --url {base!r} is not an http:// or https:// URL")
    path = parts.path.rstrip("/")
    if not path.endswith(HEALTH_PATH):
        path += HEALTH_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """The status and body, or raise OSError when the server does not answer."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "xmonbridge-check"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read(1_000_000)
    except urllib.error.HTTPError as error:
        return int(error.code), error.read(1_000_000)


def _clean(text: str) -> str:
    # One line, and no "|" (Nagios would read what follows as perfdata).
    return " ".join(str(text).replace("|", "/").split())


def _level(value: int | None, warning: int, critical: int) -> int:
    if value is None:
        return OK
    return CRITICAL if value > critical else WARNING if value > warning else OK


def evaluate(body: Any, args: argparse.Namespace) -> tuple[int, str, str]:
    """The state, the summary and the perfdata for a health report (raises _Unknown)."""
    if not isinstance(body, dict) or body.get("status") not in SERVER_STATES or not isinstance(body.get("reasons"), list):
        raise _Unknown("the answer is not xmonbridge's health report")
    state = SERVER_STATES[body["status"]]
    reasons = [_clean(reason) for reason in body["reasons"]]
    perf: list[str] = []
    lease = body.get("dispatcher") or {}
    waiting = body.get("oldest_waiting") or {}
    try:
        lease_age = None if lease.get("heartbeat_age") is None else int(lease["heartbeat_age"])
        waiting_age = None if waiting.get("age") is None else int(waiting["age"])
        waiting_count = None if waiting.get("count") is None else int(waiting["count"])
    except (AttributeError, TypeError, ValueError):
        raise _Unknown("the answer is not xmonbridge's health report") from None

    level = _level(lease_age, args.lease_warning, args.lease_critical)
    if level and lease.get("running"):
        reasons.append(f"dispatcher lease last renewed {lease_age}s ago")
    state = max(state, level)
    level = _level(waiting_age, args.waiting_warning, args.waiting_critical)
    # The server names a delivery waiting too long itself; say it once.
    if level and not any("waiting" in reason for reason in reasons):
        reasons.append(f"oldest delivery waiting {waiting_age}s")
    state = max(state, level)

    if lease_age is not None:
        perf.append(f"lease_age={lease_age}s;{args.lease_warning};{args.lease_critical};0")
    if waiting_age is not None:
        perf.append(f"oldest_waiting={waiting_age}s;{args.waiting_warning};{args.waiting_critical};0")
    if waiting_count is not None:
        perf.append(f"waiting={waiting_count};;;0")

    if reasons:
        summary = "; ".join(dict.fromkeys(reasons))
    else:
        holder = _clean(lease.get("holder") or "?")
        summary = f"dispatcher {holder} renewed {lease_age}s ago, nothing waiting"
        twilio = body.get("twilio") or {}
        error = twilio.get("last_error") if isinstance(twilio, dict) else None
        if isinstance(error, dict) and error.get("at"):
            summary += f", last Twilio error {_clean(error['at'])}"
    return state, summary, " ".join(perf)


def run(argv: Sequence[str]) -> tuple[int, str]:
    """The exit code and the status line."""
    try:
        args = _parser().parse_args(list(argv))
        for name in ("lease", "waiting"):
            warning, critical = getattr(args, f"{name}_warning"), getattr(args, f"{name}_critical")
            if warning < 0 or critical < warning:
                raise _Unknown(f"bad arguments: --{name}-warning must be from 0 to --{name}-critical")
        if args.timeout <= 0:
            raise _Unknown("bad arguments: --timeout must be more than 0")
        url = _health_url(args.url)
        try:
            status, raw = _fetch(url, args.timeout)
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, socket.timeout | TimeoutError):
                reason = f"no answer within {args.timeout:g}s"
            return CRITICAL, f"XMONBRIDGE CRITICAL - {_clean(url)} does not answer: {_clean(str(reason))}"
        try:
            body = json.loads(raw)
        except ValueError:
            if status >= 500:
                return CRITICAL, f"XMONBRIDGE CRITICAL - {_clean(url)} answered HTTP {status}"
            raise _Unknown(f"{url} answered HTTP {status} without a health report") from None
        state, summary, perf = evaluate(body, args)
    except _Unknown as problem:
        return UNKNOWN, f"XMONBRIDGE UNKNOWN - {_clean(str(problem))}"
    line = f"XMONBRIDGE {NAMES[state]} - {summary}"
    return state, f"{line} | {perf}" if perf else line


def main(argv: Sequence[str]) -> int:
    """Print the status line and return the exit code."""
    if any(arg in ("-h", "--help") for arg in argv):
        _parser().print_help()
        return OK
    code, line = run(argv)
    print(line)
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Nagios `define command { … }` blocks that hand a notification to a setting (R11).

Each setting gets two commands, one for service notifications and one for host notifications
(Nagios leaves the service macros empty in a host notification, so host and service read
different macros), in two variants: `curl` (nothing to install on the monitor; the fastest)
and `xmonbridge notify`.

How the text is written, and why:

* The API token is never part of the block: it is read from the resource macro `$USER9$`,
  defined in resource.cfg, a file the CGIs never show. `xmonbridge notify` gets it through
  `/usr/bin/env XMONBRIDGE_TOKEN=…` rather than `--token`, so it does not stay in `ps`
  (Nagios execs a command without a shell when it can, so a bare `NAME=value` prefix would
  be taken for the program's name).
* Every argument is in single quotes. Nagios strips `illegal_macro_output_chars` (by default
  `` ` ~ $ & | ' " < > ``) from the output macros, and object names cannot hold a quote, so a
  macro's value cannot end the quoted word.
* In a `command_line`, `;` starts a comment and `$` starts a macro: literal text is written
  with `\\;` and `$$`.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import public_url

# The resource macro (resource.cfg) the blocks read the API token from.
TOKEN_MACRO = "$USER9$"
API_PATH = "/api/v1/alerts"
CURL = "/usr/bin/curl"
ENV = "/usr/bin/env"
# Where `xmonbridge notify` is when the monitor's host has no better answer.
DEFAULT_NOTIFY = "/usr/local/bin/xmonbridge"
# curl: seconds per try, and tries after the first (timeouts and 5xx; the API stores a
# repeated notification once). Nagios kills a notification command after 30 s by default.
CURL_MAX_TIME = 5
CURL_RETRY = 2

SERVICE = "service"
HOST = "host"
TARGET_LABELS = {SERVICE: "サービス通知用", HOST: "ホスト通知用"}
VARIANT_LABELS = {"curl": "curl を使う場合", "notify": "xmonbridge notify を使う場合"}

# (API field, notify option, macro) of each target, in the order they are sent.
_COMMON_HEAD = (("type", "--type", "$NOTIFICATIONTYPE$"), ("host", "--host", "$HOSTNAME$"), ("host_address", "--host-address", "$HOSTADDRESS$"))
_MACROS = {
    SERVICE: (
        *_COMMON_HEAD,
        ("service", "--service", "$SERVICEDESC$"),
        ("state", "--state", "$SERVICESTATE$"),
        ("output", "--output", "$SERVICEOUTPUT$"),
        ("problem_id", "--problem-id", "$SERVICEPROBLEMID$"),
        ("last_problem_id", "--last-problem-id", "$LASTSERVICEPROBLEMID$"),
        ("time", "--time", "$TIMET$"),
    ),
    HOST: (
        *_COMMON_HEAD,
        ("state", "--state", "$HOSTSTATE$"),
        ("output", "--output", "$HOSTOUTPUT$"),
        ("problem_id", "--problem-id", "$HOSTPROBLEMID$"),
        ("last_problem_id", "--last-problem-id", "$LASTHOSTPROBLEMID$"),
        ("time", "--time", "$TIMET$"),
    ),
}


@dataclass(frozen=True)
class CommandBlock:
    """One ready-to-paste `define command` block."""

    variant: str  # "curl" or "notify"
    target: str  # SERVICE or HOST
    name: str  # its command_name
    text: str

    @property
    def label(self) -> str:
        """サービス通知用 or ホスト通知用."""
        return TARGET_LABELS[self.target]


def nagios_literal(text: str) -> str:
    """Text as a command_line must write it to mean itself: `$` as `$$`, `;` as `\\;`."""
    return text.replace("$", "$$").replace(";", "\\;")


def _word(text: str) -> str:
    """A literal shell word: quoted if needed, then escaped for the command_line."""
    return nagios_literal(shlex.quote(text))


def _macro_word(prefix: str, macro: str) -> str:
    """A single-quoted word of literal prefix and one macro, e.g. 'host=$HOSTNAME$'."""
    if "'" in prefix:
        raise ValueError("a quote in a macro word's literal part")
    return f"'{nagios_literal(prefix)}{macro}'"


def command_name(kind: str, setting_id: int, target: str) -> str:
    """The command_name of a setting's command, e.g. xmonbridge-sms-3-service."""
    return f"xmonbridge-{kind.replace('_', '-')}-{setting_id}-{target}"


def api_url(xmon_url: str | None) -> str | None:
    """The alert API's URL under xmonbridge's public URL (the X-MON URL), or None if unset."""
    root = public_url.base(xmon_url)
    return f"{root}{API_PATH}" if root else None


def curl_line(kind: str, setting_id: int, target: str, url: str) -> str:
    """The command_line posting the notification's macros with curl (form-encoded)."""
    # The header comes from standard input (`-H @-`), written by the shell's builtin printf:
    # on curl's own command line the token would show in `ps` while the request runs.
    words = [
        "printf",
        _word("Authorization: Bearer %s\\n"),
        _macro_word("", TOKEN_MACRO),
        "|",
        _word(CURL),
        "-sS",
        "-f",
        "--max-time",
        str(CURL_MAX_TIME),
        "--retry",
        str(CURL_RETRY),
        "-H",
        "@-",
        "--data-urlencode",
        _word(f"kind={kind}"),
        "--data-urlencode",
        _word(f"setting_id={setting_id}"),
    ]
    for field, _option, macro in _MACROS[target]:
        words += ["--data-urlencode", _macro_word(f"{field}=", macro)]
    words.append(_word(url))
    return " ".join(words)


def notify_line(kind: str, setting_id: int, target: str, base_url: str, notify_path: str) -> str:
    """The command_line running `xmonbridge notify` with the token in its environment."""
    words = [
        _word(ENV),
        _macro_word("XMONBRIDGE_TOKEN=", TOKEN_MACRO),
        _word(notify_path),
        "notify",
        "--url",
        _word(base_url),
        "--kind",
        _word(kind),
        "--setting-id",
        str(setting_id),
    ]
    # --option=value: a value starting with "-" (plugin output can) is not taken for an option.
    words += [_macro_word(f"{option}=", macro) for _field, option, macro in _MACROS[target]]
    return " ".join(words)


def define_command(name: str, command_line: str, comment: str) -> str:
    """A `define command` block with a comment line above it."""
    # The comment is shown in a page and pasted into a config file: keep it on one line.
    comment = " ".join(comment.split())
    return f"# {comment}\ndefine command {{\n    command_name    {name}\n    command_line    {command_line}\n}}\n"


def blocks(
    kind: str, setting_id: int, setting_name: str, xmon_url: str | None, notify_path: str = DEFAULT_NOTIFY
) -> list[CommandBlock]:
    """The blocks of one setting: curl then notify, each for services then hosts.

    Empty when no X-MON URL is set (there is no address the monitor could post to).
    """
    url = api_url(xmon_url)
    root = public_url.base(xmon_url)
    if url is None or root is None:
        return []
    result = []
    for variant in ("curl", "notify"):
        for target in (SERVICE, HOST):
            name = command_name(kind, setting_id, target)
            if variant == "curl":
                line = curl_line(kind, setting_id, target, url)
            else:
                line = notify_line(kind, setting_id, target, root, notify_path)
            comment = f"xmonbridge: {setting_name} ({TARGET_LABELS[target]}, {variant})"
            result.append(CommandBlock(variant, target, name, define_command(name, line, comment)))
    return result


def installed_notify_path() -> str:
    """This installation's `xmonbridge` script (right when the monitor runs on this host)."""
    script = Path(sys.executable).parent / "xmonbridge"
    return str(script) if script.is_file() else DEFAULT_NOTIFY


def resource_line(token: str = "<API トークン>") -> str:
    """The line to add to resource.cfg."""
    return f"{TOKEN_MACRO}={token}"

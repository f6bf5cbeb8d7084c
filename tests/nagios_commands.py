"""Run a Nagios `define command` block the way Nagios runs a notification command.

Nagios reads `command_line` up to an unescaped `;` (a comment) and turns `\\;` into `;`,
then replaces each `$MACRO$` with its value and `$$` with `$`, after removing
`illegal_macro_output_chars` from the output macros; the result runs under /bin/sh -c
whenever it holds shell syntax (quotes, here). Facts from tests/nagios/README.md and
Nagios 4.4's config and macro code.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping

# nagios.cfg's default illegal_macro_output_chars, removed from these macros' values.
ILLEGAL_OUTPUT_CHARS = "`~$&|'\"<>"
OUTPUT_MACROS = {"HOSTOUTPUT", "SERVICEOUTPUT", "LONGHOSTOUTPUT", "LONGSERVICEOUTPUT", "HOSTPERFDATA", "SERVICEPERFDATA"}


def command_line(block: str) -> str:
    """The command_line of a block, as Nagios reads it from the config file."""
    match = re.search(r"^\s*command_line\s+(.*)$", block, re.MULTILINE)
    assert match, f"no command_line in:\n{block}"
    raw = match.group(1)
    line, index = [], 0
    while index < len(raw):
        char = raw[index]
        if char == "\\" and raw[index + 1 : index + 2] == ";":
            line.append(";")
            index += 2
            continue
        if char == ";":
            break  # the rest of the line is a comment
        line.append(char)
        index += 1
    return "".join(line).rstrip()


def substitute(line: str, macros: Mapping[str, str]) -> str:
    """Replace $MACRO$ by its value ('' when unknown, as Nagios does) and $$ by $."""
    out, index = [], 0
    while index < len(line):
        if line[index] != "$":
            out.append(line[index])
            index += 1
            continue
        end = line.index("$", index + 1)
        name = line[index + 1 : end]
        if not name:
            out.append("$")
        else:
            value = macros.get(name, "")
            if name in OUTPUT_MACROS:
                value = "".join(c for c in value if c not in ILLEGAL_OUTPUT_CHARS)
            out.append(value)
        index = end + 1
    return "".join(out)


def run(block: str, macros: Mapping[str, str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a block's command under /bin/sh -c with the given macro values."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("XMONBRIDGE_", "NAGIOS_"))}
    environment.update(env or {})
    environment["NO_PROXY"] = environment["no_proxy"] = "127.0.0.1,localhost"
    return subprocess.run(
        ["/bin/sh", "-c", substitute(command_line(block), macros)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

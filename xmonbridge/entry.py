"""The `xmonbridge` console script: `notify` starts light, everything else is the Flask CLI.

A notification storm runs `xmonbridge notify` hundreds of times, so it must not pay for
importing Flask, SQLAlchemy or the Twilio SDK: it is dispatched here, before xmonbridge.cli
is imported. So is `xmonbridge check`, the Nagios plugin, which needs no instance folder. `import xmonbridge` itself imports nothing heavy (create_app imports Flask).
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run `xmonbridge notify …` and `xmonbridge check …` light, or hand every other command to the Flask CLI."""
    if len(sys.argv) > 1 and sys.argv[1] == "notify":
        from .notify_command import main as notify

        raise SystemExit(notify(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "check":
        from .check_command import main as check

        raise SystemExit(check(sys.argv[2:]))
    from .cli import main as flask_cli

    flask_cli()

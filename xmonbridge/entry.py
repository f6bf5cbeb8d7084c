"""The `xmonbridge` console script: `notify` starts light, everything else loads the app's CLI."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "notify":
        from .notify_cli import main as notify

        sys.exit(notify(sys.argv[2:]))
    from .cli import main as cli

    cli()

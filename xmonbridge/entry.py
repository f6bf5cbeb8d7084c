"""The `xmonbridge` console script: `notify` starts light, everything else is the Flask CLI.

A notification storm runs `xmonbridge notify` hundreds of times, so it must not pay for
importing Flask, SQLAlchemy or the Twilio SDK: it is dispatched here, before xmonbridge.cli
is imported. So is `xmonbridge check`, the Nagios plugin, which needs no instance folder. `import xmonbridge` itself imports nothing heavy (create_app imports Flask).

Run from the one-file build (dist/xmonbridge.pex, scripts/build-pex.sh), the instance folder
defaults to `instance` beside the .pex file rather than Flask's default, which would be inside
the PEX's unpacked copy under PEX_ROOT: a cache that a new build or a cleanup replaces.
"""

from __future__ import annotations

import sys


def pex_instance_default() -> None:
    """Point XMONBRIDGE_INSTANCE at `instance` beside the running .pex file, unless it is set."""
    # pex sets PEX to the real path of the .pex file it runs, so a symlink to it finds the
    # same folder.
    import os

    pex = os.environ.get("PEX")
    if pex and os.path.isfile(pex) and not os.environ.get("XMONBRIDGE_INSTANCE"):
        os.environ["XMONBRIDGE_INSTANCE"] = os.path.join(os.path.dirname(pex), "instance")


def main() -> None:
    """Run `xmonbridge notify …` and `xmonbridge check …` light, or hand every other command to the Flask CLI."""
    if len(sys.argv) > 1 and sys.argv[1] == "notify":
        from .notify_command import main as notify

        raise SystemExit(notify(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "check":
        from .check_command import main as check

        raise SystemExit(check(sys.argv[2:]))
    pex_instance_default()
    from .cli import main as flask_cli

    flask_cli()

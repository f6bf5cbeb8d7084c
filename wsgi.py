"""Entry point for `gunicorn wsgi:app`."""

from __future__ import annotations

import sys

from xmonbridge import create_app, readiness
from xmonbridge.config import ConfigError

# gunicorn halts on this worker exit code ("App failed to load") instead of restarting the
# worker forever; other servers just stop.
APP_LOAD_ERROR = 4

try:
    app = create_app()
    readiness.require(app)
except (readiness.NotReady, ConfigError) as exc:
    print(f"xmonbridge: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR) from None

"""Entry point for `gunicorn wsgi:app`."""

from __future__ import annotations

import os
import sys

from xmonbridge import create_app, readiness, watchdog
from xmonbridge.dispatch import runner as dispatch_runner
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

# The dispatcher thread of this worker (one of the workers leads). Imported in each worker
# unless gunicorn runs with --preload; then the thread starts again in each forked worker.
dispatch_runner.start(app)
os.register_at_fork(after_in_child=lambda: dispatch_runner.start(app))
# The heartbeat's watchdog, apart from the dispatcher (xmonbridge/watchdog.py).
watchdog.start(app)
os.register_at_fork(after_in_child=lambda: watchdog.start(app))

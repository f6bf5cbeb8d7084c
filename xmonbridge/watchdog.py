"""The heartbeat's watchdog thread: `start(app)` in every `serve` worker and in wsgi.py.

It runs heartbeat.check() every HEARTBEAT_CHECK_SECONDS in its own thread and app context,
apart from the dispatcher thread (dispatch/runner.py): a dispatcher that hangs or died cannot
report itself, but the watchdog beside it, or in another worker or server, still can. The
checks of all workers may overlap; heartbeat.py's claims make them text once. When every
`serve` is down nothing is left to check, so `xmonbridge heartbeat` from cron or a systemd
timer (deploy/systemd/xmonbridge-heartbeat.timer) covers that case.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from flask import Flask

from . import heartbeat
from .extensions import db

log = logging.getLogger(__name__)

# Never check faster than this, whatever the configuration says.
MIN_INTERVAL = 0.5


class Watchdog:
    """The watchdog thread of one process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xmonbridge-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current check (a text in flight is waited for at most timeout seconds)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        interval = max(float(self.app.config["HEARTBEAT_CHECK_SECONDS"]), MIN_INTERVAL)
        # The first check waits one interval: a dispatcher starting beside it takes the
        # lease within a second, and a fresh server is not a stopped one.
        while not self._stop.wait(interval):
            with self.app.app_context():
                try:
                    result = heartbeat.check()
                    if result.sent or result.failed:
                        log.warning("%s", result.summary())
                except Exception:  # noqa: BLE001 - the loop must survive a bad check (e.g. database busy)
                    log.exception("heartbeat check failed")
                finally:
                    db.session.remove()


_watchdog: Watchdog | None = None
_watchdog_pid: int | None = None
_lock = threading.Lock()


def start(app: Flask) -> Watchdog | None:
    """Start this process's watchdog once (again after a fork); None when disabled (interval 0)."""
    global _watchdog, _watchdog_pid
    if not app.config.get("HEARTBEAT_CHECK_SECONDS"):
        return None
    with _lock:
        if _watchdog is not None and _watchdog_pid == os.getpid() and _watchdog.alive:
            return _watchdog
        _watchdog, _watchdog_pid = Watchdog(app), os.getpid()
        _watchdog.start()
        return _watchdog


def stop() -> None:
    """Stop this process's watchdog, if it runs here."""
    watchdog = _watchdog
    if watchdog is not None and _watchdog_pid == os.getpid():
        watchdog.stop()


atexit.register(stop)

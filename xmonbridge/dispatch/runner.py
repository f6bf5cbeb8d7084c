"""The dispatcher thread: `start(app)` in every `serve` worker and in wsgi.py; one leads.

The thread runs Dispatcher.run_once() in its own app context, woken at once by an alert this
process accepted (dispatch.wake()) and otherwise every DISPATCH_POLL_SECONDS. `stop()` (on
SIGTERM, through gunicorn's worker_exit hook, or at interpreter exit) lets the current request
to Twilio finish and its outcome be committed, then gives the lease up so another process
takes over without waiting for it to expire.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading

from flask import Flask

from ..calls import simphone
from ..extensions import db
from ..models import utcnow
from . import begin_pass, listen, set_wake_address, wait_for_work, wake, wake_address
from .engine import Dispatcher

log = logging.getLogger(__name__)

# Never poll faster than this, whatever the configuration says.
MIN_POLL = 0.05


class Runner:
    """A dispatcher thread of one process."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dispatcher: Dispatcher | None = None
        self.address = wake_address(str(app.config["SQLALCHEMY_DATABASE_URI"]))
        # Set while this process leads and receives the other workers' wake-ups.
        self._listening: threading.Event | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xmonbridge-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop between attempts and wait for the thread (at most timeout seconds)."""
        self._stop.set()
        wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            cfg = self.app.config
            limit = timeout if timeout is not None else cfg["TWILIO_CONNECT_TIMEOUT"] + cfg["TWILIO_READ_TIMEOUT"] + 5
            self._thread.join(limit)

    def _listen_while_leading(self) -> None:
        """Take the wake-up socket when leading; let it go when not (for the next leader)."""
        assert self.dispatcher is not None
        leads = self.dispatcher.leads()
        if leads and self._listening is None:
            stop = threading.Event()
            if listen(self.address, stop) is not None:
                self._listening = stop
        elif not leads and self._listening is not None:
            self._listening.set()
            self._listening = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        with self.app.app_context():
            self.dispatcher = Dispatcher(stopping=self._stop.is_set)
            poll = max(float(self.app.config["DISPATCH_POLL_SECONDS"]), MIN_POLL)
            simulated = self.app.config["TWILIO_MODE"] == "simulate"
            while not self._stop.is_set():
                begin_pass()
                try:
                    delay = self.dispatcher.run_once()
                    if simulated and self.dispatcher.leads():
                        # Time passes on the simulated phones too, with or without the page open.
                        simphone.settle_all(utcnow())
                except Exception:  # noqa: BLE001 - the loop must survive a bad pass (e.g. database busy)
                    log.exception("dispatcher pass failed")
                    delay = poll
                finally:
                    db.session.remove()
                self._listen_while_leading()
                if delay > 0 and not self._stop.is_set():
                    wait_for_work(max(min(delay, poll), 0.0))
            if self._listening is not None:
                self._listening.set()
            try:
                self.dispatcher.release()
            except Exception:  # noqa: BLE001 - the lease then simply expires
                log.exception("could not release the dispatcher lease")
            finally:
                db.session.remove()


_runner: Runner | None = None
_runner_pid: int | None = None
_lock = threading.Lock()


def start(app: Flask) -> Runner | None:
    """Start this process's dispatcher thread once (again after a fork); None when disabled."""
    global _runner, _runner_pid
    if not app.config.get("DISPATCHER_ENABLED", True):
        return None
    with _lock:
        if _runner is not None and _runner_pid == os.getpid() and _runner.alive:
            return _runner
        _runner, _runner_pid = Runner(app), os.getpid()
        set_wake_address(_runner.address)
        _runner.start()
        return _runner


def stop() -> None:
    """Stop this process's dispatcher thread, if it runs here."""
    runner = _runner
    if runner is not None and _runner_pid == os.getpid():
        runner.stop()


atexit.register(stop)

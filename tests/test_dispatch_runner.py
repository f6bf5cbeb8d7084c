"""The dispatcher thread: woken by new work, stopped cleanly, lease handed back."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask

from tests.dispatch_helpers import queue
from tests.factories import make_recipient, make_sms_setting, make_twilio_account
from xmonbridge import dispatch
from xmonbridge.dispatch import lease
from xmonbridge.dispatch.runner import Runner
from xmonbridge.extensions import db
from xmonbridge.models import utcnow


def _wait(predicate: Any, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_thread_sends_at_once_when_woken_and_releases_the_lease_on_stop(live_app: Flask, fake_twilio: Any) -> None:
    live_app.config["DISPATCH_POLL_SECONDS"] = 30.0  # only a wake-up can explain a quick send
    account = make_twilio_account(cps=100)
    setting = make_sms_setting(account, [make_recipient()])
    runner = Runner(live_app)
    runner.start()
    try:
        assert _wait(lambda: runner.dispatcher is not None and runner.dispatcher.leads())
        time.sleep(0.2)  # the thread is now waiting for work
        queue(setting)
        dispatch.wake()
        # Polling every 30 s could not have sent it within 5 s: the wake-up did.
        assert _wait(lambda: len(fake_twilio.requests_for("CreateMessage")) == 1, 5)
    finally:
        runner.stop(timeout=20)
    assert not runner.alive
    db.session.expire_all()
    row = lease.current()
    assert row is not None and row.expires_at < utcnow()


def test_a_wake_up_from_another_process_reaches_the_leader(live_app: Flask, fake_twilio: Any) -> None:
    import subprocess
    import sys

    live_app.config["DISPATCH_POLL_SECONDS"] = 30.0
    account = make_twilio_account(cps=100)
    setting = make_sms_setting(account, [make_recipient()])
    runner = Runner(live_app)
    runner.start()
    try:
        assert _wait(lambda: runner._listening is not None)
        time.sleep(0.2)
        queue(setting)
        # As another gunicorn worker does after committing an alert.
        code = (
            "from xmonbridge import dispatch; "
            f"dispatch.set_wake_address({runner.address!r}); dispatch.wake()"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        assert _wait(lambda: len(fake_twilio.requests_for("CreateMessage")) == 1, 5)
    finally:
        runner.stop(timeout=20)

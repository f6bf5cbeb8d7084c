"""SIGKILL a real `xmonbridge serve` while it dispatches; the restart must finish the job.

50 alerts for a simple-call and an SMS setting with 3 recipients each: 150 calls and messages.
Whatever the kill point, in the end every alert reached every recipient exactly once at the
(fake) Twilio: nothing lost, nothing doubled.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.factories import make_recipient, make_simple_call_setting, make_sms_setting, make_twilio_account
from tests.real_server import RealServer, wait_for
from xmonbridge.extensions import db
from xmonbridge.models import DELIVERY_OPEN, DELIVERY_SENT, Attempt, Delivery

PHONES = ["+819001230001", "+819001230002", "+819001230003"]
ALERTS = 50


def _server(tmp_path: Path, fake_twilio: Any) -> tuple[RealServer, str, dict[str, int]]:
    server = RealServer(
        tmp_path,
        api_base=fake_twilio.base_url,
        TWILIO_CONNECT_TIMEOUT=1,
        TWILIO_READ_TIMEOUT=2,
        DISPATCH_LEASE_SECONDS=3,
        DISPATCH_LOOKUP_DELAY_SECONDS=1,
        DISPATCH_BACKOFF_SECONDS=0.5,
    )
    with server.app_context():
        users = [make_recipient(login=f"u{i}", name=f"担当者{i}", phone=p) for i, p in enumerate(PHONES)]
        account = make_twilio_account(cps=25)
        simple = make_simple_call_setting(account, users, name="電話連絡")
        sms = make_sms_setting(account, users, name="SMS連絡")
        ids = {"simple_call": simple.id, "sms": sms.id}
    return server, server.make_token(), ids


def _post_storm(server: RealServer, token: str, ids: dict[str, int]) -> None:
    for n in range(ALERTS):
        kind = "simple_call" if n % 2 == 0 else "sms"
        status, body = server.post_alert(
            token,
            {
                "kind": kind,
                "setting_id": ids[kind],
                "type": "PROBLEM",
                "host": f"host-{n:02d}",
                "service": "HTTP",
                "state": "CRITICAL",
                "output": "Connection refused",
                "problem_id": str(1000 + n),
            },
        )
        assert status == 202, body


def _open_deliveries(server: RealServer) -> int:
    with server.app_context():
        return db.session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status.in_(DELIVERY_OPEN))) or 0


def _made(fake_twilio: Any) -> Counter[tuple[str, str]]:
    """(host, To) of every call and message the fake Twilio created."""
    made: Counter[tuple[str, str]] = Counter()
    for call in list(fake_twilio.calls_by_sid.values()):
        made[(_host_in(fake_twilio.heard(call["sid"])), call["to"])] += 1
    for message in list(fake_twilio.messages_by_sid.values()):
        made[(_host_in(message["body"]), message["to"])] += 1
    return made


def _host_in(text: str) -> str:
    for word in text.replace("のサービス", " ").split():
        if word.startswith("host-"):
            return word[:7]
    return f"?{text}"


@pytest.mark.parametrize("kill_point", ["mid-storm", "mid-request", "after-intake"])
def test_every_alert_reaches_every_recipient_exactly_once_across_a_sigkill(
    tmp_path: Path, fake_twilio: Any, kill_point: str
) -> None:
    fake_twilio.dial_at_once = True  # calls are listed at once, so a look-up finds them
    server, token, ids = _server(tmp_path, fake_twilio)
    try:
        server.start(workers=2)
        creates = lambda: len(fake_twilio.requests_for("CreateCall")) + len(fake_twilio.requests_for("CreateMessage"))  # noqa: E731
        if kill_point == "mid-request":
            # The 5th create is carried out by Twilio, then its answer hangs: killed while waiting.
            fake_twilio.stall_next(30, count=1, after_create=True)
        _post_storm(server, token, ids)
        if kill_point == "mid-storm":
            wait_for(lambda: creates() >= 60, 30, "60 creates")
        elif kill_point == "mid-request":
            wait_for(lambda: creates() >= 10, 30, "the stalled create and more")
        server.kill()
        assert creates() < ALERTS * 3  # the kill came before the end

        server.start(workers=2)
        wait_for(lambda: _open_deliveries(server) == 0, 120, "every delivery settled")
    finally:
        server.stop()

    made = _made(fake_twilio)
    expected = {(f"host-{n:02d}", phone) for n in range(ALERTS) for phone in PHONES}
    assert set(made) == expected
    doubled = {key: count for key, count in made.items() if count != 1}
    assert doubled == {}
    with server.app_context():
        states = Counter(db.session.scalars(select(Delivery.status)))
        assert states == {DELIVERY_SENT: ALERTS * 3}
        # Every attempt ended with an outcome: nothing half-written.
        assert db.session.scalar(select(func.count()).select_from(Attempt).where(Attempt.outcome == "")) == 0

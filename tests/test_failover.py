"""Two `xmonbridge serve` on one PostgreSQL: SIGKILL the leader mid-rotation, the other goes on.

Two servers (two ports, two instance folders holding the same keys) share a throw-away
PostgreSQL cluster and the fake Twilio; a balancer in front of them (standing in for the
X-MON URL's host) hands each webhook to them in turn and skips one that refuses the
connection. An alert for a 輪番 button setting with three users starts the rotation; the first
user answers and presses 2#. Then the process group of the server whose worker holds the
`dispatcher_lease` row is SIGKILLed:

* ringing — while the second user's call rings (Twilio accepted it, the app has its SID);
* placing — right after the 2#, while the leader waits for Twilio's answer to the second
  call's create (Twilio made the call; the answer never reaches the dead process);
* answered-early — as placing, but the second user answers and presses 2# before the
  survivor has found the call: the signed webhook's CallSid settles the attempt.

The other server takes the lease once it runs out (never before: no two leaders at once) and
within the lease time after that; the rotation goes on through it: every user is called once,
in order (the call the dead leader was placing is found at Twilio and adopted, not placed
again), and the third user's 3# acknowledges the fault to the monitor exactly once.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.factories import make_button_call_setting, make_recipient, make_twilio_account
from tests.handset import Call, Handset, HttpClient, HttpResponse
from tests.pg import Cluster
from tests.real_server import RealServer, wait_for
from xmonbridge.calls import compose, flow
from xmonbridge.dispatch import lease as dispatch_lease
from xmonbridge.extensions import db
from xmonbridge.keys import FERNET_KEY_FILE, SECRET_KEY_FILE
from xmonbridge.models import (
    ACK_DONE,
    ACK_HTTP,
    DELIVERY_CALLING,
    DELIVERY_CANCELED,
    DELIVERY_SENT,
    NOTIFICATION_DONE,
    OUTCOME_ADOPTED,
    OUTCOME_PENDING,
    OUTCOME_PLACED,
    Acknowledgement,
    Delivery,
    Notification,
    XmonSettings,
    utcnow,
)

PHONES = ["+819001230001", "+819001230002", "+819001230003"]
NAMES = ["佐藤 翔太", "鈴木 花子", "高橋 健"]
# The address Twilio and the monitor reach: neither server's own; requests are signed for it.
XMON_URL = "https://alerts.example.test"
# Short, so the test does not wait long. A leader renews every third of it, so a request starts
# with at least 4 s of lease left, more than the read timeout: the leader stuck in a create
# still holds the lease when the test kills it.
LEASE_SECONDS = 6
CONFIG = {
    "DISPATCH_LEASE_SECONDS": LEASE_SECONDS,
    "DISPATCH_POLL_SECONDS": 0.5,
    "DISPATCH_LOOKUP_DELAY_SECONDS": 1,
    "DISPATCH_BACKOFF_SECONDS": 0.5,
    "TWILIO_CONNECT_TIMEOUT": 1,
    "TWILIO_READ_TIMEOUT": 3,
}
# Generous: the servers share two CPUs with whatever else runs.
DEADLINE = 60


# --- the monitor that receives 3# acknowledgements ---


class _Monitor(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        type(self).received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def monitor() -> Iterator[str]:
    """An acknowledgement endpoint on 127.0.0.1 (X-MON 設定: HTTP で POST する); its URL."""
    _Monitor.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Monitor)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ack"
    finally:
        server.shutdown()
        server.server_close()


# --- the balancer in front of the two servers ---


class Balancer:
    """What the X-MON URL's host does: requests take turns, a server refusing connections is skipped."""

    def __init__(self, servers: list[RealServer]) -> None:
        self.servers = servers
        self._turn = itertools.count()
        # The index of the server that answered each request, in order.
        self.answered: list[int] = []

    def post(self, path: str, data: dict[str, str], headers: dict[str, str]) -> HttpResponse:
        first = next(self._turn)
        for step in range(len(self.servers)):
            index = (first + step) % len(self.servers)
            try:
                response = HttpClient(self.servers[index].base).post(path, data, headers)
            except urllib.error.URLError as error:
                if isinstance(error.reason, ConnectionRefusedError):
                    continue  # that server is down: the next one gets the request
                raise
            self.answered.append(index)
            return response
        raise AssertionError("no server answered")


def healthz(server: RealServer) -> dict[str, Any]:
    """GET /healthz of one server (200 or 503, JSON either way)."""
    try:
        with urllib.request.urlopen(f"{server.base}/healthz", timeout=10) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return dict(json.loads(error.read()))


def server_of(holder: str, servers: list[RealServer]) -> RealServer:
    """The server whose process group holds the worker named in a lease holder (host:pid:suffix)."""
    pid = int(holder.rsplit(":", 2)[1])
    group = os.getpgid(pid)
    found = [s for s in servers if s.proc is not None and s.proc.pid == group]
    assert len(found) == 1, (holder, group)
    return found[0]


# --- what Twilio knows ---


def calls_at_twilio(fake: Any) -> list[Call]:
    """Every call the fake Twilio made, oldest first, whether or not the app heard the answer.

    A create whose answer stalls has no SID in its recorded response: the calls are paired
    with the requests that made them, per number, in order (the rotation places one at a time).
    """
    made = list(fake.calls_by_sid.values())
    requests = fake.requests_for("CreateCall")
    assert all(r.response_status in (None, 201) for r in requests), [r.response_status for r in requests]
    calls = []
    for call in made:
        same = [c for c in made if c["to"] == call["to"]]
        asked = [r for r in requests if r.form["To"] == call["to"]]
        position = same.index(call)
        if position < len(asked):
            calls.append(Call(call["sid"], call["to"], dict(asked[position].form)))
    return calls


def ringing(fake: Any, number: str, seen: set[str]) -> Call:
    """The first call to number Twilio made that the handset has not picked up yet."""
    found: list[Call] = []

    def rings() -> bool:
        found[:] = [c for c in calls_at_twilio(fake) if c.to == number and c.sid not in seen]
        return bool(found)

    wait_for(rings, DEADLINE, f"a call to {number}")
    seen.add(found[0].sid)
    return found[0]


# --- the database both servers share ---


@dataclass(frozen=True)
class LeaseRow:
    holder: str
    expires_at: datetime
    acquired_at: datetime | None


def lease_row() -> LeaseRow:
    db.session.rollback()
    row = dispatch_lease.current()
    assert row is not None
    found = LeaseRow(row.holder, row.expires_at, row.acquired_at)
    db.session.rollback()
    return found


def deliveries() -> list[Delivery]:
    db.session.rollback()
    return list(db.session.scalars(select(Delivery).order_by(Delivery.position)))


def _servers(tmp_path: Path, fake_twilio: Any, database_url: str) -> list[RealServer]:
    """Two instance folders on one database, the second holding the first's keys (README)."""
    first = RealServer(tmp_path / "a", api_base=fake_twilio.base_url, database_url=database_url, **CONFIG)
    folder = tmp_path / "b" / "instance"
    folder.mkdir(parents=True, mode=0o700)
    for name in (SECRET_KEY_FILE, FERNET_KEY_FILE):
        shutil.copy2(first.instance / name, folder / name)
    second = RealServer(tmp_path / "b", api_base=fake_twilio.base_url, database_url=database_url, **CONFIG)
    return [first, second]


def work(handset: Handset, call: Call, key: str) -> list[str]:
    """Answer, hear the one fault, press key#, hang up; what was said after the key."""
    heard = handset.answer(call)
    assert compose.SUMMARY.format(faults=1, recoveries=0) in heard.text
    reply = handset.press(call, heard, key)
    assert reply.hangup
    assert handset.hang_up(call) == 204
    return reply.says


def app_holds(call: Call) -> bool:
    """Whether the app has the call as the second user's call in progress (its SID stored)."""
    second = deliveries()[1]
    return second.status == DELIVERY_CALLING and second.sid == call.sid


@pytest.mark.parametrize(
    "kill_point",
    [
        "ringing",
        "placing",
        "answered-early",
    ],
)
def test_the_other_server_takes_over_a_rotation_when_the_leader_is_killed(
    tmp_path: Path, pg_cluster: Cluster, fake_twilio: Any, kill_point: str
) -> None:
    servers = _servers(tmp_path, fake_twilio, pg_cluster.new_database())
    token = servers[0].make_token()
    with monitor() as ack_url, servers[0].app_context():
        users = [make_recipient(login=f"u{i}", name=NAMES[i], phone=p) for i, p in enumerate(PHONES)]
        setting = make_button_call_setting(make_twilio_account(cps=10), users, name="当番への電話", mode="rotation")
        settings = XmonSettings.for_update()
        settings.xmon_url = XMON_URL
        settings.ack_mode = ACK_HTTP
        settings.ack_http_url = ack_url
        db.session.commit()
        setting_id = setting.id

        balancer = Balancer(servers)
        handset = Handset(balancer, fake_twilio, XMON_URL)
        picked_up: set[str] = set()
        try:
            for server in servers:
                server.start(workers=2)
            wait_for(lambda: healthz(servers[1])["dispatcher"]["running"], DEADLINE, "a dispatcher to lead")
            alert = {"kind": "button_call", "setting_id": setting_id, "type": "PROBLEM", "host": "db01"}
            alert.update(service="PGSQL", state="CRITICAL", output="connection refused", problem_id="41")
            status, body = servers[0].post_alert(token, alert)
            assert status == 202, body

            # The first user answers and passes the call on.
            first = ringing(fake_twilio, PHONES[0], picked_up)
            if kill_point != "ringing":
                # Twilio makes the next call but its answer hangs: the leader is killed waiting for it.
                fake_twilio.stall_next(DEADLINE, operation="CreateCall", after_create=True)
            assert work(handset, first, "2")[0] == compose.PASSING
            if kill_point == "ringing":
                second = ringing(fake_twilio, PHONES[1], picked_up)
                wait_for(lambda: app_holds(second), DEADLINE, "the app to hold the second call's SID")
            else:
                wait_for(lambda: len(fake_twilio.requests_for("CreateCall")) == 2, DEADLINE, "the second create")

            # Kill the server whose worker leads.
            holder = healthz(servers[0])["dispatcher"]["holder"]
            leader = server_of(holder, servers)
            survivor = servers[1 - servers.index(leader)]
            in_flight = deliveries()[1].attempts[-1]
            assert in_flight.placed_by == holder
            assert in_flight.outcome == (OUTCOME_PLACED if kill_point == "ringing" else OUTCOME_PENDING)
            leader.kill()
            old = lease_row()
            assert old.holder == holder  # the dead leader's row, not taken over yet
            answered_before = len(balancer.answered)
            assert set(balancer.answered) == {0, 1}  # both servers took webhooks so far

            if kill_point == "answered-early":
                # The second phone rings at once; its user answers before anyone recorded the call.
                second = ringing(fake_twilio, PHONES[1], picked_up)
                assert work(handset, second, "2")[0] == compose.PASSING

            def survivor_leads() -> bool:
                row = lease_row()
                return row.holder != holder and row.expires_at > utcnow()

            wait_for(survivor_leads, DEADLINE, "the other server to take the lease")
            new = lease_row()
            assert server_of(new.holder, servers) is survivor
            assert new.acquired_at is not None
            # Never two leaders at once, and taken over within the lease time after it ran out.
            assert old.expires_at <= new.acquired_at < old.expires_at + timedelta(seconds=LEASE_SECONDS)
            report = healthz(survivor)
            assert report["dispatcher"]["holder"] == new.holder and report["status"] != "critical"

            if kill_point == "placing":
                # The survivor finds the call at Twilio (its answer died with the leader) and adopts it.
                second = ringing(fake_twilio, PHONES[1], picked_up)
                wait_for(lambda: app_holds(second), DEADLINE, "the survivor to adopt the second call")
            if kill_point != "answered-early":
                assert work(handset, second, "2")[0] == compose.PASSING

            third = ringing(fake_twilio, PHONES[2], picked_up)
            assert work(handset, third, "3")[0] == compose.ACKNOWLEDGED.format(count=1)
            # Only the survivor answered since the kill.
            assert set(balancer.answered[answered_before:]) == {servers.index(survivor)}

            wait_for(lambda: len(_Monitor.received) >= 1, DEADLINE, "the acknowledgement at the monitor")
            time.sleep(2)  # give a doubled call or acknowledgement the time to show up
        finally:
            for server in servers:
                server.stop()

        # Every user was called once, in order: nothing lost, nothing doubled.
        assert [r.form["To"] for r in fake_twilio.requests_for("CreateCall")] == PHONES
        assert [c.to for c in calls_at_twilio(fake_twilio)] == PHONES
        rows = deliveries()
        # Those who passed would have been called again after the last; 3# ended that.
        assert [(d.to_number, d.status) for d in rows] == [
            (PHONES[0], DELIVERY_CANCELED),
            (PHONES[1], DELIVERY_CANCELED),
            (PHONES[2], DELIVERY_SENT),
        ]
        attempts = [d.attempts for d in rows]
        assert [len(a) for a in attempts] == [1, 1, 1]
        # Each call is on record with its SID and how it ended; the survivor placed the third.
        assert [(a[0].sid, a[0].final_status, a[0].end_reason) for a in attempts] == [
            (first.sid, "completed", flow.END_KEY_2),
            (second.sid, "completed", flow.END_KEY_2),
            (third.sid, "completed", flow.END_KEY_3),
        ]
        # Found at Twilio by the survivor (placing), or named by its own signed webhook first.
        second_outcome = OUTCOME_ADOPTED if kill_point == "placing" else OUTCOME_PLACED
        assert [a[0].outcome for a in attempts] == [OUTCOME_PLACED, second_outcome, OUTCOME_PLACED]
        assert attempts[2][0].placed_by == new.holder
        notification = db.session.scalars(select(Notification)).one()
        assert notification.status == NOTIFICATION_DONE
        assert notification.end_reason == flow.ENDED_BY_ACK.format(user=NAMES[2])
        ack = db.session.scalars(select(Acknowledgement)).one()
        assert (ack.host, ack.service, ack.author, ack.status) == ("db01", "PGSQL", NAMES[2], ACK_DONE)
        assert [(a["host"], a["service"], a["author"]) for a in _Monitor.received] == [("db01", "PGSQL", NAMES[2])]
        db.session.rollback()

"""Button-call webhooks per second on `xmonbridge serve` (gunicorn, 2 workers), beside a static page.

Twilio fetches /twilio/voice/<token> when a callee answers and posts the keys to
/twilio/gather/<token>; both are signed (X-Twilio-Signature over the public X-MON URL) and
both answer TwiML composed from the database. This script seeds CALLS button calls in
progress (one 一斉通知 setting with one recipient each, 3 faults and 1 recovery joined through
intake, the delivery "calling" with one placed attempt), then drives signed requests:
answers, then keys 1#, 7#, 8# and invalid ones (5#, 12#), which keep the call going (never
2#, 3# or 9#, so every run does the same work). Each kind runs twice: from --threads client
threads (the rate under load; latency there is mostly queueing) and from one client per
worker (the latency of a request that waits for nobody). The floor is the same server and
client fetching a static file (/static/css/app.css). The dispatcher is off: the calls are
marked placed by hand, and nothing here reaches the fake Twilio.

Targets (issue 8): at least 300 requests/s, p99 at most 50 ms.

    .venv/bin/python bench/button_webhooks.py [--threads 16] [--requests 2000] [--calls 64]
"""

from __future__ import annotations

import argparse
import http.client
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

from _common import PHONES, FakeTwilio, RealServer, median, percentile, post_many
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, make_button_call_setting, make_recipient, make_twilio_account, set_xmon_url

XMON = "https://xmon.example.jp/bridge"
FROM = "+815012340001"
KEYS = ["1", "7", "8", "5", "12"]
# A button-call replacement list of a realistic length (applied to every text spoken).
REPLACEMENTS = "\n".join(
    [f"web{n:02d},ウェブ{n}" for n in range(1, 16)]
    + ["HTTP,エイチティーティーピー", "PGSQL,ポスグレ", "CRITICAL,クリティカル", "OK,オーケー", "DB,データベース"]
)
TARGET_RATE = 300
WORKERS = 2
TARGET_P99_MS = 50


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def p(self, q: float) -> float:
        return (median(self.latencies) if q == 50 else percentile(self.latencies, q)) * 1000


def seed(server: RealServer, calls: int) -> list[tuple[str, str]]:
    """CALLS button calls ringing at one recipient; return each call's (callback token, CallSid)."""
    from xmonbridge.alerts import intake
    from xmonbridge.extensions import db
    from xmonbridge.models import (
        DELIVERY_CALLING,
        OUTCOME_PLACED,
        REPLACEMENT_BUTTON,
        Attempt,
        Notification,
        ReplacementList,
        UserMessageTemplate,
        utcnow,
    )

    made: list[tuple[str, str]] = []
    with server.app_context():
        set_xmon_url(XMON)
        account = make_twilio_account(cps=100)
        user = make_recipient(login="oncall", name="佐藤 翔太", phone=PHONES[0])
        db.session.add(
            UserMessageTemplate(
                user_id=user.id,
                opening_message="こちらは運用チームの監視システムです。障害が発生しました。",
                closing_message="対応をお願いします。失礼します。",
            )
        )
        db.session.add(ReplacementList(scope=REPLACEMENT_BUTTON, name="ボタン", content=REPLACEMENTS))
        db.session.commit()
        problem = 1000
        for n in range(calls):
            setting = make_button_call_setting(account, [user], name=f"ボタン操作付きの連絡 {n:03d}", from_number=FROM)
            for host, service, kind in (
                (f"web{n % 15 + 1:02d}", "HTTP", "PROBLEM"),
                (f"db{n:03d}", "PGSQL", "PROBLEM"),
                (f"app{n:03d}", "", "PROBLEM"),
                (f"web{(n + 7) % 15 + 1:02d}", "HTTPS", "RECOVERY"),
            ):
                problem += 1
                state = {"PROBLEM": "DOWN" if not service else "CRITICAL", "RECOVERY": "OK"}[kind]
                intake.accept(
                    {
                        "kind": "button_call",
                        "setting_id": str(setting.id),
                        "type": kind,
                        "host": host,
                        "service": service,
                        "state": state,
                        "output": f"{service or 'PING'} {state} - connection refused on {host}",
                        "problem_id": str(problem),
                    }
                )
        now = utcnow()
        for notification in db.session.scalars(db.select(Notification).order_by(Notification.id)):
            delivery = notification.deliveries[0]
            sid = "CA" + secrets.token_hex(16)
            token = secrets.token_urlsafe(24)
            delivery.status = DELIVERY_CALLING
            delivery.sid = sid
            delivery.tries = 1
            delivery.attempts.append(
                Attempt(number=1, outcome=OUTCOME_PLACED, sid=sid, callback_token=token, placed_by="bench", started_at=now)
            )
            made.append((token, sid))
        db.session.commit()
    return made


def signed(kind: str, token: str, sid: str, **extra: str) -> Request:
    """A POST as Twilio sends it: signed over the public URL, sent to the local path."""
    params = {
        "AccountSid": ACCOUNT_SID,
        "CallSid": sid,
        "From": FROM,
        "To": PHONES[0],
        "Direction": "outbound-api",
        "ApiVersion": "2010-04-01",
        "CallStatus": "in-progress",
        **extra,
    }
    path = f"/twilio/{kind}/{token}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(XMON + path, params)
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return Request("POST", path, urlencode(params).encode(), headers)


def drive(port: int, name: str, requests: list[Request], threads: int) -> Phase:
    """Send every request once from `threads` threads, each with its own keep-alive connection."""
    local = threading.local()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def send(n: int) -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        request = requests[n]
        started = time.perf_counter()
        connection.request(request.method, request.path, body=request.body or None, headers=request.headers)
        response = connection.getresponse()
        response.read()
        took = time.perf_counter() - started
        if response.will_close:
            connection.close()  # gunicorn's sync workers close; the next request reconnects
        with lock:
            latencies.append(took)
            statuses[response.status] = statuses.get(response.status, 0) + 1

    seconds = post_many(len(requests), threads, send)
    return Phase(name, seconds, latencies, statuses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000, help="requests per measured phase")
    parser.add_argument("--calls", type=int, default=64, help="button calls in progress")
    args = parser.parse_args()

    with FakeTwilio() as fake:
        root = Path(tempfile.mkdtemp(prefix="xmonbridge-bench-"))
        server = RealServer(root, api_base=fake.base_url, DISPATCHER_ENABLED=False)
        calls = seed(server, args.calls)
        voice = [signed("voice", token, sid) for token, sid in calls]
        gather = [
            signed("gather", token, sid, Digits=key, FinishedOnKey="#") for key in KEYS for token, sid in calls
        ]
        static = Request("GET", "/static/css/app.css", b"", {})
        count = args.requests
        kinds = {
            "static page (floor)": [static] * count,
            "voice (answer)": [voice[n % len(voice)] for n in range(count)],
            "gather (1#, 7#, 8#, 5#, 12#)": [gather[n % len(gather)] for n in range(count)],
        }
        server.start(workers=WORKERS)
        try:
            drive(server.port, "warm-up", [static] * 200 + voice + gather[: len(calls)], args.threads)
            # Under load (THREADS clients) for the rate; one client per worker for the latency
            # of a request that does not queue behind others.
            loaded = [drive(server.port, name, requests, args.threads) for name, requests in kinds.items()]
            light = [drive(server.port, name, requests[: count // 2], WORKERS) for name, requests in kinds.items()]
        finally:
            server.stop()

    print(f"button-call webhooks on serve ({WORKERS} workers, SQLite), {len(calls)} calls in progress, signature checked")
    for title, phases in ((f"{args.threads} client threads", loaded), (f"{WORKERS} client threads", light)):
        floor = phases[0]
        print(f"\n{title}:")
        print(f"{'':30} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'req/s vs floor':>15} {'p50 vs floor':>13}  statuses")
        for phase in phases:
            rate = p50 = ""
            if phase is not floor:
                rate, p50 = f"{phase.rate / floor.rate:.2f}x", f"{phase.p(50) / floor.p(50):.1f}x"
            codes = ",".join(f"{code}:{n}" for code, n in sorted(phase.statuses.items()))
            print(f"{phase.name:30} {phase.rate:7.0f} {phase.p(50):7.1f} {phase.p(99):7.1f} {rate:>15} {p50:>13}  {codes}")
    print(f"\ntargets: >= {TARGET_RATE} requests/s, p99 <= {TARGET_P99_MS} ms")

if __name__ == "__main__":
    main()

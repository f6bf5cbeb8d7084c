"""What the benchmarks share: a real server on a throw-away instance, the fake Twilio, load."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import (  # noqa: E402
    make_recipient,
    make_simple_call_setting,
    make_sms_setting,
    make_twilio_account,
)
from tests.fake_twilio import FakeTwilio  # noqa: E402
from tests.real_server import RealServer, wait_for  # noqa: E402

PHONES = ["+819001230001", "+819001230002", "+819001230003"]

__all__ = ["PHONES", "FakeTwilio", "RealServer", "alert", "percentile", "post_many", "seeded_server", "wait_for"]


def seeded_server(fake: FakeTwilio, *, recipients: int, cps: int, **config: Any) -> tuple[RealServer, str, dict[str, int]]:
    """A live-mode server pointed at fake, with one simple-call and one SMS setting."""
    root = Path(tempfile.mkdtemp(prefix="xmonbridge-bench-"))
    server = RealServer(root, api_base=fake.base_url, **config)
    with server.app_context():
        users = [make_recipient(login=f"u{i}", name=f"担当者{i}", phone=p) for i, p in enumerate(PHONES[:recipients])]
        account = make_twilio_account(cps=cps)
        simple = make_simple_call_setting(account, users, name="電話連絡")
        sms = make_sms_setting(account, users, name="SMS連絡")
        ids = {"simple_call": simple.id, "sms": sms.id}
    return server, server.make_token(), ids


def alert(kind: str, setting_id: int, n: int, **extra: Any) -> dict[str, Any]:
    fields = {
        "kind": kind,
        "setting_id": setting_id,
        "type": "PROBLEM",
        "host": f"host-{n:05d}",
        "service": "HTTP",
        "state": "CRITICAL",
        "output": "Connection refused",
        "problem_id": str(100000 + n),
    }
    fields.update(extra)
    return fields


def post(url: str, token: str, fields: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(fields).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return int(response.status)


def post_many(count: int, threads: int, send: Callable[[int], None]) -> float:
    """Run send(0..count-1) from `threads` threads; return the seconds it took."""
    lock = threading.Lock()
    next_index = [0]

    def worker() -> None:
        while True:
            with lock:
                n = next_index[0]
                next_index[0] += 1
            if n >= count:
                return
            send(n)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)

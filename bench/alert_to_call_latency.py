"""From an alert sent to `xmonbridge serve` to its Calls.json reaching the fake Twilio.

50 alerts per second for 10 s to a simple-call setting with one recipient (account CPS 100,
so pacing does not queue them), 2 gunicorn workers. Latency is measured from the moment the
client sends the alert (so it includes intake) to the moment the fake Twilio receives the
call. The floor is a direct twilio SDK `calls.create` from this process to the same fake: the
part no bridge can avoid. Target: added p50 <= 20 ms, p99 <= 100 ms.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

from twilio.rest import Client

from _common import FakeTwilio, alert, percentile, post, seeded_server, wait_for
from tests.factories import ACCOUNT_SID, AUTH_TOKEN, BIN_URL

RATE = 50
SECONDS = 10


def floor_latencies(fake: FakeTwilio, count: int) -> list[float]:
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = fake.base_url
    latencies = []
    for n in range(count):
        before = len(fake.requests_for("CreateCall"))
        sent = time.time()
        client.calls.create(to="+819001230001", from_="+815012340001", url=f"{BIN_URL}?message=floor{n}", timeout=60)
        received = fake.requests_for("CreateCall")[before].received_at
        latencies.append(received - sent)
    return latencies


def main() -> None:
    with FakeTwilio() as fake:
        server, token, ids = seeded_server(fake, recipients=1, cps=100)
        server.start(workers=2)
        sent_at: dict[str, float] = {}
        try:
            url = f"{server.base}/api/v1/alerts"
            post(url, token, alert("simple_call", ids["simple_call"], 999999))  # warm up
            wait_for(lambda: len(fake.requests_for("CreateCall")) == 1, 30, "the warm-up call")
            total = RATE * SECONDS
            threads = []
            start = time.perf_counter()
            for n in range(total):
                # Open loop: one alert every 1/RATE s, each from its own thread.
                delay = start + n / RATE - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                host = f"host-{n:05d}"
                sent_at[host] = time.time()
                t = threading.Thread(target=post, args=(url, token, alert("simple_call", ids["simple_call"], n)))
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            wait_for(lambda: len(fake.requests_for("CreateCall")) >= total + 1, 60, "every call")
        finally:
            server.stop()
        latencies = []
        for request in fake.requests_for("CreateCall"):
            message = parse_qs(urlsplit(request.form["Url"]).query).get("message", [""])[0]
            host = next((w for w in message.replace("のサービス", " ").split() if w.startswith("host-")), None)
            if host in sent_at:
                latencies.append(request.received_at - sent_at[host])
        fake.clear()
        floor = floor_latencies(fake, 200)
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    f50, f99 = percentile(floor, 50) * 1000, percentile(floor, 99) * 1000
    print(f"alert -> Calls.json at {RATE}/s ({len(latencies)} calls): p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"floor (direct SDK calls.create to the same fake): p50 {f50:.1f} ms, p99 {f99:.1f} ms")
    print(f"added: p50 {p50 - f50:.1f} ms (target <= 20), p99 {p99 - f99:.1f} ms (target <= 100)")
    print(f"ratio: p50 {p50 / f50:.1f}x, p99 {p99 / f99:.1f}x")


if __name__ == "__main__":
    main()

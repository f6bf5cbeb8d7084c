"""A storm: 1,000 alerts in 10 s for one SMS setting with 3 recipients.

Prints whether anything was lost or doubled, how long the queue took to drain, the SMS rate
beside the account's configured CPS (the floor the dispatcher must neither exceed nor fall
short of by more than 5 %), and the resident memory of each gunicorn worker afterwards
(target <= 120 MB).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from _common import PHONES, FakeTwilio, alert, post, seeded_server, wait_for

ALERTS = 1000
SECONDS = 10
CPS = 50
# `storm.py ALERTS CPS` runs a smaller or slower storm (e.g. `storm.py 300 20`).
if len(sys.argv) == 3:
    ALERTS, CPS = int(sys.argv[1]), int(sys.argv[2])


def _host(body: str) -> str:
    found = re.search(r"host-\d+", body)
    return found.group(0) if found else body


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def workers_of(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def main() -> None:
    with FakeTwilio() as fake:
        server, token, ids = seeded_server(fake, recipients=3, cps=CPS)
        server.start(workers=2)
        try:
            url = f"{server.base}/api/v1/alerts"
            statuses: Counter[int] = Counter()
            lock = threading.Lock()

            def send(n: int) -> None:
                status = post(url, token, alert("sms", ids["sms"], n))
                with lock:
                    statuses[status] += 1

            threads = []
            start = time.perf_counter()
            for n in range(ALERTS):
                delay = start + n * SECONDS / 1000 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t = threading.Thread(target=send, args=(n,))
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            expected = ALERTS * len(PHONES)
            wait_for(lambda: len(fake.requests_for("CreateMessage")) >= expected, 600, "the queue to drain")
            drained = time.perf_counter() - start
            time.sleep(2)  # anything extra would show up now
            assert server.proc is not None
            rss = [rss_mb(pid) for pid in workers_of(server.proc.pid)]
        finally:
            server.stop()
        created = fake.requests_for("CreateMessage")
        times = sorted(r.received_at for r in created)
        made = Counter((_host(r.form["Body"]), r.form["To"]) for r in created)
    lost = ALERTS * len(PHONES) - len(made)
    doubled = sum(count - 1 for count in made.values() if count > 1)
    # The rate while the queue was full: from the 10th to the last message.
    rate = (len(times) - 10) / (times[-1] - times[9]) if len(times) > 20 else float("nan")
    print(f"alerts answered: {dict(statuses)}; SMS expected {ALERTS * len(PHONES)}, lost {lost}, doubled {doubled}")
    print(f"drained in {drained:.1f} s from the first alert")
    print(f"SMS per second: {rate:.2f}   floor (configured CPS): {CPS}   ratio {rate / CPS:.3f} (target 0.95-1.05)")
    print("RSS per worker after the storm: " + ", ".join(f"{mb:.0f} MB" for mb in rss) + " (target <= 120 MB)")


if __name__ == "__main__":
    main()

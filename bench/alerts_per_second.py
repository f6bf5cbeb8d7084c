"""Alerts accepted per second by `xmonbridge serve` (gunicorn, 2 workers), beside a bare WSGI app.

Target: at least 500 alerts/s. The floor is what the same gunicorn settings and the same
client reach with an app that only reads the body and answers 202: the rest is xmonbridge.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from _common import FakeTwilio, alert, post, post_many, seeded_server
from tests.real_server import free_port

COUNT = 3000
THREADS = 16
FLOOR_APP = '''
def app(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("202 Accepted", [("Content-Type", "application/json")])
    return [b'{"id": 1, "duplicate": false}']
'''


def floor_rate(payloads: list[dict]) -> float:
    folder = Path(tempfile.mkdtemp(prefix="xmonbridge-floor-"))
    (folder / "floor_app.py").write_text(FLOOR_APP)
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "floor_app:app"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "XDG_RUNTIME_DIR": str(folder)},
    )
    url = f"http://127.0.0.1:{port}/api/v1/alerts"
    try:
        for _ in range(100):
            try:
                post(url, "x", payloads[0])
                break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        seconds = post_many(len(payloads), THREADS, lambda n: post(url, "x", payloads[n]))
        return len(payloads) / seconds
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    extra = {"DISPATCHER_ENABLED": False} if "--no-dispatch" in sys.argv else {}
    with FakeTwilio() as fake:
        server, token, ids = seeded_server(fake, recipients=1, cps=100, **extra)
        server.start(workers=2)
        try:
            url = f"{server.base}/api/v1/alerts"
            for n in range(50):  # warm up both workers
                post(url, token, alert("sms", ids["sms"], 900000 + n))
            payloads = [alert("sms", ids["sms"], n) for n in range(COUNT)]
            statuses: list[int] = []
            seconds = post_many(COUNT, THREADS, lambda n: statuses.append(post(url, token, payloads[n])))
            rate = COUNT / seconds
        finally:
            server.stop()
        floor = floor_rate(payloads)
    accepted = sum(1 for s in statuses if s == 202)
    print(f"alerts accepted per second (serve, 2 workers, {THREADS} clients): {rate:,.0f}/s ({accepted}/{COUNT} answered 202)")
    print(f"floor (bare WSGI app, same gunicorn and client):      {floor:,.0f}/s")
    print(f"ratio xmonbridge / floor: {rate / floor:.2f}   target: >= 500/s")


if __name__ == "__main__":
    main()

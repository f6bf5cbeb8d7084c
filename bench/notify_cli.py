"""`xmonbridge notify` wall time beside the Python floor and curl, posting the same alert.

A storm runs the notification command hundreds of times, so it must start fast. Floor:
`python3 -c 'import urllib.request'` (the least a Python client needs); curl posts the same
alert with the same token. Target: notify <= 1.3x the Python floor.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import FakeTwilio, seeded_server

RUNS = 30


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    with FakeTwilio() as fake:
        server, token, ids = seeded_server(fake, recipients=1, cps=100, DISPATCHER_ENABLED=False)
        server.start(workers=2)
        try:
            url = f"{server.base}/api/v1/alerts"
            env = {**os.environ, "XMONBRIDGE_URL": server.base, "XMONBRIDGE_TOKEN": token, "NO_PROXY": "127.0.0.1"}
            cli = str(Path(sys.executable).parent / "xmonbridge")
            results: dict[str, list[float]] = {"notify": [], "python floor": [], "curl": []}
            for n in range(RUNS):
                args = ["--kind", "sms", "--setting-id", str(ids["sms"]), "--type", "PROBLEM", "--host", f"host-{n:05d}",
                        "--service", "HTTP", "--state", "CRITICAL", "--output", "Connection refused", "--problem-id", str(n + 1)]
                results["notify"].append(timed([cli, "notify", *args], env))
                results["python floor"].append(timed([sys.executable, "-c", "import urllib.request"], env))
                if shutil.which("curl"):
                    results["curl"].append(
                        timed(
                            ["curl", "-sS", "-f", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
                             "--data-urlencode", "kind=sms", "--data-urlencode", f"setting_id={ids['sms']}",
                             "--data-urlencode", "type=PROBLEM", "--data-urlencode", f"host=curl-{n:05d}",
                             "--data-urlencode", "service=HTTP", "--data-urlencode", "state=CRITICAL",
                             "--data-urlencode", "output=Connection refused", "--data-urlencode", f"problem_id={n + 1}", url],
                            env,
                        )
                    )
        finally:
            server.stop()
    medians = {name: statistics.median(values) * 1000 for name, values in results.items() if values}
    floor = medians["python floor"]
    for name, value in medians.items():
        print(f"{name:>13}: median {value:6.1f} ms over {RUNS} runs   ratio to the Python floor {value / floor:.2f}")
    print("target: notify <= 1.3x the Python floor")


if __name__ == "__main__":
    main()

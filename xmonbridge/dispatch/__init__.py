"""The dispatcher: places the calls and SMS of accepted alerts (plain code, no request code).

`wake()` tells this process's dispatcher thread, if it runs here, that work has arrived;
dispatchers in other processes find it by polling.
"""

from __future__ import annotations

import threading

_work_arrived = threading.Event()


def wake() -> None:
    """Wake this process's dispatcher at once (call after committing new work)."""
    _work_arrived.set()


def wait_for_work(seconds: float) -> bool:
    """Sleep until woken or seconds have passed; return whether woken."""
    woken = _work_arrived.wait(seconds)
    _work_arrived.clear()
    return woken

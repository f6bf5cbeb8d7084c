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


def begin_pass() -> None:
    """Forget earlier wake-ups: the pass about to start sees everything committed so far."""
    _work_arrived.clear()


def wait_for_work(seconds: float) -> bool:
    """Sleep until woken (since the last begin_pass()) or seconds have passed; return whether woken."""
    return _work_arrived.wait(seconds)

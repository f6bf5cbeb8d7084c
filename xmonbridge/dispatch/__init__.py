"""The dispatcher: places the calls and SMS of accepted alerts (plain code, no request code).

`wake()` tells the dispatcher that work has arrived: this process's thread at once through an
event, and the leader in another worker of the same instance through a datagram on a local
socket (named after the database). Dispatchers on other hosts find the work by polling.
"""

from __future__ import annotations

import hashlib
import socket
import threading

_work_arrived = threading.Event()
_wake_address: str | None = None
_sender: socket.socket | None = None


def wake_address(database_uri: str) -> str:
    """The abstract unix socket the leader for this database listens on for wake-ups.

    Abstract (no file): no path length limit, nothing left behind by a killed process. Anyone
    on the host can send to it; all a datagram can do is make the leader look for work.
    """
    digest = hashlib.sha256(database_uri.encode()).hexdigest()[:24]
    return f"\0xmonbridge-dispatch-{digest}"


def set_wake_address(address: str | None) -> None:
    """Where wake() reaches the leader of this instance (set by runner.start)."""
    global _wake_address
    _wake_address = address


def wake() -> None:
    """Wake the dispatcher at once (call after committing new work)."""
    global _sender
    _work_arrived.set()
    if _wake_address is None:
        return
    try:
        if _sender is None:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
        _sender.sendto(b"!", _wake_address)
    except OSError:
        # No leader in this instance on this host, or its queue is full: it will poll.
        pass


def begin_pass() -> None:
    """Forget earlier wake-ups: the pass about to start sees everything committed so far."""
    _work_arrived.clear()


def wait_for_work(seconds: float) -> bool:
    """Sleep until woken (since the last begin_pass()) or seconds have passed; return whether woken."""
    return _work_arrived.wait(seconds)


def listen(address: str, stop: threading.Event) -> threading.Thread | None:
    """Receive wake-ups from other workers of this instance; None if another process listens."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        receiver.bind(address)
    except OSError:
        receiver.close()
        return None
    receiver.settimeout(0.5)

    def run() -> None:
        with receiver:
            while not stop.is_set():
                try:
                    receiver.recv(64)
                except TimeoutError:
                    continue
                except OSError:
                    return
                _work_arrived.set()

    thread = threading.Thread(target=run, name="xmonbridge-dispatch-wake", daemon=True)
    thread.start()
    return thread

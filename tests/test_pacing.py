"""Per-account pacing: the configured rate, kept even when each send starts a little late."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from xmonbridge.dispatch.pacing import Pacer, backoff

T0 = datetime(2026, 11, 28, 12, 0, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_sends_a_little_late_keep_the_schedule() -> None:
    pacer = Pacer()
    now = at(0)
    sent = []
    for _ in range(50):
        now = max(now, pacer.ready_at(1, now))
        now += timedelta(milliseconds=1.5)  # the loop's own work makes each send a little late
        pacer.take(1, 50, now)
        sent.append(now)
    # 50 per second: the 50th send 49 intervals after the first, not 49 × (20 + 1.5) ms.
    span = (sent[-1] - sent[0]).total_seconds()
    assert abs(span - 49 / 50) < 0.005
    gaps = [(b - a).total_seconds() for a, b in zip(sent, sent[1:])]
    assert min(gaps) >= 0.02 - 1e-9  # never faster than the rate


def test_after_an_idle_spell_the_first_send_goes_at_once_and_no_burst_follows() -> None:
    pacer = Pacer()
    pacer.take(1, 1, at(0))
    assert pacer.ready_at(1, at(0.5)) == at(1)
    pacer.take(1, 1, at(10))
    assert pacer.ready_at(1, at(10)) == at(11)


def test_backoff_doubles_with_jitter_within_the_cap() -> None:
    rng = random.Random(1)
    delays = [backoff(n, 5, 300, rng).total_seconds() for n in range(1, 10)]
    assert 2.5 <= delays[0] <= 5 and 5 <= delays[1] <= 10 and 10 <= delays[2] <= 20
    assert all(150 <= d <= 300 for d in delays[-3:])

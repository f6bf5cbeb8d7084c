"""How fast and how often: calls per second per Twilio account, and retry backoff.

Twilio accepts a limited number of calls and messages per second per account (1 by default;
beyond it Twilio queues them) and answers 429 when pushed too hard. The leader spaces its
requests per account at the account's configured rate, and a 429 pauses the whole account.
This is in memory on purpose: only the leader sends, and a new leader starts with a clean slate
(at worst one request a little early).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def backoff(tries: int, base: float, cap: float, rng: random.Random) -> timedelta:
    """Delay before try number tries+1: exponential from base, capped, with jitter.

    The jitter ("equal jitter") keeps at least half the delay, so retries neither come early
    nor arrive all at once after an outage.
    """
    ceiling = min(cap, base * 2 ** max(tries - 1, 0))
    return timedelta(seconds=ceiling / 2 + rng.uniform(0, ceiling / 2))


class Pacer:
    """Per-account send slots (calls per second) and pauses after a 429."""

    def __init__(self) -> None:
        self._next_slot: dict[int, datetime] = {}
        self._paused_until: dict[int, datetime] = {}
        self._pauses: dict[int, int] = {}

    def ready_at(self, account_id: int, now: datetime) -> datetime:
        """When the account may send next (now or later)."""
        moments = [now]
        if account_id in self._next_slot:
            moments.append(self._next_slot[account_id])
        if account_id in self._paused_until:
            moments.append(self._paused_until[account_id])
        return max(moments)

    def take(self, account_id: int, cps: int, now: datetime) -> None:
        """Use the account's next slot; the one after comes 1/cps seconds later.

        Slots follow each other from the last one, not from now, so a steady flow keeps the
        configured rate exactly (never faster); after an idle spell the first request goes at once.
        """
        interval = timedelta(seconds=1 / max(cps, 1))
        planned = self._next_slot.get(account_id)
        # A send a little late (the loop's own work) keeps the schedule, so those delays do not
        # add up and lower the rate; one a whole interval late starts a new schedule from now.
        start = planned if planned is not None and planned <= now < planned + interval else now
        self._next_slot[account_id] = max(start, now - interval) + interval

    def pause(self, account_id: int, now: datetime, base: float, cap: float, rng: random.Random) -> datetime:
        """After a 429: pause the account, longer each time in a row; return until when."""
        count = self._pauses.get(account_id, 0) + 1
        self._pauses[account_id] = count
        until = now + backoff(count, base, cap, rng)
        self._paused_until[account_id] = until
        return until

    def succeeded(self, account_id: int) -> None:
        """A request went through: the next 429 starts the pauses from the beginning."""
        self._pauses.pop(account_id, None)

"""A request-weight governor shared by every request of one client.

It counts weights the way the exchange does, in fixed windows of the exchange's clock minute:
its own bookings, corrected upward with the exchange's ``X-MBX-USED-WEIGHT-1M`` header, never
above ``share`` × the per-minute budget; after a 429/418 it pauses every request (not just the one
that failed) until Retry-After. A full minute is over at the next minute boundary, not 60 s after
the last request or reading (a sliding window held a restarted bot silent for up to a minute). Requests made while protecting positions (``urgent()``) may use
the whole budget; everything else stays within ``share`` of it, so a scan can never starve the
bracket guard.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from typing import Iterator

from mraster.exchange.weights import BUDGET_PER_MINUTE

_URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar("mraster_urgent", default=False)


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Requests made inside (in this task and the tasks it starts) may use the full budget."""
    token = _URGENT.set(True)
    try:
        yield
    finally:
        _URGENT.reset(token)


class WeightGovernor:
    def __init__(self, budget: int = BUDGET_PER_MINUTE, share: float = 0.8,
                 clock=time.monotonic, sleep=asyncio.sleep, wall=time.time) -> None:
        self.share = share
        self.budget = budget
        self.limit = max(1, int(budget * share))
        self._clock = clock
        self._wall = wall  # the exchange's clock in seconds (the client adds its offset)
        self._sleep = sleep
        self._own = (0, 0)      # (exchange minute, weight this client booked in it)
        self._server = (0, 0)   # (exchange minute, the last header reading in it)
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.total_weight = 0
        self.pauses = 0

    def _minute(self) -> int:
        return int(self._wall() // 60)

    def _used(self, minute: int) -> int:
        """Weight counted in the exchange's current minute: the client's own bookings or the
        exchange's last reading, whichever is higher. Both start from zero at the minute's
        boundary, as the exchange's own count does."""
        own = self._own[1] if self._own[0] == minute else 0
        server = self._server[1] if self._server[0] == minute else 0
        return max(own, server)

    async def acquire(self, weight: int) -> None:
        """Wait until ``weight`` fits in the budget of the exchange's current minute, then book
        it. A full minute is waited out only until its end, never 60 s from the last request."""
        limit = self.budget if _URGENT.get() else self.limit
        weight = min(weight, limit)
        async with self._lock:
            while True:
                now = self._clock()
                minute = self._minute()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self._used(minute) + weight > limit:
                    wait = max(0.05, 60.0 - self._wall() % 60.0)  # until the minute rolls over
                else:
                    own = self._own[1] if self._own[0] == minute else 0
                    self._own = (minute, own + weight)
                    self.total_weight += weight
                    return
                await self._sleep(wait)

    def set_budget(self, budget: int) -> None:
        """The exchange announces its per-minute weight budget in exchangeInfo; follow it."""
        self.budget = budget
        self.limit = max(1, int(budget * self.share))

    def observe(self, used_header: str | None) -> None:
        if not used_header:
            return
        try:
            used = int(used_header)
        except ValueError:
            return
        # the header counts the exchange's current minute; trust it until that minute ends
        self._server = (self._minute(), used)

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        self._paused_until = max(self._paused_until, self._clock() + max(seconds, 0.0))

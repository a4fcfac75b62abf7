"""A request-weight governor shared by every request of one client.

It keeps its own sliding one-minute ledger of weights, corrects it upward with the exchange's
``X-MBX-USED-WEIGHT-1M`` header, never lets the ledger exceed ``share`` × the per-minute budget,
and after a 429/418 pauses every request (not just the one that failed) until Retry-After.

The exchange counts weight in fixed windows of its own clock's minute, so a high reading of the
header is over at the next minute boundary (not 60 s after it was seen: that held a restarted
bot silent for up to a minute). Requests made while protecting positions (``urgent()``) may use
the whole budget; everything else stays within ``share`` of it, so a scan can never starve the
bracket guard.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import deque
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
        self._ledger: deque[tuple[float, int]] = deque()
        self._server_used = 0
        self._server_until = 0.0  # when the window of the last header reading ends
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.total_weight = 0
        self.pauses = 0

    def _used(self, now: float) -> int:
        while self._ledger and now - self._ledger[0][0] >= 60:
            self._ledger.popleft()
        own = sum(w for _, w in self._ledger)
        server = self._server_used if now < self._server_until else 0
        return max(own, server)

    async def acquire(self, weight: int) -> None:
        """Wait until ``weight`` fits in the budget, then book it."""
        limit = self.budget if _URGENT.get() else self.limit
        weight = min(weight, limit)
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self._used(now) + weight > limit:
                    # wait until the oldest booked weight or the server's window expires
                    ends = [60 - (now - self._ledger[0][0])] if self._ledger else []
                    if now < self._server_until:
                        ends.append(self._server_until - now)
                    wait = max(0.05, min(ends or [1.0]))
                else:
                    self._ledger.append((now, weight))
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
        now = self._clock()
        # the header counts the exchange's current minute; trust it until that minute ends
        self._server_used = used
        self._server_until = now + (60.0 - self._wall() % 60.0)

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        self._paused_until = max(self._paused_until, self._clock() + max(seconds, 0.0))

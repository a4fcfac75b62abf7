"""A request-weight governor shared by every request of one client.

It keeps its own sliding one-minute ledger of weights, corrects it upward with the exchange's
``X-MBX-USED-WEIGHT-1M`` header, never lets the ledger exceed ``share`` × the per-minute budget,
and after a 429/418 pauses every request (not just the one that failed) until Retry-After.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque

from mraster.exchange.weights import BUDGET_PER_MINUTE


class WeightGovernor:
    def __init__(self, budget: int = BUDGET_PER_MINUTE, share: float = 0.8,
                 clock=time.monotonic, sleep=asyncio.sleep) -> None:
        self.share = share
        self.limit = max(1, int(budget * share))
        self._clock = clock
        self._sleep = sleep
        self._ledger: deque[tuple[float, int]] = deque()
        self._server_used = 0
        self._server_seen_at = 0.0
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self.total_weight = 0
        self.pauses = 0

    def _used(self, now: float) -> int:
        while self._ledger and now - self._ledger[0][0] >= 60:
            self._ledger.popleft()
        own = sum(w for _, w in self._ledger)
        server = self._server_used if now - self._server_seen_at < 60 else 0
        return max(own, server)

    async def acquire(self, weight: int) -> None:
        """Wait until ``weight`` fits in the budget, then book it."""
        weight = min(weight, self.limit)
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    wait = self._paused_until - now
                elif self._used(now) + weight > self.limit:
                    # wait until the oldest booked weight or the server's reading expires
                    ends = [60 - (now - self._ledger[0][0])] if self._ledger else []
                    if now - self._server_seen_at < 60:
                        ends.append(60 - (now - self._server_seen_at))
                    wait = max(0.05, min(ends or [1.0]))
                else:
                    self._ledger.append((now, weight))
                    self.total_weight += weight
                    return
                await self._sleep(wait)

    def set_budget(self, budget: int) -> None:
        """The exchange announces its per-minute weight budget in exchangeInfo; follow it."""
        self.limit = max(1, int(budget * self.share))

    def observe(self, used_header: str | None) -> None:
        if not used_header:
            return
        try:
            used = int(used_header)
        except ValueError:
            return
        now = self._clock()
        # the header counts this minute window; trust it when it is above our own ledger
        self._server_used = used
        self._server_seen_at = now

    def pause(self, seconds: float) -> None:
        self.pauses += 1
        self._paused_until = max(self._paused_until, self._clock() + max(seconds, 0.0))

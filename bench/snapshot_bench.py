"""Time and request weight of one full market snapshot (klines on two timeframes for every symbol
+ bulk 24h tickers, book tickers and premium index) against the simulator with 50 ms latency,
for 50 and 200 symbols, sequentially and with the client's concurrency.

python bench/snapshot_bench.py
"""
from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._sim import KEY, SECRET, start_simulator  # noqa: E402
from mraster.exchange.rest import AsterRest  # noqa: E402

LATENCY_MS = 50.0
CONCURRENCY = 16  # the engine's kline requests in flight: 8 symbols, both timeframes together
# (mraster.engine.market_data)


async def snapshot(c: AsterRest, symbols: list[str], concurrent: bool) -> int:
    """Returns the number of requests made."""
    bulk = [c.ticker_24h(), c.book_ticker(), c.premium_index()]
    jobs = [(s, i, n) for s in symbols for i, n in (("5m", 200), ("1h", 120))]
    if not concurrent:
        for b in bulk:
            await b
        for s, i, n in jobs:
            await c.klines(s, i, limit=n)
        return len(bulk) + len(jobs)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(s, i, n):
        async with sem:
            await c.klines(s, i, limit=n)
    await asyncio.gather(*bulk, *(one(*j) for j in jobs))
    return len(bulk) + len(jobs)


async def measure(url: str, n: int, concurrent: bool) -> None:
    async with AsterRest(url, KEY, SECRET) as c:
        info = await c.exchange_info()
        symbols = [s["symbol"] for s in info["symbols"]][:n]
        w0 = c.governor.total_weight
        t0 = time.perf_counter()
        requests = await snapshot(c, symbols, concurrent)
        took = time.perf_counter() - t0
        weight = c.governor.total_weight - w0
        lanes = CONCURRENCY if concurrent else 1
        floor = math.ceil(requests / lanes) * LATENCY_MS / 1000
        print(f"{n:4d} symbols  {'concurrent' if concurrent else 'sequential':10s}  "
              f"{requests:4d} requests  {took:6.2f} s  (latency floor {floor:5.2f} s, "
              f"{took / floor:4.2f}x)  weight {weight:5d} of {c.governor.limit} allowed per minute")


def main() -> None:
    for n in (50, 200):
        for concurrent in (False, True):
            # a fresh simulator each time: its weight meter (per IP and minute, like the
            # exchange's) must not carry the previous run's weight
            proc, url = start_simulator(n, LATENCY_MS)
            try:
                asyncio.run(measure(url, n, concurrent))
            finally:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()

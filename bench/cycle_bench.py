"""One bot scan cycle over 200 symbols against the simulator (separate process, 50 ms latency):
cycle time cold and warm (also in round trips: the warm cycle's reads go out together, so it
should take about one), request weight per cycle, CPU per symbol and peak memory of the bot.

python bench/cycle_bench.py [--symbols 200] [--latency-ms 50]
Targets: warm cycle under 2 s and ≤ 1.5× one concurrent round trip of its reads (measured here:
the six reads sent together, latency plus the simulator's time to answer them), under 1 ms CPU
per symbol, under 300 MB peak memory; cold cycle ≤ 1.1× its chain (measured here: the same
dependent requests on a fresh client against a fresh simulator, with nothing else done). The
first warm cycle follows a pause (``--pause``, longer than httpx's default 5 s keep-alive, as the
bot pauses 30 s by default): no warm cycle should open a connection (each costs a TCP and a TLS
handshake on a real exchange, which this loopback simulator does not show in time). Last, on a
fresh simulator, a cycle right after a signal candle closed (each symbol's signal timeframe
asked again from its last candle on): its round trips.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._sim import KEY, SECRET, start_simulator  # noqa: E402
from mraster import settings as st  # noqa: E402
from mraster.engine.cycle import Engine  # noqa: E402
from mraster.engine.market_data import KLINES_IN_FLIGHT  # noqa: E402
from mraster.exchange.rest import AsterRest, keepalive_across  # noqa: E402
from mraster.exchange.rules import rules_from_exchange_info  # noqa: E402
from mraster.store import JsonDocument  # noqa: E402
from mraster.strategy.signals import HTF_WINDOW, LTF_WINDOW  # noqa: E402


def connections(c: AsterRest) -> set[int]:
    """The client's open connections (httpx's pool, read for this figure only)."""
    return {id(x) for x in c._http._transport._pool.connections}


def bot_settings(url: str, folder: Path):
    return st.load(environ={"ASTER_PAPER": "false", "ASTER_EXCHANGE_BASE": url,
                            "ASTER_API_KEY": KEY, "ASTER_API_SECRET": SECRET,
                            "ASTER_MIN_QUOTE_VOL_USDT": "0",
                            "ASTER_STATE_FILE": str(folder / "state.json")},
                   env_file=folder / "none.env")


async def run(url: str, folder: Path, cycles: int, latency_s: float,
              pause_s: float) -> tuple[float, int]:
    """The bot's cycles; returns the cold cycle's time and the entries it sent."""
    s = bot_settings(url, folder)
    # the simulator works out its 24 h statistics on the first request (0.4 s for 200 symbols,
    # holding up every answer meanwhile); an exchange has them ready, so they are made before
    # the cold cycle is timed (by another client: the bot's own starts cold)
    async with AsterRest(url, KEY, SECRET) as other:
        await other.ticker_24h()
    async with AsterRest(url, KEY, SECRET,
                         keepalive_s=keepalive_across(s["ASTER_SCAN_INTERVAL_SECONDS"])) as c:
        queue = JsonDocument(folder / "q.json", default=lambda: {"items": {}})
        eng = Engine(c, s, {}, queue, lambda *a, **k: None)
        warm: list[float] = []
        cold, entries = 0.0, 0
        for i in range(cycles):
            if i == 1 and pause_s:
                await asyncio.sleep(pause_s)  # the bot's pause between cycles (30 s by default)
            kept = connections(c)
            w0, r0, k0 = c.governor.total_weight, c.stats["requests"], eng.cache.requests
            t0, cpu0 = time.perf_counter(), time.process_time()
            await eng.cycle()
            took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            tel = eng.state["telemetry"]
            if i:
                warm.append(took)
            else:
                cold, entries = took, tel["open_positions"]
            after = "" if i != 1 or not pause_s else f" after a {pause_s:.0f} s pause"
            print(f"cycle {i + 1} ({'cold' if i == 0 else 'warm'}{after}): {took:5.2f} s "
                  f"({took / latency_s:.1f} round trips), "
                  f"{tel['symbols']} symbols, {c.stats['requests'] - r0} requests "
                  f"({eng.cache.requests - k0} kline), weight {c.governor.total_weight - w0}, "
                  f"CPU {cpu * 1000 / max(1, tel['evaluated']):.2f} ms per symbol, "
                  f"opened {tel['open_positions']} positions so far"
                  + (f", {len(connections(c) - kept)} new connections (goal 0)" if i else ""))
        # the warm cycle's yardstick: its six reads sent together and nothing else done
        # (latency plus the simulator's own time to answer for every symbol), best of five
        trips = []
        for _ in range(5):
            t0 = time.perf_counter()
            await asyncio.gather(c.ticker_24h(), c.book_ticker(), c.premium_index(),
                                 c.position_risk(), c.account(), c.open_orders())
            trips.append(time.perf_counter() - t0)
        print(f"one concurrent round trip of the warm cycle's reads: {min(trips):.3f} s; "
              f"warm cycles took {min(warm) / min(trips):.2f}–{max(warm) / min(trips):.2f}× "
              f"that (goal ≤ 1.5×)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the bot process: {peak:.0f} MB")
    return cold, entries


async def chain(url: str, entries: int) -> tuple[float, int]:
    """The cold cycle's chain of dependent requests with nothing else done, on a fresh client (its
    connections opened as the bot's are): the first reads together (the signed ones after the
    clock sync), each symbol's two timeframes together with 8 symbols at a time, the entries'
    three waves (margin modes and leverages, orders, brackets; sent here as as many signed
    reads, which cost a round trip alike), the closing reads. Returns its time and round trips."""
    s = st.load(environ={}, env_file=Path("/none"))
    async with AsterRest(url, KEY, SECRET) as other:
        await other.ticker_24h()  # the simulator's 24 h statistics made first, as for the bot
    async with AsterRest(url, KEY, SECRET) as c:
        t0 = time.perf_counter()
        info, *_ = await asyncio.gather(c.exchange_info(), c.ticker_24h(), c.book_ticker(),
                                        c.premium_index(), c.position_risk(), c.account(),
                                        c.open_orders())
        symbols = [r.symbol for r in rules_from_exchange_info(info).values()
                   if r.status == "TRADING" and r.quote == s["ASTER_QUOTE"]]
        sem = asyncio.Semaphore(KLINES_IN_FLIGHT // 2)

        async def one(sym: str) -> None:
            async with sem:
                await asyncio.gather(
                    c.klines(sym, s["ASTER_INTERVAL"], limit=LTF_WINDOW + 1),
                    c.klines(sym, s["ASTER_HTF_INTERVAL"], limit=HTF_WINDOW + 1))
        await asyncio.gather(*(one(sym) for sym in symbols))
        waves = 3 if entries else 0
        for _ in range(waves):
            await asyncio.gather(*(c.open_orders(sym) for sym in symbols[:entries]))
        await asyncio.gather(c.position_risk(), c.open_orders(), c.account())
        return time.perf_counter() - t0, 2 + -(-2 * len(symbols) // KLINES_IN_FLIGHT) + waves + 1


async def candle_close(url: str, folder: Path, latency_s: float) -> None:
    """A cycle right after a signal candle closed: every symbol's signal timeframe is asked
    again from its last candle on (the higher timeframe's candle is still forming). Made here,
    after a cold cycle, by forgetting each symbol's forming signal candle in the bot's cache."""
    s = bot_settings(url, folder)
    async with AsterRest(url, KEY, SECRET) as other:
        await other.ticker_24h()  # (as in ``run``)
    async with AsterRest(url, KEY, SECRET,
                         keepalive_s=keepalive_across(s["ASTER_SCAN_INTERVAL_SECONDS"])) as c:
        queue = JsonDocument(folder / "q2.json", default=lambda: {"items": {}})
        eng = Engine(c, s, {}, queue, lambda *a, **k: None)
        await eng.cycle()
        for key, rows in list(eng.cache.rows.items()):
            if key[1] == s["ASTER_INTERVAL"]:
                eng.cache.rows[key] = rows[:-1]
        r0, k0 = c.stats["requests"], eng.cache.requests
        t0 = time.perf_counter()
        await eng.cycle()
        took = time.perf_counter() - t0
        print(f"cycle after a signal candle closed: {took:.2f} s ({took / latency_s:.1f} round "
              f"trips), {c.stats['requests'] - r0} requests ({eng.cache.requests - k0} kline)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--symbols", type=int, default=200)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--cycles", type=int, default=4)
    p.add_argument("--pause", type=float, default=6.0, help="seconds before the first warm cycle")
    a = p.parse_args()
    proc, url = start_simulator(a.symbols, a.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as d:
            cold, entries = asyncio.run(run(url, Path(d), a.cycles, a.latency_ms / 1000,
                                             a.pause))
    finally:
        proc.terminate()
        proc.wait()
    # a simulator of its own: the bot's cycles spent most of this minute's request weight there
    proc, url = start_simulator(a.symbols, a.latency_ms)
    try:
        floor, trips = asyncio.run(chain(url, entries))
    finally:
        proc.terminate()
        proc.wait()
    print(f"the cold cycle's chain alone ({trips} dependent round trips, fresh client and "
          f"simulator): {floor:.2f} s; the cold cycle took {cold / floor:.2f}× that (goal ≤ 1.1×)")
    proc, url = start_simulator(a.symbols, a.latency_ms)  # (a fresh minute of weight again)
    try:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(candle_close(url, Path(d), a.latency_ms / 1000))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()

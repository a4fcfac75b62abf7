"""Candle history from Aster for the backtest: ``python -m mraster.data download --symbols
BTCUSDT,ETHUSDT --interval 5m --days 30``.

Klines (``<SYMBOL>-<interval>-futures.csv``), hourly mark-price klines (``<SYMBOL>-1h-mark.csv``)
and funding rates (``<SYMBOL>-8h-funding.csv``) from Aster's public REST endpoints, in the layout
the backtest reads. Incremental and resumable: a file is continued from its last row (a row cut
short by an interruption is dropped first), only closed candles are written, page by page, so a
stopped download loses at most a page. Requests go through the client's weight governor, so the
download stays inside the exchange's limit; gaps (candles the exchange does not have) are
reported, never filled in.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from mraster.exchange.rest import AsterRest
from mraster.sim.market import INTERVAL_MS

PAGE = 1500          # klines per request (Aster's maximum)
FUNDING_PAGE = 1000
MARK_INTERVAL = "1h"
FUNDING_MS = 8 * 3_600_000
HEADERS = {"klines": "open_time_ms,open,high,low,close,volume",
           "mark": "open_time_ms,open,high,low,close", "funding": "time_ms,funding_rate"}


def files(folder: Path, symbol: str, interval: str) -> dict[str, Path]:
    return {"klines": folder / f"{symbol}-{interval}-futures.csv",
            "mark": folder / f"{symbol}-{MARK_INTERVAL}-mark.csv",
            "funding": folder / f"{symbol}-8h-funding.csv"}


def last_time(path: Path) -> int | None:
    """The first column of the file's last complete row (a cut-off last line is removed)."""
    if not path.exists():
        return None
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # an interrupted write: drop the partial row
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)
    lines = data.decode().strip().splitlines()
    if len(lines) < 2:
        return None
    return int(float(lines[-1].split(",")[0]))


def append(path: Path, kind: str, rows: list[list[Any]]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8") as f:
        if new:
            f.write(HEADERS[kind] + "\n")
        f.write("".join(",".join(str(x) for x in r) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def gaps(path: Path, step_ms: int) -> list[tuple[int, int]]:
    """(last time before, first time after) wherever rows are more than one step apart."""
    if not path.exists():
        return []
    times = [int(float(x.split(",")[0])) for x in path.read_text().splitlines()[1:] if x]
    return [(a, b) for a, b in zip(times, times[1:]) if b - a > step_ms]


async def _series(fetch: Callable[[int, int], Awaitable[list]], path: Path, kind: str, step: int,
                  start: int, end: int, progress: Callable[[float], None]) -> int:
    """Page through [start, end) from after the file's last row; returns rows written."""
    have = last_time(path)
    t = start if have is None else max(start, have + step)
    written = 0
    while t < end:
        page = await fetch(t, end)
        rows = [r for r in page if r[0] >= t and r[0] + (step if kind != "funding" else 0) <= end]
        if not rows:
            break
        append(path, kind, rows)
        written += len(rows)
        t = rows[-1][0] + (step if kind != "funding" else 1)
        progress(min(1.0, (t - start) / max(1, end - start)))
    return written


async def download(client: AsterRest, symbols: list[str], interval: str, days: float,
                   folder: Path, progress: Callable[[str, str, float], None] = lambda *a: None,
                   now_ms: int | None = None) -> dict[str, Any]:
    if interval not in INTERVAL_MS:
        raise ValueError(f"interval: {interval!r} is not allowed; expected one of "
                         f"{', '.join(INTERVAL_MS)}")
    folder.mkdir(parents=True, exist_ok=True)
    iv, mark_iv = INTERVAL_MS[interval], INTERVAL_MS[MARK_INTERVAL]
    # the exchange's own market clock (the premium index is stamped with it)
    now = now_ms or int((await client.premium_index(symbols[0]))["time"])
    start = (now - int(days * 86_400_000)) // iv * iv
    end = now // iv * iv  # the forming candle is not written
    report: dict[str, Any] = {}
    for sym in symbols:
        paths = files(folder, sym, interval)

        async def kl(t: int, e: int, sym=sym) -> list:
            rows = await client.klines(sym, interval, limit=PAGE, start_time=t, end_time=e - 1)
            return [[int(r[0]), r[1], r[2], r[3], r[4], r[5]] for r in rows]

        async def mk(t: int, e: int, sym=sym) -> list:
            rows = await client.mark_klines(sym, MARK_INTERVAL, limit=PAGE, start_time=t,
                                            end_time=e - 1)
            return [[int(r[0]), r[1], r[2], r[3], r[4]] for r in rows]

        async def fr(t: int, e: int, sym=sym) -> list:
            rows = await client.funding_history(sym, start_time=t, end_time=e, limit=FUNDING_PAGE)
            return [[int(r["fundingTime"]), r["fundingRate"]] for r in rows]

        n = {"klines": await _series(kl, paths["klines"], "klines", iv, start, end,
                                     lambda d, s=sym: progress(s, "klines", d)),
             "mark": await _series(mk, paths["mark"], "mark", mark_iv, start // mark_iv * mark_iv,
                                   now // mark_iv * mark_iv, lambda d, s=sym: progress(s, "mark", d)),
             "funding": await _series(fr, paths["funding"], "funding", FUNDING_MS, start, now,
                                      lambda d, s=sym: progress(s, "funding", d))}
        report[sym] = {"written": n, "gaps": gaps(paths["klines"], iv),
                       "files": {k: str(p) for k, p in paths.items()}}
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mraster.data")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="candles, mark prices and funding from Aster")
    d.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    d.add_argument("--interval", default="5m")
    d.add_argument("--days", type=float, default=30.0)
    d.add_argument("--out", default="", help="folder (default: ASTER_BACKTEST_DATA or ./data)")
    d.add_argument("--base", default="", help="exchange address (default: ASTER_EXCHANGE_BASE)")
    a = p.parse_args(argv)
    from mraster.bot import load_settings

    s = load_settings()
    folder = Path(a.out or s["ASTER_BACKTEST_DATA"] or "data")
    symbols = [x.strip().upper() for x in a.symbols.split(",") if x.strip()]
    if not 0 < a.days <= 3650:
        print("download: --days must be in (0, 3650]", file=sys.stderr)
        return 2

    def show(sym: str, what: str, done: float) -> None:
        print(f"\r{sym:<14} {what:<8} {done:6.1%}", end="", flush=True)

    async def go() -> dict[str, Any]:
        async with AsterRest(a.base or s["ASTER_EXCHANGE_BASE"], timeout=15.0) as c:
            return await download(c, symbols, a.interval, a.days, folder, show)
    t0 = time.perf_counter()
    try:
        report = asyncio.run(go())
    except ValueError as exc:
        print(f"\ndownload: {exc}", file=sys.stderr)
        return 2
    print()
    for sym, r in report.items():
        g = r["gaps"]
        print(f"{sym}: {r['written']['klines']} candles, {r['written']['mark']} mark, "
              f"{r['written']['funding']} funding rows written"
              + (f"; {len(g)} gap(s), first {g[0][0]}→{g[0][1]}" if g else "; no gaps"))
    print(f"done in {time.perf_counter() - t0:.1f} s into {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

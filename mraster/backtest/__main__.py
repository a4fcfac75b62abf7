"""``python -m mraster.backtest --data DIR [--symbols A,B] [--from 2018-01-12 --to 2018-01-20]
[--preset low|mid|high|att] [--balance USDT] [--out DIR] [ASTER_SETTING=value ...]``"""
from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from mraster import settings as st
from mraster.backtest import report
from mraster.backtest.runner import WARMUP_CANDLES, run_backtest
from mraster.journal import JournalError, write_backtest
from mraster.progress import ProgressLine
from mraster.sim.market import DataError
from mraster.strategy.signals import MIN_HTF, MIN_LTF


def parse_time(text: str) -> int:
    """Milliseconds, or an ISO date/time in UTC (2018-01-12 or 2018-01-12T06:30)."""
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD[THH:MM]) or "
                                         "milliseconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mraster.backtest",
                                description="Run the live engine over candle files.")
    p.add_argument("--data", required=True, type=Path, help="folder of <SYMBOL>-5m*.csv files")
    p.add_argument("--symbols", type=lambda s: [x.strip().upper() for x in s.split(",") if x.strip()])
    p.add_argument("--from", dest="start", type=parse_time)
    p.add_argument("--to", dest="end", type=parse_time)
    p.add_argument("--preset", choices=sorted(st.PRESETS))
    p.add_argument("--balance", type=float, help="starting balance in USDT (default ASTER_PAPER_BALANCE)")
    p.add_argument("--out", type=Path, default=Path("backtest-out"))
    p.add_argument("overrides", nargs="*", metavar="ASTER_SETTING=value")
    a = p.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k in st.BY_NAME}
    for item in a.overrides:
        if "=" not in item:
            p.error(f"{item!r}: settings are given as NAME=value")
        k, v = item.split("=", 1)
        env[k] = v
    if a.preset:
        env["ASTER_PRESET_MODE"] = a.preset
    try:
        s = st.load(environ=env)
    except st.SettingsErrors as exc:
        st.given_by(exc, [k.split("=", 1)[0] for k in a.overrides], "environment",
                    "the command line")
        print(f"mraster.backtest: invalid setting: {exc}", file=sys.stderr)
        return 2

    try:
        with ProgressLine(sys.stderr).attached() as line:
            result = run_backtest(
                a.data, s, symbols=a.symbols, start_ms=a.start, end_ms=a.end,
                balance_usdt=a.balance, progress=lambda done, trades, open_: line.show(
                    f"backtest {done:6.1%}  trades {trades:4d}  open {open_:2d}", done))
    except DataError as exc:
        print(f"mraster.backtest: {exc}", file=sys.stderr)
        return 2
    rep = report.build(result)
    try:
        paths = report.write(rep, a.out) + [write_backtest(a.out / "journal.sqlite", result)]
    except JournalError as exc:
        print(f"mraster.backtest: {exc}", file=sys.stderr)
        return 1
    sm = rep["summary"]
    for sym, gaps in rep["gaps"].items():
        print(f"note: {sym} has {len(gaps)} gap(s) in its candles (not bridged; see report.json)")
    def pct(key: str) -> str:
        return "–" if sm[key] is None else f"{sm[key]:.2%}"
    print(f"{len(rep['symbols'])} symbols, {rep['candles_per_symbol']} candles each, "
          f"{rep['seconds']:.1f} s: {sm['trades']} trades, win rate {pct('win_rate')}, "
          f"return {pct('total_return')}, max drawdown {pct('max_drawdown_pct')}")
    few = rep["skipped_signals"].get("few_klines", {}).get("count", 0)
    if few and few >= sum(v["count"] for v in rep["skipped_signals"].values()) / 2:
        used = result.settings
        print(f"note: most steps had too few closed candles: the signals need {MIN_LTF} candles of "
              f"{used['ASTER_INTERVAL']} and {MIN_HTF} of {used['ASTER_HTF_INTERVAL']} (after the "
              f"{WARMUP_CANDLES}-candle warm-up of 5m); choose shorter timeframes or more history")
    for b in rep["breakers"]:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(b["at"] / 1000))
        print(f"circuit breaker {b['name']} tripped {when} UTC: {b['message']}")
    print("report: " + ", ".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

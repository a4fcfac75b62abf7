"""A year of 5m candles for 50 symbols through the backtest: wall time and peak memory.

Real candles only: each symbol's year is made of whole real days of one of the seven 5m pairs in
../shared/data (20 days each), drawn in a seeded random order and chained so that every candle
keeps its real shape relative to the previous close (open, high, low, close as ratios) and its real
volume. The files are written once to a cache folder (about 300 MB) and reused.

python bench/year_bench.py [CACHE_DIR]
Goal (issue 22): ≤ 400 MB peak and ≤ 15 s for the whole run, from the CSV files to the report.
Two runs, each a process of its own: the first parses the CSV files (an empty parsed-candle
cache), the second finds them parsed (``mraster.sim.candle_cache``), as a run again does.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mraster import settings as st  # noqa: E402
from mraster.sim.market import BASE_MS, read_candles_csv  # noqa: E402

PAIRS = ["ADA_BTC", "ETC_BTC", "ETH_BTC", "LTC_BTC", "NXT_BTC", "TRX_BTC", "XLM_BTC"]
SYMBOLS, DAYS, DAY = 50, 365, 288
START_MS = 1_640_995_200_000  # 2022-01-01 UTC


def symbol_names(symbols: int) -> list[str]:
    """The file stems ``make_year`` writes (``Y00_BTC`` …)."""
    return [f"Y{k:02d}_BTC" for k in range(symbols)]


def make_year(src: Path, out: Path, symbols: int = SYMBOLS, n_days: int = DAYS) -> None:
    """``symbols`` files of ``n_days`` real days each (``freqtrade_bench.py`` makes its longer
    and wider scenarios this way too). Each file is written whole under another name first, so
    an interrupted run leaves no short file that a later run would take as made."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(22)
    real = {}
    for p in PAIRS:
        t, o, h, l, c, v = read_candles_csv(src / f"{p}-5m.csv")[:6]
        prev = np.r_[o[0], c[:-1]]
        days = len(c) // DAY
        real[p] = np.stack([o / prev, h / prev, l / prev, c / prev, v])[:, :days * DAY] \
            .reshape(5, days, DAY)
    n = n_days * DAY
    t = START_MS + BASE_MS * np.arange(n, dtype=np.int64)
    for k, name in enumerate(symbol_names(symbols)):
        pair = PAIRS[k % len(PAIRS)]
        days = real[pair]
        pick = rng.integers(0, days.shape[1], n_days)
        ro, rh, rl, rc, v = (days[j][pick].ravel() for j in range(5))
        close = 1.0 * np.cumprod(rc)
        prev = np.r_[1.0, close[:-1]]
        o, h, l = ro * prev, rh * prev, rl * prev
        h, l = np.maximum(h, np.maximum(o, close)), np.minimum(l, np.minimum(o, close))
        rows = np.column_stack([t, o, h, l, close, v])
        part = out / f"{name}-5m.csv.part"
        np.savetxt(part, rows, delimiter=",",
                   fmt=["%d", "%.10g", "%.10g", "%.10g", "%.10g", "%.6f"],
                   header="open_time_ms,open,high,low,close,volume", comments="")
        os.replace(part, out / f"{name}-5m.csv")
        print(f"\rwriting {k + 1}/{symbols}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def once(cache: Path) -> None:
    from mraster.backtest import report
    from mraster.backtest.runner import run_backtest

    s = st.load(environ={}, env_file=Path("/none"))
    t0 = time.perf_counter()

    def progress(done: float, trades: int, open_: int) -> None:
        print(f"\r{done:6.1%}  trades {trades}", end="", file=sys.stderr, flush=True)
    result = run_backtest(cache, s, progress=progress)
    rep = report.build(result)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(file=sys.stderr)
    print(f"{SYMBOLS} symbols x {rep['candles_per_symbol']} candles: {wall:.1f} s, peak {peak:.0f} MB "
          f"(goal 15 s, 400 MB); {rep['summary']['trades']} trades, engine on "
          f"{result.engine_steps} of {result.steps} steps", flush=True)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--once"]
    cache = Path(args[0]) if args else Path("/tmp/mraster-year-bench")
    if "--once" in sys.argv:
        return once(cache)
    if len(list(cache.glob("*-5m.csv"))) != SYMBOLS:
        make_year(ROOT.parent / "shared" / "data", cache)
    with tempfile.TemporaryDirectory() as parsed:  # a parsed-candle cache of this bench's own
        env = {**os.environ, "XDG_CACHE_HOME": parsed}
        env.pop("MRASTER_CANDLE_CACHE", None)
        for label in ("CSV files parsed", "parsed candles cached"):
            print(f"{label}: ", end="", flush=True)
            subprocess.run([sys.executable, __file__, str(cache), "--once"], env=env, check=True)


if __name__ == "__main__":
    main()

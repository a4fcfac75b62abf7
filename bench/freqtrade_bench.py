"""MrAster's backtest against freqtrade's on the same candles: whole processes, alternating,
min and median wall time, per scenario (the yardstick of issue 22).

freqtrade 2026.9 runs offline in a venv of its own, with the set-up of ../shared/bench/freqtrade
(its RsiTrend strategy, markets built locally). Nothing is installed unless asked:

python bench/freqtrade_bench.py --install [--venv DIR]   # once: freqtrade into DIR, candles as feather
python bench/freqtrade_bench.py [--venv DIR] [--rounds N] [--only NAME]

Goal: every scenario at ≤ 0.10× freqtrade's wall time, none above 0.2×.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA, FT = SHARED / "data", SHARED / "bench" / "freqtrade"
PAIRS = ["ADA_BTC", "ETC_BTC", "ETH_BTC", "LTC_BTC", "NXT_BTC", "TRX_BTC", "XLM_BTC"]
# (name, MrAster's settings, first day, last day); freqtrade runs its strategy on the same days
SCENARIOS = [
    ("defaults, 20 days", [], "2018-01-10", "2018-01-30"),
    ("AI mode, 20 days", ["ASTER_AI_MODE=true"], "2018-01-10", "2018-01-30"),
    ("actively trading, 5 days", ["ASTER_BANDIT_ENABLED=false", "ASTER_ALPHA_ENABLED=false",
                                  "ASTER_MIN_EDGE_R=-5", "ASTER_RSI_BUY_MIN=51",
                                  "ASTER_RSI_SELL_MAX=49", "ASTER_MAX_DRAWDOWN=0",
                                  "ASTER_DAILY_LOSS_LIMIT=0", "ASTER_STREAK_STOPS=0",
                                  "ASTER_SYMBOL_STOPS=0"], "2018-01-12", "2018-01-17"),
]
CONVERT = """
import sys, pandas as pd
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
for pair in sys.argv[3:]:
    d = pd.read_csv(src / f"{pair}-5m.csv")
    d["date"] = pd.to_datetime(d.pop("open_time_ms"), unit="ms", utc=True)
    d[["date", "open", "high", "low", "close", "volume"]].to_feather(dst / f"{pair}-5m.feather")
"""
# as on a user's machine: compiled modules kept between runs
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def install(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "freqtrade==2026.9"], check=True)
    work = venv / "work"
    (work / "user_data" / "strategies").mkdir(parents=True, exist_ok=True)
    shutil.copy(FT / "RsiTrend.py", work / "user_data" / "strategies" / "RsiTrend.py")
    for f in ("run_ft.py", "config.json"):
        shutil.copy(FT / f, work / f)
    subprocess.run([str(venv / "bin" / "python"), "-c", CONVERT, str(DATA),
                    str(work / "user_data" / "data" / "binance"), *PAIRS], check=True)
    print(f"freqtrade installed in {venv}")


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venv", type=Path, default=Path.home() / ".cache" / "mraster-bench" / "ftenv")
    p.add_argument("--install", action="store_true")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only", default="", help="run the scenarios whose name contains this")
    a = p.parse_args()
    if a.install:
        install(a.venv)
        return
    work = a.venv / "work"
    if not (work / "run_ft.py").exists():
        sys.exit(f"freqtrade is not set up in {a.venv}: run with --install first")
    for name, overrides, first, last in SCENARIOS:
        if a.only not in name:
            continue
        with tempfile.TemporaryDirectory() as out:
            ours = [sys.executable, "-m", "mraster.backtest", "--data", str(DATA), "--from", first,
                    "--to", last, "--out", out, *overrides]
            theirs = [str(a.venv / "bin" / "python"), "run_ft.py", "backtesting", "-c",
                      "config.json", "--strategy", "RsiTrend", "--cache", "none", "--timerange",
                      f"{first.replace('-', '')}-{last.replace('-', '')}"]
            timed(ours, ROOT), timed(theirs, work)  # both compile and cache their modules once
            mine, ft = [], []
            for _ in range(a.rounds):  # alternating: both meet the machine's same spells
                mine.append(timed(ours, ROOT))
                ft.append(timed(theirs, work))
        print(f"{name}: MrAster min {min(mine):.2f} s / median {statistics.median(mine):.2f} s, "
              f"freqtrade {min(ft):.2f} / {statistics.median(ft):.2f} s; ratio "
              f"{min(mine) / min(ft):.2f} / {statistics.median(mine) / statistics.median(ft):.2f} "
              f"(goal ≤ 0.10)", flush=True)


if __name__ == "__main__":
    main()

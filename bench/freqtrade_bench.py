"""MrAster's backtest against freqtrade's on the same candles: whole processes, alternating,
min and median wall time, per scenario (the yardstick of issue 22).

freqtrade 2026.9 runs offline in a venv of its own, with the set-up of ../shared/bench/freqtrade
(its RsiTrend strategy, markets built locally). Nothing is installed unless asked:

python bench/freqtrade_bench.py --install [--venv DIR]   # once: freqtrade into DIR, candles as feather
python bench/freqtrade_bench.py [--venv DIR] [--rounds N] [--only NAME]

Goal: every scenario at ≤ 0.10× freqtrade's wall time, none above 0.2×.

The issue's longer and wider scenarios (320 days of seven symbols, 20 days of 56) are made of the
seven pairs' real days, chained as ``year_bench.py`` makes its year, written once next to the
venv (CSV files for MrAster, feather files for freqtrade) with a pair list of their own.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from year_bench import START_MS, make_year, symbol_names  # (bench/ is this script's folder)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA, FT = SHARED / "data", SHARED / "bench" / "freqtrade"
PAIRS = ["ADA_BTC", "ETC_BTC", "ETH_BTC", "LTC_BTC", "NXT_BTC", "TRX_BTC", "XLM_BTC"]
# made histories: (symbols, days) of real days chained by year_bench.make_year (from its START_MS)
MADE = {"320 days": (7, 320), "56 symbols": (56, 20)}


def _made_span(key: str) -> tuple[str, str]:
    start = datetime.fromtimestamp(START_MS / 1000, tz=timezone.utc)
    return start.strftime("%Y-%m-%d"), (start + timedelta(days=MADE[key][1])).strftime("%Y-%m-%d")


# (name, MrAster's settings, first day, last day, made history or None for the seven pairs);
# freqtrade runs its strategy on the same days
SCENARIOS = [
    ("defaults, 20 days", [], "2018-01-10", "2018-01-30", None),
    ("defaults, 320 days", [], *_made_span("320 days"), "320 days"),
    ("56 symbols, 20 days", [], *_made_span("56 symbols"), "56 symbols"),
    ("AI mode, 20 days", ["ASTER_AI_MODE=true"], "2018-01-10", "2018-01-30", None),
    ("actively trading, 5 days", ["ASTER_BANDIT_ENABLED=false", "ASTER_ALPHA_ENABLED=false",
                                  "ASTER_MIN_EDGE_R=-5", "ASTER_RSI_BUY_MIN=51",
                                  "ASTER_RSI_SELL_MAX=49", "ASTER_MAX_DRAWDOWN=0",
                                  "ASTER_DAILY_LOSS_LIMIT=0", "ASTER_STREAK_STOPS=0",
                                  "ASTER_SYMBOL_STOPS=0"], "2018-01-12", "2018-01-17", None),
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


def made(venv: Path, key: str) -> tuple[Path, list[str]]:
    """The made history ``key``: MrAster's data folder, and freqtrade's run script, config and
    data folder for its pairs (written once)."""
    symbols, days = MADE[key]
    work, slug = venv / "work", f"{symbols}-symbols-{days}-days"  # a new shape, new files
    csvs = venv / f"data-{slug}"
    names = symbol_names(symbols)
    if not all((csvs / f"{n}-5m.csv").exists() for n in names):
        make_year(DATA, csvs, symbols, days)
    feathers = work / "user_data" / "data" / slug
    if not all((feathers / f"{n}-5m.feather").exists() for n in names):
        subprocess.run([str(venv / "bin" / "python"), "-c", CONVERT, str(csvs), str(feathers),
                        *names], check=True)
    pairs = [n.replace("_", "/") for n in names]
    script = (FT / "run_ft.py").read_text()
    head = next(line for line in script.splitlines() if line.startswith("PAIRS = "))
    (work / f"run_ft-{slug}.py").write_text(script.replace(head, f"PAIRS = {pairs!r}"))
    config = json.loads((FT / "config.json").read_text())
    config["exchange"]["pair_whitelist"] = pairs
    (work / f"config-{slug}.json").write_text(json.dumps(config))
    return csvs, [f"run_ft-{slug}.py", "backtesting", "-c", f"config-{slug}.json",
                  "--datadir", f"user_data/data/{slug}"]


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
    for name, overrides, first, last, key in SCENARIOS:
        if a.only not in name:
            continue
        data, ft_args = made(a.venv, key) if key else \
            (DATA, ["run_ft.py", "backtesting", "-c", "config.json"])
        with tempfile.TemporaryDirectory() as out:
            ours = [sys.executable, "-m", "mraster.backtest", "--data", str(data), "--from", first,
                    "--to", last, "--out", out, *overrides]
            theirs = [str(a.venv / "bin" / "python"), *ft_args, "--strategy", "RsiTrend",
                      "--cache", "none", "--timerange",
                      f"{first.replace('-', '')}-{last.replace('-', '')}"]
            timed(ours, ROOT)  # both compile and cache their modules once
            first_run = subprocess.run(theirs, cwd=work, env=ENV, capture_output=True, text=True)
            if "BACKTESTING REPORT" not in first_run.stdout:  # run_ft.py swallows its exit
                sys.exit(f"{name}: freqtrade did not backtest:\n{first_run.stdout[-2000:]}")
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

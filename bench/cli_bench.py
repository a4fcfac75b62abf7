"""The backtest as a user runs it — a whole ``python -m mraster.backtest`` process on the seven
5m pairs of ../shared/data — against the floor any backtest of those candles pays: start Python,
import numpy and pandas, parse the CSVs, compute the strategy's indicators over every candle.

python bench/cli_bench.py [DATA_DIR [ROUNDS]]
Goal (issue 22): the CLI within 1.3× the floor. Whole processes, alternating, min and median.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the floor as the issue states it: import numpy and pandas, parse the CSVs (pandas' C
# parser), compute the strategy's indicators over every candle
FLOOR = """
import sys; sys.path.insert(0, {root!r})
from pathlib import Path
import numpy, pandas as pd
from mraster.market.indicators import adx, atr, ema, rsi
for f in sorted(Path({data!r}).glob("*-5m*.csv")):
    d = pd.read_csv(f)
    h, l, c = (d[k].to_numpy() for k in ("high", "low", "close"))
    rsi(c, 14); atr(h, l, c, 14); adx(h, l, c, 14); ema(c, 21); ema(c, 55)
"""
# as on a user's machine: compiled modules are kept (some shells set PYTHONDONTWRITEBYTECODE,
# which makes every start compile all the sources again)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    floor_cmd = [sys.executable, "-c", FLOOR.format(root=str(ROOT), data=str(data))]
    with tempfile.TemporaryDirectory() as out:
        cli_cmd = [sys.executable, "-m", "mraster.backtest", "--data", str(data), "--out", out]
        cli, floor = [], []
        timed(cli_cmd), timed(floor_cmd)  # compiles and caches the modules once
        for _ in range(rounds):  # alternating: both see the machine's same slow and fast spells
            cli.append(timed(cli_cmd))
            floor.append(timed(floor_cmd))
    for name, xs in (("backtest CLI", cli), ("floor (python, numpy, pandas, CSVs, indicators)", floor)):
        print(f"{name}: min {min(xs):.2f} s, median {statistics.median(xs):.2f} s")
    print(f"ratio: min {min(cli) / min(floor):.2f}×, median "
          f"{statistics.median(cli) / statistics.median(floor):.2f}× (goal ≤ 1.3×)")


if __name__ == "__main__":
    main()

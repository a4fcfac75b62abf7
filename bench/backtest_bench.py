"""Backtest speed and memory: the seven 5m pairs of ../shared/data (20 days, about 40k candles)
through the live engine, end to end.

python bench/backtest_bench.py [DATA_DIR [RUNS]]
Target (issue #9): under 0.5 s and 100 MB. Prints the best of RUNS (default 5) and the median.
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mraster import settings as st  # noqa: E402
from mraster.backtest import report  # noqa: E402
from mraster.backtest.runner import run_backtest  # noqa: E402
from mraster.sim.market import replay_market  # noqa: E402

PAIRS = ["ADABTC", "ETCBTC", "ETHBTC", "LTCBTC", "NXTBTC", "TRXBTC", "XLMBTC"]


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    s = st.load(environ={}, env_file=Path("/none"))
    times = []
    for n in range(runs):  # best of several: this machine's speed varies by ±20 % run to run
        t0, c0 = time.perf_counter(), time.process_time()
        market = replay_market(data, PAIRS, manual=True, warmup=400)
        load = time.perf_counter() - t0

        def progress(done: float, trades: int, open_: int) -> None:
            print(f"\rrun {n + 1}/{runs} {done:6.1%}  trades {trades}", end="", file=sys.stderr,
                  flush=True)
        result = run_backtest(data, s, market=market, progress=progress)
        rep = report.build(result)
        times.append((time.perf_counter() - t0, load, result.seconds, time.process_time() - c0))
        if n == 0:  # the process's peak after one run (later runs overlap with the last one's)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            candles = sum(len(x.t) for x in market.series.values())
            steps, engine_steps, trades = result.steps, result.engine_steps, rep["summary"]["trades"]
        del market, result, rep
    print(file=sys.stderr)
    total, load, engine, cpu = min(times)
    print(f"{len(PAIRS)} pairs, {candles} candles ({steps} steps, the engine ran on "
          f"{engine_steps}): best of {runs}: load {load:.2f} s, backtest {engine:.2f} s, "
          f"total {total:.2f} s = {candles / total:,.0f} candles/s, CPU {cpu:.2f} s (median "
          f"{sorted(t[0] for t in times)[runs // 2]:.2f} s); peak memory {peak:.0f} MB; "
          f"{trades} trades")


if __name__ == "__main__":
    main()

"""Backtest speed and memory: the seven 5m pairs of ../shared/data (20 days, about 40k candles)
through the live engine, end to end.

python bench/backtest_bench.py [DATA_DIR]
Target (issue #9): under 0.5 s and 100 MB. See the README for where this stands and why.
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
    t0 = time.perf_counter()
    market = replay_market(data, PAIRS, manual=True, warmup=400)
    candles = sum(len(s.t) for s in market.series.values())
    load = time.perf_counter() - t0

    def progress(done: float, trades: int, open_: int) -> None:
        print(f"\r{done:6.1%}  trades {trades}", end="", file=sys.stderr, flush=True)
    s = st.load(environ={}, env_file=Path("/none"))
    result = run_backtest(data, s, market=market, progress=progress)
    print(file=sys.stderr)
    rep = report.build(result)
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(PAIRS)} pairs, {candles} candles ({result.steps} steps): load {load:.2f} s, "
          f"engine {result.seconds:.1f} s, total {total:.1f} s = {candles / total:,.0f} candles/s; "
          f"peak memory {peak:.0f} MB; {rep['summary']['trades']} trades")


if __name__ == "__main__":
    main()

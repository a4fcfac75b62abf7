"""Backtest cost against history length for an actively trading configuration (issue 22, goal 2):
the bandit, the alpha veto and the breakers off, minimum edge −5 R, RSI 51/49, so the engine runs
on most steps.

python bench/scaling_bench.py [DATA_DIR [RUNS]]
Prints the best of RUNS (default 3) for the last 5 and the whole 20 days of the seven 5m pairs,
the engine's cost per step, and the ratio (goal: 4× the history in at most 4.4× the time).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mraster import settings as st  # noqa: E402
from mraster.backtest.runner import run_backtest  # noqa: E402
from mraster.sim.market import replay_market  # noqa: E402

PAIRS = ["ADABTC", "ETCBTC", "ETHBTC", "LTCBTC", "NXTBTC", "TRXBTC", "XLMBTC"]
ACTIVE = {"ASTER_BANDIT_ENABLED": "false", "ASTER_ALPHA_ENABLED": "false",
          "ASTER_MIN_EDGE_R": "-5", "ASTER_RSI_BUY_MIN": "51", "ASTER_RSI_SELL_MAX": "49",
          # breakers off too: otherwise the drawdown breaker ends the trading after a few days
          "ASTER_MAX_DRAWDOWN": "0", "ASTER_DAILY_LOSS_LIMIT": "0", "ASTER_STREAK_STOPS": "0",
          "ASTER_SYMBOL_STOPS": "0"}


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    logging.getLogger("mraster").setLevel(logging.ERROR)
    s = st.load(environ=ACTIVE, env_file=Path("/none"))
    market = replay_market(data, PAIRS, manual=True, warmup=400)
    out = {}
    for days in (5.0, 10.0, None):
        best = None
        for _ in range(runs):
            r = run_backtest(data, s, market=market, last_days=days)
            if best is None or r.seconds < best.seconds:
                best = r
        out[days] = best
        print(f"{'all (' + format((best.end_ms - best.start_ms) / 86.4e6, '.1f') + ')' if days is None else days:>9} days: "
              f"{best.seconds:6.2f} s, {len(best.state['history'])} trades, engine on "
              f"{best.engine_steps} of {best.steps} steps, "
              f"{best.seconds / max(1, best.engine_steps) * 1000:.2f} ms per engine step",
              flush=True)
    ratio = out[None].seconds / out[5.0].seconds
    span = (out[None].end_ms - out[None].start_ms) / (out[5.0].end_ms - out[5.0].start_ms)
    print(f"{span:.2f}× the history took {ratio:.2f}× the time "
          f"(linear would be {span:.2f}×; goal ≤ {1.1 * span:.2f}×)")


if __name__ == "__main__":
    main()

"""Backtest cost against history length for an actively trading configuration (issue 22, goal 2):
the bandit, the alpha veto and the breakers off, minimum edge −5 R, RSI 51/49, so the engine runs
on most steps.

python bench/scaling_bench.py [DATA_DIR [RUNS]]
Prints the best of RUNS (default 3) for the first and the last quarter and the whole of the seven
5m pairs' history, the engine's cost per step, and the ratio (goal: 4× the history in at most
4.4× the time).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mraster import settings as st  # noqa: E402
from mraster.backtest.runner import replay_span, run_backtest  # noqa: E402
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
    first, last = replay_span(market)
    quarter = (last - first) // 4
    out = {}
    for name, a, b in (("first quarter", first, first + quarter),
                       ("last quarter", last - quarter, last), ("whole", first, last)):
        best = min((run_backtest(data, s, market=market, start_ms=a, end_ms=b)
                    for _ in range(runs)), key=lambda r: r.seconds)
        out[name] = best
        print(f"{name:>13} ({(best.end_ms - best.start_ms) / 86.4e6:4.1f} days): "
              f"{best.seconds:6.2f} s, {len(best.state['history'])} trades, engine on "
              f"{best.engine_steps} of {best.steps} steps, "
              f"{best.seconds / max(1, best.engine_steps) * 1000:.2f} ms per engine step",
              flush=True)
    quarters = (out["first quarter"].seconds + out["last quarter"].seconds) / 2
    # a quarter's cost depends on how busy its market was: the mean of the first and the last
    # stands for "a quarter" (the whole run has both regimes)
    print(f"4× the history took {out['whole'].seconds / quarters:.2f}× the time of a quarter "
          f"(first and last averaged; linear: 4×, goal ≤ 4.4×)")


if __name__ == "__main__":
    main()

"""Optimiser speed: 200 trials on the seven 5m pairs of ../shared/data with --jobs 2 (the candles
loaded once per worker), measured in the same run as a single backtest of the same candles.

python bench/optimize_bench.py [DATA_DIR [TRIALS [JOBS]]]
Goal (issue #21): 200 trials in at most 2 minutes on this 2-core machine with --jobs 2.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mraster import settings as st  # noqa: E402
from mraster.backtest.runner import run_backtest  # noqa: E402

logging.getLogger("mraster").setLevel(logging.CRITICAL)  # the replay's own notices are not figures

PAIRS = "ADABTC,ETCBTC,ETHBTC,LTCBTC,NXTBTC,TRXBTC,XLMBTC"


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    jobs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    t0 = time.perf_counter()
    run_backtest(data, st.load(environ={}, env_file=Path("/none")), symbols=PAIRS.split(","))
    single = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "mraster.optimize", "--data", str(data),
                            "--symbols", PAIRS, "--trials", str(trials), "--jobs", str(jobs),
                            "--out", out], cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(p.stderr[-2000:])
    print(f"single backtest, whole history in-process: {single:.2f} s")
    print(f"optimiser, {trials} trials (entries + exits, 3 walk-forward folds, 20 % hold-out), "
          f"--jobs {jobs}, whole process incl. report: {wall:.1f} s "
          f"({wall / trials * jobs:.2f} s per trial per worker; goal 120 s)")


if __name__ == "__main__":
    main()

"""The backtest's work counted in instructions (valgrind's callgrind), per scenario: a figure the
machine's load does not move, so two commits can be compared where wall and CPU time move by
40 % between runs of the same code (the shared machines these figures come from).

python bench/instructions_bench.py [--against REV] [--only NAME]

The scenarios of ``freqtrade_bench.py``: the seven pairs (defaults and AI mode over 20 days, the
actively trading configuration over 5) and the histories made of their real days (320 days of
seven symbols, 20 days of 56; written once to ~/.cache/mraster-bench as ``year_bench.py`` makes
its year). Each is one whole ``python -m mraster.backtest`` process, imports and report
included, run under callgrind: about 50× slower than without, one to four minutes each.
``--against REV`` runs the same on a worktree of that commit, beside this
checkout's (two processes at once: the counts do not depend on it), and prints the change.
Compiled modules and parsed candles are made before anything is counted, so both count the
same work. Repeated runs of the same code agree within 0.1 %.

Needs valgrind (Debian: ``apt install valgrind``).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from freqtrade_bench import DATA, ENV, MADE, SCENARIOS  # (bench/ is this script's folder)
from year_bench import make_year

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "mraster-bench"
WARM = """
import sys; sys.path.insert(0, {root!r})
from pathlib import Path
import mraster.backtest.__main__, mraster.backtest.report, mraster.ai.copilots
from mraster.sim.market import replay_market
replay_market(Path({data!r}))
"""


def data_for(made: str | None) -> Path:
    """The scenario's candles: the seven pairs, or a made history (written once)."""
    if made is None:
        return DATA
    symbols, days = MADE[made]
    folder = CACHE / f"data-{symbols}-symbols-{days}-days"
    if len(list(folder.glob("*-5m.csv"))) != symbols:
        make_year(DATA, folder, symbols, days)
    return folder


def counting(root: Path, data: Path, args: list[str], env: dict[str, str], out: Path
             ) -> subprocess.Popen:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           sys.executable, "-m", "mraster.backtest", "--data", str(data), *args, "--out", str(out)]
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def collected(p: subprocess.Popen) -> int:
    _, err = p.communicate()
    m = re.search(r"Collected : (\d+)", err)
    if p.returncode or m is None:
        sys.exit(f"the run under callgrind failed:\n{err[-2000:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", help="a commit to compare with (a worktree of it is made)")
    ap.add_argument("--only", default="", help="scenarios whose name contains this")
    a = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt install valgrind)")
    if a.against and subprocess.run(["git", "rev-parse", "--verify", "-q",
                                     f"{a.against}^{{commit}}"], cwd=ROOT,
                                    capture_output=True).returncode:
        sys.exit(f"--against {a.against}: no such commit in {ROOT}")
    with tempfile.TemporaryDirectory() as tmp:
        # compiled modules kept (ENV), parsed candles in a cache of this bench's own
        env = {**ENV, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        env.pop("MRASTER_CANDLE_CACHE", None)
        roots = [ROOT]
        if a.against:
            other = Path(tmp) / "against"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(other), a.against],
                           cwd=ROOT, check=True)
            roots.insert(0, other)
        try:
            for name, overrides, first, last, made in SCENARIOS:
                if a.only not in name:
                    continue
                data = data_for(made)
                args = ["--from", first, "--to", last, *overrides]
                for root in roots:
                    subprocess.run([sys.executable, "-c", WARM.format(root=str(root),
                                                                      data=str(data))],
                                   env=env, check=True)
                runs = [counting(root, data, args, env, Path(tmp) / f"out-{k}")
                        for k, root in enumerate(roots)]
                counts = [collected(p) for p in runs]
                line = f"{name}: {counts[-1] / 1e9:.3f} G instructions"
                if a.against:
                    line += (f" ({a.against}: {counts[0] / 1e9:.3f} G, "
                             f"{(counts[1] / counts[0] - 1) * 100:+.1f} %)")
                print(line, flush=True)
        finally:
            if a.against:
                subprocess.run(["git", "worktree", "remove", "--force", str(roots[0])],
                               cwd=ROOT, check=False)


if __name__ == "__main__":
    main()

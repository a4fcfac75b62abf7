"""``python -m mraster.optimize``: which settings would have worked, and would they have kept
working. Run the same command again to resume an interrupted study, or on another machine with
the same ``--storage`` URL to join it."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from mraster import settings as st
from mraster.optimize import report, space
from mraster.optimize.scoring import OBJECTIVES
from mraster.optimize.study import Plan, PlanError, open_studies, prepare, run, storage_of
from mraster.progress import ProgressLine


def settings_for(env: dict[str, str]) -> dict:
    """The user's settings for the trials, secrets blanked (a backtest needs none)."""
    s = st.load(environ=env)
    return {k: ("" if k in st.SECRET_NAMES else v) for k, v in s.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mraster.optimize", description=__doc__)
    p.add_argument("--data", required=True, type=Path, help="folder of <SYMBOL>-5m*.csv files")
    p.add_argument("--symbols", type=lambda s: [x.strip().upper() for x in s.split(",") if x.strip()])
    p.add_argument("--settings", default="entries,exits",
                   help=f"settings or groups to search, comma-separated (groups: {', '.join(space.GROUPS)})")
    p.add_argument("--objective", default="expectancy", choices=sorted(OBJECTIVES))
    p.add_argument("--trials", type=int, default=200, help="finished trials over all studies")
    p.add_argument("--folds", type=int, default=3, help="walk-forward folds (0: none)")
    p.add_argument("--holdout", type=float, default=0.2, help="share of the history kept unseen")
    p.add_argument("--max-drawdown", type=float, default=0.25, help="constraint, share of the peak")
    p.add_argument("--min-trades", type=int, default=5, help="constraint, per training window")
    p.add_argument("--days", type=float, help="only the last N days of the data")
    p.add_argument("--jobs", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=Path("optimize-out"))
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///<out>/study.sqlite; "
                   "postgresql://… or mysql://… lets other machines join)")
    p.add_argument("--study", default="mraster", help="study name in the storage")
    p.add_argument("--heartbeat", type=int, default=10, help="seconds between a worker's "
                   "heartbeats; a trial silent for three is retried")
    p.add_argument("--json-progress", action="store_true", help="progress as JSON lines on stdout")
    p.add_argument("overrides", nargs="*", metavar="ASTER_SETTING=value")
    a = p.parse_args(argv)
    if not 1 <= a.jobs <= 64:
        p.error(f"--jobs: {a.jobs} is not allowed; expected 1 to 64")
    if not 1 <= a.heartbeat <= 600:
        p.error(f"--heartbeat: {a.heartbeat} is not allowed; expected 1 to 600")
    env = {k: v for k, v in __import__("os").environ.items() if k in st.BY_NAME}
    for item in a.overrides:
        if "=" not in item:
            p.error(f"{item!r}: settings are given as NAME=value")
        k, v = item.split("=", 1)
        env[k] = v
    try:
        base = settings_for(env)
    except st.SettingsErrors as exc:
        st.given_by(exc, [k.split("=", 1)[0] for k in a.overrides], "environment",
                    "the command line")
        print(f"mraster.optimize: invalid setting: {exc}", file=sys.stderr)
        return 2
    plan = Plan(data=a.data, picks=a.settings.split(","), settings=base, symbols=a.symbols,
                objective=a.objective, trials=a.trials, folds=a.folds, holdout=a.holdout,
                max_dd=a.max_drawdown, min_trades=a.min_trades, seed=a.seed,
                storage=a.storage or f"sqlite:///{a.out / 'study.sqlite'}", study=a.study,
                heartbeat_s=a.heartbeat, last_days=a.days)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    line = ProgressLine(sys.stderr)

    def show(pr) -> None:
        if a.json_progress:
            print(json.dumps({"event": "progress", "done": pr.done, "total": pr.total,
                              "study": pr.study, "best": pr.best, "eta_s": pr.eta_s}), flush=True)
        else:
            line.show(pr.line(), pr.done / max(1, pr.total))
    try:
        ev = prepare(plan)
        complete = run(plan, ev, a.jobs, show, stop.is_set)
        line.end()
        if not complete:
            print("mraster.optimize: stopped; run the same command to resume (no finished "
                  "trial is lost)", file=sys.stderr)
            return 130
        if a.json_progress:
            print(json.dumps({"event": "report"}), flush=True)
        print("all trials done; scoring the unseen windows and the neighbourhoods",
              file=sys.stderr, flush=True)
        storage = storage_of(plan)
        try:
            rep = report.build(plan, ev, open_studies(plan, storage), a.jobs)
        finally:
            storage.engine.dispose()
    except PlanError as exc:
        line.end()
        print(f"mraster.optimize: {exc}", file=sys.stderr)
        return 2
    except BaseException:
        line.end()  # a traceback starts on a line of its own, not after the progress text
        raise
    paths = report.write(rep, a.out)
    if a.json_progress:
        print(json.dumps({"event": "done", "report": str(paths[0])}), flush=True)
    print(file=sys.stderr)
    for f in rep["folds"]:
        ins, oos = f.get("in_sample") or {}, f.get("out_of_sample") or {}
        print(f"{f['name']:8s} in-sample {ins.get('value', float('nan')):8.4g}  out of sample "
              f"{oos.get('value', float('nan')):8.4g}  {f.get('warning') or ''}", file=sys.stderr)
    for w in rep["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    for c in rep["preset"]["changes"]:
        print(f"proposed {c['key']}: {c['from']} → {c['to']}", file=sys.stderr)
    print("report: " + ", ".join(str(x) for x in paths), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

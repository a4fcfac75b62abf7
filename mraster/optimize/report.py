"""The optimiser's answer: per fold in-sample against out-of-sample, the hold-out, robustness,
and the proposed settings — as JSON and as one self-contained HTML page with SVG plots (no
scripts, no CDN)."""
from __future__ import annotations

import html
import json
import logging
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from mraster.optimize import robustness as rb
from mraster.optimize import space as sp
from mraster.optimize.scoring import OBJECTIVES, score
from mraster.optimize.study import Evaluator, Plan, PlanError, feasible, plan_dict
from mraster.optimize.windows import Window
from mraster.words import Words, words

TOP = 2  # best trials whose neighbourhoods are checked (each costs 2 backtests per setting)


def best_trials(study: optuna.Study, k: int = 1) -> list[optuna.trial.FrozenTrial]:
    ok = [t for t in study.get_trials(deepcopy=False) if feasible(t)]
    return sorted(ok, key=lambda t: (-t.value, t.number))[:k]


def _score_dict(sc) -> dict[str, Any]:
    return {"value": sc.value, "trades": sc.trades, "max_drawdown_pct": sc.max_drawdown_pct,
            "total_return": sc.total_return, **{k: v for k, v in sc.metrics.items()}}


Summary = tuple[Any, list[float], float | None]  # (Score, trade pnls, starting equity)
_EV: Evaluator | None = None  # a report process's evaluator (candles loaded once)


def _summary(ev: Evaluator, objective: str, params: Mapping[str, Any], window: Window) -> Summary:
    res = ev.run(params, window)
    return (score(res, objective), [t["pnl"] for t in res.state.get("history", [])],
            res.equity[0][1] if res.equity else None)


def _report_init(plan: Plan) -> None:
    global _EV
    logging.getLogger("mraster").setLevel(logging.CRITICAL)
    _EV = Evaluator(plan)


def _report_task(task: tuple[str, Mapping[str, Any], Window]) -> Summary:
    assert _EV is not None
    return _summary(_EV, *task)


def summaries(plan: Plan, ev: Evaluator, tasks: list[tuple[Mapping[str, Any], Window]],
              jobs: int) -> list[Summary]:
    """The report's backtests, in order. With several jobs they run in freshly *spawned*
    processes, each loading the candles once: nothing is forked once the storage has been
    opened (a fork beside an open SQLite connection, or numpy's threads, can hang a child)."""
    if jobs <= 1 or len(tasks) < 2:
        return [_summary(ev, plan.objective, *t) for t in tasks]
    # an executor, not a Pool: a process that dies fails the report with an error instead of
    # leaving it waiting forever for the lost task
    try:
        with ProcessPoolExecutor(min(jobs, len(tasks)), mp_context=mp.get_context("spawn"),
                                 initializer=_report_init, initargs=(plan,)) as pool:
            return list(pool.map(_report_task, [(plan.objective, *t) for t in tasks]))
    except BrokenProcessPool as exc:
        raise PlanError(f"a process scoring the report died ({exc}); run the same command "
                        "again: every trial is kept and only the report is redone") from None


def _fold_words(name: str) -> Words:
    """"fold-2" → fold 2; "final" → the hold-out (its unseen window)."""
    return words("hold-out") if name == "final" else words("fold {n}", n=int(name.rsplit("-", 1)[1]))


def _warning(w: Words | None) -> dict[str, Any]:
    """A fold's warning: in English (the CLI, report.html) and as words (the page's language)."""
    return {"warning": str(w), "warning_words": w.to_dict()} if w is not None else \
        {"warning": None, "warning_words": None}


def build(plan: Plan, ev: Evaluator, studies: list, jobs: int = 1) -> dict[str, Any]:
    """The out-of-sample runs and the neighbourhoods, spread over ``jobs`` processes."""
    folds, best = [], []
    for fold, study, _ in studies:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        row: dict[str, Any] = {**fold.to_dict(), "trials": len(done),
                               "feasible": sum(feasible(t) for t in done)}
        top = best_trials(study)
        if not top:
            row.update(_warning(words(
                "no trial met the constraints (max drawdown {dd}%, at least {n} trades); loosen "
                "them or widen the window", dd=round(plan.max_dd * 100, 1), n=plan.min_trades)))
        folds.append(row)
        best.append(top[0] if top else None)
    final_fold, final_study, _ = studies[-1]
    robust_trials = best_trials(final_study, TOP)
    near = [rb.neighbours(t.params, plan.space) for t in robust_trials]
    # the unseen windows, each once with its fold's chosen trial; and every neighbour
    tasks = [(t.params, fold.test) for (fold, _, _), t in zip(studies, best) if t is not None]
    tasks += [(params, final_fold.train) for rows in near for _, _, params in rows]
    results = iter(summaries(plan, ev, tasks, jobs))
    oos_pnls, start_eq = [], None
    for (fold, _, _), row, t in zip(studies, folds, best):
        if t is None:
            continue
        oos, pnls, first_equity = next(results)
        row.update(_warning(rb.divergence(t.value, oos.value)))
        row.update(params=sp.tidy(t.params, plan.space), trial=t.number,
                   in_sample={"value": t.value, "trades": t.user_attrs.get("trades"),
                              "max_drawdown_pct": t.user_attrs.get("max_drawdown_pct"),
                              "total_return": t.user_attrs.get("total_return")},
                   out_of_sample=_score_dict(oos))
        oos_pnls += pnls  # hold-out included
        if start_eq is None:
            start_eq = first_equity
    robust = [{"trial": t.number, "params": t.params,
               **rb.neighbourhood(t.value, [(a, b, next(results)[0].value) for a, b, _ in rows])}
              for t, rows in zip(robust_trials, near)]
    final = folds[-1]
    changes = [{"key": k, "from": plan.settings.get(k), "to": v}
               for k, v in (final.get("params") or {}).items() if plan.settings.get(k) != v]
    said = [words("{fold}: {warning}", fold=_fold_words(f["name"]),
                  warning=Words.from_dict(f["warning_words"]))
            for f in folds if f.get("warning_words")]
    if robust and robust[0]["fragile"]:
        said.append(words("the best trial is fragile: moving {params} by 10 % of its range loses "
                          "more than half of its score",
                          params=", ".join(robust[0]["fragile_params"])))
    return {
        "plan": plan_dict(plan), "objective_words": OBJECTIVES[plan.objective],
        "folds": folds, "holdout": final, "warnings": [str(w) for w in said],
        "warnings_words": [w.to_dict() for w in said],  # the page says them in its language
        "robustness": robust, "importances": rb.importances(final_study),
        "monte_carlo": rb.drawdowns(oos_pnls, start_eq or 0.0, seed=plan.seed),
        "history": {study.study_name: [[t.number, t.value, feasible(t)] for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,))] for _, study, _ in studies},
        "trials": [{"number": t.number, "value": t.value, "feasible": feasible(t),
                    "params": t.params} for t in final_study.get_trials(
                        deepcopy=False, states=(TrialState.COMPLETE,))],
        "preset": {"values": final.get("params") or {}, "changes": changes},
    }


def write(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "optimize.json", out / "optimize.html"]
    paths[0].write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    paths[1].write_text(html_page(report), encoding="utf-8")
    return paths


# -- the page ------------------------------------------------------------------------------------
def _f(v: Any, d: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{d}g}"
    return html.escape(str(v))


def svg_history(history: dict[str, list], width: int = 900, height: int = 220) -> str:
    """Each study's trial values in order (green: met the constraints) and its best so far."""
    pts = [(name, n, v, ok) for name, rows in history.items() for n, v, ok in rows]
    if not pts:
        return "<p>No finished trials.</p>"
    lo, hi = min(p[2] for p in pts), max(p[2] for p in pts)
    hi = hi if hi > lo else lo + 1
    names = list(history)
    out = []
    for i, name in enumerate(names):
        rows = history[name]
        x0 = width * i / len(names)
        w = width / len(names)
        n = max(1, len(rows) - 1)
        best, line = None, []
        for j, (_, v, ok) in enumerate(rows):
            x = x0 + 6 + (w - 12) * j / n
            y = height - 14 - (height - 28) * (v - lo) / (hi - lo)
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{"#16a34a" if ok else "#9ca3af"}"/>')
            if ok and (best is None or v > best):
                best = v
            if best is not None:
                line.append(f"{x:.1f},{height - 14 - (height - 28) * (best - lo) / (hi - lo):.1f}")
        if line:
            out.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#2563eb"/>')
        out.append(f'<text x="{x0 + 6:.0f}" y="12" font-size="11">{html.escape(name)}</text>')
        if i:
            out.append(f'<line x1="{x0:.0f}" x2="{x0:.0f}" y1="0" y2="{height}" stroke="#e5e7eb"/>')
    return (f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="optimisation '
            f'history">{"".join(out)}<text x="2" y="{height - 2}" font-size="10">{_f(lo)} … '
            f'{_f(hi)}</text></svg>')


def svg_parallel(trials: list[dict], space: list[dict], width: int = 900, height: int = 260) -> str:
    """Parallel coordinates of the final study: one line per trial, the best tenth in blue."""
    if not trials or not space:
        return "<p>No finished trials.</p>"
    axes = list(space)
    vals = sorted(t["value"] for t in trials)
    cut = vals[int(len(vals) * 0.9)] if len(vals) > 1 else vals[0]

    def x_of(i: int) -> float:
        return 40 + (width - 80) * i / max(1, len(axes) - 1)

    def pos(p: dict, v: Any) -> float:
        if p["choices"]:
            c = [str(x) for x in p["choices"]]
            frac = c.index(str(v)) / max(1, len(c) - 1) if str(v) in c else 0.5
        else:
            frac = (float(v) - p["low"]) / ((p["high"] - p["low"]) or 1)
        return height - 20 - (height - 40) * frac

    out = []
    for t in sorted(trials, key=lambda t: t["value"]):
        pts = " ".join(f"{x_of(i):.1f},{pos(p, t['params'].get(p['name'])):.1f}"
                       for i, p in enumerate(axes) if p["name"] in t["params"])
        top = t["value"] >= cut and t["feasible"]
        out.append(f'<polyline points="{pts}" fill="none" stroke="{"#2563eb" if top else "#d1d5db"}" '
                   f'stroke-width="{1.5 if top else 1}"/>')
    for i, p in enumerate(axes):
        x = x_of(i)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="20" y2="{height - 20}" stroke="#6b7280"/>'
                   f'<text x="{x:.1f}" y="{height - 4}" font-size="9" text-anchor="middle">'
                   f'{html.escape(p["name"].replace("ASTER_", ""))}</text>')
    return (f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
            f'aria-label="parallel coordinates">{"".join(out)}</svg>')


def svg_importances(imp: dict[str, float], width: int = 600) -> str:
    if not imp:
        return "<p>Too few finished trials to rank the parameters.</p>"
    h = 22 * len(imp) + 6
    rows = [f'<rect x="220" y="{4 + 22 * i}" width="{360 * v:.1f}" height="16" fill="#2563eb"/>'
            f'<text x="214" y="{16 + 22 * i}" font-size="11" text-anchor="end">{html.escape(k)}</text>'
            f'<text x="{226 + 360 * v:.1f}" y="{16 + 22 * i}" font-size="11">{v:.0%}</text>'
            for i, (k, v) in enumerate(imp.items())]
    return f'<svg viewBox="0 0 {width} {h}" width="100%" role="img" aria-label="importances">{"".join(rows)}</svg>'


def html_page(r: dict[str, Any]) -> str:
    plan = r["plan"]
    fold_rows = "".join(
        f"<tr><td>{html.escape(f['name'])}</td><td>{f['train']['start_ms']}…{f['train']['end_ms']}</td>"
        f"<td>{f['trials']} ({f['feasible']} met the constraints)</td>"
        f"<td>{_f((f.get('in_sample') or {}).get('value'))}</td>"
        f"<td>{_f((f.get('out_of_sample') or {}).get('value'))}</td>"
        f"<td>{_f((f.get('in_sample') or {}).get('trades'))} / {_f((f.get('out_of_sample') or {}).get('trades'))}</td>"
        f"<td>{html.escape(f.get('warning') or '')}</td></tr>" for f in r["folds"])
    changes = "".join(f"<tr><td>{html.escape(c['key'])}</td><td>{_f(c['from'])}</td><td>{_f(c['to'])}</td></tr>"
                      for c in r["preset"]["changes"])
    robust = "".join(f"<tr><td>#{x['trial']}</td><td>{_f(x['value'])}</td><td>{_f(x['median'])}</td>"
                     f"<td>{_f(x['worst'])}</td><td>{'fragile: ' + ', '.join(x['fragile_params']) if x['fragile'] else 'holds'}</td></tr>"
                     for x in r["robustness"])
    mc = r["monte_carlo"]
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in r["warnings"]) or "<li>none</li>"
    return f"""<!doctype html><html lang="en"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MrAster optimisation</title>
<style>body{{font:14px system-ui,sans-serif;margin:1rem auto;max-width:960px;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #e5e7eb;padding:.3rem;text-align:left}}
.warn{{color:#b45309}}</style>
<h1>Optimisation: {html.escape(r['objective_words'])}</h1>
<p>{len(plan['space'])} settings, {plan['trials']} trials, {plan['folds']} walk-forward folds and a
{plan['holdout']:.0%} hold-out the search never saw; constraints: max drawdown {plan['max_dd']:.0%},
at least {plan['min_trades']} trades. Times are ms since 1970 (UTC).</p>
<h2>Warnings</h2><ul class="warn">{warn}</ul>
<h2>In-sample against out-of-sample</h2>
<table><tr><th>Fold</th><th>Trained on</th><th>Trials</th><th>In-sample</th><th>Out of sample</th><th>Trades in/out</th><th></th></tr>{fold_rows}</table>
<p>The last row is the hold-out: the final study's best settings, scored once on the last
{plan['holdout']:.0%} of the history.</p>
<h2>Proposed settings (the final study's best trial)</h2>
<table><tr><th>Setting</th><th>Now</th><th>Proposed</th></tr>{changes}</table>
<p>Nothing is applied: save them as a preset from the dashboard's Optimise view after reviewing
the changes.</p>
<h2>Robustness</h2>
<table><tr><th>Trial</th><th>Score</th><th>Neighbours' median</th><th>Worst neighbour</th><th></th></tr>{robust}</table>
<p>Monte-Carlo reshuffle of the {mc.get('trades', 0)} out-of-sample trades ({mc.get('runs', 0)} orders): maximum drawdown
as it happened {_f(mc.get('actual'))}, median {_f(mc.get('p50'))}, 95th percentile {_f(mc.get('p95'))}, worst {_f(mc.get('worst'))}.</p>
<h2>Optimisation history</h2>{svg_history(r['history'])}
<h2>Parallel coordinates (final study)</h2>{svg_parallel(r['trials'], plan['space'])}
<h2>Parameter importances (final study)</h2>{svg_importances(r['importances'])}
</html>"""

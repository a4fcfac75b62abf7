"""Can the result be trusted: in-sample against out-of-sample per fold, the best trials'
neighbourhoods, parameter importances, and a Monte-Carlo reshuffle of the out-of-sample trades."""
from __future__ import annotations

import statistics
from typing import Any, Mapping, Sequence

import numpy as np
import optuna

from mraster.optimize.space import Param
from mraster.words import Words, words

NUDGE = 0.1  # a neighbour: one parameter moved by 10 % of its range


def divergence(in_sample: float, out_of_sample: float) -> Words | None:
    """A warning in words when the unseen window tells another story than the search."""
    if in_sample > 0 and out_of_sample <= 0:
        return words("positive in-sample, not positive out of sample: the search fitted noise")
    if in_sample > 0 and out_of_sample < 0.5 * in_sample:
        return words("out of sample reached less than half of in-sample")
    return None


def neighbours(params: Mapping[str, Any], space: Sequence[Param]) -> list[tuple[str, Any, dict]]:
    """(parameter, its new value, the trial's parameters with it): each numeric parameter moved
    by ±10 % of its range, one at a time, kept inside the range."""
    out = []
    for p in space:
        for frac in (-NUDGE, NUDGE):
            v = p.nudge(params[p.name], frac)
            if v is not None and v != params[p.name]:
                out.append((p.name, v, {**params, p.name: v}))
    return out


def neighbourhood(value: float, rows: Sequence[tuple[str, Any, float]]) -> dict[str, Any]:
    """``rows``: (parameter, value, neighbour's score). Fragile when a neighbour loses more than
    half of a positive score."""
    scores = [r[2] for r in rows]
    fragile = sorted({r[0] for r in rows if value > 0 and r[2] < 0.5 * value})
    return {"value": value,
            "neighbours": [{"param": a, "value": b, "score": c} for a, b, c in rows],
            "worst": min(scores) if scores else None,
            "median": statistics.median(scores) if scores else None,
            "fragile": bool(fragile), "fragile_params": fragile}


def importances(study: optuna.Study) -> dict[str, float]:
    """PED-ANOVA importances of the study's parameters ({} with too few finished trials)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and
            t.value is not None]
    if len(done) < 4 or len({tuple(sorted(t.params.items())) for t in done}) < 2:
        return {}
    try:
        return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(
            study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def drawdowns(pnls: Sequence[float], start_equity: float, runs: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Maximum drawdown (share of the peak) of the out-of-sample trades in ``runs`` random
    orders: how bad it could have been with the same trades and other luck in their order."""
    if not pnls or start_equity <= 0:
        return {"trades": len(pnls), "runs": 0}
    rng = np.random.default_rng(seed)
    x = np.asarray(pnls, dtype=float)
    orders = np.array([rng.permutation(x) for _ in range(runs)])
    eq = start_equity + np.cumsum(orders, axis=1)
    eq = np.concatenate([np.full((runs, 1), start_equity), eq], axis=1)
    peak = np.maximum.accumulate(eq, axis=1)
    dd = ((peak - eq) / peak).max(axis=1)
    actual_eq = np.concatenate([[start_equity], start_equity + np.cumsum(x)])
    actual_peak = np.maximum.accumulate(actual_eq)
    return {"trades": len(pnls), "runs": runs,
            "actual": float(((actual_peak - actual_eq) / actual_peak).max()),
            "p50": float(np.percentile(dd, 50)), "p95": float(np.percentile(dd, 95)),
            "p99": float(np.percentile(dd, 99)), "worst": float(dd.max())}

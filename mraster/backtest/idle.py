"""Idle steps: where a backtest can skip the engine, and what the engine would have recorded.

Most replay steps end the same way: no position is open, and every symbol is skipped — by the
volume floor, the screen (market filters, the RSI signal, funding, the non-arbitrage guard, the
edge) or the policy. Nothing changes on such a step but the skip counters and the equity curve,
so the backtest runs the engine only where something can happen:

- a position, an order or a bracket repair exists (the engine manages it);
- the policy would TAKE a candidate, or chance must break a tie between its arms;
- a window is still growing, a cooldown is running: the cases left to the engine.

Everything here is the engine's own decision code run over arrays: ``screen`` over the whole
history once, and the policy's ``verdicts`` over the candidates after each engine step (the
policy only learns when a position closes, which happens on an engine step). A test runs the
same history both ways and gets the same trades, skip counts and equity curve.

Not used in AI mode: the copilots keep state on every step. The sentinel's labels need no
step of their own: each engine step folds them over their decay window
(``ReplayData.sentinel_label``), so skipping steps does not change them.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

import numpy as np

from mraster.backtest.data import ReplayData
from mraster.policy import BanditPolicy, build_features, vectorize
from mraster.sim.exchange import SimExchange
from mraster.strategy.filters import REASONS, Snapshot, market_filters
from mraster.strategy.screen import policy_context, screen
from mraster.strategy.signals import rsi_signal

ENGINE = "engine"  # marks a symbol's step that only the engine can decide
NAMES = (None, ENGINE, *REASONS)  # reason codes as one byte each; 0 = candidate for the policy
CODE = {name: code for code, name in enumerate(NAMES)}
FIRST_CHUNK, MAX_CHUNK = 32, 1024  # steps whose candidates get their verdicts at once


class IdleSteps:
    def __init__(self, data: ReplayData, sim: SimExchange, s: Mapping[str, Any],
                 symbols: list[str], times: np.ndarray) -> None:
        self.times = times
        n, m = len(times), len(symbols)
        # one byte per symbol and step: an index into NAMES (0: a candidate for the policy)
        self.reasons = np.zeros((n, m), dtype=np.uint8)
        steps, rows = [], []
        for col, sym in enumerate(symbols):
            f, ok = data.feature_table(sym, times)
            q = sim.parsed_quotes(sym, times)
            snap = Snapshot(bid=q["bid"], ask=q["ask"], quote_volume=q["quote_volume"],
                            mark=q["mark"], index=q["index"], funding=q["funding"])
            # ADX only feeds the edge: needed where the market filters pass and a signal fired
            data.fill_adx(sym, times, f, ok & np.equal(market_filters(snap, f.wickiness, s), None)
                          & np.not_equal(rsi_signal(f, s).side, None))
            sc = screen(f, snap, s)
            liquid = q["quote_volume"] >= s["ASTER_MIN_QUOTE_VOL_USDT"]
            reason = np.where(liquid, np.where(ok, sc.reason, ENGINE), "min_qvol")
            self.reasons[:, col] = np.fromiter((CODE[r] for r in reason.tolist()), np.uint8, n)
            cand = np.flatnonzero(self.reasons[:, col] == 0)
            if not len(cand):
                continue
            ctx = {k: np.asarray(v)[cand] for k, v in policy_context(f, snap, sc).items()}
            steps.append(cand)
            rows.append(vectorize(build_features(ctx)))
        order = np.argsort(np.concatenate(steps), kind="stable") if steps else np.zeros(0, int)
        self.cand_step = np.concatenate(steps)[order] if steps else np.zeros(0, int)
        self.cand_x = np.concatenate(rows)[order] if rows else np.zeros((0, 1))
        self.engine_steps = np.flatnonzero((self.reasons == CODE[ENGINE]).any(axis=1))

    def next_busy(self, i: int, policy: BanditPolicy) -> tuple[int, Counter]:
        """The first step from ``i`` on that needs the engine (the last step at the latest),
        and the skip reasons of the idle steps before it, as the engine would count them."""
        last = len(self.times) - 1
        at = self.engine_steps.searchsorted(i)
        stop = min(last, int(self.engine_steps[at]) if at < len(self.engine_steps) else last)
        counts: Counter = Counter()
        lo, chunk = i, FIRST_CHUNK
        while lo < stop:
            hi = min(stop, lo + chunk)
            chunk = min(2 * chunk, MAX_CHUNK)  # a TAKE is often near: look close first
            a, b = self.cand_step.searchsorted(lo), self.cand_step.searchsorted(hi)
            verdict = policy.verdicts(self.cand_x[a:b])[2] if b > a else np.zeros(0, str)
            busy = np.flatnonzero((verdict == "TAKE") | (verdict == "tie"))
            if len(busy):
                hi = int(self.cand_step[a + busy[0]])
                verdict = verdict[self.cand_step[a:b] < hi]
            counts.update(verdict.tolist())
            per = np.bincount(self.reasons[lo:hi].ravel(), minlength=len(NAMES))
            counts.update({NAMES[c]: int(k) for c, k in enumerate(per) if k and c})
            lo = hi
            if len(busy):
                break
        return lo, counts

    def next_busy_reducing(self, i: int, until_ms: int | None) -> tuple[int, Counter]:
        """Like ``next_busy`` while an account-wide circuit breaker is on: no candidate can be
        taken (the engine's gate says ``reducing`` before the policy is asked), so the stretch
        runs to the next step only the engine can decide, or to two candles before the breaker
        lifts by itself (the engine takes the steps around that moment)."""
        last = len(self.times) - 1
        at = self.engine_steps.searchsorted(i)
        stop = min(last, int(self.engine_steps[at]) if at < len(self.engine_steps) else last)
        if until_ms is not None:
            base = int(self.times[1] - self.times[0]) if len(self.times) > 1 else 0
            stop = min(stop, int(self.times.searchsorted(until_ms - 2 * base)))
        if stop <= i:
            return i, Counter()
        per = np.bincount(self.reasons[i:stop].ravel(), minlength=len(NAMES))
        counts: Counter = Counter({NAMES[c]: int(k) for c, k in enumerate(per) if k and c})
        if per[0]:
            counts["reducing"] += int(per[0])
        return stop, counts


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
BLOCK = 4096  # steps screened at once, when the walk gets there: memory stays bounded


class IdleSteps:
    """The screen runs block by block, ahead of the steps as they are reached; a block's
    candidates are dropped once the backtest has passed them (a year of 50 symbols holds
    about a million candidates: 190 MB when they were all kept)."""

    def __init__(self, data: ReplayData, sim: SimExchange, s: Mapping[str, Any],
                 symbols: list[str], times: np.ndarray) -> None:
        self.data, self.sim, self.s, self.symbols, self.times = data, sim, s, symbols, times
        # one byte per symbol and step: an index into NAMES (0: a candidate for the policy)
        self.reasons = np.zeros((len(times), len(symbols)), dtype=np.uint8)
        self.screened = 0  # steps [0, screened) are screened
        self.cand_step = np.zeros(0, np.int64)  # candidates of the screened steps not yet passed
        self.cand_x = np.zeros((0, 0))  # their policy features (the width comes with the first)
        self.engine_steps = np.zeros(0, np.int64)  # steps only the engine can decide, so far

    def _screen(self, upto: int) -> None:
        """Screen blocks until every step before ``upto`` is screened."""
        while self.screened < min(upto, len(self.times)):
            lo = self.screened
            hi = min(len(self.times), lo + BLOCK)
            self._screen_block(lo, hi)
            self.screened = hi

    def _screen_block(self, lo: int, hi: int) -> None:
        data, sim, s = self.data, self.sim, self.s
        times = self.times[lo:hi]
        steps, rows = [], []
        for col, sym in enumerate(self.symbols):
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
            # a handful of distinct reasons (None: a candidate) mapped to their codes at once
            names, at = np.unique(np.where(np.equal(reason, None), "", reason).astype(str),
                                  return_inverse=True)
            self.reasons[lo:hi, col] = np.array([CODE[r or None] for r in names.tolist()],
                                                np.uint8)[at]
            cand = np.flatnonzero(self.reasons[lo:hi, col] == 0)
            if not len(cand):
                continue
            ctx = {k: np.asarray(v)[cand] for k, v in policy_context(f, snap, sc).items()}
            steps.append(cand + lo)
            rows.append(vectorize(build_features(ctx)))
        busy = lo + np.flatnonzero((self.reasons[lo:hi] == CODE[ENGINE]).any(axis=1))
        self.engine_steps = np.concatenate([self.engine_steps, busy])
        if not steps:
            return
        order = np.argsort(np.concatenate(steps), kind="stable")
        new_step, new_x = np.concatenate(steps)[order], np.concatenate(rows)[order]
        if not len(self.cand_step):
            self.cand_step, self.cand_x = new_step, new_x
        else:
            self.cand_step = np.concatenate([self.cand_step, new_step])
            self.cand_x = np.concatenate([self.cand_x, new_x])

    def _forget_before(self, i: int) -> None:
        """Candidates of steps already passed are never asked for again."""
        k = int(self.cand_step.searchsorted(i))
        if k:
            self.cand_step, self.cand_x = self.cand_step[k:], self.cand_x[k:]

    def _first_engine_step(self, i: int) -> int | None:
        at = self.engine_steps.searchsorted(i)
        return int(self.engine_steps[at]) if at < len(self.engine_steps) else None

    def next_busy(self, i: int, policy: BanditPolicy) -> tuple[int, Counter]:
        """The first step from ``i`` on that needs the engine (the last step at the latest),
        and the skip reasons of the idle steps before it, as the engine would count them."""
        last = len(self.times) - 1
        counts: Counter = Counter()
        lo, chunk = i, FIRST_CHUNK
        while True:
            self._forget_before(lo)
            self._screen(lo + chunk)  # the screen reaches past this stretch
            eng = self._first_engine_step(i)
            stop = min(last, eng) if eng is not None else last
            if lo >= stop:
                break
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
        stop = len(self.times) - 1
        if until_ms is not None:
            base = int(self.times[1] - self.times[0]) if len(self.times) > 1 else 0
            stop = min(stop, int(self.times.searchsorted(until_ms - 2 * base)))
        while True:  # block by block: the stretch's candidates are only counted
            eng = self._first_engine_step(i)
            if eng is not None:
                stop = min(stop, eng)
            self._forget_before(min(self.screened, stop))
            if self.screened >= stop:
                break
            self._screen(self.screened + 1)
        if stop <= i:
            return i, Counter()
        per = np.bincount(self.reasons[i:stop].ravel(), minlength=len(NAMES))
        counts: Counter = Counter({NAMES[c]: int(k) for c, k in enumerate(per) if k and c})
        if per[0]:
            counts["reducing"] += int(per[0])
        return stop, counts

"""Idle steps: where a backtest can skip the engine, and what the engine would have recorded.

Most replay steps end the same way: no position is open, and every symbol is skipped — by the
volume floor, the screen (market filters, the RSI signal, funding, the non-arbitrage guard, the
edge), the sentinel's red label or the policy. Nothing changes on such a step but the skip
counters and the equity curve (and, in AI mode, the playbook), so the backtest runs the engine
only where something can happen:

- a position, an order or a bracket repair exists (the engine manages it);
- the policy would TAKE a candidate, or chance must break a tie between its arms;
- a window is still growing, a cooldown is running: the cases left to the engine.

Everything here is the engine's own decision code run over arrays: ``screen`` over the history
block by block, and the policy's ``verdicts`` over the candidates after each engine step (the
policy only learns when a position closes, which happens on an engine step). Tests run the
same history both ways, in the standard mode and in AI mode, and get the same trades, skip
counts, equity curve, policy and copilots' memory.

AI mode: the rule-based copilots change between engine steps only through the playbook, which
is renewed every ``ASTER_AI_PLAYBOOK_REFRESH_MINUTES`` from the market's 24 h changes, the
sentinel's labels and the trade history. The walk renews it on the same steps from the same
inputs (``playbook.refreshed``); its tightened filters select a screen of their own (a handful
of variants over a run), and each candidate's policy features carry its symbol's postmortem
inputs, which only change when a trade closes. The sentinel's labels need no step of their
own: ``ReplayData.sentinel_label`` folds them over their decay window, whichever steps ran.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np

from mraster import shadows
from mraster.backtest.data import ReplayData
from mraster.backtest.quotes import ReplayQuotes
from mraster.engine.evaluator import Passed
from mraster.policy import FEATURES, BanditPolicy, build_features, vectorize
from mraster.sim.exchange import SimExchange
from mraster.strategy.filters import REASON_CODES, Snapshot, market_filters, side_names
from mraster.strategy.screen import Screen, edge, policy_context, screen
from mraster.strategy.signals import Features, rsi_signal

ENGINE = "engine"  # marks a symbol's step that only the engine can decide
# reason codes as one byte each: the screen's own (0 = a candidate for the policy), then ENGINE
NAMES = (*REASON_CODES, ENGINE)
CODE = {name: code for code, name in enumerate(NAMES)}
# codes the engine decides itself on its steps: a candidate, a growing window, the volume floor
SELF_DECIDED = frozenset((0, CODE[ENGINE], CODE["min_qvol"]))
FIRST_CHUNK, MAX_CHUNK = 32, 1024  # steps whose candidates get their verdicts at once
BLOCK = 4096  # steps screened at once, when the walk gets there: memory stays bounded
SIDE = FEATURES.index("side")
PM_COLUMNS = [FEATURES.index(k) for k in ("pm_edge", "pm_mae", "pm_exit_eff", "pm_slippage")]
# a candidate's row of ``Screened.cand_f``: its features as an engine step takes them
# (``IdleSteps.candidates``), the screen's side code, win probability and expected R, and the
# spread (with the price and ATR, what a vetoed one's shadow opens with)
FIELDS = tuple(Features.__dataclass_fields__)
SIDE_AT, WIN_AT, ER_AT, SPREAD_AT = range(len(FIELDS), len(FIELDS) + 4)
PRICE_AT, ATR_AT = FIELDS.index("price"), FIELDS.index("atr")


def _with_postmortem(x: np.ndarray, cols: np.ndarray, pm: np.ndarray | None) -> np.ndarray:
    """Candidates' policy rows ``x`` (symbols ``cols``) with AI mode's postmortem columns of
    this moment (``IdleSteps._pm_rows``; the screen leaves them as without a postmortem)."""
    if pm is None or not len(x):
        return x
    x = x.copy()
    x[:, PM_COLUMNS] = pm[cols][:, PM_COLUMNS]
    return x


class Screened:
    """One set of filter settings screened over the history, block by block, as the walk gets
    there; a block's candidates are dropped once the walk has passed them (a year of 50
    symbols holds about a million candidates: 190 MB when they were all kept, with only their
    policy features, price, ATR and spread)."""

    def __init__(self, data: ReplayData, quotes: ReplayQuotes, s: Mapping[str, Any],
                 symbols: list[str], times: np.ndarray) -> None:
        self.data, self.quotes, self.s, self.symbols, self.times = data, quotes, s, symbols, times
        # per screened block, one byte per step and symbol: an index into NAMES (0: a
        # candidate for the policy); blocks the walk has passed are dropped
        self.reasons: dict[int, np.ndarray] = {}
        self.done: set[int] = set()  # blocks screened
        self.cand_step = np.zeros(0, np.int64)  # candidates of screened blocks not yet passed
        self.cand_sym = np.zeros(0, np.int64)  # their symbol (a column of ``reasons``)
        self.cand_x = np.zeros((0, len(FEATURES)))  # their policy features
        self.cand_f = np.zeros((0, SPREAD_AT + 1))  # their features and screen (``FIELDS``)
        self.engine_steps = np.zeros(0, np.int64)  # steps only the engine can decide, so far

    def ensure(self, lo: int, hi: int) -> None:
        """Screen the blocks holding steps [lo, hi) (the walk only moves forward)."""
        for b in range(lo // BLOCK, (hi - 1) // BLOCK + 1):
            if b not in self.done:
                self.done.add(b)
                self._screen_block(b * BLOCK, min(len(self.times), (b + 1) * BLOCK))

    def _screen_block(self, lo: int, hi: int) -> None:
        times = self.times[lo:hi]
        reasons = self.reasons[lo // BLOCK] = np.zeros((hi - lo, len(self.symbols)), np.uint8)
        steps, syms, rows, fs = [], [], [], []
        for col in range(len(self.symbols)):
            codes, cand, x, f = self._screen_symbol(col, times,
                                                    self.quotes.of_symbol(lo // BLOCK, col))
            reasons[:, col] = codes
            if len(cand):
                steps.append(cand + lo)
                syms.append(np.full(len(cand), col))
                rows.append(x)
                fs.append(f)
        busy = lo + np.flatnonzero((reasons == CODE[ENGINE]).any(axis=1))
        self.engine_steps = np.concatenate([self.engine_steps, busy])
        if not steps:
            return
        # the new candidates in step order, after the kept ones: each symbol's rows are copied
        # once into their places (sorting a concatenation took three copies of a block's rows)
        step = np.concatenate(steps)
        order = np.argsort(step, kind="stable")
        keep = len(self.cand_step)
        at = np.empty_like(order)  # each new row's place
        at[order] = keep + np.arange(len(order))
        self.cand_x, self.cand_f = (self._placed(old, parts, at)
                                    for old, parts in ((self.cand_x, rows), (self.cand_f, fs)))
        self.cand_step = np.concatenate([self.cand_step, step[order]])
        self.cand_sym = np.concatenate([self.cand_sym, np.concatenate(syms)[order]])

    @staticmethod
    def _placed(kept: np.ndarray, parts: list[np.ndarray | None], at: np.ndarray) -> np.ndarray:
        """``kept`` followed by the rows of ``parts`` (freed as they go), each row at its
        place ``at``."""
        out = np.empty((len(kept) + len(at), kept.shape[1]))
        out[:len(kept)] = kept
        a = 0
        for k, r in enumerate(parts):
            out[at[a:a + len(r)]] = r
            a += len(r)
            parts[k] = None
        return out

    def _screen_symbol(self, col: int, times: np.ndarray, q: Mapping[str, np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """One symbol's reason codes at ``times`` (its quotes there: ``q``), its candidates,
        their policy features and their rows of ``cand_f`` (features, screen, spread)."""
        data, s, sym = self.data, self.s, self.symbols[col]
        f, ok, rows = data.feature_table(sym, times)
        snap = Snapshot(bid=q["bid"], ask=q["ask"], quote_volume=q["quote_volume"],
                        mark=q["mark"], index=q["index"], funding=q["funding"])
        # ATR and the EMAs are needed where the market filters pass and a signal fired; ADX
        # only feeds the win probability, so only where the most it can add (+0.05) would
        # lift the edge to the minimum (the arithmetic only grows with the probability).
        # Whether the signal timeframe's trend agrees needs the EMAs themselves: the side is
        # taken before that check (ASTER_ALLOW_TREND_ALIGN), the screen then applies it.
        side = rsi_signal(f, {**s, "ASTER_ALLOW_TREND_ALIGN": False}).side
        fired = ok & (market_filters(snap, f.wickiness, s) == 0) & (side != 0)
        f = data.fill(sym, rows, f, fired, ("trend",))
        best = edge(replace(f, adx=np.where(fired, np.inf, np.nan)), snap, s, side)[1]
        f = data.fill(sym, rows, f, fired & ~(best < s["ASTER_MIN_EDGE_R"]), ("adx",))
        sc = screen(f, snap, s)
        liquid = q["quote_volume"] >= s["ASTER_MIN_QUOTE_VOL_USDT"]
        codes = np.where(liquid, np.where(ok, sc.reason, np.uint8(CODE[ENGINE])),
                         np.uint8(CODE["min_qvol"]))
        cand = np.flatnonzero(codes == 0)
        if not len(cand):
            return codes, cand, None, None
        ctx = {k: np.asarray(v)[cand] for k, v in policy_context(f, snap, sc).items()}
        return codes, cand, vectorize(build_features(ctx)), np.column_stack(
            [ctx[k] for k in FIELDS] + [sc.side[cand], ctx["win_prob"], ctx["expected_r"],
                                        ctx["spread"]])

    def codes(self, lo: int, hi: int) -> np.ndarray:
        """The reason codes of steps [lo, hi) (screened), steps × symbols."""
        return np.concatenate([self.reasons[b][max(lo, b * BLOCK) - b * BLOCK:
                                               min(hi, (b + 1) * BLOCK) - b * BLOCK]
                               for b in range(lo // BLOCK, (hi - 1) // BLOCK + 1)]) \
            if hi > lo else np.zeros((0, len(self.symbols)), np.uint8)

    def forget_before(self, i: int) -> None:
        """Candidates and reasons of steps already passed are never asked for again."""
        for b in [b for b in self.reasons if (b + 1) * BLOCK <= i]:
            del self.reasons[b]
        k = int(self.cand_step.searchsorted(i))
        if k:
            # a view keeps its whole array; once most rows are passed, the rest is copied so
            # that the passed ones are freed (before the next block is placed beside them)
            cut = (lambda a: a[k:].copy()) if 2 * k > len(self.cand_step) else \
                (lambda a: a[k:])
            self.cand_step, self.cand_sym, self.cand_x, self.cand_f = \
                map(cut, (self.cand_step, self.cand_sym, self.cand_x, self.cand_f))

    def first_engine_step(self, i: int) -> int | None:
        at = self.engine_steps.searchsorted(i)
        return int(self.engine_steps[at]) if at < len(self.engine_steps) else None


class IdleSteps:
    """The walk from one engine step to the next: which steps in between are idle, and the
    skip reasons the engine would have counted on them."""

    def __init__(self, data: ReplayData, sim: SimExchange, s: Mapping[str, Any],
                 symbols: list[str], times: np.ndarray, copilots: Any = None,
                 state: Mapping[str, Any] | None = None,
                 shadows: list[dict[str, Any]] | None = None) -> None:
        self.data, self.s, self.symbols, self.times = data, s, symbols, times
        self.copilots = copilots  # mraster.ai.copilots.Copilots in AI mode
        # the steps' quotes (and in AI mode 24 h changes): the screen's and the engine's
        self.quotes = ReplayQuotes(data, sim, symbols, times, BLOCK, changes=copilots is not None)
        self.state = state if state is not None else {}
        # the engine's open shadows (``mraster.shadows``): the walk settles and opens them as
        # the engine would have on the steps it skips
        self.shadows = shadows if shadows is not None else []
        self._settles: dict[tuple[str, int], tuple[int, float | None, int]] = {}
        self.screens: dict[tuple, Screened] = {}  # per tightening of the filters
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}  # see _market
        self._pm: tuple[list, np.ndarray] | None = None  # see _pm_rows

    def _screened(self, tighten: Mapping[str, float]) -> Screened:
        key = tuple(sorted(tighten.items()))
        if key not in self.screens:
            s = self.s
            if tighten:  # AI mode only (the playbook's module is not loaded otherwise)
                from mraster.ai.playbook import tightened
                s = tightened(self.s, {"tighten": tighten})
            self.screens[key] = Screened(self.data, self.quotes, s, self.symbols, self.times)
        return self.screens[key]

    # -- the sentinel and the copilots ------------------------------------------------------------
    def _market(self, block: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The block's sentinel ranks (0 green, 1 yellow, 2 red) and, in AI mode, 24 h changes
        in %, as steps × symbols; blocks the walk has left are dropped."""
        got = self._blocks.get(block)
        if got is None:
            for old in [b for b in self._blocks if b < block]:
                del self._blocks[old]
            times = self.times[block * BLOCK:(block + 1) * BLOCK]
            rank = np.zeros((len(times), len(self.symbols)), np.int8)
            if self.s["ASTER_AI_SENTINEL_ENABLED"]:
                decay = self.s["ASTER_AI_SENTINEL_DECAY_MINUTES"]
                # outside AI mode only red matters (the playbook reads yellow too)
                rank = np.column_stack([self.data.sentinel_ranks(
                    sym, times, decay, red_only=self.copilots is None) for sym in self.symbols])
            change = None if self.copilots is None else self.quotes.field(block, "change").T
            got = self._blocks[block] = (rank, change)
        return got

    def _red(self, step: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Candidates whose symbol's sentinel label is red at their step (the engine skips them
        before the entry gate)."""
        red = np.zeros(len(step), bool)
        for b in sorted(set((step // BLOCK).tolist())):  # (np.unique loads numpy.ma: 10 ms)
            at = step // BLOCK == b
            red[at] = self._market(b)[0][step[at] - b * BLOCK, col[at]] == 2
        return red

    def _playbook_at(self, step: int) -> dict[str, Any]:
        """The playbook the engine would renew at this step (the copilots' rule-based one)."""
        from mraster.ai import playbook as PB
        from mraster.ai.sentinel import LABELS

        rank, change = self._market(step // BLOCK)
        k = step % BLOCK
        changes = {sym: {"change_pct": float(change[k, col])} for col, sym in enumerate(self.symbols)}
        labels = self.state.get("sentinel", {})
        if self.s["ASTER_AI_SENTINEL_ENABLED"]:  # as the engine's _watch_markets leaves them
            labels = {**labels, **{sym: {"label": LABELS[rank[k, col]]}
                                   for col, sym in enumerate(self.symbols)}}
        now = int(self.times[step])
        return PB.refreshed(PB.overview(changes, labels, self.state.get("history", [])), now,
                            self.s)

    def _segment(self, lo: int) -> tuple[int, Mapping[str, Any] | None, bool]:
        """From ``lo``: up to which step the playbook stays as it is, that playbook, and whether
        it was renewed at ``lo`` (it becomes the copilots' own once the walk passes ``lo``)."""
        if self.copilots is None:
            return len(self.times), None, False
        from mraster.ai import playbook as PB

        pb = self.copilots.book["playbook"]
        renewed = PB.due(pb, int(self.times[lo]), self.s)
        if renewed:
            pb = self._playbook_at(lo)
        end = int(self.times.searchsorted(pb["at"] + PB.refresh_ms(self.s)))
        return max(end, lo + 1), pb, renewed

    def _pm_rows(self) -> np.ndarray | None:
        """Each symbol's postmortem inputs as policy features. They change only when a trade
        closes, and the walk and every engine step ask (a sixth of AI mode's walk went on
        working out the same rows): a symbol's row is kept while its postmortem entry is the same
        object."""
        if self.copilots is None:
            return None
        entries = self.copilots.pm_entries(self.symbols)
        if self._pm is None:
            self._pm = entries, np.array([self._pm_row(sym) for sym in self.symbols])
        elif changed := [col for col, (a, b) in enumerate(zip(self._pm[0], entries))
                         if a is not b]:  # a close reviews one symbol: only its row is new
            rows = self._pm[1].copy()  # (a copy: rows handed out earlier stay as they were)
            for col in changed:
                rows[col] = self._pm_row(self.symbols[col])
            self._pm = entries, rows
        return self._pm[1]

    def _pm_row(self, symbol: str) -> np.ndarray:
        return vectorize(build_features(self.copilots.pm_inputs(symbol)))

    def known(self, step: int, tighten: Mapping[str, float]) -> dict[str, str]:
        """The skip reasons the screen gives at ``step`` (an engine step) under the playbook's
        ``tighten``, for the symbols whose reason is the screen's own — a market filter, no
        signal, funding, the non-arbitrage guard, the edge: the evaluator says those first,
        whatever the account holds. The engine books them without screening those symbols
        again; the rest (candidates, whose features and screen ``candidates`` hands over,
        growing windows, the volume floor) it decides itself."""
        row = self._codes_at(step, tighten)
        return {self.symbols[col]: NAMES[code] for col, code in enumerate(row.tolist())
                if code not in SELF_DECIDED}

    def _codes_at(self, step: int, tighten: Mapping[str, float]) -> np.ndarray:
        """Every symbol's reason code at ``step`` (an engine step or a held one) under the
        playbook's ``tighten``."""
        table = self._screened(tighten)
        self.quotes.forget_before(step)
        table.forget_before(step)  # first: a block screened next is placed beside fewer rows
        table.ensure(step, step + 1)
        return table.codes(step, step + 1)[0]

    def skips_at(self, step: int, tighten: Mapping[str, float],
                 gate: Callable[[str], str | None]) -> Counter | None:
        """The skip reasons the engine would count at ``step`` when no symbol there needs the
        engine or the policy: each is skipped by the screen (a market filter, no signal,
        funding, the guard, the edge, the volume floor) or, a candidate, by its red label or
        the entry gate (``gate``: its reason for a symbol, None when it lets one through);
        None otherwise."""
        row = self._codes_at(step, tighten)
        if (row == CODE[ENGINE]).any():
            return None
        counts = Counter(NAMES[code] for code in row.tolist() if code)
        cols = np.flatnonzero(row == 0)
        red = self._red(np.full(len(cols), step), cols).tolist() \
            if len(cols) and self.s["ASTER_AI_SENTINEL_ENABLED"] else [False] * len(cols)
        for col, r in zip(cols.tolist(), red):
            why = "sentinel_block" if r else gate(self.symbols[col])
            if why is None:
                return None
            counts[why] += 1
        return counts

    def candidates(self, step: int, tighten: Mapping[str, float]) -> dict[str, Passed]:
        """The candidates the screen passed at ``step`` (an engine step, after ``known``), their
        features, screen and policy features as plain Python values: the numbers the engine
        works out for them itself (the bulk screen equals it, tested)."""
        table = self._screened(tighten)
        a, b = table.cand_step.searchsorted([step, step + 1]).tolist()
        if a == b:
            return {}
        rows, cols = table.cand_f[a:b], table.cand_sym[a:b]
        xs = _with_postmortem(table.cand_x[a:b], cols, self._pm_rows())
        sides = side_names(rows[:, SIDE_AT].astype(np.uint8)).tolist()
        red = self._red(np.full(len(cols), step), cols).tolist() \
            if self.s["ASTER_AI_SENTINEL_ENABLED"] else [False] * len(cols)
        out = {}
        for col, side, row, r, x in zip(cols.tolist(), sides, rows.tolist(), red, xs.tolist()):
            f = dict(zip(FIELDS, row))
            f["ltf_trend"], f["htf_trend"] = int(f["ltf_trend"]), int(f["htf_trend"])
            sym = self.symbols[col]
            out[sym] = Passed(Features(**f), Screen(None, side, row[WIN_AT], row[ER_AT]),
                              self._candle_open(sym, step), r, dict(zip(FEATURES, x)))
        return out

    def _candle_open(self, sym: str, step: int) -> int:
        """The open time of ``sym``'s last signal candle closed at ``step``."""
        sx = self.data.symbols[sym]
        k = int(np.searchsorted(sx.ltf[0], self.times[step] - sx.ltf_ms, side="right")) - 1
        return int(sx.ltf[0][k])

    # -- the walk ---------------------------------------------------------------------------------
    def next_busy(self, i: int, policy: BanditPolicy, lifts_at: int | None = None,
                  reducing: bool = False, gates: Callable[[str], str | None] | None = None,
                  walked: Callable[[int], None] | None = None,
                  until: int | None = None) -> tuple[int, Counter]:
        """The first step from ``i`` on that needs the engine (the last step at the latest),
        or at which a circuit breaker lifts, and the skip reasons of the idle steps before it,
        as the engine would count them.

        ``reducing``: an account-wide circuit breaker is on, so the entry gate books every
        candidate as ``reducing`` before the policy is asked; ``gates``: the entry gate's
        reason for a symbol's candidates (``symbol_locked`` while a per-symbol breaker is on;
        with a position open also ``max_open_symbol``, a cooldown...), None: the policy's;
        ``lifts_at``: when the first breaker lifts by itself. The stretch ends at the first
        step at or after that moment, where the breakers change (``lifted``); before it no
        breaker trips or lifts: nothing a breaker reads changes while the bot is flat.
        ``walked``: told each step the walk has reached (the run's progress; a stretch can be
        the whole history); ``until``: the walk ends there at the latest (a held step is
        walked alone)."""
        stop = len(self.times) - 1 if until is None else min(until, len(self.times) - 1)
        if lifts_at is not None:
            stop = min(stop, self.lifted(lifts_at))
        counts: Counter = Counter()
        pm = self._pm_rows()
        lo, chunk = i, FIRST_CHUNK
        while lo < stop:
            self.settle(lo, policy)
            end, pb, renewed = self._segment(lo)
            hi = min(stop, end, lo + chunk, self._next_lesson())
            chunk = min(2 * chunk, MAX_CHUNK)  # a TAKE is often near: look close first
            at, busy = self._walk(lo, hi, pb, policy, pm, reducing, gates, counts)
            if renewed and at > lo:  # it held for the steps walked (else the engine renews it)
                self.copilots.book["playbook"] = pb
            lo = at
            if busy:
                break
            if walked is not None:
                walked(lo)
        return lo, counts

    def lifted(self, until: int) -> int:
        """The first step at which a breaker on until ``until`` is off (``protections.trips``
        keeps it while ``until > now``)."""
        return int(self.times.searchsorted(until))

    # -- shadows of vetoed signals ------------------------------------------------------------
    def _settled(self, sh: Mapping[str, Any]) -> tuple[int, float | None, int]:
        """The step at which the engine would settle ``sh``, the R it would learn (None:
        expired) and when it settled, from the whole history's candles: the same first candle
        the engine's windows find (``shadows.settle``)."""
        key = (sh["symbol"], sh["t"])
        got = self._settles.get(key)
        if got is None:
            x = self.data.symbols[sh["symbol"]]
            done = shadows.settle(sh, x.ltf[0], x.ltf[2], x.ltf[3], x.ltf_ms)
            got = (len(self.times), None, 0) if done is None else \
                (int(self.times.searchsorted(done[0])), done[1], done[0])
            self._settles[key] = got
        return got

    def settle(self, step: int, policy: BanditPolicy | None = None) -> None:
        """Drop the shadows settled by ``step`` and teach ``policy`` their R, as the engine's
        cycle at that step does before deciding."""
        left, lessons = [], []
        for sh in self.shadows:
            at, r, when = self._settled(sh)
            if at > step:
                left.append(sh)
                continue
            self._settles.pop((sh["symbol"], sh["t"]), None)
            if r is not None:
                lessons.append((when, sh, r))
        self.shadows[:] = left
        if lessons:
            assert policy is not None, "a lesson inside a walked stretch"
            shadows.teach(policy, lessons)

    def _next_lesson(self) -> int:
        """The first step at which an open shadow teaches the policy (it changes there)."""
        return min([at for at, r, _ in map(self._settled, self.shadows) if r is not None],
                   default=len(self.times))

    def _open_shadows(self, veto: np.ndarray, step: np.ndarray, col: np.ndarray, x: np.ndarray,
                      cf: np.ndarray, hi: int) -> int:
        """Open the shadows of the vetoed candidates before ``hi`` (in step order, as the
        engine would; ``cf``: their rows of ``cand_f``); the step where the first of them
        teaches the policy, or ``hi``."""
        for n in veto.tolist():
            at = int(step[n])
            if at >= hi:
                break
            self.settle(at)  # the engine's list at that step: expired ones gone
            sym = self.symbols[col[n]]
            sh = shadows.open_shadow(sym, "BUY" if x[n, SIDE] > 0 else "SELL",
                                     self._candle_open(sym, at),
                                     float(cf[n, PRICE_AT]), float(cf[n, ATR_AT]),
                                     float(cf[n, SPREAD_AT]), x[n],
                                     self.s)
            if sh is not None and shadows.keep(self.shadows, sh):
                taught, r, _ = self._settled(sh)
                if r is not None:
                    hi = min(hi, taught)
        return hi

    def _walk(self, lo: int, hi: int, pb: Mapping[str, Any] | None, policy: BanditPolicy,
              pm: np.ndarray | None, reducing: bool,
              gates: Callable[[str], str | None] | None, counts: Counter) -> tuple[int, bool]:
        """Count the idle steps of [lo, hi) under playbook ``pb`` into ``counts``; where the
        walk stopped (``hi``, the first step that needs the engine, or the first where a
        shadow opened here teaches the policy), and whether the engine is needed there."""
        table = self._screened((pb or {}).get("tighten") or {})
        self.quotes.forget_before(lo)
        table.forget_before(lo)
        table.ensure(lo, hi)
        eng = table.first_engine_step(lo)
        busy = eng is not None and eng < hi
        if busy:
            hi = eng
        a, b = table.cand_step.searchsorted(lo), table.cand_step.searchsorted(hi)
        step, sym = table.cand_step[a:b], table.cand_sym[a:b]
        red = self._red(step, sym) if self.s["ASTER_AI_SENTINEL_ENABLED"] else \
            np.zeros(len(step), bool)
        ask = ~red  # the sentinel's red label is said before the entry gate
        # a gated symbol's candidates: the gate's reason, not the policy's verdict (asked once
        # per symbol: a stretch can hold thousands of candidates)
        gate = np.array([gates(x) or "" for x in self.symbols], dtype=object)[sym] \
            if gates and not reducing else np.full(len(step), "", dtype=object)
        held = ask & (gate != "")
        ask &= ~held
        if reducing:
            verdict = np.full(int(ask.sum()), "reducing")
        else:
            x = _with_postmortem(table.cand_x[a:b][ask], sym[ask], pm)
            verdict = policy.verdicts(x)[2] if len(x) else np.zeros(0, str)
            if pb and pb.get("blocks"):  # a TAKE the playbook blocks is a skip, like a SKIP
                verdict = self._blocked(verdict, pb, sym[ask], step[ask], x)
            take = np.flatnonzero((verdict == "TAKE") | (verdict == "tie"))
            if len(take) and int(step[ask][take[0]]) < hi:
                hi, busy = int(step[ask][take[0]]), True
            veto = np.flatnonzero(verdict == "alpha_veto")
            if len(veto) and self.s["ASTER_ALPHA_SHADOW"]:
                cut = self._open_shadows(veto, step[ask], sym[ask], x, table.cand_f[a:b][ask], hi)
                if cut < hi:
                    hi, busy = cut, False
        counts.update(verdict[step[ask] < hi].tolist())
        n = int((red & (step < hi)).sum())
        if n:
            counts["sentinel_block"] += n
        counts.update(gate[held & (step < hi)].tolist())
        per = np.bincount(table.codes(lo, hi).ravel(), minlength=len(NAMES))
        counts.update({NAMES[c]: int(k) for c, k in enumerate(per) if k and c})
        return hi, busy

    def _blocked(self, verdict: np.ndarray, pb: Mapping[str, Any], sym: np.ndarray,
                 step: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``playbook_block`` for each TAKE the playbook stops (a clean TAKE draws no chance,
        so the engine's step would change nothing else)."""
        from mraster.ai.playbook import blocked

        out = verdict.astype(object)
        for n in np.flatnonzero(verdict == "TAKE").tolist():
            side = "BUY" if x[n, SIDE] > 0 else "SELL"
            if blocked(pb, self.symbols[sym[n]], side, int(self.times[step[n]])):
                out[n] = "playbook_block"
        return out

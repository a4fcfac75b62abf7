"""Run the live engine over history.

The engine, the policy, the sizing, the brackets, FastTP and the risk gate are the live ones; the
exchange is the simulator's matching in-process (``LocalExchange`` over a replayed market on a
manual clock). The clock steps one candle at a time; before each cycle the simulator fills the
stops, take-profits and limits the candle crossed (along the candle's path, so a candle that
touches both a stop and a take-profit fills the stop: the conservative rule) and settles funding.
The engine sees only candles closed at the step's time, like the live bot: no look-ahead.
"""
from __future__ import annotations

import asyncio
import itertools
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from mraster import settings as st
from mraster.backtest.data import ReplayData
from mraster.backtest.held import HeldSteps
from mraster.backtest.idle import IdleSteps
from mraster.protections import reducing
from mraster.engine.cycle import Engine
from mraster.engine.evaluator import Passed
from mraster.engine.market_data import Quotes
from mraster.execution.paper import LocalExchange
from mraster.sim.exchange import SimExchange
from mraster.sim.heap import reuse_freed_memory
from mraster.sim.market import BASE_MS, QUOTE_USD, DataError, Market, replay_market
from mraster.store import MemoryDocument

WARMUP_CANDLES = 400  # 5m candles before the start so the 1h trend has history
Progress = Callable[[float, int, int], None]  # (fraction done, trades, open positions)


class EquityCurve(Sequence):
    """The (time, equity) point of every step, 16 bytes each: a year of 5m steps kept as tuples
    took 12 MB. Reads like the list of tuples it replaces."""

    def __init__(self) -> None:
        self.t, self.e = array("q"), array("d")

    def append(self, t: int, e: float) -> None:
        self.t.append(t)
        self.e.append(e)

    def hold(self, times: np.ndarray, e: float) -> None:
        """The same equity at each of ``times``."""
        self.t.frombytes(np.ascontiguousarray(times, dtype=np.int64).tobytes())
        self.e.frombytes(np.full(len(times), e).tobytes())

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return list(zip(self.t[k], self.e[k]))
        return self.t[k], self.e[k]

    def __iter__(self) -> Iterator[tuple[int, float]]:
        return zip(self.t, self.e)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented


@dataclass
class BacktestResult:
    settings: dict[str, Any]
    symbols: list[str]
    start_ms: int
    end_ms: int
    steps: int
    state: dict[str, Any]
    exposure_steps: int
    equity: EquityCurve = field(default_factory=EquityCurve)
    gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    seconds: float = 0.0
    engine_steps: int = 0  # steps the engine ran; the others were idle (see backtest.idle)
    account: Any = None  # the simulator's account: every fill, funding payment and order


def find_gaps(market: Market) -> dict[str, list[tuple[int, int]]]:
    """Missing candles per symbol as (last candle before, first candle after): reported, and never
    bridged — the engine simply sees no new candle for that symbol until data resumes."""
    out = {}
    for sym, s in market.series.items():
        d = (s.t[1:] - s.t[:-1])
        idx = (d > BASE_MS).nonzero()[0]
        if len(idx):
            out[sym] = [(int(s.t[i]), int(s.t[i + 1])) for i in idx]
    return out


def one_quote(market: Market, data: Any, chosen: bool) -> str:
    """One account trades in one currency: the symbols of the quote currency with the most
    symbols stay (symbols the user chose must share one)."""
    quotes = sorted({s.quote for s in market.series.values()})
    if len(quotes) > 1:
        if chosen:
            raise DataError(f"{data}: the chosen symbols are quoted in different currencies "
                            f"({', '.join(quotes)}); choose symbols of one quote currency")
        counts = {q: sum(s.quote == q for s in market.series.values()) for q in quotes}
        keep = max(quotes, key=lambda q: (counts[q], q == "USDT"))
        market.series = {k: v for k, v in market.series.items() if v.quote == keep}
    return next(iter(market.series.values())).quote


def replay_span(market: Market) -> tuple[int, int]:
    """(first step after the warm-up, end of the last candle): what a replay can cover."""
    first = max(int(s.t[min(WARMUP_CANDLES, len(s.t) - 1)]) for s in market.series.values())
    return first, max(int(s.t[-1]) for s in market.series.values()) + BASE_MS


def backtest_settings(base: Mapping[str, Any], quote: str) -> dict[str, Any]:
    """The user's settings, with what a replay needs: every trade kept, volume threshold and
    balance in the data's quote currency (the thresholds are in USDT), no wall-clock pauses."""
    s = dict(base)
    usd = QUOTE_USD.get(quote, 1.0)
    s.update(ASTER_QUOTE=quote, ASTER_HISTORY_MAX=st.BY_NAME["ASTER_HISTORY_MAX"].max,
             ASTER_MIN_QUOTE_VOL_USDT=base["ASTER_MIN_QUOTE_VOL_USDT"] / usd,
             ASTER_MAX_NOTIONAL_USDT=base["ASTER_MAX_NOTIONAL_USDT"] / usd,
             ASTER_DEFAULT_NOTIONAL=base["ASTER_DEFAULT_NOTIONAL"] / usd, ASTER_PAPER=True)
    return s


def run_backtest(data: Path, settings: Mapping[str, Any], *, symbols: list[str] | None = None,
                 start_ms: int | None = None, end_ms: int | None = None,
                 balance_usdt: float | None = None, progress: Progress | None = None,
                 market: Market | None = None, last_days: float | None = None,
                 skip_idle: bool = True) -> BacktestResult:
    market = market or replay_market(Path(data), symbols, manual=True, warmup=WARMUP_CANDLES)
    quote = one_quote(market, data, bool(symbols))
    first, last = replay_span(market)
    end = min(last, end_ms or last)
    if last_days:
        start_ms = max(start_ms or 0, end - int(last_days * 86_400_000))
    start = max(first, start_ms or first) // BASE_MS * BASE_MS
    if end <= start:
        raise DataError(f"{data}: the chosen range holds no candles after the "
                        f"{WARMUP_CANDLES}-candle warm-up; choose a wider date range")
    s = backtest_settings(settings, quote)
    balance = (balance_usdt or s["ASTER_PAPER_BALANCE"]) / QUOTE_USD.get(quote, 1.0)
    market.clock.set(start)
    sim = SimExchange(market, balance=balance)
    ex = LocalExchange(sim, sole_client=True)
    state: dict[str, Any] = {}
    t0 = time.perf_counter()
    queue = MemoryDocument(default=lambda: {"items": {}})
    engine = Engine(ex, s, state, queue, lambda *a, **k: None)
    engine.charts_enabled = False  # nobody looks at the dashboard's chart during a replay
    tags = itertools.count()  # the tags of the run's client ids: a run again writes the same ids
    engine.token_tags = lambda: f"{next(tags) % 0x10000:04x}"
    data = ReplayData(market, s["ASTER_INTERVAL"], s["ASTER_HTF_INTERVAL"])
    if data.ok:
        engine.data = data
    if st.ai_mode(s):  # the copilots' rule-based forms; no LLM is asked during a backtest
        from mraster.ai.copilots import Copilots  # loaded only in AI mode (0.1 s of imports)

        engine.copilots = Copilots(s, state.setdefault("copilots", {}))
    steps = max(1, (end - start) // BASE_MS)
    times = start + BASE_MS * np.arange(1, steps + 1, dtype=np.int64)  # each step's clock
    exposure = 0
    curve = EquityCurve()
    idle: IdleSteps | None = None
    held: HeldSteps | None = None  # held steps that change nothing (``backtest.held``)
    ran = 0

    def flat() -> bool:
        """Nothing for the engine to manage: no position, order, repair or cooldown."""
        now = market.clock.now_ms()
        return not state["positions"] and not queue.read()["items"] and \
            not any(until > now for until in state["cooldowns"].values()) and \
            not any(a.open_orders() or any(p.amt for p in a.positions.values())
                    for a in sim.accounts.values())

    every, shown = max(1, steps // 50), [-1]  # a report per 2 % of the steps (and the last)

    def report(i: int) -> None:
        """Step ``i`` is done; also called while the idle walk passes long flat stretches (a
        year with no trade to take walked silently for minutes)."""
        if progress and (i // every > shown[0] or i == steps - 1):
            shown[0] = i // every
            progress((i + 1) / steps, len(state["history"]), len(state["positions"]))

    def walked_step(now: int) -> int | None:
        """The step at ``now`` when the walk knows it, the last step excepted: it reads and
        screens every symbol itself, so the run's final state (decisions, market table) is
        the live cycle's."""
        k = int(times.searchsorted(now))
        return k if idle is not None and k < steps - 1 and times[k] == now else None

    def screened(now: int, ask: Callable[[int, Mapping[str, float]], dict]) -> dict:
        """What the bulk screen knows at an engine step, under the playbook's tightening
        (``ask``: ``idle.known`` or ``idle.candidates``); nothing off the walk."""
        k = walked_step(now)
        if k is None:
            return {}
        pb = engine.copilots.book["playbook"] if engine.copilots is not None else None
        return ask(k, (pb or {}).get("tighten") or {})

    def known_skips(now: int) -> dict[str, str]:
        """The bulk screen's skip reasons at an engine step."""
        return screened(now, idle.known)

    def known_candidates(now: int) -> dict[str, Passed]:
        """The candidates the bulk screen passed at an engine step."""
        return screened(now, idle.candidates)

    def settle_shadows(now: int) -> bool:
        """The open shadows settled at an engine step from the history's candles, as the
        engine's own reading would settle them (``IdleSteps.settle``); False off the walk."""
        k = walked_step(now)
        if k is None:
            return False
        idle.settle(k, engine.policy)
        return True

    def replayed_quotes() -> Quotes | None:
        """The engine step's quotes from the walk's blocks (the numbers of the rows)."""
        k = walked_step(market.clock.now_ms())
        return None if k is None else idle.quotes.at(k)

    def booked(counts: Mapping[str, int], at: np.ndarray, equity: float) -> None:
        """Steps ``at`` passed over: the skip counts, cycles and equity points the engine would
        have recorded (the state's curve keeps the last 2,000)."""
        skipped = state["stats"]["skipped"]
        for reason, n in counts.items():
            skipped[reason] = skipped.get(reason, 0) + n
        state["stats"]["cycles"] += len(at)
        curve.hold(at, equity)
        state["equity_curve"] = (state["equity_curve"] + [
            [t, round(equity, 6)] for t in at[-2000:].tolist()])[-2000:]

    async def loop() -> None:
        nonlocal exposure, idle, held, ran
        i = 0
        while i < steps:
            if idle is not None and flat():
                # an account-wide breaker turns every candidate into "reducing" until it lifts,
                # a per-symbol one that symbol's into "symbol_locked"
                lifts_at = min((t.until for t in engine.breakers if t.until is not None),
                               default=None)
                locked = {t.symbol for t in engine.breakers if t.symbol}
                k, counts = idle.next_busy(i, engine.policy, lifts_at=lifts_at,
                                           reducing=reducing(engine.breakers) is not None,
                                           gates=lambda sym: "symbol_locked"
                                           if sym in locked else None,
                                           walked=lambda at: report(at - 1))
                lifts = lifts_at is not None and k < steps - 1 and k >= idle.lifted(lifts_at)
                if k > i or lifts:  # the equity of a flat account: its wallet
                    equity = float((await ex.account())["totalMarginBalance"])
                if k > i:  # idle steps: what the engine would record, without running it
                    booked(counts, times[i:k], equity)
                    sim.step((k - i) * BASE_MS)
                    report(k - 1)
                    i = k
                if lifts:
                    # a breaker lifts at step k: the breakers as the engine's step there leaves
                    # them (nothing else it reads changes while flat), and the walk goes on
                    # from there under them; the engine runs only if a step needs it
                    engine.roll_breakers(equity, int(times[k]))
                    continue
            sim.step(BASE_MS)  # fills what the candle crossed, settles funding
            now = int(times[i])
            passed = await held.walk(i, now) if held is not None and i < steps - 1 else None
            if passed is not None:  # a held step at which the engine would change nothing
                counts, equity = passed
                booked(counts, times[i:i + 1], equity)
                engine.market_ms = now
                exposure += 1
                report(i)
                i += 1
                continue
            await engine.cycle()
            if held is not None:
                held.after_engine()
            ran += 1
            exposure += bool(state["positions"])
            curve.append(market.clock.now_ms(), state["telemetry"]["equity"])
            report(i)
            if i == 0 and skip_idle and data.ok:
                universe = engine.universe()
                if not s["ASTER_UNIVERSE_MAX"] or s["ASTER_UNIVERSE_MAX"] >= len(universe):
                    idle = IdleSteps(data, sim, s, universe, times, engine.copilots, state,
                                     engine.shadows)
                    held = HeldSteps(engine, sim, queue, idle)
                    engine.known_skips, engine.replayed_quotes = known_skips, replayed_quotes
                    engine.known_candidates = known_candidates
                    engine.settle_shadows = settle_shadows
            i += 1
    with reuse_freed_memory():  # the screen's temporaries, block after block
        asyncio.run(loop())
    return BacktestResult(settings={k: v for k, v in s.items() if k not in st.SECRET_NAMES},
                          symbols=sorted(market.series), start_ms=start, end_ms=end, steps=steps,
                          state=state, exposure_steps=exposure, equity=curve, gaps=find_gaps(market),
                          seconds=time.perf_counter() - t0, engine_steps=ran,
                          account=next(iter(sim.accounts.values()), None))

"""Held steps: where a backtest holding a position can pass over the engine.

The idle walk (``backtest.idle``) skips steps while the account is flat. With a position open
the engine ran every step, though most of those steps change nothing: the candle crossed
neither bracket, no level moved, no symbol reached the entry gate. A held step is passed over
when

- the engine's step before it changed nothing (``HeldSteps.after_engine``): the same fills,
  funding rows, orders and balance in the simulator, and the same positions (levels, rules),
  repair queue, notices, breakers, cooldowns and orders sent before and after it, and it
  found every position's brackets on the exchange as the bot asked (it may have verified
  them for the first time, or read the funding so far: the next step reads back the same);
- moving the clock to this step filled, paid and placed nothing in the simulator;
- the walk passes the step (``IdleSteps.next_busy`` over that one step): no window left to
  the engine, and every candidate stopped by its red label, by the entry gate (``Portfolio``
  at the breakers this step's equity leaves: another position on the symbol, a breaker, a
  cooldown) or by the policy;
- FastTP and the locked stop would leave every position's levels (``exit_moves``, the
  engine's own question, with the step's quotes and candles);
- the hourly read of the funding so far is not due.

Such a step changes, of what the run keeps, only what the runner books for it: the skip
counters, the cycle count, the equity curve at the account's mark-to-market equity, the
circuit breakers rolled on that equity (``Engine.roll_breakers``), the shadows settled
(``IdleSteps.settle``) and, in AI mode, the playbook renewed as the walk renews it. The step
after it then meets the first condition again. Tests run the same history both ways and get
the same trades, skip counts, equity curve, breakers, protection log and policy.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from mraster.backtest.idle import IdleSteps
from mraster.domain import Position
from mraster.engine.cycle import Engine
from mraster.sim.exchange import SimExchange
from mraster.strategy.exits import exit_moves


def _levels(p: Position) -> tuple:
    """What a step could change about a position, but for its marks and its read-back
    protection, which every step rewrites from the levels and the orders."""
    return (p.token, p.status, p.qty, p.stop, p.take_profit, p.stop_rule, p.fasttp_at,
            p.close_reason, p.close_seq, dict(p.bracket_seq))


class HeldSteps:
    """Tells the runner which held steps the engine need not run (see the module's doc)."""

    def __init__(self, engine: Engine, sim: SimExchange, queue: Any, idle: IdleSteps) -> None:
        self.engine, self.sim, self.queue, self.idle = engine, sim, queue, idle
        self.quiet = False  # the engine's last step changed nothing
        self._before: tuple | None = None
        self._sim: tuple = ()

    def _engine_marks(self) -> tuple:
        """What an engine step could change that the next step's engine would act on."""
        e, st = self.engine, self.engine.state
        # the notices are a new list whenever one is added; the simulator's marks say whether
        # an order was placed, cancelled or filled
        return (id(st["alerts"]), len(st["history"]), e.orders_sent,
                len(self.queue.read()["items"]), dict(st["cooldowns"]),
                [(t.name, t.symbol, t.until) for t in e.breakers],
                [_levels(p) for p in st["positions"].values()], self._sim_marks())

    def _sim_marks(self) -> tuple:
        return tuple((len(a.trades), len(a.income), a.next_id, a.balance)
                     for a in self.sim.accounts.values())

    def before_engine(self) -> None:
        # (the list is held, so its id stays its own while compared); a step that starts flat
        # is quiet only if it stays flat, where the idle walk takes over
        self._before = (self._engine_marks(), self.engine.state["alerts"]) \
            if self.engine.state["positions"] else None

    def after_engine(self) -> None:
        """The step was quiet when it changed nothing but the read-back protection (the first
        verification of new brackets, an hourly funding read) and found every position's
        brackets as the bot asked: the next step would read back the same."""
        positions = self.engine.state["positions"].values()
        self.quiet = self._before is not None and bool(positions) and \
            self._before[0] == self._engine_marks() and \
            all(p.protection.get("status") == "ok" for p in positions)
        self._sim = self._sim_marks()

    def _levels_stay(self, step: int, now: int) -> bool:
        """Would FastTP and the locked stop leave every position's levels at ``step``?"""
        e, quotes = self.engine, self.idle.quotes.at(step)
        for p in e.state["positions"].values():
            closes = e.data.closes(p.symbol, now)
            if closes is not None:
                _, hit, moved = exit_moves(p, quotes.snapshot(p.symbol), closes, now, e.s)
                if hit is not None or moved is not None:
                    return False
        return True

    async def walk(self, step: int, now: int) -> tuple[Counter, float] | None:
        """The skip reasons the engine would count at ``step`` (the simulator's clock moved to
        ``now``) and the account's equity there, when the engine would change nothing else;
        None when it runs the step."""
        e = self.engine
        positions = e.state["positions"].values()
        if not self.quiet or not positions or self._sim_marks() != self._sim \
                or any(not p.is_open for p in positions) or e.funding_due(now) \
                or (e.shadows and not e.s["ASTER_ALPHA_SHADOW"]) \
                or not self._levels_stay(step, now):
            return None
        equity = float((await e.ex.account())["totalMarginBalance"])
        # the breakers rolled as the engine's step rolls them before it decides (should the
        # engine run the step after all, its roll at the same equity and moment changes
        # nothing more)
        e.roll_breakers(equity, now)
        cop, idle, pf = e.copilots, self.idle, e.portfolio()

        def gate(sym: str) -> str | None:
            return pf.gate(sym, e.s)
        if cop is None or not cop.playbook_due(now):
            # most held steps: the playbook stays as it is, and each candidate (the held
            # symbol's own signal, most often) stops before the policy
            counts = idle.skips_at(step, ((cop.book["playbook"] if cop is not None else None)
                                          or {}).get("tighten") or {}, gate)
            if counts is not None:
                idle.settle(step, e.policy)
                return counts, equity
        at, counts = idle.next_busy(step, e.policy, gates=gate, until=step + 1)
        return (counts, equity) if at > step else None

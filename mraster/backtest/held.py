"""Held steps: where a backtest holding a position can pass over the engine.

The idle walk (``backtest.idle``) skips steps while the account is flat. With a position open
the engine ran every step, though most of those steps change nothing: the candle crossed
neither bracket, no level moved, no symbol reached the entry gate. A held step is passed over
when

- the engine's last step left nothing for the next one to finish (``HeldSteps.after_engine``):
  it found every position's brackets on the exchange as the bot asked, and no bracket repair
  is queued. Whatever else that step did (an entry, a close, a moved level, a notice, a
  breaker, a cooldown), it did all of it: the engine acts on what the exchange and the market
  show, and on its own state only through the checks below (the entry gate, the levels'
  rules, the funding read), so on an unchanged exchange it would change nothing more;
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
(``IdleSteps.settle``) and, in AI mode, the playbook renewed as the walk renews it. Asking
instead that the engine's step before changed nothing at all gave the step after each entry,
close or moved level to the engine: a quarter of its held steps, each changing nothing. Tests
run the same history both ways and get the same trades, skip counts, equity curve, breakers,
protection log and policy.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from mraster.backtest.idle import IdleSteps
from mraster.engine.cycle import Engine
from mraster.sim.exchange import SimExchange
from mraster.strategy.exits import exit_moves


class HeldSteps:
    """Tells the runner which held steps the engine need not run (see the module's doc)."""

    def __init__(self, engine: Engine, sim: SimExchange, queue: Any, idle: IdleSteps) -> None:
        self.engine, self.sim, self.queue, self.idle = engine, sim, queue, idle
        self.quiet = False  # the engine's last step left nothing to finish
        self._sim: tuple = ()

    def _sim_marks(self) -> tuple:
        return tuple((len(a.trades), len(a.income), a.next_id, a.balance)
                     for a in self.sim.accounts.values())

    def after_engine(self) -> None:
        """The engine's step left nothing to finish: every position's brackets read back as
        the bot asked and no repair queued (see the module's doc)."""
        positions = self.engine.state["positions"].values()
        self.quiet = bool(positions) and not self.queue.read().get("items") and \
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

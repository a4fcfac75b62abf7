"""Account-level risk in the engine: the circuit breakers (``mraster.protections``) rolled each
cycle, lifted by hand, and the ``Portfolio`` the evaluator and the executor gate entries with.
A mixin of ``Engine``."""
from __future__ import annotations

from mraster.engine.evaluator import Portfolio
from mraster.protections import lift, locked_symbols, reducing, roll_ledger, trips
from mraster.words import Words, words


class AccountRisk:
    """Mixed into ``Engine``."""

    def portfolio(self, *, paused: bool = False) -> Portfolio:
        """What a new entry is checked against now: the bot's positions, cooldowns, the user's
        positions (off limits) and the breakers that are on."""
        return Portfolio(positions=self.state["positions"], cooldowns=self.state["cooldowns"],
                         off_limits=self.off_limits, reducing=reducing(self.breakers) is not None,
                         locked=frozenset(locked_symbols(self.breakers)), paused=paused,
                         now_ms=self.now_ms())

    def roll_breakers(self, equity: float, now: int) -> None:
        """Roll the breakers' ledger and work out which are on; a breaker that just tripped is
        an alert (and the dashboard's banner says which, the figures and when it lifts).
        Each cycle rolls them; a backtest's walk too, at a step where one lifts while flat."""
        prot = self.state.get("protections", {})
        ledger = roll_ledger(prot.get("ledger", {}), equity, now)
        log_ = list(prot.get("log", []))
        before = {(t.name, t.symbol) for t in self.breakers}
        self.breakers = trips(self.state["history"], ledger, equity, now, self.s)
        for t in self.breakers:
            if (t.name, t.symbol) not in before:
                log_ = (log_ + [{"at": now, **t.to_dict()}])[-200:]
                self.alert("warning" if t.symbol else "error", words(
                    "circuit breaker {name}: {message}; no new trades on this symbol" if t.symbol
                    else "circuit breaker {name}: {message}; no new trades; stops and "
                         "take-profits keep working", name=t.name,
                    message=Words.from_dict(t.words) if t.words else t.message), t.symbol)
                self.emit("breaker", name=t.name, symbol=t.symbol, message=t.message,
                          until=t.until, words=t.words)
        self.state["protections"] = {"ledger": ledger, "log": log_,
                                     "active": [t.to_dict() for t in self.breakers]}

    def lift_breakers(self) -> Words:
        """The user lifted the breakers early (a typed confirmation on the dashboard)."""
        if not self.breakers:
            return words("no circuit breaker is on")
        p = self.state.setdefault("protections", {})
        names = ", ".join(t.name + (f" ({t.symbol})" if t.symbol else "") for t in self.breakers)
        curve = self.state.get("equity_curve") or [[0, 0.0]]
        equity = float(curve[-1][1])
        now = self.market_ms or self.now_ms()
        p["ledger"] = lift(p.get("ledger", {}), self.breakers, equity, now)
        self.breakers = []
        p["active"] = []
        self.alert("warning", words("circuit breakers lifted by hand: {names}", names=names))
        return words("lifted: {names}", names=names)

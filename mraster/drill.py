"""The fire drill: the user's exact settings through a bad day on the built-in simulator, before
real money.

The bot's own engine trades live mode (signed requests over HTTP on 127.0.0.1) against the
simulator while the day goes wrong, one phase after another: a storm of 5xx answers, answers
dropped after the exchange acted, stop orders refused, a clock 30 s off, slow answers, a 10 %
wick through the stops, a fall that would liquidate an unprotected position, and a restart in
the middle of an entry. An observer that reads the simulator directly (not through the faults)
scores it: positions ever without a stop and for how long, client order ids used twice, trades
whose numbers do not add up, limits exceeded, liquidations, and how many cycles the bot needs to
be whole again once the network heals. ``python -m mraster.drill`` prints the scorecard; the
dashboard runs it before it lets the user switch to live trading.
"""
from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from mraster import settings as st
from mraster.engine.cycle import Engine
from mraster.exchange.rest import AsterRest
from mraster.files import queue_document, state_document
from mraster.sim.exchange import SimExchange
from mraster.sim.market import SyntheticMarket
from mraster.sim.serve import ThreadedServer
from mraster.sim.server import Faults, create_sim_app
from mraster.words import Words, words

KEY, SECRET = "drill-key", "drill-secret"
STEP_MS = 60_000       # one bot cycle per minute of market time
PHASE_CYCLES = 8
RECOVERY_CYCLES = 3    # after the network heals, the bot must be whole within this many cycles


@dataclass
class Scorecard:
    passed: bool = False
    why: list[str] = field(default_factory=list)
    why_words: list[dict[str, Any]] = field(default_factory=list)  # the same, for the page
    phases: list[dict[str, Any]] = field(default_factory=list)
    unprotected: list[dict[str, Any]] = field(default_factory=list)  # episodes, minutes each
    duplicate_ids: list[str] = field(default_factory=list)
    bad_trades: list[dict[str, Any]] = field(default_factory=list)
    limits_exceeded: list[str] = field(default_factory=list)
    liquidations: int = 0
    breakers: list[str] = field(default_factory=list)  # tripped during the day (then lifted)
    trades: int = 0
    entries: int = 0
    recovery_cycles: int | None = None
    market_minutes: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failed(self, why: Words) -> None:
        """A reason the drill failed: said in the reader's language on the page."""
        self.why.append(str(why))
        self.why_words.append(why.to_dict())


def _fall(market, sym: str, t: int, drop: float, candles: int = 3) -> None:
    """Rewrite the ``candles`` candles from ``t`` as a steady move of ``drop`` (−0.12: twelve per
    cent down) through every price in between, and shift everything after by the same factor."""
    s = market.series[sym]
    i = market.index_at(sym, t) + 1
    start, next_open = float(s.c[i - 1]), float(s.o[i + candles])
    step = (1 + drop) ** (1 / candles)
    for k in range(candles):
        j = i + k
        o, c = start * step ** k, start * step ** (k + 1)
        s.o[j], s.c[j] = o, c
        s.h[j], s.l[j] = max(o, c) * 1.001, min(o, c) * 0.999
    factor = float(s.c[i + candles - 1]) / next_open
    for arr in (s.o, s.h, s.l, s.c):
        arr[i + candles:] *= factor


def _wick(market, sym: str, t: int, size: float) -> None:
    """A wick of ``size`` (−0.10: down ten per cent) inside the next candle; it closes normally."""
    s = market.series[sym]
    i = market.index_at(sym, t) + 1
    if size < 0:
        s.l[i] = min(float(s.l[i]), float(s.o[i]) * (1 + size))
    else:
        s.h[i] = max(float(s.h[i]), float(s.o[i]) * (1 + size))


class _Observer:
    """Reads the simulator itself, past every fault: what a careful auditor would check."""

    def __init__(self, sim: SimExchange, s: Mapping[str, Any], card: Scorecard) -> None:
        self.sim, self.s, self.card = sim, s, card
        self.open_since: dict[str, int] = {}

    def check(self, now: int, phase: str) -> bool:
        """One look; True when every position has a stop (the bot is whole)."""
        acct = self.sim.accounts.get(KEY)
        if acct is None:
            return True
        whole = True
        for sym, p in acct.positions.items():
            if not p.amt:
                self._closed(sym, now, phase)
                continue
            close = "SELL" if p.amt > 0 else "BUY"
            stops = [o for o in acct.open_orders(sym) if o.type == "STOP_MARKET" and o.side == close
                     and (o.closePosition or o.origQty >= abs(p.amt))]
            if stops:
                self._closed(sym, now, phase)
            else:
                whole = False
                self.open_since.setdefault(sym, now)
            lev = acct.leverage.get(sym, 20)
            if p.amt and lev > self.s["ASTER_LEVERAGE"]:
                self.card.limits_exceeded.append(f"{phase}: {sym} at leverage {lev} > "
                                                 f"ASTER_LEVERAGE {self.s['ASTER_LEVERAGE']}")
        held = sum(1 for p in acct.positions.values() if p.amt)
        cap = self.s["ASTER_MAX_OPEN_GLOBAL"]
        if cap and held > cap:
            self.card.limits_exceeded.append(f"{phase}: {held} positions > ASTER_MAX_OPEN_GLOBAL {cap}")
        return whole

    def _closed(self, sym: str, now: int, phase: str) -> None:
        since = self.open_since.pop(sym, None)
        if since is not None:
            self.card.unprotected.append({"symbol": sym, "phase": phase,
                                          "minutes": round((now - since) / 60_000, 1)})

    def finish(self, now: int, state: Mapping[str, Any]) -> None:
        for sym in list(self.open_since):
            self._closed(sym, now, "end")
        acct = self.sim.accounts.get(KEY)
        if acct is not None:
            seen: dict[str, int] = {}
            for o in acct.orders.values():
                seen[o.clientOrderId] = seen.get(o.clientOrderId, 0) + 1
            self.card.duplicate_ids = sorted(c for c, n in seen.items() if n > 1)
            self.card.entries = sum(1 for c in seen if "-E-" in c)
        for t in state.get("history", []):
            d = 1 if t["side"] == "BUY" else -1
            gross = d * (t["exit"] - t["entry"]) * t["qty"] if t.get("exit") is not None else 0.0
            want = gross - t["fees"] + t["funding"]
            if abs(want - t["pnl"]) > 1e-9 * max(1.0, abs(t["pnl"])):
                self.card.bad_trades.append({"symbol": t["symbol"], "pnl": t["pnl"], "expected": want})
            self.card.liquidations += t.get("reason") == "liquidation"
        self.card.trades = len(state.get("history", []))


async def _drill(s: Mapping[str, Any], folder: Path, progress: Callable[[float, str], None],
                 seed: int) -> Scorecard:
    card = Scorecard()
    market = SyntheticMarket(12, seed=seed, manual=True, history=600)
    now = market.clock.now_ms()
    for sym in market.series:
        market.ensure(sym, now + 12 * 3_600_000)  # generated ahead: planted moves stay put
    sim = SimExchange(market, balance=float(s["ASTER_PAPER_BALANCE"]))
    # no weight limit: the drill compresses 80 market minutes into seconds of wall time, and the
    # bot's patience with the exchange's minute window is tested elsewhere (tests/test_outages)
    faults = Faults(seed=seed, weight_limit=10**9)
    server = ThreadedServer(create_sim_app(sim, {KEY: SECRET}, faults)).start()
    state_file, queue_file = folder / "aster_state.json", folder / "brackets_queue.json"
    run = {**dict(s), "ASTER_PAPER": False, "ASTER_OFFLINE": False, "ASTER_EXCHANGE_BASE": server.url,
           "ASTER_API_KEY": KEY, "ASTER_API_SECRET": SECRET, "ASTER_AUTH_SCHEME": "hmac",
           "ASTER_STATE_FILE": str(state_file), "ASTER_BRACKETS_QUEUE_FILE": str(queue_file)}
    doc, queue = state_document(state_file), queue_document(queue_file)
    observer = _Observer(sim, run, card)

    def engine(ex: AsterRest) -> Engine:
        state = {k: v for k, v in doc.read().items() if k != "schema_version"}
        eng = Engine(ex, run, state, queue, lambda *a, **k: None,
                     now_ms=market.clock.now_ms, save=lambda: doc.write(eng.state))
        return eng

    def held() -> list[str]:
        acct = sim.accounts.get(KEY)
        return [x for x, p in (acct.positions.items() if acct else []) if p.amt]

    async def enter(eng: Engine, n: int) -> list[str]:
        """A few trades the user would confirm, through the bot's own gate, sizing and brackets
        (the drill needs positions to protect whatever the signals say today)."""
        tried: list[str] = []
        for sym in [x for x in market.series if x not in held()][:n * 3]:
            if n <= 0:
                break
            for side in ("BUY", "SELL"):
                try:
                    ok, why = await eng.manual_entry(sym, side)
                except Exception as exc:  # a fault hit the entry: the drill scores what follows
                    ok, why = False, f"{type(exc).__name__}: {exc}"
                tried.append(f"{sym} {side}: {why}")
                if ok:
                    n -= 1
                    break
        return tried

    phases: list[tuple[str, dict[str, Any], Callable[[Engine], Any] | None]] = [
        ("calm", {}, lambda eng: enter(eng, 3)),
        ("5xx storm", {"error_rate": 0.5}, None),
        ("answers dropped after the exchange acted", {"unknown_rate": 0.6}, lambda eng: enter(eng, 2)),
        ("stop orders refused", {"reject_types": frozenset({"STOP_MARKET"})}, lambda eng: enter(eng, 1)),
        ("clock 30 s off", {"skew_ms": 30_000}, None),
        ("slow answers", {"latency_ms": 40.0, "jitter_ms": 40.0}, None),
        ("10 % wick through the stops", {}, "wick"),
        ("a fall that would liquidate", {}, "fall"),
        ("restart between an entry and its brackets",
         {"reject_types": frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET"})}, "restart"),
        ("network healed", {}, None),
    ]
    t0 = time.perf_counter()
    ex = AsterRest(server.url, KEY, SECRET, timeout=5.0, read_retries=1)
    try:
        eng = engine(ex)
        await eng.reconcile()
        total = len(phases) * PHASE_CYCLES
        done = 0
        for name, fault, action in phases:
            for k, v in {**asdict(Faults(weight_limit=10**9)), **fault}.items():
                if k not in ("rng", "seed"):
                    setattr(faults, k, v)
            before = (len(eng.state.get("history", [])), len(held()))
            p0 = time.perf_counter()
            tried: list[str] = []
            if eng.breakers:  # the user's breakers did their job; lifted so the day goes on
                card.breakers += [t.name for t in eng.breakers]
                eng.lift_breakers()
            if action == "wick":
                for sym in held():
                    _wick(market, sym, market.clock.now_ms(), -0.10 if sim.accounts[KEY].positions[sym].amt > 0 else 0.10)
            elif action == "fall":
                tried = await enter(eng, 1)
                for sym in held()[:1]:
                    long = sim.accounts[KEY].positions.get(sym) and sim.accounts[KEY].positions[sym].amt > 0
                    _fall(market, sym, market.clock.now_ms(), -0.12 if long else 0.12)
            elif action == "restart":
                tried = await enter(eng, 1)  # filled, but its brackets are refused ...
                faults.reject_types = frozenset()
                eng = engine(ex)  # ... and the bot dies there: a new one starts from the file
                await eng.reconcile()
            elif action is not None:
                tried = await action(eng)
            whole_at = None
            for c in range(PHASE_CYCLES):
                market.clock.step(STEP_MS)
                try:
                    await eng.cycle()
                except Exception as exc:  # a failed cycle is retried next minute, as the bot does
                    eng.alert("warning", words("drill: cycle failed ({error})",
                                              error=f"{type(exc).__name__}: {exc}"))
                doc.write(eng.state)
                whole = observer.check(market.clock.now_ms(), name)
                if name == "network healed" and whole and whole_at is None:
                    whole_at = c + 1
                done += 1
                progress(done / total, name)
            card.phases.append({"name": name, "trades": len(eng.state.get("history", [])) - before[0],
                                "positions_before": before[1], "positions_after": len(held()),
                                "seconds": round(time.perf_counter() - p0, 2),
                                "entries": tried[-6:]})
            if name == "network healed":
                card.recovery_cycles = whole_at
        observer.finish(market.clock.now_ms(), eng.state)
    finally:
        await ex.close()
        server.stop()
    card.market_minutes = len(phases) * PHASE_CYCLES * STEP_MS // 60_000
    card.seconds = round(time.perf_counter() - t0, 2)
    grace = float(run["ASTER_STOP_GRACE_SECONDS"]) / 60 + 2 * STEP_MS / 60_000
    long_ones = [u for u in card.unprotected if u["minutes"] > grace]
    if long_ones:
        card.failed(words("{n} position(s) without a stop for longer than the {grace} min the "
                          "stop grace allows (longest {longest} min)", n=len(long_ones),
                          grace=round(grace, 2),
                          longest=max(u["minutes"] for u in long_ones)))
    if card.duplicate_ids:
        card.failed(words("client order ids sent twice: {ids}",
                          ids=", ".join(card.duplicate_ids[:5])))
    if card.bad_trades:
        card.failed(words("{n} trade(s) whose pnl does not add up", n=len(card.bad_trades)))
    if card.limits_exceeded:
        card.failed(words("limits exceeded: {limit}", limit=card.limits_exceeded[0]))
    if card.liquidations:
        card.failed(words("{n} position(s) liquidated", n=card.liquidations))
    if card.recovery_cycles is None or card.recovery_cycles > RECOVERY_CYCLES:
        card.failed(words("not whole within {n} cycles after the network healed",
                          n=RECOVERY_CYCLES))
    if card.entries == 0:
        card.failed(words("no position was opened, so nothing was rehearsed (check the filters)"))
    card.passed = not card.why
    return card


def run_drill(s: Mapping[str, Any], progress: Callable[[float, str], None] = lambda d, p: None,
              seed: int = 7) -> Scorecard:
    with tempfile.TemporaryDirectory(prefix="mraster-drill-") as tmp:
        return asyncio.run(_drill(s, Path(tmp), progress, seed))


def main(argv: list[str] | None = None) -> int:
    from mraster.bot import load_settings

    try:
        s = load_settings()
    except st.SettingsErrors as exc:
        print(f"drill: invalid setting: {exc}")
        return 2
    card = run_drill(s, lambda d, p: print(f"\r{d:5.0%} {p:<45}", end="", flush=True))
    print()
    print(json.dumps(card.to_dict(), indent=1))
    print("PASSED" if card.passed else "FAILED: " + "; ".join(card.why))
    return 0 if card.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

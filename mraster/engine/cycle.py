"""One scan cycle: data → features → signals → filters → policy → risk → orders → management.

The engine talks to any exchange adapter with the AsterRest interface (the real exchange, the
simulator over HTTP, ``LocalExchange`` or ``PaperExchange``); decisions come from the pure
functions in ``mraster.strategy``, ``mraster.risk`` and ``mraster.policy``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any, Callable, Mapping

import numpy as np

from mraster.exchange import errors as E
from mraster.exchange.rules import SymbolRules, rules_from_exchange_info
from mraster.engine.reconciler import CycleResult, Reconciler, by_symbol, position_amounts
from mraster.execution import ids
from mraster.execution.ownership import Ownership
from mraster.ai import news, sentinel
from mraster.settings import ai_mode
from mraster.execution.brackets import BracketGuard
from mraster.policy import BanditPolicy, Decision, build_features
from mraster.liquidation import (DEFAULT_BRACKETS, Bracket, brackets_from_api, isolated_margin,
                                 liquidation_price, stop_is_safe)
from mraster.protections import Trip, lift, locked_symbols, reducing, roll_ledger, trips
from mraster.risk import check_order, entry_gate, exposure_cap
from mraster.ai.plan import FASTTP_KEYS
from mraster.strategy.exits import locked_stop, r_multiple
from mraster.strategy.fasttp import fasttp_target
from mraster.strategy.filters import REASONS, Snapshot, market_filters, side_filters
from mraster.strategy.screen import MARKET_REASONS, SIGNAL_REASONS, policy_context, screen
from mraster.strategy.signals import (HTF_WINDOW, LTF_WINDOW, Candles, expected_r, features,
                                      win_probability)
from mraster.strategy.sizing import plan_order, size_multiplier
from mraster.sim.market import INTERVAL_MS

log = logging.getLogger("mraster.engine")
Emit = Callable[..., None]
CHART_SYMBOLS, CHART_CANDLES = 8, 150


class KlineCache:
    """Per (symbol, interval) candles as a numpy array (open time, OHLCV, close time), refreshed
    incrementally: only candles from the last cached open time on are requested and parsed (the
    last one may still have been forming). Signals use closed candles only, so while the cached
    forming candle has not closed nothing is requested at all."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], np.ndarray] = {}
        self.closed: dict[tuple[str, str], Candles] = {}
        self.requests = 0

    async def candles(self, ex, symbol: str, interval: str, window: int, now: int) -> Candles:
        """The last ``window`` closed candles of ``symbol`` at ``now`` (fewer while the market is
        younger): always the same window, so the indicators are the same wherever they run."""
        key = (symbol, interval)
        have = self.rows.get(key)
        if have is not None and len(have) and have[-1, 6] >= now and key in self.closed:
            return self.closed[key]  # no candle closed since the last fetch
        arr = await self.update(ex, symbol, interval, window + 1)  # + the forming candle
        done = (arr[arr[:, 6] < now] if len(arr) else arr)[-window:]
        self.closed[key] = Candles(done[:, 0].astype(np.int64), done[:, 1], done[:, 2], done[:, 3],
                                   done[:, 4], done[:, 5])
        return self.closed[key]

    async def update(self, ex, symbol: str, interval: str, limit: int) -> np.ndarray:
        key = (symbol, interval)
        have = self.rows.get(key)
        self.requests += 1
        if have is not None and len(have):
            new = _parse(await ex.klines(symbol, interval, limit=min(limit, 99),
                                         start_time=int(have[-1, 0])))
            if len(new) and new[0, 0] > have[-1, 0] + INTERVAL_MS[interval] * 99:
                have = new[:0]  # too far behind: start again
            keep = have[have[:, 0] < new[0, 0]] if len(new) else have
            arr = np.concatenate([keep, new])[-limit:]
        else:
            arr = _parse(await ex.klines(symbol, interval, limit=limit))
        self.rows[key] = arr
        return arr


def _parse(rows: list[list]) -> np.ndarray:
    if not rows:
        return np.zeros((0, 7))
    return np.array([r[:7] for r in rows], dtype=float)


def _snapshot(sym: str, tickers: dict[str, dict], books: dict[str, dict],
              prems: dict[str, dict]) -> Snapshot | None:
    if sym not in books or sym not in prems:
        return None
    b, p = books[sym], prems[sym]
    return Snapshot(bid=float(b["bidPrice"]), ask=float(b["askPrice"]),
                    quote_volume=float(tickers.get(sym, {}).get("quoteVolume", 0)),
                    mark=float(p["markPrice"]), index=float(p["indexPrice"]),
                    funding=float(p["lastFundingRate"]), bid_qty=float(b.get("bidQty") or 0),
                    ask_qty=float(b.get("askQty") or 0))


class Engine(Reconciler):
    def __init__(self, exchange, settings: Mapping[str, Any], state: dict[str, Any],
                 queue, emit: Emit, now_ms: Callable[[], int] | None = None,
                 save: Callable[[], None] = lambda: None) -> None:
        self.ex = exchange
        self.save = save  # persists the state; called before an entry order leaves
        self.s = settings
        self.state = state
        self.emit = emit
        self.queue = queue
        self.now_ms = now_ms or getattr(exchange, "now_ms", None) or (lambda: int(time.time() * 1000))
        self.cache = KlineCache()
        self.rules: dict[str, SymbolRules] = {}
        self.max_lev: dict[str, int] = {}
        self.leverage_set: dict[str, int] = {}
        self.margin_set: dict[str, str] = {}
        self.brackets: dict[str, tuple[Bracket, ...]] = {}
        self.policy = BanditPolicy.from_settings(settings)
        if state.get("policy"):
            self.policy.load(state["policy"])
        self._rules_at = 0.0
        self.guard: BracketGuard | None = None
        self.stopping: Callable[[], bool] = lambda: False  # the runner's stop request
        self.breakers: list[Trip] = [Trip(**t) for t in state.get("protections", {}).get("active", [])]
        self.chart_symbols: tuple[str, ...] = ()  # symbols the dashboard asked to chart
        self.charts_enabled = True
        self.data = None  # a backtest's ReplayData: windows and features precomputed in bulk
        self._feature_cache: dict[str, tuple] = {}
        self.advisor = None  # mraster.ai.advisor.Advisor when AI mode is on (set by the runner)
        self.copilots = None  # mraster.ai.copilots.Copilots in AI mode (set by the runner)
        self.news = None  # mraster.ai.news.NewsFeed when ASTER_AI_NEWS_ENDPOINT is set
        self._news_failing = False
        self.market_ms = 0  # the market's time at the last cycle (the premium index's stamp)
        self._owners: dict[str, tuple[float, Ownership]] = {}  # symbol → (size, verdict)
        for key, default in (("positions", {}), ("history", []), ("external_positions", []),
                             ("equity_curve", []), ("decisions", {}), ("alerts", []),
                             ("stats", {"taken": 0, "skipped": {}, "cycles": 0}), ("cooldowns", {})):
            state.setdefault(key, default)

    # -- helpers -------------------------------------------------------------------------------
    async def _load_rules(self) -> None:
        if self.rules and time.monotonic() - self._rules_at < 3600:
            return
        info = await self.ex.exchange_info()
        self.rules = rules_from_exchange_info(info)
        self._rules_at = time.monotonic()
        try:  # maintenance-margin tiers, for liquidation prices (assumed when not listed)
            self.brackets = brackets_from_api(await self.ex.leverage_brackets())
        except (E.ExchangeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("leverage brackets unavailable (%s); assuming the usual tiers", exc)
        # the guard's retry back-off and stop grace run on the market's clock: the wall clock
        # live, the replay's in a backtest (so a replay never depends on how fast it runs)
        self.guard = BracketGuard(self.ex, self.rules, self.queue, self._guard_event,
                                  self.s["ASTER_BRACKET_ALERT_AFTER"],
                                  clock=lambda: (self.market_ms or self.now_ms()) / 1000,
                                  stop_grace_s=self.s["ASTER_STOP_GRACE_SECONDS"])

    def _guard_event(self, event: str, /, **data: Any) -> None:
        """The guard's alerts become notices in the state (shown until dismissed)."""
        if event == "alert":
            self.alert(data.get("level", "error"), data.get("message", ""), data.get("symbol"))
        else:
            self.emit(event, **data)

    def universe(self, tickers: dict[str, dict]) -> list[str]:
        s = self.s
        syms = [r.symbol for r in self.rules.values()
                if r.status == "TRADING" and r.quote == s["ASTER_QUOTE"]]
        if s["ASTER_SYMBOLS"]:
            syms = [x for x in syms if x in s["ASTER_SYMBOLS"]]
        syms = [x for x in syms if x not in s["ASTER_EXCLUDE_SYMBOLS"]]
        syms.sort(key=lambda x: -float(tickers.get(x, {}).get("quoteVolume", 0)))
        if s["ASTER_UNIVERSE_MAX"]:
            syms = syms[: s["ASTER_UNIVERSE_MAX"]]
        return syms

    def _skip(self, res: CycleResult, sym: str, reason: str, **info: Any) -> None:
        res.decisions[sym] = {"action": "SKIP", "reason": reason, "why": REASONS.get(reason, reason),
                              **info}
        sk = self.state["stats"]["skipped"]
        sk[reason] = sk.get(reason, 0) + 1
        self.emit("decision", symbol=sym, action="SKIP", reason=reason, **info)

    async def _equity(self) -> tuple[float, float]:
        acct = await self.ex.account()
        equity = float(acct["totalMarginBalance"])
        used = float(acct.get("totalInitialMargin", 0))
        return equity, used

    # -- the cycle -----------------------------------------------------------------------------
    async def cycle(self, *, paused: bool = False) -> CycleResult:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        res = CycleResult()
        await self._load_rules()
        tick_rows, book_rows, prem_rows = await asyncio.gather(
            self.ex.ticker_24h(), self.ex.book_ticker(), self.ex.premium_index())
        tickers, books, prems = by_symbol(tick_rows), by_symbol(book_rows), by_symbol(prem_rows)
        # the market's own clock (the premium index is stamped by the exchange), so candle
        # closes are judged on the exchange's time even when this machine's clock drifts
        now = max([int(r.get("time") or 0) for r in prem_rows] + [0]) or self.now_ms()
        self.market_ms = now
        weight0 = self._weight()
        await self._sync_positions(res, now)
        equity, used = await self._equity()  # serves the breakers and this cycle's entries
        self._update_breakers(equity, now)
        universe = self.universe(tickers)
        await self._watch_markets(universe, tickers, now)
        if self.copilots is not None:
            self.copilots.refresh_playbook(
                now, {sym: {"change_pct": float(tickers.get(sym, {}).get("priceChangePercent", 0))}
                      for sym in universe}, self.state.get("sentinel", {}), self.state["history"])
        snaps: dict[str, Snapshot] = {}
        for sym in universe:
            snap = _snapshot(sym, tickers, books, prems)
            if snap is None:
                self._skip(res, sym, "no_quote")
                continue
            snaps[sym] = snap
        liquid = [x for x in snaps if snaps[x].quote_volume >= self.s["ASTER_MIN_QUOTE_VOL_USDT"]]
        for sym in snaps:
            if sym not in liquid:
                self._skip(res, sym, "min_qvol", quote_volume=snaps[sym].quote_volume)
        candles = await self._fetch_candles(liquid + [p["symbol"] for p in self.state["positions"].values()
                                                      if p["symbol"] not in liquid], now)
        entries = []
        for sym in liquid:
            ltf, htf = candles.get(sym, (None, None))
            if ltf is None:
                self._skip(res, sym, "data_error")
                continue
            plan = self._evaluate(res, sym, snaps[sym], ltf, htf, paused)
            if plan:
                entries.append(plan)
        entries.sort(key=lambda e: -e["expected_r"])
        if entries:
            for plan in entries:
                used = await self._enter(res, plan, equity, used, now)
        risk_rows = await self.ex.position_risk()
        amounts = position_amounts(risk_rows)
        self._mark_positions(risk_rows)
        await self._manage(candles, snaps, now)
        if self.guard:
            done = await self.guard.run(self.state["positions"], amounts)
            if any(done.values()):
                self.emit("guard", **done)
        equity, used = await self._equity()
        st = self.state
        st["equity_curve"] = (st["equity_curve"] + [[now, round(equity, 6)]])[-2000:]
        st["decisions"] = res.decisions
        st["market"] = {sym: {"change_pct": float(tickers.get(sym, {}).get("priceChangePercent", 0)),
                              "quote_volume": float(tickers.get(sym, {}).get("quoteVolume", 0)),
                              "last": float(tickers.get(sym, {}).get("lastPrice", 0)),
                              "action": res.decisions.get(sym, {}).get("action"),
                              "side": res.decisions.get(sym, {}).get("side"),
                              "reason": res.decisions.get(sym, {}).get("reason")}
                        for sym in universe}
        if self.charts_enabled:
            st["charts"] = self._charts(candles)
        st["stats"]["cycles"] += 1
        st["policy"] = self.policy.to_dict()
        if self.advisor is not None:
            self.advisor.forget_old()
            st["ai"] = self.advisor.snapshot()
        st["telemetry"] = {
            "cycle": st["stats"]["cycles"], "time": now, "duration_s": round(time.perf_counter() - t0, 4),
            "cpu_s": round(time.process_time() - cpu0, 4), "symbols": len(universe),
            "evaluated": len(liquid),
            "weight": None if weight0 is None else self._weight() - weight0,
            "equity": equity, "used_margin": used, "open_positions": len(st["positions"])}
        self.emit("cycle", **st["telemetry"], opened=res.opened, closed=len(res.closed))
        return res

    def _mark_positions(self, rows: list[dict]) -> None:
        """Mark price, unrealised PnL and R (against the initial stop) for the dashboard."""
        by_sym = {r["symbol"]: r for r in rows if float(r["positionAmt"])}
        for pos in self.state["positions"].values():
            r = by_sym.get(pos["symbol"])
            if r is None or pos.get("status") != "open":
                continue
            pnl = float(r.get("unRealizedProfit", 0))
            risk = abs(pos["entry"] - pos["initial_stop"]) * pos["qty"]
            pos.update(mark=float(r.get("markPrice", 0)), unrealized=round(pnl, 8),
                       liquidation=float(r.get("liquidationPrice") or 0),
                       r_now=round(pnl / risk, 4) if risk else 0.0)

    def _charts(self, candles: dict[str, tuple[Candles, Candles]]) -> dict[str, list[list[float]]]:
        """Recent closed candles for the dashboard's chart: open positions, the symbol the user
        picked, and the last closed trades (at most CHART_SYMBOLS symbols, CHART_CANDLES each)."""
        want = [p["symbol"] for p in self.state["positions"].values()]
        want += list(self.chart_symbols) + [h["symbol"] for h in reversed(self.state["history"])]
        out: dict[str, list[list[float]]] = {}
        for sym in dict.fromkeys(want):
            if len(out) >= CHART_SYMBOLS:
                break
            if sym in candles:
                c = candles[sym][0]
                n = min(len(c), CHART_CANDLES)
                out[sym] = np.column_stack([c.t[len(c) - n:], c.o[len(c) - n:], c.h[len(c) - n:],
                                            c.l[len(c) - n:], c.c[len(c) - n:]]).tolist()
        return out

    def _weight(self) -> int | None:
        """Request weight booked so far (None for adapters without a rate-limit governor)."""
        gov = getattr(self.ex, "governor", None)
        return gov.total_weight if gov else None

    async def _fetch_candles(self, symbols: list[str], now: int) -> dict[str, tuple[Candles, Candles]]:
        if self.data is not None:  # a backtest: the same windows, straight from the replay
            return {sym: c for sym in dict.fromkeys(symbols)
                    if (c := self.data.candles(sym, now)) is not None}
        sem = asyncio.Semaphore(8)
        out: dict[str, tuple[Candles, Candles]] = {}

        async def one(sym: str) -> None:
            async with sem:
                try:
                    lt = await self.cache.candles(self.ex, sym, self.s["ASTER_INTERVAL"], LTF_WINDOW, now)
                    ht = await self.cache.candles(self.ex, sym, self.s["ASTER_HTF_INTERVAL"],
                                                  HTF_WINDOW, now)
                except E.ExchangeError as exc:
                    log.warning("klines for %s failed: %s", sym, exc)
                    return  # the symbol is skipped with reason data_error
            out[sym] = (lt, ht)
        await asyncio.gather(*(one(s) for s in dict.fromkeys(symbols)))
        return out

    @property
    def sentinel_on(self) -> bool:
        """The sentinel belongs to the AI copilots: on in AI mode, with or without an API key."""
        s = self.s
        return bool(s["ASTER_AI_SENTINEL_ENABLED"] and ai_mode(s))

    def _label(self, sym: str) -> dict[str, Any] | None:
        """The symbol's sentinel label while the sentinel is on."""
        return self.state.get("sentinel", {}).get(sym) if self.sentinel_on else None

    async def _watch_markets(self, universe: list[str], tickers: dict[str, dict], now: int) -> None:
        if not self.sentinel_on:
            return
        decay = self.s["ASTER_AI_SENTINEL_DECAY_MINUTES"]
        items: list = []
        if self.news is not None:
            items, why = await self.news.latest()
            if why and not self._news_failing:
                self.alert("warning", f"{why}; the sentinel works from market data alone until "
                                      "it answers again")
            self._news_failing = bool(why)
        labels = self.state.setdefault("sentinel", {})
        for sym in universe:
            if sym not in tickers:
                continue
            before = labels.get(sym)
            about = news.for_symbol(items, sym, now, int(decay * 60_000)) if items else []
            labels[sym] = sentinel.update(before, tickers[sym], now, decay, about)
            lab = labels[sym]
            if lab["label"] == "red" and (before is None or before["label"] != "red"):
                cause = lab["news"][0] if lab.get("news") else \
                    f"market shock ({lab['change_pct']:+.1f}% in 24 h)"
                self.alert("warning", f"{sym}: {cause}, event risk {lab['event_risk']:.2f}; no new "
                                      "entries until it fades", sym)

    def _features(self, sym: str, ltf: Candles, htf: Candles):
        """Indicators depend on closed candles only: computed once per new candle."""
        if self.data is not None:
            return self.data.features(sym, ltf, htf)
        key = (len(ltf) and int(ltf.t[-1]), len(htf) and int(htf.t[-1]), len(ltf), len(htf))
        hit = self._feature_cache.get(sym)
        if hit is None or hit[0] != key:
            hit = (key, features(ltf, htf))
            self._feature_cache[sym] = hit
        return hit[1]

    def _evaluate(self, res: CycleResult, sym: str, snap: Snapshot, ltf: Candles, htf: Candles,
                  paused: bool) -> dict[str, Any] | None:
        s = self.s
        f = self._features(sym, ltf, htf)
        if f is None:
            self._skip(res, sym, "few_klines")
            return None
        info = {"rsi": round(f.rsi, 2), "htf_trend": f.htf_trend}
        if sym in self.off_limits:  # the user's position: said first, whatever the signal
            self._skip(res, sym, "external_position", **info)
            return None
        sc = screen(f, snap, s)
        if sc.reason in MARKET_REASONS:
            self._skip(res, sym, sc.reason, spread=round(snap.spread, 6),
                       wickiness=round(f.wickiness, 3), **info)
            return None
        if sc.reason in SIGNAL_REASONS:
            self._skip(res, sym, sc.reason, **info)
            return None
        if sc.reason == "edge_r":
            self._skip(res, sym, "edge_r", side=sc.side, expected_r=round(sc.expected_r, 3), **info)
            return None
        if sc.reason:  # funding and non-arbitrage
            gap = snap.premium_gap
            self._skip(res, sym, sc.reason, side=sc.side, funding=snap.funding,
                       gap=None if gap is None else round(gap, 6), **info)
            return None
        p, er = sc.win_prob, sc.expected_r
        label = self._label(sym)
        if label and label["label"] == "red":
            self._skip(res, sym, "sentinel_block", side=sc.side, event_risk=label["event_risk"], **info)
            return None
        gate = entry_gate(sym, self.state["positions"], s, paused=paused,
                          cooldown_until=self.state["cooldowns"].get(sym, 0), now_ms=self.now_ms(),
                          **self._limits())
        if gate:
            self._skip(res, sym, gate, side=sc.side, **info)
            return None
        ctx = policy_context(f, snap, sc)
        if self.copilots is not None:
            ctx["pm_edge"] = self.copilots.pm_edge(sym)
        feats = build_features(ctx)
        decision = self.policy.decide(feats)
        if decision.action == "SKIP":
            self._skip(res, sym, "alpha_veto" if "veto" in decision.reason else "policy_skip",
                       side=sc.side, policy=decision.to_dict(), **info)
            return None
        # confidence: the alpha model's probability once it speaks, else the prior's distance
        # above a coin flip scaled to [0, 1] (the prior tops out at 0.65)
        conf = decision.alpha_prob if decision.alpha_prob is not None else max(0.0, (p - 0.5) / 0.15)
        plan = None
        if self.advisor is not None:
            payload = {"symbol": sym, "side": sc.side, "price": f.price, "atr": f.atr,
                       "rsi": f.rsi, "adx": f.adx, "htf_trend": f.htf_trend, "spread": snap.spread,
                       "funding": snap.funding, "expected_r": er, "win_prob": p,
                       "policy_bucket": decision.bucket, "open_positions": len(self.state["positions"]),
                       "max_leverage": s["ASTER_LEVERAGE"], "risk_per_trade": s["ASTER_RISK_PER_TRADE"],
                       "orderbook": {"spread_bps": round(snap.spread * 1e4, 3), "bid_qty": snap.bid_qty,
                                     "ask_qty": snap.ask_qty,
                                     "imbalance": round((snap.bid_qty - snap.ask_qty)
                                                        / (snap.bid_qty + snap.ask_qty), 4)
                                     if snap.bid_qty + snap.ask_qty > 0 else None},
                       "sentinel": label and {k: label[k] for k in ("label", "event_risk", "hype")},
                       **(self.copilots.payload(sym) if self.copilots is not None else {})}
            plan = self.advisor.verdict(f"{sym}:{sc.side}:{int(ltf.t[-1])}", sym, payload)
            if plan is None:
                self._skip(res, sym, "ai_pending", side=sc.side, **info)
                return None
            if not plan.take:
                self._skip(res, sym, "ai_veto", side=sc.side, ai=plan.explanation, **info)
                return None
        return {"ai": plan, "symbol": sym, "side": sc.side, "features": f, "snap": snap, "expected_r": er,
                "win_prob": p, "decision": decision, "feats": feats, "confidence": conf,
                "info": info}

    async def _enter(self, res: CycleResult, plan: dict[str, Any], equity: float, used: float,
                     now: int) -> float:
        """Open one planned trade; returns the margin in use afterwards, so the next entry in the
        same cycle is sized against it without asking the exchange again."""
        s, sym, side = self.s, plan["symbol"], plan["side"]
        gate = "stopping" if self.stopping() else entry_gate(
            sym, self.state["positions"], s, **self._limits())
        if gate:
            self._skip(res, sym, gate, side=side)
            return used
        f, snap, rules = plan["features"], plan["snap"], self.rules[sym]
        mult = size_multiplier(plan["decision"].bucket, plan["confidence"], s)
        # yellow: smaller; the sentinel never makes a trade larger
        mult *= (self._label(sym) or {}).get("size_factor", 1.0)
        price = snap.ask if side == "BUY" else snap.bid
        want = min(int(s["ASTER_LEVERAGE"]), self.max_lev.get(sym, 125))
        ai = plan.get("ai")
        sl_mult, tp_mult = s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"]
        if self.copilots is not None:  # playbook and tuner: size factors of at most 1
            mult *= self.copilots.size_factor(side, plan["decision"].bucket)
            sl_bias, tp_bias = self.copilots.stop_target_bias()
            sl_mult, tp_mult = sl_mult * sl_bias, tp_mult * tp_bias
        if ai is not None and ai.source != "fallback":  # clamped: it can only lower the risk
            mult *= ai.size_multiplier
            want = min(want, ai.leverage or want)
            sl_mult, tp_mult = sl_mult * ai.sl_multiplier, tp_mult * ai.tp_multiplier
        if (sl_mult, tp_mult) != (s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"]):
            s = {**s, "ASTER_SL_ATR_MULT": sl_mult, "ASTER_TP_ATR_MULT": tp_mult}
        if self.margin_set.get(sym) != s["ASTER_MARGIN_TYPE"]:
            try:
                await self._set_margin_type(sym)
            except E.ExchangeError as exc:
                self._skip(res, sym, "margin_mode" if exc.code in (-4047, -4048) else
                           "order_failed", side=side, error=str(exc))
                return used
        if self.leverage_set.get(sym) != want:
            try:  # leverage is set on the exchange before the sizing relies on it
                await self._set_leverage(sym, want)
            except E.ExchangeError as exc:
                self._skip(res, sym, "order_failed", side=side, error=str(exc))
                return used
        order = plan_order(side=side, price=price, atr=f.atr, equity=equity, used_margin=used,
                           rules=rules, mult=mult, max_leverage=self.leverage_set[sym], s=s)
        while not order.reason and not self._stop_before_liquidation(sym, side, price, order,
                                                                     equity, used):
            # the stop would come after the liquidation: lower the leverage, if anything can
            lower = max(1, order.leverage // 2)
            if lower >= order.leverage:
                order = dataclasses.replace(order, reason="liquidation_risk")
                break
            try:
                await self._set_leverage(sym, lower)
            except E.ExchangeError as exc:
                self._skip(res, sym, "order_failed", side=side, error=str(exc))
                return used
            order = plan_order(side=side, price=price, atr=f.atr, equity=equity,
                               used_margin=used, rules=rules, mult=mult,
                               max_leverage=self.leverage_set[sym], s=s)
        reason = order.reason or check_order(notional=order.notional, leverage=order.leverage,
                                             risk_usdt=order.risk_usdt, equity=equity,
                                             used_margin=used, s=s)
        if reason:
            self._skip(res, sym, reason, side=side, qty=str(order.qty),
                       notional=round(order.notional, 4))
            return used
        capped = exposure_cap(self.state["positions"], risk_usdt=order.risk_usdt,
                              notional=order.notional, equity=equity, s=s)
        if capped:
            self._skip(res, sym, capped[0], side=side, **capped[1])
            return used
        token = ids.new_token(now)
        cid = ids.order_id("E", token)
        pos = {"token": token, "symbol": sym, "side": side, "atr": f.atr, "opened_at": now,
               "entry_client_id": cid, "leverage": order.leverage, "arm": plan["decision"].arm,
               "policy_features": plan["feats"], "expected_r": plan["expected_r"],
               "bucket": plan["decision"].bucket, "fasttp_at": 0,
               "sl_atr_mult": sl_mult, "tp_atr_mult": tp_mult,
               "ai": ai.explanation if ai is not None else None,
               "ai_source": ai.source if ai is not None else None,
               "fasttp": ai.fasttp.model_dump(exclude_none=True)
               if ai is not None and ai.source != "fallback" and ai.fasttp else None,
               "origin": plan.get("origin", "bot")}
        self._fill(pos, price, float(order.qty), "pending")
        pos["sent_ms"] = int(time.time() * 1000)  # for the exchange's consistency window
        # Crash-only: the intent is on disk before the order leaves, so a crash at any line
        # leaves a position the next start adopts (by its client id) instead of an unknown one.
        self.state["positions"][token] = pos
        self.save()
        try:
            filled = await self.ex.new_order(symbol=sym, side=side, type="MARKET",
                                             quantity=str(order.qty), newClientOrderId=cid,
                                             newOrderRespType="RESULT")
        except E.ExchangeError as exc:
            if not E.is_refusal(exc):
                # unknown is not refused: the order may have filled; it stays pending (the
                # symbol blocked) until the exchange says what happened
                self._skip(res, sym, "entry_unknown", side=side, error=str(exc))
                self.alert("warning", f"{sym}: entry outcome unknown ({exc}); it is looked up "
                                      "on the exchange every cycle until known", sym)
                return used + order.notional / order.leverage  # counted as if filled
            del self.state["positions"][token]
            self._skip(res, sym, "order_failed", side=side, error=str(exc))
            self.alert("error", f"{sym}: entry refused by the exchange: {exc}", sym)
            return used
        self._fill(pos, float(filled.get("avgPrice") or 0) or price,
                   float(filled.get("executedQty") or order.qty), "open")
        entry, qty, stop, tp = pos["entry"], pos["qty"], pos["stop"], pos["take_profit"]
        d = 1 if side == "BUY" else -1
        self.state["stats"]["taken"] += 1
        res.opened.append(sym)
        res.decisions[sym] = {"action": "TAKE", "reason": "signal", "side": side, "qty": qty,
                              "entry": entry, "stop": stop, "take_profit": tp,
                              "expected_r": round(plan["expected_r"], 3),
                              "policy": plan["decision"].to_dict(), **plan["info"],
                              **({"ai": ai.explanation, "ai_source": ai.source} if ai else {})}
        self.emit("order", action="entry", symbol=sym, side=side, qty=qty, price=entry,
                  client_id=cid)
        if self.guard:
            amounts = {sym: qty * d}
            done = await self.guard.run({token: pos}, amounts, full=False)
            if done["failed"]:
                self.alert("error", f"{sym}: position opened but its brackets could not be "
                                    "placed yet; the guard keeps retrying", sym)
        return used + pos["qty"] * pos["entry"] / order.leverage

    def _fill(self, pos: dict[str, Any], entry: float, qty: float, status: str) -> None:
        """Entry, size and bracket levels of a position from its (actual or intended) fill."""
        d = 1 if pos["side"] == "BUY" else -1
        stop = entry - d * pos.get("sl_atr_mult", self.s["ASTER_SL_ATR_MULT"]) * pos["atr"]
        pos.update(entry=entry, qty=qty, initial_stop=stop, stop=stop, status=status,
                   take_profit=entry + d * pos.get("tp_atr_mult", self.s["ASTER_TP_ATR_MULT"]) * pos["atr"],
                   risk_usdt=qty * abs(entry - stop))

    def _stop_before_liquidation(self, sym: str, side: str, price: float, order, equity: float,
                                 used: float) -> bool:
        """Would this order's stop trigger before its liquidation, with the user's buffer?"""
        sign = 1 if side == "BUY" else -1
        qty = float(order.qty)
        if self.s["ASTER_MARGIN_TYPE"] == "isolated":
            wallet = isolated_margin(price, qty, order.leverage)
        else:  # crossed: what the account has free to back it
            wallet = max(0.0, equity - used)
        liq = liquidation_price(sign, price, qty, wallet, self.brackets.get(sym, DEFAULT_BRACKETS))
        return stop_is_safe(sign, price, float(order.stop), liq, self.s["ASTER_LIQUIDATION_BUFFER"])

    async def _set_margin_type(self, sym: str) -> None:
        """The user's margin mode on ``sym`` before its first entry ("no change" is success)."""
        want = self.s["ASTER_MARGIN_TYPE"]
        try:
            await self.ex.set_margin_type(sym, want.upper())
        except E.ExchangeError as exc:
            if exc.code != -4046:
                raise
        self.margin_set[sym] = want

    async def hedge_mode(self) -> bool:
        """True when the account holds two positions per symbol (hedge mode): the bot's one-way
        orders would be refused (-4061) and its closePosition stops would not cover both sides."""
        return bool((await self.ex.position_mode()).get("dualSidePosition"))

    async def _set_leverage(self, sym: str, lev: int) -> None:
        """Set leverage before sizing relies on it; when the symbol's maximum is lower than
        asked, use the highest accepted value below it."""
        for cand in [lev] + [x for x in (100, 75, 50, 25, 20, 10, 5, 3, 2, 1) if x < lev]:
            try:
                await self.ex.set_leverage(sym, cand)
                self.leverage_set[sym] = cand
                if cand < lev:
                    self.max_lev[sym] = cand
                return
            except E.BadRequest as exc:
                if exc.code != -4028:
                    raise
        raise E.BadRequest(-4028, f"no leverage accepted for {sym}")

    def alert(self, level: str, message: str, symbol: str | None = None) -> None:
        a = {"time": int(time.time() * 1000), "level": level, "message": message, "symbol": symbol}
        self.state["alerts"] = (self.state["alerts"] + [a])[-100:]
        self.emit("alert", level=level, message=message, symbol=symbol)
        (log.error if level == "error" else log.warning)(message)

    async def manual_entry(self, symbol: str, side: str) -> tuple[bool, str]:
        """A trade the user confirmed (a chat proposal). Only the signal and the policy are the
        user's: the market filters, the sentinel, the entry gate, the risk sizing (the smallest
        bucket), the order checks and the brackets are the bot's own. Returns (opened, sentence)."""
        s = self.s
        await self._load_rules()
        r = self.rules.get(symbol)
        if r is None or r.status != "TRADING" or r.quote != s["ASTER_QUOTE"]:
            return False, f"not opened: {symbol} is not a tradable {s['ASTER_QUOTE']} perpetual here"
        tick_rows, book_rows, prem_rows = await asyncio.gather(
            self.ex.ticker_24h(symbol), self.ex.book_ticker(symbol), self.ex.premium_index(symbol))
        prems = by_symbol(prem_rows)
        now = int(prems.get(symbol, {}).get("time") or 0) or self.now_ms()
        snap = _snapshot(symbol, by_symbol(tick_rows), by_symbol(book_rows), prems)
        ltf, htf = (await self._fetch_candles([symbol], now)).get(symbol, (None, None))
        f = self._features(symbol, ltf, htf) if ltf is not None else None
        if snap is None or f is None:
            return False, f"not opened: no usable market data for {symbol} yet"
        label = self._label(symbol)
        # may this symbol be traded at all (cooldown, the user's position, a breaker)? Said
        # first; then whether the market allows it now
        reason = entry_gate(symbol, self.state["positions"], s,
                            cooldown_until=self.state["cooldowns"].get(symbol, 0),
                            now_ms=self.now_ms(), **self._limits()) or \
            market_filters(snap, f.wickiness, s) or side_filters(snap, side, s) or \
            ("sentinel_block" if label and label["label"] == "red" else None)
        if reason:
            return False, f"not opened: {REASONS.get(reason, reason)}"
        p = win_probability(f, side)
        er = expected_r(p, s["ASTER_SL_ATR_MULT"], s["ASTER_TP_ATR_MULT"], f.atr, f.price,
                        snap.spread, snap.funding, side)
        plan = {"symbol": symbol, "side": side, "features": f, "snap": snap, "expected_r": er,
                "win_prob": p, "decision": Decision("TAKE", "S", "", "manual"), "feats": None,
                "confidence": 0.5, "info": {"rsi": round(f.rsi, 2), "htf_trend": f.htf_trend},
                "origin": "chat"}
        res = CycleResult()
        equity, used = await self._equity()
        await self._enter(res, plan, equity, used, now)
        d = res.decisions.get(symbol, {})
        if d.get("action") != "TAKE":
            return False, f"not opened: {d.get('why') or d.get('reason', 'refused')}"
        return True, (f"opened {side} {d['qty']:g} {symbol} at {d['entry']:g}, stop {d['stop']:g}, "
                      f"take-profit {d['take_profit']:g}")

    async def close_positions(self, symbol: str | None = None) -> str:
        """Close the bot's positions at market (one symbol, or all when ``symbol`` is None), then
        book the closes and cancel the brackets left behind. Positions the bot did not open are
        left alone. Returns a plain sentence for the dashboard."""
        await self._load_rules()
        amounts = position_amounts(await self.ex.position_risk())
        closed = []
        for token, pos in list(self.state["positions"].items()):
            sym = pos["symbol"]
            amt = amounts.get(sym, 0.0)
            if (symbol and sym != symbol) or pos.get("status") != "open" or amt == 0 \
                    or (amt > 0) != (pos["side"] == "BUY"):
                continue
            close_side = "SELL" if pos["side"] == "BUY" else "BUY"
            qty = self.rules[sym].round_qty(abs(amt), market=True)
            pos["close_reason"] = "manual"
            self.state["cooldowns"][sym] = self.now_ms() + int(
                self.s["ASTER_MANUAL_CLOSE_COOLDOWN_MINUTES"] * 60_000)
            await self.ex.new_order(symbol=sym, side=close_side, type="MARKET", quantity=str(qty),
                                    reduceOnly=True, newClientOrderId=ids.order_id("X1", token))
            self.emit("order", action="close", symbol=sym, side=close_side, qty=str(qty),
                      client_id=ids.order_id("X1", token))
            closed.append(sym)
        await self._sync_positions(CycleResult(), self.now_ms())
        if self.guard and closed:
            left = position_amounts(await self.ex.position_risk())
            await self.guard.run(self.state["positions"], left)
        if not closed:
            return f"no open position of the bot on {symbol}" if symbol else \
                "no open positions of the bot to close"
        external = [e["symbol"] for e in self.state["external_positions"]]
        return f"closed {', '.join(closed)} at market" + (
            f"; positions the bot did not open were left alone: {', '.join(external)}"
            if external and not symbol else "")

    # -- account-level limits -----------------------------------------------------------------
    def _limits(self) -> dict[str, Any]:
        """What the entry gate needs to know beyond the symbol: the user's positions, and the
        circuit breakers that are on."""
        return {"off_limits": self.off_limits, "reducing": reducing(self.breakers) is not None,
                "locked": locked_symbols(self.breakers)}

    def _update_breakers(self, equity: float, now: int) -> None:
        """Roll the breakers' ledger and work out which are on; a breaker that just tripped is
        an alert (and the dashboard's banner says which, the figures and when it lifts)."""
        prot = self.state.get("protections", {})
        ledger = roll_ledger(prot.get("ledger", {}), equity, now)
        log_ = list(prot.get("log", []))
        before = {(t.name, t.symbol) for t in self.breakers}
        self.breakers = trips(self.state["history"], ledger, equity, now, self.s)
        for t in self.breakers:
            if (t.name, t.symbol) not in before:
                log_ = (log_ + [{"at": now, **t.to_dict()}])[-200:]
                self.alert("warning" if t.symbol else "error",
                           f"circuit breaker {t.name}: {t.message}; "
                           + ("no new trades on this symbol" if t.symbol else
                              "no new trades; stops and take-profits keep working"), t.symbol)
                self.emit("breaker", name=t.name, symbol=t.symbol, message=t.message,
                          until=t.until)
        self.state["protections"] = {"ledger": ledger, "log": log_,
                                     "active": [t.to_dict() for t in self.breakers]}

    def lift_breakers(self) -> str:
        """The user lifted the breakers early (a typed confirmation on the dashboard)."""
        if not self.breakers:
            return "no circuit breaker is on"
        p = self.state.setdefault("protections", {})
        names = ", ".join(t.name + (f" ({t.symbol})" if t.symbol else "") for t in self.breakers)
        curve = self.state.get("equity_curve") or [[0, 0.0]]
        equity = float(curve[-1][1])
        now = self.market_ms or self.now_ms()
        p["ledger"] = lift(p.get("ledger", {}), self.breakers, equity, now)
        self.breakers = []
        p["active"] = []
        self.alert("warning", f"circuit breakers lifted by hand: {names}")
        return f"lifted: {names}"

    async def _manage(self, candles: dict[str, tuple[Candles, Candles]],
                      snaps: dict[str, Snapshot], now: int) -> None:
        """FastTP (see ``mraster.strategy.fasttp``); the guard then moves the order."""
        for pos in self.state["positions"].values():
            sym = pos["symbol"]
            if sym not in candles or sym not in snaps or pos.get("status") != "open":
                continue
            price = snaps[sym].bid if pos["side"] == "BUY" else snaps[sym].ask
            s = self.s
            if pos.get("fasttp"):  # the AI plan's overrides (clamped when the plan arrived)
                s = {**s, **{FASTTP_KEYS[k]: v for k, v in pos["fasttp"].items()}}
            hit = fasttp_target(pos, price, candles[sym][0].c, now, s)
            if hit is not None:
                old, (new_tp, facts) = pos["take_profit"], hit
                pos.update(take_profit=new_tp, fasttp_at=now)
                self.emit("fasttp", symbol=sym, old_tp=old, new_tp=new_tp, **facts)
            moved = locked_stop(pos, price, s, fasttp_fired=hit is not None)
            if moved is not None:  # the guard replaces the stop order (new one first)
                old_stop, (pos["stop"], rule) = pos["stop"], moved
                pos["stop_rule"] = rule
                self.emit("stop_moved", symbol=sym, rule=rule, old_stop=old_stop,
                          new_stop=pos["stop"], r=round(r_multiple(pos, price), 3))

"""One scan cycle: data → features → signals → filters → policy → risk → orders → management.

``Engine`` runs the cycle and holds what lives between cycles; each step is its own module:
market data (``market_data``), the pure evaluator (``evaluator.decide``), the executor and its
order-outcome state machine (``executor``), the reconciler (``reconciler``), the account-level
breakers (``account_risk``) and what the dashboard is shown (``view``). The engine talks to any
exchange adapter with the AsterRest interface (the real exchange, the simulator over HTTP,
``LocalExchange`` or ``PaperExchange``) and reads time from one injected clock, the market's.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any, Callable, Mapping

from mraster import shadows
from mraster.domain import Intent, positions_of
from mraster.engine import view
from mraster.engine.account_risk import AccountRisk
from mraster.engine.evaluator import Passed, Portfolio, Skip, decide
from mraster.engine.executor import Executor
from mraster.engine.market_data import KlineCache, MarketData, Quotes, quotes_from_rows, snapshot
from mraster.engine.protection_watch import ProtectionWatch
from mraster.engine.reconciler import CycleResult, Reconciler, by_symbol, position_amounts
from mraster.exchange import errors as E
from mraster.exchange.rules import SymbolRules, rules_from_exchange_info
from mraster.exchange.together import answers_at_once, together
from mraster.execution.brackets import BracketGuard
from mraster.execution.ownership import Ownership
from mraster.liquidation import Bracket, brackets_from_api
from mraster.policy import BanditPolicy, vectorize
from mraster.protections import Trip
from mraster.saved_presets import settings_hash
from mraster.sim.market import INTERVAL_MS
from mraster.strategy.exits import exit_moves
from mraster.strategy.filters import REASONS, Snapshot
from mraster.strategy.orderbook import DEPTH_LIMIT, book_context
from mraster.strategy.screen import Screen, screen_each
from mraster.strategy.signals import Candles, Features
from mraster.strategy.sizing import plan_order, size_multiplier
from mraster.words import Words, notice, words

__all__ = ["CycleResult", "Engine", "by_symbol", "position_amounts", "snapshot"]

log = logging.getLogger("mraster.engine")

# said once at start when saved shadows are left out (``shadows.restore``)
SHADOWS_DROPPED = ("{n} vetoed signals saved in the state file could not be read or taken over "
                   "(damaged, from another version, repeated, or beyond the 2,000 followed at "
                   "once) and are no longer followed; nothing else is affected")
Emit = Callable[..., None]


class Engine(MarketData, Executor, AccountRisk, Reconciler, ProtectionWatch):
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
        self.price_places: dict[str, int] = {}  # decimals of each symbol's tick, for the page
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
        # a backtest's bulk screen: the skip reasons it already knows at a moment (symbol →
        # reason), which the cycle books without reading those symbols' candles and features
        self.known_skips: Callable[[int], Mapping[str, str]] | None = None
        # ...and the candidates it passed, as the cycle would work them out (symbol → Passed)
        self.known_candidates: Callable[[int], Mapping[str, Passed]] | None = None
        # ...and settles the vetoed signals' shadows at a moment from the history, as their
        # candles would (True), without those candles being read
        self.settle_shadows: Callable[[int], bool] | None = None
        # ...and the replay's quotes at the step, when the step may take them from there
        self.replayed_quotes: Callable[[], Quotes | None] | None = None
        # a position token's 4-hex tag (``ids.new_token``): random live (unique across
        # restarts); a backtest's own sequence, so the same run writes the same client ids
        self.token_tags: Callable[[], str] | None = None
        self._feature_cache: dict[str, tuple] = {}
        self.advisor = None  # mraster.ai.advisor.Advisor when AI mode is on (set by the runner)
        self.copilots = None  # mraster.ai.copilots.Copilots in AI mode (set by the runner)
        self.news = None  # mraster.ai.news.NewsFeed when ASTER_AI_NEWS_ENDPOINT is set
        self._news_failing = False
        self.market_ms = 0  # the market's time at the last cycle (the premium index's stamp)
        self._owners: dict[str, tuple[float, Ownership]] = {}  # symbol → (size, verdict)
        self._told_added: set[str] = set()  # positions whose add by others was said (once)
        self.recorder = None  # engine.recorder.Recorder in live and paper mode (set by the runner)
        self.journal = None  # mraster.journal.Journal: every trade with its fills (the runner's)
        self._policy_recorded: tuple[int, int] | None = None  # the policy as last recorded
        # vetoed signals followed to their stop or target (``mraster.shadows``); saved with the
        # state (live and paper), so a restarted bot goes on following them
        self.shadows, dropped = shadows.restore(state.get("shadows"), len(self.policy.names))
        state["shadows"] = self.shadows  # the same list (changed in place), plain JSON
        self._entering: set[str] = set()  # positions whose first brackets go out now (the bot's)
        # (position token, "stop"/"tp") → the rule that moved that level this cycle: the guard's
        # replacement carries out the bot's plan (no repair; the log names the rule)
        self._moving: dict[tuple[str, str], str] = {}
        self._cancelled: set[str] = set()  # client ids the guard cancelled (not "gone")
        self._fees: dict[str, float] = {}  # taker fee rate per symbol, from the exchange
        self._funding_read = 0
        self._protection_asked = -1  # the cycle (number) that last asked fee rates and funding
        self._issued: tuple[int, set[str]] = (0, set())  # position tokens given out at a moment
        self.orders_sent = 0  # entries and cancels sent before the guard point (cycle re-reads)
        state["positions"] = positions_of(state)  # the file's dicts become records
        for key, default in (("positions", {}), ("history", []), ("external_positions", []),
                             ("equity_curve", []), ("decisions", {}), ("alerts", []),
                             ("stats", {"taken": 0, "skipped": {}, "cycles": 0}), ("cooldowns", {})):
            state.setdefault(key, default)
        if dropped:
            self.alert("warning", words(SHADOWS_DROPPED, n=dropped))

    # -- helpers -------------------------------------------------------------------------------
    async def _load_rules(self) -> None:
        if self.rules and time.monotonic() - self._rules_at < 3600:
            return
        # the symbols' rules and their maintenance-margin tiers (for liquidation prices,
        # assumed when not listed), read together
        async def tiers_of() -> Any:  # an adapter without them fails inside, not here
            return await self.ex.leverage_brackets()
        info, tiers = await together(self.ex, self.ex.exchange_info(), tiers_of(),
                                     return_exceptions=True)
        if isinstance(info, BaseException):
            raise info
        self.rules = rules_from_exchange_info(info)
        self.price_places = view.tick_places(self.rules, self.rules)
        self._rules_at = time.monotonic()
        try:
            if isinstance(tiers, BaseException):
                raise tiers
            self.brackets = brackets_from_api(tiers)
        except (E.ExchangeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("leverage brackets unavailable (%s); assuming the usual tiers", exc)
        # the guard's retry back-off and stop grace run on the market's clock: the wall clock
        # live, the replay's in a backtest (so a replay never depends on how fast it runs)
        self.guard = BracketGuard(self.ex, self.rules, self.queue, self._guard_event,
                                  self.s["ASTER_BRACKET_ALERT_AFTER"],
                                  clock=lambda: (self.market_ms or self.now_ms()) / 1000,
                                  stop_grace_s=self.s["ASTER_STOP_GRACE_SECONDS"],
                                  save=lambda: self.save())  # (late: a test may swap it)

    def _guard_event(self, event: str, /, **data: Any) -> None:
        """The guard's alerts become notices in the state (shown until dismissed)."""
        if event == "alert":
            self.alert(data.get("level", "error"), data.get("message", ""), data.get("symbol"))
        else:
            if event == "order":
                self._bracket_event(data)
            self.emit(event, **data)

    def _skip(self, res: CycleResult, sym: str, reason: str, **info: Any) -> None:
        res.decisions[sym] = {"action": "SKIP", "reason": reason, "why": REASONS.get(reason, reason),
                              **info}
        sk = self.state["stats"]["skipped"]
        sk[reason] = sk.get(reason, 0) + 1
        self.emit("decision", symbol=sym, action="SKIP", reason=reason, **info)

    async def _equity(self) -> tuple[float, float]:
        return self._equity_of(await self.ex.account())

    @staticmethod
    def _equity_of(acct: Mapping[str, Any]) -> tuple[float, float]:
        """(equity, margin in use) from an account read."""
        return float(acct["totalMarginBalance"]), float(acct.get("totalInitialMargin", 0))

    def alert(self, level: str, message: str | Words, symbol: str | None = None) -> None:
        """``Words`` are kept with the alert, so the page shows it in the reader's language."""
        a = notice(level, message, symbol)
        text = a["message"]
        self.state["alerts"] = (self.state["alerts"] + [a])[-100:]
        self.emit("alert", level=level, message=text, symbol=symbol,
                  **({"words": a["words"]} if "words" in a else {}))  # for the phone's language
        (log.error if level == "error" else log.warning)(text)

    async def _guard_despite(self, failed: list[BaseException], risk_rows: Any,
                             orders: Any) -> None:
        """The cycle's first reads failed in part, or the reconciliation that follows them, so
        the cycle fails; but a stop must not wait for a ticker, the account, the rules' hourly
        refresh or another position's adoption: when the positions and the open orders were
        read, the guard checks and mends the brackets with them before the failure is raised
        (the guard used to run only once every first read had answered: while one endpoint
        kept failing, a stop cancelled by hand stayed missing). Anything but an exchange's
        failure (a stop of the bot, a bug) is raised at once."""
        if not self.guard or not self.rules or not all(
                isinstance(x, E.ExchangeError) and not isinstance(x, E.Interrupted)
                for x in failed) or isinstance(risk_rows, BaseException) or \
                isinstance(orders, BaseException):
            return
        self.market_ms = self.now_ms()  # (the guard's back-off clock; no quote was read)
        try:
            done = await self.guard.run(self.state["positions"], position_amounts(risk_rows),
                                        orders=orders)
        except E.ExchangeError as exc:
            log.warning("bracket check after the failed reads failed too: %s", exc)
            return
        if any(done.values()):
            self.emit("guard", **done)

    def _known_skips(self, now: int) -> dict[str, str]:
        """The skip reasons a backtest's bulk screen already knows at ``now`` (none live),
        except for symbols off limits, which the cycle always decides itself."""
        return self._within_limits(self.known_skips, now)

    def _known_candidates(self, now: int) -> dict[str, Passed]:
        """The candidates a backtest's bulk screen passed at ``now`` (none live), except for
        symbols off limits."""
        return self._within_limits(self.known_candidates, now)

    def _within_limits(self, hook: Callable[[int], Mapping[str, Any]] | None,
                       now: int) -> dict[str, Any]:
        """What a backtest's hook knows at ``now``, but for symbols off limits (the user's
        positions), which the cycle always decides itself."""
        known = hook(now) if hook is not None else {}
        return {sym: v for sym, v in known.items() if sym not in self.off_limits}

    # -- the cycle -----------------------------------------------------------------------------
    async def cycle(self, *, paused: bool = False) -> CycleResult:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        res = CycleResult()
        weight0 = self._weight()
        sent0 = self.orders_sent
        # everything the cycle reads that does not depend on another read, in flight together:
        # the symbols' rules (hourly), quotes, positions, the account and the open orders (the
        # guard's, when no entry changes them before it runs)
        # (a backtest's engine step has its quotes from the replay: no rows to read)
        replayed = self.replayed_quotes() if self.replayed_quotes is not None else None
        market = () if replayed else (self.ex.ticker_24h(), self.ex.book_ticker(),
                                      self.ex.premium_index())
        got = await together(
            self.ex, self._load_rules(), *market, self.ex.position_risk(), self.ex.account(),
            self.ex.open_orders(), return_exceptions=True)
        failed = [g for g in got if isinstance(g, BaseException)]
        if failed:
            await self._guard_despite(failed, got[-3], got[-1])
            # (a bug before an exchange's failure: it is what must be seen)
            raise next((x for x in failed if not isinstance(x, E.ExchangeError)), failed[0])
        _, *rows, risk_rows, acct, orders = got
        quotes = replayed or quotes_from_rows(*rows, clock=self.now_ms)
        now = self.market_ms = quotes.now
        try:
            await self._sync_positions(res, now, risk_rows)
        except E.ExchangeError as exc:  # (e.g. adopting a position: its orders unreadable)
            await self._guard_despite([exc], risk_rows, orders)
            raise
        equity, used = self._equity_of(acct)  # serves the breakers and this cycle's entries
        self.roll_breakers(equity, now)
        universe = self.universe(quotes.volume)
        # what a backtest's bulk screen already skips needs neither candles nor features here,
        # nor a sentinel label unless AI mode's playbook is renewed now (it reads every label,
        # and tightens the screen the skips come from: then they are asked after it); the
        # candidates it passed come with their features and screen, and the evaluator reads
        # their label only when it is red: the others' are worked out only for an entry's size
        renew = self.copilots is not None and self.copilots.playbook_due(now)
        known = given = {}
        if not renew:
            known = self._known_skips(now)
            given = self._known_candidates(now)  # (after ``known``: it screens the step's block)
        await self._watch_markets(universe, quotes.tickers or {}, now, unread=known.keys() | {
            sym for sym, got in given.items() if not got.red})
        if self.copilots is not None:
            self.copilots.refresh_playbook(
                now, {sym: {"change_pct": quotes.change_pct(sym)} for sym in universe},
                self.state.get("sentinel", {}), self.state["history"])
        if renew:
            known = self._known_skips(now)
            given = self._known_candidates(now)
        snaps: dict[str, Snapshot] = {}
        for sym in universe:
            snap = quotes.snapshot(sym)
            if snap is None:
                self._skip(res, sym, "no_quote")
                continue
            snaps[sym] = snap
        liquid = [x for x in snaps if snaps[x].quote_volume >= self.s["ASTER_MIN_QUOTE_VOL_USDT"]]
        for sym in snaps:
            if sym not in liquid:
                self._skip(res, sym, "min_qvol", quote_volume=snaps[sym].quote_volume)
        settled = bool(self.shadows) and self.s["ASTER_ALPHA_SHADOW"] and \
            self.settle_shadows is not None and self.settle_shadows(now)
        candles = await self._fetch_candles(
            [x for x in liquid if x not in known and x not in given]
            + [p.symbol for p in self.state["positions"].values()]
            + ([] if settled else [sh["symbol"] for sh in self.shadows]), now)
        self._watch_anomalies(snaps, candles, now)
        if not settled:
            self._follow_shadows(candles, now)
        seen = self._decision_context(paused, liquid) if self.recorder is not None else None
        entries = []
        pf = self.portfolio(paused=paused)  # nothing it holds changes before the entries
        # the playbook's tightening holds for the whole cycle (refreshed above)
        s_now = self.copilots.tightened(self.s) if self.copilots is not None else self.s
        feats = {sym: given[sym].features if sym in given else self._features(sym, *candles[sym])
                 for sym in liquid if sym in given or sym in candles and sym not in known}
        ready = [sym for sym, f in feats.items() if f is not None and sym not in given]
        screens = dict(zip(ready, screen_each([(feats[x], snaps[x]) for x in ready], s_now)))
        screens.update((sym, given[sym].screen) for sym in feats if sym in given)
        # a backtest's handed candidates: the policy scores them in one batch when the entry
        # gate first asks about one (none when every one stops at the gate)
        self.policy.prepare([given[sym].policy_features for sym in liquid
                             if sym in given and sym not in known])
        for sym in liquid:
            if sym in known:
                self._skip(res, sym, known[sym])
                continue
            if sym not in feats:
                self._skip(res, sym, "data_error")
                continue
            got = given.get(sym)
            plan = await self._evaluate(res, sym, snaps[sym], got.candle_t if got else
                                        _last_open(candles[sym][0]), feats[sym], screens.get(sym),
                                        s_now, pf, equity, used,
                                        got.policy_features if got else None)
            if plan:
                entries.append(plan)
        entries.sort(key=lambda e: -e.expected_r)
        unlabelled = [e.symbol for e in entries if e.symbol in given and self.sentinel_on
                      and self._label(e.symbol) is None]
        if unlabelled:  # the sizes read the labels (a yellow one shrinks it)
            await self._watch_markets(unlabelled, quotes.tickers or {}, now)
        if entries:
            used = await self._enter(res, entries, equity, used, now)
            # a position opened on a candidate whose candles were not read: FastTP and the
            # locked stop look at it this cycle, as at every other
            opened = [p.symbol for p in self.state["positions"].values()
                      if p.symbol in given and p.symbol not in candles]
            if opened:
                candles.update(await self._fetch_candles(opened, now))
        beside: asyncio.Future | None = None
        try:
            if self.orders_sent != sent0:  # entries went out: positions, orders, margin changed
                reads = [self.ex.position_risk(), self.ex.open_orders(), self.ex.account()]
                if self.guard and answers_at_once(self.ex):
                    reads.append(self._protection_reads(now))
                elif self.guard:
                    # the new positions' fee rates (and funding) for their verification leave
                    # with these reads, awaited only by it: a slow one must not hold up the
                    # guard's repairs
                    beside = asyncio.ensure_future(self._protection_reads(now))
                risk_rows, orders, acct, *_ = await together(self.ex, *reads)
            amounts = position_amounts(risk_rows)
            view.mark_positions(self.state["positions"].values(), risk_rows)
            asked = {t: (p.stop, p.take_profit) for t, p in self.state["positions"].items()}
            await self._manage(candles, snaps, now)
            if self.guard:
                done = await self.guard.run(self.state["positions"], amounts, orders=orders)
                self._moving = {}
                if any(done.values()):
                    self.emit("guard", **done)
                if beside is not None:
                    await beside
                await self._verify_protection(amounts, now, asked)
        finally:
            if beside is not None and not beside.done():  # the cycle stopped short
                beside.cancel()
        equity, used = self._equity_of(acct)
        st = self.state
        if self.recorder is not None:  # what this cycle saw, for the live-versus-replay audit
            self.recorder.write(now, settings_hash(self.s), snaps, candles, res.decisions, seen)
        st["equity_curve"] = (st["equity_curve"] + [[now, round(equity, 6)]])[-2000:]
        st["decisions"] = res.decisions
        if replayed is None:  # (a backtest's walked steps leave the views to its last step)
            st["market"] = view.market_table(universe, quotes.tickers, res.decisions)
            st["policy"] = self.policy.to_dict()
        if self.charts_enabled:
            # open positions, the symbol the user picked, the last closed trades
            st["charts"] = view.charts(candles, [p.symbol for p in st["positions"].values()]
                                       + list(self.chart_symbols)
                                       + [h["symbol"] for h in reversed(st["history"])])
            st["ticks"] = {sym: self.price_places[sym] for sym in universe + [
                p.symbol for p in st["positions"].values()] if sym in self.price_places}
        st["stats"]["cycles"] += 1
        if self.advisor is not None:
            self.advisor.forget_old()
            st["ai"] = self.advisor.snapshot()
        st["telemetry"] = {
            "cycle": st["stats"]["cycles"], "time": now, "duration_s": round(time.perf_counter() - t0, 4),
            "cpu_s": round(time.process_time() - cpu0, 4), "symbols": len(universe),
            "evaluated": len(liquid),
            "weight": None if weight0 is None else self._weight() - weight0,
            "equity": equity, "used_margin": used, "open_positions": len(st["positions"]),
            "learning": self._learning()}
        self.emit("cycle", **st["telemetry"], opened=res.opened, closed=len(res.closed))
        return res

    async def _evaluate(self, res: CycleResult, sym: str, snap: Snapshot, candle_t: int | None,
                        f: Features | None, sc: Screen | None, s_now: Mapping[str, Any],
                        pf: Portfolio, equity: float, used: float,
                        policy_features: dict[str, float] | None = None) -> Intent | None:
        """The evaluator's verdict on ``sym``; an intent the LLM advisor (AI mode) approves.
        ``candle_t``: the open time of its last closed signal candle (None without candles);
        ``f``, ``sc``: its features and screen (``screen_each``); ``s_now``: the settings with
        the playbook's tightening; ``policy_features``: the policy's, when a backtest's bulk
        screen worked them out."""
        label = self._label(sym)
        cop = self.copilots
        got = decide(sym, snap, f, pf, s_now, policy=self.policy, label=label,
                     postmortem=cop.pm_inputs(sym) if cop is not None and policy_features is None
                     else None, screened=sc, policy_features=policy_features)
        if isinstance(got, Skip):
            if got.policy_features is not None and self.s["ASTER_ALPHA_SHADOW"]:
                sh = shadows.open_shadow(sym, got.info["side"], candle_t, f.price, f.atr,
                                         snap.spread,
                                         vectorize(got.policy_features, self.policy.names),
                                         self.s)
                if sh is not None:
                    shadows.keep(self.shadows, sh)
            self._skip(res, sym, got.reason, **got.info)
            return None
        block = cop.playbook_block(sym, got.side.value, self.now_ms()) if cop is not None else None
        if block is not None:
            self._skip(res, sym, "playbook_block", side=got.side.value, playbook=block["reason"],
                       until=block["until"], **got.info)
            return None
        if self.advisor is None:
            return got
        s, f, side = self.s, got.features, got.side.value
        key = f"{sym}:{side}:{candle_t}"
        book = None
        if not self.advisor.asked(key):  # the book is fetched only for a question about to go
            book = await self._book(got, equity, used)
        payload = {"symbol": sym, "side": side, "price": f.price, "atr": f.atr,
                   "rsi": f.rsi, "adx": f.adx, "htf_trend": f.htf_trend, "spread": snap.spread,
                   "funding": snap.funding, "expected_r": got.expected_r, "win_prob": got.win_prob,
                   "policy_bucket": got.decision.bucket, "open_positions": len(self.state["positions"]),
                   "max_leverage": s["ASTER_LEVERAGE"], "risk_per_trade": s["ASTER_RISK_PER_TRADE"],
                   "orderbook": {"spread_bps": round(snap.spread * 1e4, 3), "bid_qty": snap.bid_qty,
                                 "ask_qty": snap.ask_qty,
                                 "imbalance": round((snap.bid_qty - snap.ask_qty)
                                                    / (snap.bid_qty + snap.ask_qty), 4)
                                 if snap.bid_qty + snap.ask_qty > 0 else None,
                                 **(book or {})},
                   "sentinel": label and {k: label[k] for k in ("label", "event_risk", "hype")},
                   **(self.copilots.payload(sym) if self.copilots is not None else {})}
        plan = self.advisor.verdict(key, sym, payload)
        if plan is None:
            self._skip(res, sym, "ai_pending", side=side, **got.info)
            return None
        if not plan.take:
            self._skip(res, sym, "ai_veto", side=side, ai=plan.explanation, **got.info)
            return None
        return dataclasses.replace(got, ai=plan)

    def _follow_shadows(self, candles: Mapping[str, tuple[Candles, Candles]], now: int) -> None:
        """Settle the vetoed signals the closed candles now decide and teach the alpha model
        their R (``mraster.shadows``), before this cycle's decisions. One whose candles cannot
        be read is dropped once it would have expired anyway."""
        open_ = self.shadows
        if not self.s["ASTER_ALPHA_SHADOW"]:  # switched off while some were open
            open_.clear()
        if not open_:
            return
        ms, left, lessons = INTERVAL_MS[self.s["ASTER_INTERVAL"]], [], []
        for sh in open_:
            ltf = candles.get(sh["symbol"], (None, None))[0]
            done = None if ltf is None else shadows.settle(sh, ltf.t, ltf.h, ltf.l, ms)
            if done is None and (ltf is not None or now < sh["t"] + (shadows.MAX_AGE + 2) * ms):
                left.append(sh)
            elif done is not None and done[1] is not None:
                lessons.append((done[0], sh, done[1]))
        open_[:] = left
        shadows.teach(self.policy, lessons)

    def _decision_context(self, paused: bool, symbols: list[str]) -> dict[str, Any]:
        """What the evaluator decides from besides the market, as this cycle's evaluation saw
        it (recorded for the audit): the portfolio, the sentinel's labels, the copilots' inputs
        and the policy (only when it changed: it learns when a trade closes)."""
        pf = self.portfolio(paused=paused)
        out: dict[str, Any] = {
            "held": [p.symbol for p in pf.positions.values()],
            "cool": {k: v for k, v in pf.cooldowns.items() if v > pf.now_ms},
            "off": sorted(pf.off_limits), "reducing": pf.reducing, "locked": sorted(pf.locked),
            "paused": paused, "now": pf.now_ms,
            "labels": {sym: [lab["label"], lab["event_risk"]] for sym in symbols
                       if (lab := self._label(sym))}}
        if self.copilots is not None:
            out["pm"] = {sym: self.copilots.pm_inputs(sym) for sym in symbols}
            out["tight"] = ((self.copilots.book.get("playbook") or {}).get("tighten")) or {}
        learned = (sum(a.n for a in self.policy.arms.values()), self.policy.alpha_model.count)
        if learned != self._policy_recorded or self.recorder.fresh:
            self._policy_recorded = learned
            out["policy"] = self.policy.to_dict()
        return out

    def _learning(self) -> dict[str, Any]:
        """Where the alpha model stands, for the page: a model that vetoes, or has not yet
        seen enough outcomes to, changes what the bot does, and only its weights said so."""
        m = self.policy.alpha_model
        return {"alpha": bool(self.s["ASTER_ALPHA_ENABLED"]), "lessons": m.count,
                "warmup": m.warmup,
                "shadows": len(self.shadows) if self.s["ASTER_ALPHA_SHADOW"] else None}

    async def _book(self, it: Intent, equity: float, used: float) -> dict[str, Any] | None:
        """Depth, imbalance and the planned order's slippage (``strategy.orderbook``); None when
        the book cannot be read (the advisor then sees the top of book only)."""
        s, sym = self.s, it.symbol
        price = it.snapshot.ask if it.side.value == "BUY" else it.snapshot.bid
        order = plan_order(side=it.side.value, price=price, atr=it.features.atr, equity=equity,
                           used_margin=used, rules=self.rules[sym],
                           mult=size_multiplier(it.decision.bucket, it.confidence, s),
                           max_leverage=self.leverage_set.get(sym, int(s["ASTER_LEVERAGE"])), s=s)
        try:
            depth = await self.ex.depth(sym, DEPTH_LIMIT)
        except E.ExchangeError as exc:
            log.warning("order book of %s unavailable for the advisor: %s", sym, exc)
            return None
        return book_context(depth.get("bids", []), depth.get("asks", []), it.side.value,
                            float(order.qty))

    async def _manage(self, candles: dict[str, tuple[Candles, Candles]],
                      snaps: dict[str, Snapshot], now: int) -> None:
        """FastTP (see ``mraster.strategy.fasttp``); the guard then moves the order."""
        self._moving = {}
        for pos in self.state["positions"].values():
            sym = pos.symbol
            if sym not in candles or sym not in snaps or not pos.is_open:
                continue
            price, hit, moved = exit_moves(pos, snaps[sym], candles[sym][0].c, now, self.s)
            if hit is not None:
                old, (new_tp, facts) = pos.take_profit, hit
                pos.take_profit, pos.fasttp_at = new_tp, now
                self._moving[(pos.token, "tp")] = "fasttp"
                self.emit("fasttp", symbol=sym, old_tp=old, new_tp=new_tp, **facts)
            if moved is not None:  # the guard replaces the stop order (new one first)
                old_stop, (pos.stop, rule) = pos.stop, moved
                pos.stop_rule = rule
                self._moving[(pos.token, "stop")] = rule
                self.emit("stop_moved", symbol=sym, rule=rule, old_stop=old_stop,
                          new_stop=pos.stop, r=round(pos.r_at(price), 3))


def _last_open(ltf: Candles) -> int | None:
    """The open time of the last closed candle of ``ltf`` (None when there is none)."""
    return int(ltf.t[-1]) if len(ltf) else None

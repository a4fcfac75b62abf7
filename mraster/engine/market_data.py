"""Market data for the engine: the universe, quotes, closed candles and their indicators, and
the sentinel's labels.

Candles are cached per (symbol, interval) and refreshed incrementally; in a backtest they come
straight from the replay's precomputed windows (``Engine.data``), so both paths hand the evaluator
the same closed-candle windows. A mixin of ``Engine`` (it uses the engine's exchange, settings and
state).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Container, Mapping

import numpy as np

from mraster.ai import anomalies, sentinel
from mraster.engine.reconciler import by_symbol
from mraster.exchange import errors as E
from mraster.exchange.together import together
from mraster.sim.market import INTERVAL_MS
from mraster.strategy.filters import Snapshot
from mraster.strategy.signals import HTF_WINDOW, LTF_WINDOW, Candles, features, rsi_signal
from mraster.words import words

log = logging.getLogger("mraster.engine")
KLINES_IN_FLIGHT = 16          # kline requests at once (a symbol's two windows leave together)
FUNDING_SAMPLE_MS = 3_600_000  # the sentinel keeps one funding sample per symbol and hour...
FUNDING_SAMPLES = 72           # ...for three days


# a shock's direction is part of the sentence (numbers are formatted by the reader)
SHOCK_UP = "{symbol}: market shock (+{change} % in 24 h), event risk {risk}; no new entries until it fades"
SHOCK_DOWN = "{symbol}: market shock (−{change} % in 24 h), event risk {risk}; no new entries until it fades"


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
        got = self.cached(symbol, interval, now)
        if got is not None:
            return got
        key = (symbol, interval)
        arr = await self.update(ex, symbol, interval, window + 1)  # + the forming candle
        done = (arr[arr[:, 6] < now] if len(arr) else arr)[-window:]
        self.closed[key] = Candles(done[:, 0].astype(np.int64), done[:, 1], done[:, 2], done[:, 3],
                                   done[:, 4], done[:, 5])
        return self.closed[key]

    def cached(self, symbol: str, interval: str, now: int) -> Candles | None:
        """The window of the last fetch while no candle has closed since (no request)."""
        key = (symbol, interval)
        have = self.rows.get(key)
        if have is not None and len(have) and have[-1, 6] >= now and key in self.closed:
            return self.closed[key]
        return None

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


def snapshot(sym: str, tickers: dict[str, dict], books: dict[str, dict],
             prems: dict[str, dict]) -> Snapshot | None:
    """The quotes the filters judge (None when the exchange did not quote the symbol)."""
    if sym not in books or sym not in prems:
        return None
    b, p = books[sym], prems[sym]
    return Snapshot(bid=float(b["bidPrice"]), ask=float(b["askPrice"]),
                    quote_volume=float(tickers.get(sym, {}).get("quoteVolume", 0)),
                    mark=float(p["markPrice"]), index=float(p["indexPrice"]),
                    funding=float(p["lastFundingRate"]), bid_qty=float(b.get("bidQty") or 0),
                    ask_qty=float(b.get("askQty") or 0))


@dataclass(frozen=True)
class Quotes:
    """One moment's quotes as the cycle reads them. Live and in paper mode they are parsed
    from the exchange's 24 h ticker, book and premium rows (``quotes_from_rows``); on a
    backtest's engine steps they come from the replay's arrays (``backtest.quotes``): the same
    numbers, without three rows per symbol made and parsed again at every step."""

    now: int  # the market's clock: the premium index's stamp
    volume: Callable[[str], float]  # the 24 h quote volume (0 for a symbol not quoted)
    snapshot: Callable[[str], Snapshot | None]  # None: the symbol is not quoted
    change_pct: Callable[[str], float]  # the 24 h change in %
    tickers: Mapping[str, dict] | None = None  # the ticker rows, when read (the market table)


def quotes_from_rows(tick_rows: list[dict], book_rows: list[dict], prem_rows: list[dict],
                     clock: Callable[[], int]) -> Quotes:
    """The quotes of the bulk ticker, book and premium answers; ``clock``: the time when the
    premium rows carry none."""
    tickers, books, prems = (by_symbol(r) for r in (tick_rows, book_rows, prem_rows))
    # the market's own clock (the premium index is stamped by the exchange), so candle
    # closes are judged on the exchange's time even when this machine's clock drifts
    now = max([int(r.get("time") or 0) for r in prems.values()] + [0]) or clock()
    return Quotes(now, lambda sym: float(tickers.get(sym, {}).get("quoteVolume", 0)),
                  lambda sym: snapshot(sym, tickers, books, prems),
                  lambda sym: float(tickers.get(sym, {}).get("priceChangePercent", 0)), tickers)


class MarketData:
    """Mixed into ``Engine``."""

    def universe(self, volume: Callable[[str], float] = lambda sym: 0.0) -> list[str]:
        """The symbols the cycle scans, by 24 h quote ``volume``, largest first."""
        s = self.s
        syms = [r.symbol for r in self.rules.values()
                if r.status == "TRADING" and r.quote == s["ASTER_QUOTE"]]
        if s["ASTER_SYMBOLS"]:
            syms = [x for x in syms if x in s["ASTER_SYMBOLS"]]
        syms = [x for x in syms if x not in s["ASTER_EXCLUDE_SYMBOLS"]]
        syms.sort(key=lambda x: -volume(x))
        if s["ASTER_UNIVERSE_MAX"]:
            syms = syms[: s["ASTER_UNIVERSE_MAX"]]
        return syms

    def _weight(self) -> int | None:
        """Request weight booked so far (None for adapters without a rate-limit governor)."""
        gov = getattr(self.ex, "governor", None)
        return gov.total_weight if gov else None

    async def _fetch_candles(self, symbols: list[str], now: int) -> dict[str, tuple[Candles, Candles]]:
        if self.data is not None:  # a backtest: the same windows, straight from the replay
            return {sym: c for sym in dict.fromkeys(symbols)
                    if (c := self.data.candles(sym, now)) is not None}
        out: dict[str, tuple[Candles, Candles]] = {}
        s, later, asks = self.s, [], 1
        for sym in dict.fromkeys(symbols):  # most cycles no candle closed: no task needed
            lt = self.cache.cached(sym, s["ASTER_INTERVAL"], now)
            ht = self.cache.cached(sym, s["ASTER_HTF_INTERVAL"], now)
            if lt is not None and ht is not None:
                out[sym] = (lt, ht)
            else:
                later.append(sym)
                asks = max(asks, (lt is None) + (ht is None))
        # symbols at once, so that KLINES_IN_FLIGHT requests are: after a signal candle closed
        # each symbol asks one window, and eight symbols at a time (as for two) left half the
        # slots unused (200 symbols: 25 round trips instead of 13)
        sem = asyncio.Semaphore(KLINES_IN_FLIGHT // asks)

        async def one(sym: str) -> None:
            async with sem:  # a symbol's two timeframes are independent: asked together
                lt, ht = await together(
                    self.ex,
                    self.cache.candles(self.ex, sym, s["ASTER_INTERVAL"], LTF_WINDOW, now),
                    self.cache.candles(self.ex, sym, s["ASTER_HTF_INTERVAL"], HTF_WINDOW, now),
                    return_exceptions=True)
            for got in (lt, ht):
                if isinstance(got, BaseException) and not isinstance(got, E.ExchangeError):
                    raise got
            for got in (lt, ht):
                if isinstance(got, E.ExchangeError):
                    log.warning("klines for %s failed: %s", sym, got)
                    return  # the symbol is skipped with reason data_error
            out[sym] = (lt, ht)
            self._features(sym, lt, ht)  # (cached) while the other symbols' candles are on the way
        await together(self.ex, *(one(sym) for sym in later))
        return out

    def _features(self, sym: str, ltf: Candles, htf: Candles):
        """Indicators depend on closed candles only: computed once per new candle."""
        if self.data is not None:  # a backtest: ADX only where it can matter (a signal)
            return self.data.features(sym, ltf, htf,
                                      adx_if=lambda f: rsi_signal(f, self.s).side is not None)
        key = (len(ltf) and int(ltf.t[-1]), len(htf) and int(htf.t[-1]), len(ltf), len(htf))
        hit = self._feature_cache.get(sym)
        if hit is None or hit[0] != key:
            hit = (key, features(ltf, htf))
            self._feature_cache[sym] = hit
        return hit[1]

    @property
    def sentinel_on(self) -> bool:
        """The sentinel is rule-based and runs in every mode when enabled (no AI key needed)."""
        return bool(self.s["ASTER_AI_SENTINEL_ENABLED"])

    def _label(self, sym: str) -> dict[str, Any] | None:
        """The symbol's sentinel label while the sentinel is on."""
        return self.state.get("sentinel", {}).get(sym) if self.sentinel_on else None

    async def _watch_markets(self, universe: list[str], tickers: dict[str, dict], now: int,
                             unread: Container[str] = ()) -> None:
        """The sentinel's labels of the ``universe``. ``unread``: symbols a backtest's step
        decides without reading their label (skips its bulk screen knows); theirs is dropped
        rather than worked out (a backtest's state is not shown, and a stale label must not be
        read by mistake)."""
        if not self.sentinel_on:
            return
        decay = self.s["ASTER_AI_SENTINEL_DECAY_MINUTES"]
        if self.data is not None:  # a backtest: the same labels however many steps it skipped
            labels = self.state.setdefault("sentinel", {})
            for sym in universe:
                if sym in unread:
                    labels.pop(sym, None)
                else:
                    labels[sym] = self.data.sentinel_label(sym, now, decay)
            return
        items: list = []
        if self.news is not None:
            from mraster.ai.news import for_symbol  # httpx and its CLI: only with a news feed

            items, why = await self.news.latest()
            if why and not self._news_failing:
                self.alert("warning", words("{why}; the sentinel works from market data alone "
                                            "until it answers again", why=why))
            self._news_failing = bool(why)
        labels = self.state.setdefault("sentinel", {})
        for sym in universe:
            if sym not in tickers:
                continue
            before = labels.get(sym)
            about = for_symbol(items, sym, now, int(decay * 60_000)) if items else []
            labels[sym] = sentinel.update(before, tickers[sym], now, decay, about)
            lab = labels[sym]
            if lab["label"] == "red" and (before is None or before["label"] != "red"):
                risk = round(lab["event_risk"], 2)
                self.alert("warning", words(
                    "{symbol}: news “{headline}”, event risk {risk}; no new entries until it fades",
                    symbol=sym, headline=lab["news"][0], risk=risk) if lab.get("news") else words(
                    SHOCK_UP if lab["change_pct"] > 0 else SHOCK_DOWN, symbol=sym,
                    change=round(abs(lab["change_pct"]), 1), risk=risk), sym)

    def _watch_anomalies(self, snaps: dict[str, Snapshot], candles: dict[str, tuple[Candles, Candles]],
                         now: int) -> None:
        """Unusual funding rates and volatility spikes become notices, once per episode."""
        if not self.sentinel_on or self.data is not None:
            return
        w = self.state.setdefault("watch", {})
        history, alerted = w.setdefault("funding", {}), set(w.get("funding_alerted", []))
        rates = {sym: snap.funding for sym, snap in snaps.items()}
        market = anomalies.RestOfMarket(list(rates.values()))  # each rate against the others
        for sym, rate in rates.items():
            hist = history.setdefault(sym, [])
            found = anomalies.funding_anomaly(rate, [r for _, r in hist], market,
                                              self.s["ASTER_SENTINEL_FUNDING_Z"])
            if found and sym not in alerted:
                self.alert("warning", anomalies.funding_words(sym, found), sym)
                self.emit("funding_anomaly", symbol=sym, **found)
            (alerted.add if found else alerted.discard)(sym)
            if not hist or now - hist[-1][0] >= FUNDING_SAMPLE_MS:
                hist.append([now, rate])
                del hist[:-FUNDING_SAMPLES]
        for sym in [x for x in history if x not in rates]:
            del history[sym]  # left the universe: its history goes (the file stays small)
        w["funding_alerted"] = sorted(alerted & set(rates))
        spikes = w.setdefault("spikes", {})
        for sym, (ltf, _) in candles.items():
            if not len(ltf):
                continue
            last = int(ltf.t[-1])
            seen = spikes.get(sym)
            if seen and seen["t"] == last:
                continue  # this candle was judged already
            found = anomalies.volatility_spike(ltf.o, ltf.h, ltf.l, ltf.c,
                                               self.s["ASTER_SENTINEL_SPIKE_MULT"])
            if found and not (seen and seen["on"]):
                self.alert("warning", anomalies.spike_words(sym, found), sym)
                self.emit("volatility_spike", symbol=sym, **found)
            spikes[sym] = {"t": last, "on": found is not None}

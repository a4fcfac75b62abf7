"""Market-hygiene filters and the oracle-aware non-arbitrage guard. Each returns a reason code
(None = passes) so that every skipped symbol carries a named reason.

The filters take one symbol's numbers, or arrays of many moments at once (a backtest screens its
whole history in one pass): the same expressions, elementwise, with an array of reason codes
back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from mraster.strategy.elementwise import many, ops

REASONS = {
    "min_qvol": "24h quote volume below ASTER_MIN_QUOTE_VOL_USDT",
    "spread": "bid/ask spread wider than ASTER_SPREAD_BPS_MAX",
    "wicky": "last candle mostly wick (ASTER_WICKINESS_MAX)",
    "funding_long": "funding too high for a long (ASTER_FUNDING_MAX_LONG)",
    "funding_short": "funding too negative for a short (ASTER_FUNDING_MAX_SHORT)",
    "oracle_gap": "mark price too far from the index (ASTER_NON_ARB_SKIP_GAP)",
    "non_arb_bias_long": "funding edge after the premium clamp works against a long",
    "non_arb_bias_short": "funding edge after the premium clamp works against a short",
    "edge_r": "expected edge below ASTER_MIN_EDGE_R",
    "few_klines": "not enough closed candles yet",
    "data_error": "market data for the symbol could not be fetched this cycle",
    "no_signal": "RSI and trend give no entry",
    "trend_misaligned": "signal and higher timeframe trends disagree (ASTER_ALLOW_TREND_ALIGN)",
    "max_open_symbol": "already holding this symbol (ASTER_MAX_OPEN_PER_SYMBOL)",
    "max_open_global": "maximum open positions reached (ASTER_MAX_OPEN_GLOBAL)",
    "min_notional": "risk-sized order is below the exchange's minimum notional",
    "exposure": "margin budget used up (ASTER_EQUITY_FRACTION × leverage)",
    "risk_cap": "the order would exceed a limit (leverage, notional or risk per trade)",
    "policy_skip": "the bandit policy chose SKIP",
    "alpha_veto": "the alpha model's win probability is below ASTER_ALPHA_THRESHOLD (with "
                  "ASTER_ALPHA_SHADOW on it follows the signal without an order and learns how "
                  "it would have ended)",
    "paused": "autonomy paused by the user",
    "ai_pending": "waiting for the AI advisor's review (decided on a following cycle)",
    "ai_veto": "the AI advisor advised against this trade",
    "sentinel_block": "market shock: the sentinel's red label blocks new entries for a while",
    "playbook_block": "the playbook blocks this side or symbol for a while (reason and expiry on "
                      "the AI tab)",
    "cooldown": "closed by hand recently (ASTER_MANUAL_CLOSE_COOLDOWN_MINUTES)",
    "order_failed": "the exchange refused the entry",
    "external_position": "a position the bot did not open is held on this symbol: it is left "
                         "alone (no entry, add, flip or brackets)",
    "reducing": "a circuit breaker is on (daily loss, drawdown or losing streak): no new trades "
                "until it lifts; stops and take-profits keep working",
    "symbol_locked": "repeated stop-outs on this symbol: it is locked for a while",
    "open_risk_cap": "the total risk of the open positions would pass ASTER_MAX_OPEN_RISK",
    "notional_cap": "the total notional of the open positions would pass "
                    "ASTER_MAX_TOTAL_NOTIONAL_X times equity",
    "margin_mode": "the margin mode (ASTER_MARGIN_TYPE) could not be set on this symbol: it has "
                   "open orders or a position",
    "liquidation_risk": "even at leverage 1 the stop would not trigger before the liquidation "
                        "price (with ASTER_LIQUIDATION_BUFFER to spare)",
    "stopping": "the bot is stopping: no new trades",
    "entry_unknown": "an earlier entry's outcome is not known yet; it is looked up first",
    "no_quote": "no book ticker or premium data for the symbol",
}

# a few words for where a sentence does not fit (the heatmap's tiles, the tables of skip reasons,
# where two reasons with the same words read as one counted twice); the sentence is the tooltip
LABELS = {
    "min_qvol": "low volume", "spread": "wide spread", "wicky": "wicky candle",
    "funding_long": "funding (long)", "funding_short": "funding (short)",
    "oracle_gap": "oracle gap", "non_arb_bias_long": "funding edge (long)",
    "non_arb_bias_short": "funding edge (short)",
    "edge_r": "edge too small", "few_klines": "too few candles", "data_error": "no data",
    "no_signal": "no signal", "trend_misaligned": "against the trend", "max_open_symbol": "held",
    "max_open_global": "position limit", "min_notional": "too small", "exposure": "margin used up",
    "risk_cap": "risk limit", "policy_skip": "policy skip", "alpha_veto": "alpha veto",
    "paused": "paused", "ai_pending": "AI reviewing", "ai_veto": "AI veto",
    "sentinel_block": "market shock", "playbook_block": "playbook block", "cooldown": "cooldown",
    "order_failed": "refused", "external_position": "not the bot's", "reducing": "breaker on",
    "symbol_locked": "locked", "open_risk_cap": "open risk limit", "notional_cap": "notional limit",
    "margin_mode": "margin mode", "liquidation_risk": "liquidation risk", "stopping": "stopping",
    "entry_unknown": "entry unknown", "no_quote": "no quote",
}


# An array screen (a backtest's history, the cycle's whole universe) carries reasons and sides as
# one byte each, an index into these tables with 0 for None: object arrays of names cost a Python
# comparison per element on every check, about a tenth of a year's backtest. The helpers below
# take a name or an array of codes, so each formula is still written once for both.
REASON_CODES: tuple[str | None, ...] = (None, "signal", *REASONS)
SIDE_CODES: tuple[str | None, ...] = (None, "BUY", "SELL")
_REASON = {name: np.uint8(k) for k, name in enumerate(REASON_CODES)}
_SIDE = {name: np.uint8(k) for k, name in enumerate(SIDE_CODES)}
_REASON_NAMES, _SIDE_NAMES = (np.array(t, dtype=object) for t in (REASON_CODES, SIDE_CODES))


def _coded(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.dtype == np.uint8


def is_side(x: Any, name: str | None) -> Any:
    """Whether the side (a name or None, or codes) is ``name``."""
    return x == _SIDE[name] if _coded(x) else x == name


def reason_codes(x: Any) -> Any:
    """A reason as codes: an array of codes stays, one name (or None) becomes its code."""
    return x if _coded(x) else _REASON[x]


def reason_names(codes: np.ndarray) -> np.ndarray:
    """An array screen's reasons as names (None where none)."""
    return _REASON_NAMES[codes]


def side_names(codes: np.ndarray) -> np.ndarray:
    return _SIDE_NAMES[codes]


def side_codes(buy: np.ndarray, passed: np.ndarray) -> np.ndarray:
    """BUY where ``buy``, SELL elsewhere, no side where not ``passed``."""
    return np.where(passed, np.where(buy, _SIDE["BUY"], _SIDE["SELL"]), _SIDE[None])


def unless(x: Any, name: str) -> Any:
    """The reason, or None where it is ``name``."""
    if _coded(x):
        return np.where(x == _REASON[name], _REASON[None], x)
    return None if x == name else x


def first_reason(*checks: tuple[str, Any]) -> Any:
    """The first reason whose condition holds, None when none does; for array conditions an
    array of reason codes (0 where every check passes)."""
    if not many(*(c for _, c in checks)):
        return next((reason for reason, cond in checks if cond), None)
    shape = np.broadcast_shapes(*(np.shape(c) for _, c in checks))
    out = np.zeros(shape, np.uint8)
    for reason, cond in reversed(checks):
        where = cond if np.shape(cond) == shape else np.broadcast_to(cond, shape)
        out[where] = _REASON[reason]
    return out


def pick(cond: Any, a: Any, b: Any) -> Any:
    """``a if cond else b``, elementwise when ``cond`` is an array."""
    return ops(cond).where(cond, a, b)


@dataclass
class Snapshot:
    """Per-symbol market data from the cycle's bulk requests."""

    bid: float
    ask: float
    quote_volume: float
    mark: float
    index: float
    funding: float
    bid_qty: float = 0.0  # top-of-book sizes: the advisor's order-book context
    ask_qty: float = 0.0

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Any:
        mid = self.mid
        if np.ndim(mid):
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(mid > 0, (self.ask - self.bid) / mid, 1.0)
        return (self.ask - self.bid) / mid if mid > 0 else 1.0

    @property
    def premium_gap(self) -> Any:
        """(mark − index) / index; None (NaN in arrays) without an index price."""
        if np.ndim(self.index):
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(self.index > 0, (self.mark - self.index) / self.index, np.nan)
        return (self.mark - self.index) / self.index if self.index > 0 else None


def market_filters(snap: Snapshot, wickiness: Any, s: Mapping[str, Any]) -> Any:
    """Side-independent checks."""
    return first_reason(("min_qvol", snap.quote_volume < s["ASTER_MIN_QUOTE_VOL_USDT"]),
                        ("spread", snap.spread > s["ASTER_SPREAD_BPS_MAX"]),
                        ("wicky", wickiness > s["ASTER_WICKINESS_MAX"]))


def side_filters(snap: Snapshot, side: Any, s: Mapping[str, Any]) -> Any:
    """Funding and non-arbitrage checks for a trade's side."""
    buy, sell = is_side(side, "BUY"), is_side(side, "SELL")
    checks: list[tuple[str, Any]] = []
    if s["ASTER_FUNDING_FILTER_ENABLED"]:
        checks += [("funding_long", buy & (snap.funding > s["ASTER_FUNDING_MAX_LONG"])),
                   ("funding_short", sell & (snap.funding < -s["ASTER_FUNDING_MAX_SHORT"]))]
    gap = snap.premium_gap
    if s["ASTER_NON_ARB_FILTER_ENABLED"] and gap is not None:
        xp = ops(gap)
        has = xp.logical_not(xp.isnan(gap))  # an index price to compare with
        clamp = s["ASTER_NON_ARB_CLAMP_BPS"]
        # what the side pays (long) or earns (short) beyond the premium
        edge = snap.funding - xp.clip(gap, -clamp, clamp)
        thr = s["ASTER_NON_ARB_EDGE_THRESHOLD"]
        with xp.errstate(invalid="ignore"):
            checks += [("oracle_gap", has & (xp.abs(gap) > s["ASTER_NON_ARB_SKIP_GAP"])),
                       ("non_arb_bias_long", has & buy & (edge > thr)),
                       ("non_arb_bias_short", has & sell & (edge < -thr))]
    return first_reason(*checks)

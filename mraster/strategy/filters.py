"""Market-hygiene filters and the oracle-aware non-arbitrage guard. Each returns a reason code
(None = passes) so that every skipped symbol carries a named reason."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

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
    "alpha_veto": "the alpha model's win probability is below ASTER_ALPHA_THRESHOLD",
    "paused": "autonomy paused by the user",
    "ai_pending": "waiting for the AI advisor's review (decided on a following cycle)",
    "ai_veto": "the AI advisor advised against this trade",
    "sentinel_block": "market shock: the sentinel's red label blocks new entries for a while",
    "cooldown": "closed by hand recently (ASTER_MANUAL_CLOSE_COOLDOWN_MINUTES)",
    "order_failed": "the exchange refused the entry",
    "no_quote": "no book ticker or premium data for the symbol",
}


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
    def spread(self) -> float:
        return (self.ask - self.bid) / self.mid if self.mid > 0 else 1.0


def market_filters(snap: Snapshot, wickiness: float, s: Mapping[str, Any]) -> str | None:
    """Side-independent checks."""
    if snap.quote_volume < s["ASTER_MIN_QUOTE_VOL_USDT"]:
        return "min_qvol"
    if snap.spread > s["ASTER_SPREAD_BPS_MAX"]:
        return "spread"
    if wickiness > s["ASTER_WICKINESS_MAX"]:
        return "wicky"
    return None


def side_filters(snap: Snapshot, side: str, s: Mapping[str, Any]) -> str | None:
    """Funding and non-arbitrage checks for a trade's side."""
    if s["ASTER_FUNDING_FILTER_ENABLED"]:
        if side == "BUY" and snap.funding > s["ASTER_FUNDING_MAX_LONG"]:
            return "funding_long"
        if side == "SELL" and snap.funding < -s["ASTER_FUNDING_MAX_SHORT"]:
            return "funding_short"
    if s["ASTER_NON_ARB_FILTER_ENABLED"] and snap.index > 0:
        gap = (snap.mark - snap.index) / snap.index
        if abs(gap) > s["ASTER_NON_ARB_SKIP_GAP"]:
            return "oracle_gap"
        clamp = s["ASTER_NON_ARB_CLAMP_BPS"]
        clamped = min(max(gap, -clamp), clamp)
        edge = snap.funding - clamped  # what the side pays (long) or earns (short) beyond premium
        thr = s["ASTER_NON_ARB_EDGE_THRESHOLD"]
        if side == "BUY" and edge > thr:
            return "non_arb_bias_long"
        if side == "SELL" and edge < -thr:
            return "non_arb_bias_short"
    return None

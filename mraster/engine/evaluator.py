"""The evaluator: what to do about one symbol, decided from what is known now, with no I/O.

``decide(snapshot, features, portfolio, settings)`` runs the same chain everywhere (live, paper,
the simulator, a backtest): market hygiene, the RSI signal and its higher-timeframe trend, the
edge in R, funding and the mark/oracle gap, the sentinel's label, the entry gate (the user's
limits, breakers, cooldowns, positions the bot does not own), then the policy (bandit and alpha
model). Its answer is an ``Intent`` (open this side) or a ``Skip`` with the reason shown to the
user. Sizing and sending are the executor's; the optional LLM advisor is asked after this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from mraster.domain import Intent, Position, Side
from mraster.policy import build_features
from mraster.risk import entry_gate
from mraster.strategy.filters import Snapshot
from mraster.strategy.screen import MARKET_REASONS, SIGNAL_REASONS, Screen, policy_context, screen
from mraster.strategy.signals import Features


@dataclass(frozen=True)
class Portfolio:
    """What the account holds and allows right now, as far as a new entry is concerned."""
    positions: Mapping[str, Position]
    cooldowns: Mapping[str, float] = field(default_factory=dict)
    off_limits: frozenset[str] = frozenset()  # symbols with a position the bot does not own
    reducing: bool = False                     # an account-level breaker is on
    locked: frozenset[str] = frozenset()       # symbols a per-symbol breaker locked
    paused: bool = False
    now_ms: int = 0

    def gate(self, symbol: str, s: Mapping[str, Any]) -> str | None:
        """Reason code when the user's limits do not allow a new entry on ``symbol`` now."""
        return entry_gate(symbol, self.positions, s, paused=self.paused,
                          cooldown_until=int(self.cooldowns.get(symbol, 0)), now_ms=self.now_ms,
                          off_limits=self.off_limits, reducing=self.reducing, locked=self.locked)


class Passed(NamedTuple):
    """A candidate a backtest's bulk screen passed, as it hands it to an engine step: the
    features and screen the step would work out from its candles, the open time of its last
    closed signal candle, whether its sentinel label is red there, and the policy's features
    of it (``policy.build_features``: the numbers the walk's verdicts read)."""
    features: Features
    screen: Screen
    candle_t: int
    red: bool
    policy_features: dict[str, float]


@dataclass(frozen=True)
class Skip:
    """No entry, and why (a reason code of ``strategy.filters.REASONS``) with its figures."""
    reason: str
    info: dict[str, Any]
    policy_features: Mapping[str, float] | None = None  # an alpha veto's (for its shadow)


def decide(symbol: str, snap: Snapshot, f: Any, portfolio: Portfolio, s: Mapping[str, Any], *,
           policy: Any, label: Mapping[str, Any] | None = None,
           postmortem: Mapping[str, float | None] | None = None,
           screened: Screen | None = None,
           policy_features: dict[str, float] | None = None) -> Intent | Skip:
    """``f``: the indicators of the closed candles (None while there are too few);
    ``label``: the sentinel's label when it is on; ``postmortem``: the symbol's postmortem
    inputs to the policy (``ai.postmortem.policy_inputs``) when the copilots run; ``policy``: the
    bandit (``policy.BanditPolicy``); ``screened``: ``screen(f, snap, s)`` when already worked
    out (the cycle screens all its symbols at once, ``screen_each``), ``policy_features`` the
    policy's features of it (with the postmortem's) when a backtest's bulk screen did."""
    if f is None:
        return Skip("few_klines", {})
    info = {"rsi": round(f.rsi, 2), "htf_trend": f.htf_trend}
    if symbol in portfolio.off_limits:  # the user's position: said first, whatever the signal
        return Skip("external_position", info)
    sc = screened if screened is not None else screen(f, snap, s)
    if sc.reason in MARKET_REASONS:
        return Skip(sc.reason, {"spread": round(snap.spread, 6),
                                "wickiness": round(f.wickiness, 3), **info})
    if sc.reason in SIGNAL_REASONS:
        return Skip(sc.reason, info)
    if sc.reason == "edge_r":
        return Skip("edge_r", {"side": sc.side, "expected_r": round(sc.expected_r, 3), **info})
    if sc.reason:  # funding and non-arbitrage
        gap = snap.premium_gap
        return Skip(sc.reason, {"side": sc.side, "funding": snap.funding,
                                "gap": None if gap is None else round(gap, 6), **info})
    if label and label["label"] == "red":
        return Skip("sentinel_block", {"side": sc.side, "event_risk": label["event_risk"], **info})
    gate = portfolio.gate(symbol, s)
    if gate:
        return Skip(gate, {"side": sc.side, **info})
    feats = policy_features
    if feats is None:
        ctx = policy_context(f, snap, sc)
        ctx.update(postmortem or {})
        feats = build_features(ctx)
    decision = policy.decide(feats)
    if decision.action == "SKIP":
        veto = "veto" in decision.reason
        return Skip("alpha_veto" if veto else "policy_skip",
                    {"side": sc.side, "policy": decision.to_dict(), **info},
                    feats if veto else None)
    # confidence: the alpha model's probability once it speaks, else the prior's distance above
    # a coin flip scaled to [0, 1] (the prior tops out at 0.65)
    p = sc.win_prob
    conf = decision.alpha_prob if decision.alpha_prob is not None else max(0.0, (p - 0.5) / 0.15)
    return Intent(symbol=symbol, side=Side(sc.side), expected_r=sc.expected_r, win_prob=p,
                  features=f, snapshot=snap, decision=decision, policy_features=feats,
                  confidence=conf, info=info)

"""PlaybookManager: the market regime, plain directives and structured risk adjustments.

Rules: breadth (the share of the universe up over 24 h) and the sentinel's labels give the regime —
``shock`` when a symbol is red or a fifth of the market is yellow, ``bullish`` at breadth ≥ 0.65,
``bearish`` at ≤ 0.35, else ``mixed``. Against the regime a side's size is cut (0.7), in a shock both
(0.6), and after four or more losses in the last five trades both again (× 0.8). With an LLM, its
playbook replaces the rules' but its size factors are clamped to [0.3, 1]: the playbook only ever
lowers risk. It is refreshed every ``ASTER_AI_PLAYBOOK_REFRESH_MINUTES``, attached to every advisor
payload and shown on the dashboard.

Beyond size it can act, each action with its reason and expiry: **block** a side or a symbol for a
while (a near one-way market blocks the side against it; two stop-outs in a row on a symbol sit
it out), **tighten** filters (a factor ≤ 1 on a maximum, an addition ≥ 0 to the minimum edge —
never the other way) and **bias** stop and target distances inside the tuner's clamps. An LLM
playbook may propose the same, clamped alike.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mraster.words import Words, words

if TYPE_CHECKING:
    from mraster.ai.answers import LLMPlaybook

SIZE_RANGE = (0.3, 1.0)
BLOCK_HOURS_MAX = 24.0
# filters a playbook may tighten: a maximum is multiplied by a factor in [0.5, 1]; the minimum
# edge gets an addition in [0, 0.5] R
TIGHTEN_MAX = ("ASTER_SPREAD_BPS_MAX", "ASTER_WICKINESS_MAX", "ASTER_FUNDING_MAX_LONG",
               "ASTER_FUNDING_MAX_SHORT")
TIGHTEN_ADD = ("ASTER_MIN_EDGE_R",)
FACTOR_RANGE, ADD_RANGE = (0.5, 1.0), (0.0, 0.5)
BIAS_RANGE = (0.8, 1.25)  # the same clamps as the tuner's stop (0.8–1) and target (0.8–1.3)
ONE_WAY = 0.85            # breadth beyond which the side against the market is blocked
SYSTEM = ("You keep the trading playbook of a crypto perpetual-futures bot. From the market "
          "overview reply with one JSON object: {\"regime\": one of bullish|bearish|mixed|shock, "
          "\"directives\": list of at most 4 short sentences, \"size_factor\": {\"BUY\": n, "
          "\"SELL\": n} (0.3..1, 1 = normal size), \"blocks\": list of at most 4 {\"side\": "
          "BUY|SELL|null, \"symbol\": string|null, \"hours\": 0..24, \"reason\": string}, "
          "\"tighten\": {setting: number} for ASTER_SPREAD_BPS_MAX, ASTER_WICKINESS_MAX, "
          "ASTER_FUNDING_MAX_LONG, ASTER_FUNDING_MAX_SHORT (factors 0.5..1) or ASTER_MIN_EDGE_R "
          "(added 0..0.5), \"bias\": {\"sl\": n, \"tp\": n} stop and target distance factors "
          "(0.8..1.25), \"note\": string of at most 40 words}.")


def overview(market: Mapping[str, Mapping[str, Any]], labels: Mapping[str, Mapping[str, Any]],
             history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    changes = [float(m.get("change_pct") or 0) for m in market.values()]
    n = len(changes)
    last = list(history)[-5:]
    streaks = {}
    for t in list(history)[-20:]:  # consecutive stop-outs per symbol, most recent last
        sym = t.get("symbol")
        streaks[sym] = streaks.get(sym, 0) + 1 if t.get("reason") == "stop" else 0
    return {"stop_streaks": {k: v for k, v in streaks.items() if v >= 2},
            "symbols": n, "breadth": round(sum(c > 0 for c in changes) / n, 3) if n else 0.5,
            "median_change_pct": round(sorted(changes)[n // 2], 3) if n else 0.0,
            "red": sorted(s for s, l in labels.items() if l.get("label") == "red"),
            "yellow": sorted(s for s, l in labels.items() if l.get("label") == "yellow"),
            "recent_losses": sum(1 for t in last if (t.get("r") or 0) < 0), "recent_trades": len(last)}


def _pct(share: float) -> int:
    """A share as whole percent (``f"{x:.0%}"`` rounds the same way)."""
    return int(f"{share * 100:.0f}")


def rule_playbook(ov: Mapping[str, Any], now_ms: int = 0, hours: float = 1.0) -> dict[str, Any]:
    """``hours``: how long its blocks last (the playbook is renewed before they end while the
    condition holds)."""
    size = {"BUY": 1.0, "SELL": 1.0}
    directives: list[Words] = []
    blocks: list[dict[str, Any]] = []
    reasons: list[Words] = []  # each block's, said after the directives

    def block(side: str | None, symbol: str | None, why: Words) -> None:
        blocks.append({"side": side, "symbol": symbol, "until": until, "reason": str(why),
                       "reason_words": why.to_dict()})
        reasons.append(why)
    tighten: dict[str, float] = {}
    bias = {"sl": 1.0, "tp": 1.0}
    until = now_ms + int(hours * 3_600_000)
    if ov["red"] or (ov["symbols"] and len(ov["yellow"]) >= 0.2 * ov["symbols"]):
        regime = "shock"
        size = {"BUY": 0.6, "SELL": 0.6}
        tighten = {"ASTER_SPREAD_BPS_MAX": 0.7, "ASTER_WICKINESS_MAX": 0.9}
        bias = {"sl": 1.0, "tp": 0.9}
        directives.append(words("Market shock: every new position at 60 % size, spread and wick "
                                "limits tightened, targets 10 % closer; red-labelled symbols are "
                                "not traded."))
    elif ov["breadth"] >= 0.65:
        regime = "bullish"
        size["SELL"] = 0.7
        directives.append(words("{share}% of the market is up over 24 h: shorts at 70 % size.",
                                share=_pct(ov["breadth"])))
    elif ov["breadth"] <= 0.35:
        regime = "bearish"
        size["BUY"] = 0.7
        directives.append(words("{share}% of the market is down over 24 h: longs at 70 % size.",
                                share=_pct(1 - ov["breadth"])))
    else:
        regime = "mixed"
        directives.append(words("No clear market direction: normal size both ways."))
    if ov["symbols"] and ov["breadth"] >= ONE_WAY:
        block("SELL", None, words("{share}% of the market is up over 24 h: no new shorts",
                                  share=_pct(ov["breadth"])))
    elif ov["symbols"] and ov["breadth"] <= 1 - ONE_WAY:
        block("BUY", None, words("{share}% of the market is down over 24 h: no new longs",
                                 share=_pct(1 - ov["breadth"])))
    for sym, n in sorted(ov.get("stop_streaks", {}).items()):
        block(None, sym, words("{n} stop-outs in a row on {symbol}: it sits out", n=n, symbol=sym))
    if ov["recent_trades"] >= 5 and ov["recent_losses"] >= 4:
        size = {k: round(v * 0.8, 4) for k, v in size.items()}
        tighten["ASTER_MIN_EDGE_R"] = 0.05
        directives.append(words("{n} of the last 5 trades lost: size cut by a further 20 %, "
                                "minimum edge raised by 0.05 R.", n=ov["recent_losses"]))
    directives += reasons
    return {"regime": regime, "directives": [str(d) for d in directives],
            "directives_words": [d.to_dict() for d in directives],  # the page's language
            "size_factor": size, "blocks": blocks,
            "tighten": tighten, "bias": bias, "source": "rules", "overview": dict(ov)}


def refresh_ms(s: Mapping[str, Any]) -> int:
    return int(s["ASTER_AI_PLAYBOOK_REFRESH_MINUTES"] * 60_000)


def due(pb: Mapping[str, Any] | None, now_ms: int, s: Mapping[str, Any]) -> bool:
    """Is a new playbook due (none yet, or the last one is a refresh period old)?"""
    return not pb or now_ms - pb.get("at", 0) >= refresh_ms(s)


def refreshed(ov: Mapping[str, Any], now_ms: int, s: Mapping[str, Any]) -> dict[str, Any]:
    """The rules' playbook for this overview, stamped: the engine's refresh and a backtest's
    idle stretches (``backtest.idle``) make the same one."""
    hours = max(1.0, 2 * s["ASTER_AI_PLAYBOOK_REFRESH_MINUTES"] / 60)
    return {**rule_playbook(ov, now_ms, hours), "at": now_ms}


def _clamp(x: float, lo_hi: tuple[float, float]) -> float:
    return min(max(float(x), lo_hi[0]), lo_hi[1])


def clamp_tighten(raw: Mapping[str, float]) -> dict[str, float]:
    """Only the filters a playbook may touch, and only tighter."""
    out = {k: round(_clamp(v, FACTOR_RANGE), 4) for k, v in raw.items() if k in TIGHTEN_MAX}
    out.update({k: round(_clamp(v, ADD_RANGE), 4) for k, v in raw.items() if k in TIGHTEN_ADD})
    return out


def tightened(s: Mapping[str, Any], pb: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The settings with the playbook's tightening applied (``s`` itself when there is none)."""
    t = (pb or {}).get("tighten") or {}
    if not t:
        return s
    out = dict(s)
    for k, v in clamp_tighten(t).items():
        out[k] = out[k] * v if k in TIGHTEN_MAX else out[k] + v
    return out


def blocked(pb: Mapping[str, Any] | None, symbol: str, side: str, now_ms: int
            ) -> dict[str, Any] | None:
    """The playbook's block that stops a ``side`` entry on ``symbol`` now, if any."""
    for b in (pb or {}).get("blocks") or []:
        if b["until"] > now_ms and (b.get("side") in (None, side)) and \
                (b.get("symbol") in (None, symbol)) and (b.get("side") or b.get("symbol")):
            return b
    return None


def from_llm(p: LLMPlaybook, ov: Mapping[str, Any], now_ms: int = 0) -> dict[str, Any]:
    size = {k: round(_clamp(p.size_factor.get(k, 1.0), SIZE_RANGE), 4) for k in ("BUY", "SELL")}
    blocks = [{"side": b.side, "symbol": b.symbol, "reason": b.reason[:300] or "the AI playbook",
               "until": now_ms + int(min(b.hours, BLOCK_HOURS_MAX) * 3_600_000)}
              for b in p.blocks[:4] if b.side or b.symbol]
    return {"regime": p.regime, "directives": [d[:300] for d in p.directives[:4]],
            "size_factor": size, "blocks": blocks, "tighten": clamp_tighten(p.tighten),
            "bias": {k: round(_clamp(p.bias.get(k, 1.0), BIAS_RANGE), 4) for k in ("sl", "tp")},
            "note": p.note, "source": "ai", "overview": dict(ov)}


def payload_view(pb: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part the advisor sees."""
    if not pb:
        return None
    return {k: pb.get(k) for k in ("regime", "directives", "size_factor", "blocks", "tighten",
                                  "bias")}

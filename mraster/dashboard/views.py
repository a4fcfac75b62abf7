"""Pure functions that turn the state file into what the page shows.

Nothing here reads files or the network; the routes pass the documents in. Secrets are not in the
state file, and the policy's matrices and the paper account's internals are left out on purpose:
they are large and mean nothing on a screen.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from mraster.dashboard.context import alert_id
from mraster.domain import positions_of
from mraster.metrics import max_drawdown, trade_stats
from mraster.market.indicators import ema, rsi
from mraster.risk import open_risk
from mraster.sim.market import INTERVAL_MS
from mraster.strategy.filters import LABELS, REASONS
from mraster.strategy.signals import EMA_FAST, EMA_SLOW, HTF_EMA, RSI_PERIOD

HISTORY_SHOWN = 500


def positions_view(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """No figure depends on the clock (the page counts ages): the view changes only when the
    state does, so an unchanged poll is answered 304."""
    out = []
    for token, p in positions_of(state).items():
        out.append({"token": token, "symbol": p.symbol, "side": p.side.value, "qty": p.qty,
                    "entry": p.entry, "mark": p.mark, "pnl": p.unrealized, "r": p.r_now,
                    "stop": p.stop, "initial_stop": p.initial_stop, "take_profit": p.take_profit,
                    # a trade found over whose booking waits for its brackets' cancel
                    # (``Position.ended_at``): its row must not read as a position held
                    "status": "ended" if p.ended_at else p.status.value,
                    "leverage": p.leverage,
                    "liquidation": p.liquidation or None,
                    "liquidation_distance": abs(p.mark - p.liquidation) / p.mark
                    if p.liquidation and p.mark else None,
                    "opened_at": p.opened_at,
                    "protection": protection_view(p)})
    return sorted(out, key=lambda x: x["symbol"])


def protection_view(p: Any) -> dict[str, Any]:
    """The last read-back of the position's brackets (``engine.protection_watch``)."""
    prot = p.protection or {}
    return {"status": prot.get("status", "unverified"), "since": prot.get("since"),
            "stop": prot.get("stop"), "tp": prot.get("tp"), "at_risk": prot.get("at_risk"),
            "funding": prot.get("funding", 0.0), "repairs": prot.get("repairs", 0),
            # figures the exchange did not give: the fee assumed, the funding unread since when
            "fee_rate": prot.get("fee_rate"), "fee_assumed": bool(prot.get("fee_assumed")),
            "funding_unread_since": prot.get("funding_unread_since"),
            "checked_at": prot.get("checked_at"),
            "problems": [f.get("detail", "") for f in prot.get("findings", [])],
            "problems_words": [f.get("words") or {"template": f.get("detail", ""), "params": {}}
                               for f in prot.get("findings", [])],  # older states: English
            "stop_liq_distance": abs(p.stop - p.liquidation) / p.mark
            if p.liquidation and p.mark else None}


def audit_view(a: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The bot's last daily live-versus-replay audit, trimmed for the page."""
    if not a:
        return None
    return {k: a.get(k) for k in ("at", "cycles", "compared", "matched", "divergent_total",
                                   "divergence_share", "not_replayable")} | {
        "divergent": list(a.get("divergent", []))[:20], "fills": list(a.get("fills", []))[-20:],
        "late_cycles": len(a.get("late_cycles", [])), "refusals": len(a.get("refusals", []))}


def alerts_view(state: Mapping[str, Any], extra: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The bot's, ``brackets_guard.py``'s and the dashboard's notices, and ``extra`` ones (files
    moved aside), less the dismissed ones."""
    dismissed = set(state.get("ui", {}).get("dismissed_alerts", []))
    alerts = [{**a, "source": a.get("source", "bot")} for a in state.get("alerts", [])]
    alerts += list(state.get("guard_alerts", [])) + list(state.get("dashboard_alerts", []))
    alerts += list(extra)
    out = [{**a, "id": alert_id(a)} for a in alerts]
    return sorted((a for a in out if a["id"] not in dismissed), key=lambda a: -a.get("time", 0))


def decisions_view(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for sym, d in state.get("decisions", {}).items():
        rows.append({"symbol": sym, "action": d.get("action"), "reason": d.get("reason"),
                     "why": d.get("why") or REASONS.get(d.get("reason", ""), d.get("reason")),
                     "side": d.get("side"), "rsi": d.get("rsi"), "htf_trend": d.get("htf_trend"),
                     "expected_r": d.get("expected_r")})
    return sorted(rows, key=lambda r: (r["action"] != "TAKE", r["symbol"]))


def commands_view(state: Mapping[str, Any]) -> dict[str, Any]:
    cmds = state.get("commands", {})
    acks = state.get("command_acks", {})
    inbox = [{**c, "ack": acks.get(c["id"])} for c in cmds.get("inbox", [])]
    return {"paused": bool(cmds.get("paused", False)),
            "paused_acknowledged": state.get("paused") == bool(cmds.get("paused", False)),
            "recent": list(reversed(inbox[-10:])),
            "pending": [c for c in inbox if c["ack"] is None]}


def history_view(state: Mapping[str, Any], trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest first, each with its trade notes: why it was taken (the AI's explanation, or who
    asked for it) and what its postmortem taught."""
    lessons = {(r.get("symbol"), r.get("closed_at")): r.get("lesson")
               for r in state.get("copilots", {}).get("reviews", [])}
    out = []
    for h in reversed(trades):
        notes = [h["ai"]] if h.get("ai") else []
        if h.get("origin") == "chat":
            notes.append("opened from a chat proposal you confirmed")
        lesson = lessons.get((h["symbol"], h.get("closed_at")))
        if lesson:
            notes.append(f"lesson: {lesson}")
        out.append({**h, "notes": notes})
    return out


def chat_view(state: Mapping[str, Any]) -> dict[str, Any]:
    """The conversation and the proposals, each with the bot's answer once it acted."""
    ch = state.get("chat", {})
    acks = state.get("command_acks", {})
    return {"log": ch.get("log", [])[-40:],
            "proposals": [{**p, "ack": acks.get(p.get("command_id"))}
                          for p in ch.get("proposals", [])[-10:]]}


def copilots_view(state: Mapping[str, Any]) -> dict[str, Any] | None:
    cop = state.get("copilots")
    if not cop:
        return None
    return {"playbook": cop.get("playbook"), "tuner": cop.get("tuner"),
            "llm_problem": cop.get("llm_problem"),
            "tuner_log": cop.get("tuner_log", [])[-10:],
            "postmortem": [{"symbol": k, **v} for k, v in sorted(cop.get("postmortem", {}).items())],
            "reviews": cop.get("reviews", [])[-10:]}


def state_view(state: Mapping[str, Any], budget: dict[str, Any] | None = None,
               file_alerts: list[dict[str, Any]] = (),
               performance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``performance``: the journal's figures over every trade (None: the state file's recent
    trades and curve)."""
    history = list(state.get("history", []))
    curve = state.get("equity_curve", [])
    stats = dict(state.get("stats", {}))
    return {
        "mode": state.get("mode"), "market_source": state.get("market_source"),
        "market_source_why": state.get("market_source_why"),
        "positions": positions_view(state),
        "external_positions": state.get("external_positions", []),
        "protection_log": list(reversed(state.get("protection_log", [])[-100:])),
        "audit": audit_view(state.get("audit")),
        "history": history_view(state, history[-HISTORY_SHOWN:]), "history_total": len(history),
        "equity_curve": curve,
        "performance": {**(performance or {**trade_stats(history), **max_drawdown(curve)}),
                        "equity": curve[-1][1] if curve else None},
        "decisions": decisions_view(state),
        "skip_reasons": [{"reason": k, "count": v, "label": LABELS.get(k, k), "why": REASONS.get(k, k)}
                         for k, v in sorted(stats.get("skipped", {}).items(), key=lambda kv: -kv[1])],
        "stats": stats, "telemetry": state.get("telemetry", {}),
        "market": [{"symbol": k, **v, **({"label": LABELS.get(v["reason"], v["reason"]),
                                           "why": REASONS.get(v["reason"], v["reason"])}
                                          if v.get("reason") else {})}
                   for k, v in state.get("market", {}).items()],
        "alerts": alerts_view(state, file_alerts), "commands": commands_view(state),
        "chart_symbol": state.get("ui", {}).get("chart_symbol"), "ticks": state.get("ticks", {}),
        "ai": state.get("ai", {"status": "off", "why": "the bot has not run yet"}),
        "ai_budget": budget, "chat": chat_view(state), "copilots": copilots_view(state),
        "sentinel": sorted(({"symbol": k, **v} for k, v in state.get("sentinel", {}).items()
                            if v.get("label") != "green"), key=lambda a: -a.get("event_risk", 0)),
        "breakers": state.get("protections", {}).get("active", []),
        "exposure": exposure_view(state),
    }


def exposure_view(state: Mapping[str, Any]) -> dict[str, Any]:
    """What the account holds right now, against equity: the figures the caps check."""
    positions = positions_of(state)
    risk, notional = open_risk(positions)
    t = state.get("telemetry", {})
    equity = t.get("equity") or 0.0
    return {"unrealized": round(sum(p.unrealized or 0.0 for p in positions.values()), 6),
            "margin_used": t.get("used_margin"), "notional": round(notional, 2),
            "open_risk": round(risk, 4),
            "notional_x": round(notional / equity, 3) if equity else None,
            "open_risk_pct": round(risk / equity, 5) if equity else None}


TIMEFRAMES = {"ltf": "ASTER_INTERVAL", "htf": "ASTER_HTF_INTERVAL"}


def _series(t: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """[time, value] pairs of an indicator, without its warm-up (NaN)."""
    ok = ~np.isnan(y)
    return np.column_stack([t[ok], np.round(y[ok], 10)]).tolist()


def chart_indicators(rows: list[list[float]], timeframe: str) -> dict[str, list[list[float]]]:
    """The strategy's own lines over the candles the bot judged: on the signal timeframe its
    EMAs and RSI, on the higher timeframe the EMA whose slope is the trend filter. The values
    at the last candle are the ones the bot decided on (the same window, the same formulas)."""
    if not rows:
        return {}
    a = np.asarray(rows, dtype=float)
    t, c = a[:, 0], a[:, 4]
    if timeframe == "htf":
        return {"ema_trend": _series(t, ema(c, HTF_EMA))}
    return {"ema_fast": _series(t, ema(c, EMA_FAST)), "ema_slow": _series(t, ema(c, EMA_SLOW)),
            "rsi": _series(t, rsi(c, RSI_PERIOD))}


def chart_view(state: Mapping[str, Any], symbol: str, settings: Mapping[str, Any],
               timeframe: str = "ltf") -> dict[str, Any]:
    """Candles of one timeframe with the strategy's indicators and the bot's entry, exit, stop
    and take-profit levels for one symbol."""
    published = state.get("charts", {}).get(symbol, {})
    if isinstance(published, list):  # a state file written before both timeframes were kept
        published = {"ltf": [r + [0.0] for r in published]}
    candles = published.get(timeframe, [])
    interval = settings[TIMEFRAMES[timeframe]]
    markers, lines = [], []
    for h in state.get("history", []):
        if h["symbol"] != symbol:
            continue
        markers.append({"time": h["opened_at"], "kind": "entry", "side": h["side"], "price": h["entry"]})
        if h.get("exit") is not None:
            markers.append({"time": h["closed_at"], "kind": "exit", "side": h["side"],
                            "price": h["exit"], "reason": h.get("reason"), "r": h.get("r")})
    for p in positions_of(state).values():
        if p.symbol != symbol:
            continue
        markers.append({"time": p.opened_at, "kind": "entry", "side": p.side.value, "price": p.entry})
        lines += [{"kind": "stop", "price": p.stop}, {"kind": "take_profit", "price": p.take_profit},
                  {"kind": "entry", "price": p.entry}]
    return {"symbol": symbol, "timeframe": timeframe, "interval": interval,
            "interval_s": INTERVAL_MS[interval] // 1000,
            "intervals": {k: settings[v] for k, v in TIMEFRAMES.items()},
            "candles": candles, "indicators": chart_indicators(candles, timeframe),
            "periods": {"ema_fast": EMA_FAST, "ema_slow": EMA_SLOW, "rsi": RSI_PERIOD,
                        "ema_trend": HTF_EMA},
            "rsi_bounds": {"buy_min": settings["ASTER_RSI_BUY_MIN"],
                           "sell_max": settings["ASTER_RSI_SELL_MAX"]},
            "tick_places": state.get("ticks", {}).get(symbol),
            "markers": sorted(markers, key=lambda m: m["time"]),
            "lines": lines, "available": sorted(state.get("charts", {}))}

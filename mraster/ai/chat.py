"""The copilot chat: answers from the bot's current context, and trade proposals the user confirms.

The answer comes from the LLM when a key (``ASTER_CHAT_OPENAI_API_KEY``, else
``ASTER_OPENAI_API_KEY``) or a compatible server is configured, paid through the shared daily
budget; otherwise, or when the budget is used up or the service fails, from rules that read the same
context. A proposal is only a suggestion: the dashboard shows it, and only the user's confirmation
sends it to the bot's command inbox, where the bot's own filters, risk gate and sizing decide.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

from pydantic import BaseModel, Field

from mraster.ai.news import QUOTES
from mraster.strategy.filters import REASONS

SYSTEM = (
    "You are MrAster's copilot for crypto perpetual futures. Answer the user's question from the "
    "bot's context (JSON) in at most 120 words, plainly, without inventing numbers. Reply with one "
    "JSON object: {\"reply\": string, \"proposal\": null or {\"symbol\": string, \"side\": \"BUY\" "
    "or \"SELL\", \"reason\": string}}. Propose a trade only when the user asks for one; the user "
    "must confirm it and the bot's risk limits decide its size.")
HELP = ("Ask me about: status, positions, budget, the sentinel, the playbook, \"why not XRPUSDT\", "
        "or ask for a trade (\"long XRPUSDT\", \"short ETHUSDT\") — I propose, you confirm.")


class Proposal(BaseModel):
    symbol: str = Field(pattern=r"^[A-Z0-9]{2,30}$")
    side: str = Field(pattern="^(BUY|SELL)$")
    reason: str = Field("", max_length=500)


class ChatReply(BaseModel):
    reply: str = Field(max_length=4000)
    proposal: Proposal | None = None


def context(state: Mapping[str, Any], budget: Mapping[str, Any]) -> dict[str, Any]:
    """What the copilot knows: positions, the last decisions, warnings, budget, playbook."""
    decisions = state.get("decisions", {})
    skips: dict[str, int] = {}
    for d in decisions.values():
        if d.get("action") == "SKIP":
            skips[d["reason"]] = skips.get(d["reason"], 0) + 1
    cop = state.get("copilots", {})
    return {
        "mode": state.get("mode") or "not started", "paused": bool(state.get("paused")),
        "equity": state.get("telemetry", {}).get("equity"),
        "positions": [{k: p.get(k) for k in ("symbol", "side", "qty", "entry", "stop", "take_profit",
                                             "r_now")} for p in state.get("positions", {}).values()],
        "taken_last_cycle": [s for s, d in decisions.items() if d.get("action") == "TAKE"],
        "skip_reasons_last_cycle": skips,
        "decisions": {s: {"action": d.get("action"), "why": d.get("why") or REASONS.get(d.get("reason"), d.get("reason")),
                          "side": d.get("side")} for s, d in decisions.items()},
        "sentinel": {s: v.get("label") for s, v in state.get("sentinel", {}).items()
                     if v.get("label") != "green"},
        "budget": {k: budget.get(k) for k in ("spent", "limit", "remaining", "calls")},
        "playbook": {k: (cop.get("playbook") or {}).get(k) for k in ("regime", "directives")},
        "recent_trades": [{k: t.get(k) for k in ("symbol", "side", "r", "reason")}
                          for t in state.get("history", [])[-5:]],
    }


def find_symbol(text: str, known: list[str]) -> str | None:
    """A known symbol named in the text: in full (XRPUSDT) or by its base (xrp)."""
    words = re.findall(r"[A-Za-z0-9]{2,30}", text.upper())
    for w in words:
        if w in known:
            return w
    for w in words:
        hits = [k for k in known if k.startswith(w) and k[len(w):] in QUOTES]
        if hits:
            return hits[0]
    return None


def rule_reply(message: str, ctx: Mapping[str, Any], known: list[str]) -> ChatReply:
    m = message.lower()
    sym = find_symbol(message, known)
    side = "BUY" if re.search(r"\b(long|buy)\b", m) else "SELL" if re.search(r"\b(short|sell)\b", m) \
        else None
    if side and sym:
        d = ctx["decisions"].get(sym, {})
        note = f" The bot's last view: {d['action']} ({d['why']})." if d else ""
        return ChatReply(reply=f"Proposal: {'long' if side == 'BUY' else 'short'} {sym} at market, "
                               f"sized by your risk per trade with the bot's stop and take-profit."
                               f"{note} Confirm it below to send it to the bot.",
                         proposal=Proposal(symbol=sym, side=side, reason=f"asked in chat: {message[:200]}"))
    if side:
        return ChatReply(reply="Which symbol? I know " + ", ".join(known[:12]) + ("…" if len(known) > 12 else ""))
    if "position" in m:
        ps = ctx["positions"]
        if not ps:
            return ChatReply(reply="No open positions.")
        return ChatReply(reply="; ".join(f"{p['side']} {p['qty']} {p['symbol']} from {p['entry']} "
                                         f"(stop {p['stop']}, take-profit {p['take_profit']}, "
                                         f"now {p['r_now'] if p['r_now'] is not None else '–'} R)"
                                         for p in ps))
    if any(w in m for w in ("budget", "cost", "spent", "spend")):
        b = ctx["budget"]
        limit = f"${b['limit']:.2f}" if b.get("limit") else "no limit"
        return ChatReply(reply=f"AI spending today: ${b.get('spent') or 0:.4f} of {limit} in "
                               f"{b.get('calls') or 0} calls.")
    if any(w in m for w in ("sentinel", "news", "risk", "warning")):
        w = ctx["sentinel"]
        return ChatReply(reply="Sentinel warnings: " + ", ".join(f"{s} {lab}" for s, lab in w.items())
                         if w else "No sentinel warnings right now.")
    if any(w in m for w in ("playbook", "regime", "market")):
        pb = ctx["playbook"]
        if not pb.get("regime"):
            return ChatReply(reply="No playbook yet (it is kept in AI mode).")
        return ChatReply(reply=f"Regime: {pb['regime']}. " + " ".join(pb.get("directives") or []))
    if sym:
        d = ctx["decisions"].get(sym)
        if not d:
            return ChatReply(reply=f"{sym} was not evaluated in the last cycle.")
        return ChatReply(reply=f"{sym}: {d['action']}" + (f" {d['side']}" if d.get("side") else "")
                               + f" — {d['why']}.")
    ps, skips = ctx["positions"], ctx["skip_reasons_last_cycle"]
    top = ", ".join(f"{REASONS.get(k, k)} ({v})" for k, v in
                    sorted(skips.items(), key=lambda kv: -kv[1])[:3])
    return ChatReply(reply=f"Mode {ctx['mode']}{', paused' if ctx['paused'] else ''}; "
                           f"{len(ps)} open position(s); equity {ctx['equity'] if ctx['equity'] is not None else '–'}. "
                           + (f"Most skips last cycle: {top}. " if top else "") + HELP)


def llm_user_message(message: str, ctx: Mapping[str, Any], history: list[dict[str, str]]) -> str:
    return json.dumps({"context": ctx, "conversation": history[-6:], "message": message},
                      default=str)

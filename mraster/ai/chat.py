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
from mraster.domain import SYMBOL_RE
from mraster.strategy.filters import REASONS
from mraster.words import Say, english, side_word


SYSTEM = (
    "You are MrAster's copilot for crypto perpetual futures. Answer the user's question from the "
    "bot's context (JSON) in at most 120 words, plainly, in its reply_language, without inventing "
    "numbers. Reply with one "
    "JSON object: {\"reply\": string, \"proposal\": null or {\"symbol\": string, \"side\": \"BUY\" "
    "or \"SELL\", \"reason\": string}}. Propose a trade only when the user asks for one; the user "
    "must confirm it and the bot's risk limits decide its size. A proposal only ever opens a "
    "position: when the user asks to close or reduce one, propose nothing and say that Close… in "
    "the position's row on the Overview does it.")
HELP = ("Ask me about: status, positions, budget, the sentinel, the playbook, \"why not XRPUSDT\", "
        "or ask for a trade (\"long XRPUSDT\", \"short ETHUSDT\") — I propose, you confirm.")
# what a question is about, in English and German words
ASKS = {"close": r"\b(close|exit|flatten|schlie(ß|ss)\w*|glattstell\w*)\b",
        "buy": r"\b(long|buy|kauf\w*)\b", "sell": r"\b(short|sell|verkauf\w*)\b",
        "positions": r"position", "budget": r"budget|cost|spent|spend|kosten|ausgabe",
        "sentinel": r"sentinel|news|risk|warn|nachricht|risiko|wächter",
        "playbook": r"playbook|regime|market|markt"}


class Proposal(BaseModel):
    symbol: str = Field(pattern=f"^{SYMBOL_RE.pattern}$")
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


def rule_reply(message: str, ctx: Mapping[str, Any], known: list[str], say: Say = english
               ) -> ChatReply:
    """An answer from rules, in the language of ``say`` (English by default)."""
    m = message.lower()
    asks = {k: re.search(p, m) is not None for k, p in ASKS.items()}
    sym = find_symbol(message, known)
    side = "BUY" if asks["buy"] else "SELL" if asks["sell"] else None
    if asks["close"]:
        # before the sides: "close my long ETHUSDT" proposed opening a long
        return ChatReply(reply=say(
            "The chat only proposes new trades; to close {symbol}, use Close… in its row on the "
            "Overview." if sym else "The chat only proposes new trades; to close a position, use "
            "Close… in its row on the Overview, or Flatten all… for every one.", symbol=sym))
    if side and sym:
        d = ctx["decisions"].get(sym, {})
        note = " " + say("The bot's last view: {action} ({why}).", action=say(d["action"]),
                         why=say(d["why"])) if d else ""
        return ChatReply(reply=say("Proposal: {side} {symbol} at market, sized by your risk per trade "
                                   "with the bot's stop and take-profit.", side=say(side_word(side)),
                                   symbol=sym) + note + " " + say("Confirm it below to send it to the bot."),
                         proposal=Proposal(symbol=sym, side=side, reason=f"asked in chat: {message[:200]}"))
    if side:
        return ChatReply(reply=say("Which symbol? I know {symbols}", symbols=", ".join(known[:12])
                                   + ("…" if len(known) > 12 else "")))
    if asks["positions"]:
        ps = ctx["positions"]
        if not ps:
            return ChatReply(reply=say("No open positions."))
        return ChatReply(reply="; ".join(
            say("{side} {qty} {symbol} from {entry} (stop {stop}, take-profit {tp}, now {r} R)",
                side=say(side_word(p["side"])), qty=p["qty"], symbol=p["symbol"], entry=p["entry"],
                stop=p["stop"], tp=p["take_profit"], r=p["r_now"]) for p in ps))
    if asks["budget"]:
        b = ctx["budget"]
        return ChatReply(reply=say("AI spending today: {spent} USD of {limit} USD in {calls} calls.",
                                   spent=round(float(b.get("spent") or 0), 4),
                                   limit=round(float(b["limit"]), 2) if b.get("limit") else "∞",
                                   calls=b.get("calls") or 0))
    if asks["sentinel"]:
        w = ctx["sentinel"]
        return ChatReply(reply=say("Sentinel warnings: {list}", list=", ".join(
            f"{s} {say(lab)}" for s, lab in w.items())) if w else say("No sentinel warnings right now."))
    if asks["playbook"]:
        pb = ctx["playbook"]
        if not pb.get("regime"):
            return ChatReply(reply=say("No playbook yet (it is kept in AI mode)."))
        return ChatReply(reply=say("Regime: {regime}.", regime=say(pb["regime"])) + " "
                         + " ".join(pb.get("directives") or []))
    if sym:
        d = ctx["decisions"].get(sym)
        if not d:
            return ChatReply(reply=say("{symbol} was not evaluated in the last cycle.", symbol=sym))
        return ChatReply(reply=f"{sym}: {say(d['action'])}"
                               + (f" {say(side_word(d['side']))}" if d.get("side") else "")
                               + f" — {say(d['why'])}.")
    ps, skips = ctx["positions"], ctx["skip_reasons_last_cycle"]
    top = ", ".join(f"{say(REASONS.get(k, k))} ({v})" for k, v in
                    sorted(skips.items(), key=lambda kv: -kv[1])[:3])
    return ChatReply(reply=say("Mode {mode}, entries paused; {n} open position(s); equity {equity}."
                               if ctx["paused"] else "Mode {mode}; {n} open position(s); equity {equity}.",
                               mode=say(ctx["mode"]), n=len(ps),
                               equity=None if ctx["equity"] is None else round(ctx["equity"], 2))
                           + (" " + say("Most skips last cycle: {list}.", list=top) if top else "")
                           + " " + say(HELP))

def llm_user_message(message: str, ctx: Mapping[str, Any], history: list[dict[str, str]],
                     language: str = "English") -> str:
    return json.dumps({"context": ctx, "conversation": history[-6:], "message": message,
                       "reply_language": language}, default=str)

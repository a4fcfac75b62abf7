"""The copilots around the advisor: postmortems, the parameter tuner and the playbook.

They run in AI mode, with or without an LLM: the rule-based versions decide at once, and when an LLM
is configured its answer (paid through the shared daily budget, never awaited by the scan loop)
refines them when it arrives. Their memory lives in the state file (``copilots``) and survives
restarts. They may only lower risk: the playbook and tuner factors are at most 1 for size, and every
order still passes the sizing and risk checks with the user's limits.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from mraster.ai import playbook as PB
from mraster.ai import postmortem as PM
from mraster.ai import tuner as TU
from mraster.ai.budget import DailyBudget
from mraster.words import words

if TYPE_CHECKING:
    from mraster.ai.calls import Answer
    from mraster.ai.llm import LLMClient

log = logging.getLogger("mraster.ai")
TRADES_KEPT, REVIEWS_KEPT, LOG_KEPT = 220, 50, 50


@dataclass
class Copilots:
    settings: Mapping[str, Any]
    book: dict[str, Any]  # state["copilots"]
    llm: LLMClient | None = None
    budget: DailyBudget | None = None
    emit: Callable[..., None] = lambda *a, **k: None
    alert: Callable[..., None] | None = None  # Engine.alert: a notice on the dashboard
    tasks: set = field(default_factory=set)

    def __post_init__(self) -> None:
        for key, default in (("postmortem", {}), ("reviews", []), ("trades", []), ("tuner", {}),
                             ("tuner_log", []), ("playbook", None)):
            self.book.setdefault(key, default)
        if not self.book["tuner"]:
            self.book["tuner"] = TU.tune(self.book["trades"])

    # -- what the engine asks ---------------------------------------------------------------------
    def pm_inputs(self, symbol: str) -> dict[str, float | None]:
        return PM.policy_inputs(self.book["postmortem"], symbol)

    def pm_entries(self, symbols: list[str]) -> list[Any]:
        """The postmortem's entry of each symbol: ``pm_inputs`` reads nothing else, and a review
        replaces an entry instead of changing it (``postmortem.learn``), so the same objects
        give the same inputs."""
        book = self.book["postmortem"]
        return [book.get(sym) for sym in symbols]

    @property
    def regime(self) -> str | None:
        return (self.book["playbook"] or {}).get("regime")

    def payload(self, symbol: str) -> dict[str, Any]:
        """Added to every advisor payload."""
        t = self.book["tuner"]
        return {"playbook": PB.payload_view(self.book["playbook"]),
                "postmortem": PM.features(self.book["postmortem"], symbol),
                "tuning": {k: t[k] for k in ("size_bias", "sl_bias", "tp_bias", "confidence")}}

    def size_factor(self, side: str, bucket: str | None) -> float:
        pb = self.book["playbook"] or {}
        return min(1.0, pb.get("size_factor", {}).get(side, 1.0)) * \
            min(1.0, self.book["tuner"]["size_bias"].get(bucket or "S", 1.0))

    def playbook_block(self, symbol: str, side: str, now_ms: int) -> dict[str, Any] | None:
        return PB.blocked(self.book["playbook"], symbol, side, now_ms)

    def tightened(self, s: Mapping[str, Any]) -> Mapping[str, Any]:
        return PB.tightened(s, self.book["playbook"])

    def stop_target_bias(self) -> tuple[float, float]:
        """The tuner's biases times the playbook's, kept inside the tuner's clamps."""
        t = self.book["tuner"]
        pb = (self.book["playbook"] or {}).get("bias") or {}
        return (TU._clamp(t["sl_bias"] * pb.get("sl", 1.0), TU.SL_RANGE),
                TU._clamp(t["tp_bias"] * pb.get("tp", 1.0), TU.TP_RANGE))

    # -- the playbook -----------------------------------------------------------------------------
    def playbook_due(self, now_ms: int) -> bool:
        """Does ``refresh_playbook`` renew the playbook at ``now_ms`` (it reads every label)?"""
        return PB.due(self.book["playbook"], now_ms, self.settings)

    def refresh_playbook(self, now_ms: int, market: Mapping[str, Mapping[str, Any]],
                         labels: Mapping[str, Mapping[str, Any]], history: list[dict]) -> None:
        """Every ``ASTER_AI_PLAYBOOK_REFRESH_MINUTES`` (and at the first cycle)."""
        if not self.playbook_due(now_ms):
            return
        ov = PB.overview(market, labels, history)
        self.book["playbook"] = PB.refreshed(ov, now_ms, self.settings)
        self.emit("playbook", regime=self.book["playbook"]["regime"], source="rules")
        if self.llm:
            self._spawn(self._llm_playbook(ov, now_ms))

    async def _llm_playbook(self, ov: dict[str, Any], now_ms: int) -> None:
        ans = await self._paid(PB.SYSTEM, json.dumps(ov), "LLMPlaybook", "playbook")
        if ans.value is None:
            self._llm_failed("playbook", ans.why)
            return
        self.book["playbook"] = {**PB.from_llm(ans.value, ov, now_ms), "at": now_ms}
        self.emit("playbook", regime=ans.value.regime, source="ai", cost=round(ans.cost, 6))

    # -- after a trade ----------------------------------------------------------------------------
    def after_close(self, trade: dict[str, Any], bucket: str | None,
                    measured: Mapping[str, Any] | None = None) -> None:
        """Review the trade (with ``measured``: ``postmortem.measure``) and retune (the LLM parts
        finish later, in the background)."""
        review = PM.rule_review(trade, measured)
        if self.llm:
            self._spawn(self._llm_review(review, trade))
        else:
            self._learn(review)
        self.book["trades"] = (self.book["trades"] + [{"r": trade["r"], "bucket": bucket,
                                                      "reason": trade["reason"]}])[-TRADES_KEPT:]
        # a retune caused by a close is dated by it (the replay's time in a backtest)
        self._retune(int(trade.get("closed_at") or time.time() * 1000))

    def _learn(self, review: dict[str, Any]) -> None:
        PM.learn(self.book["postmortem"], review)
        self.book["reviews"] = (self.book["reviews"] + [review])[-REVIEWS_KEPT:]
        self.emit("postmortem", symbol=review["symbol"], score=review["score"],
                  lesson=review["lesson"], lesson_words=review.get("lesson_words"),
                  source=review["source"], closed_at=review.get("closed_at"))

    async def _llm_review(self, review: dict[str, Any], trade: dict[str, Any]) -> None:
        user = json.dumps({k: trade.get(k) for k in ("symbol", "side", "entry", "exit", "initial_stop",
                                                      "take_profit", "r", "reason", "opened_at",
                                                      "closed_at", "fees", "funding")})
        try:
            ans = await self._paid(PM.SYSTEM, user, "Review", "postmortem")
        except asyncio.CancelledError:
            self._learn(review)  # the bot is stopping: the trade is still learned, by the rules
            raise
        if ans.value is None:
            self._llm_failed("postmortem", ans.why)
        self._learn(PM.with_llm(review, ans.value) if ans.value else review)

    def _retune(self, at: int) -> None:
        rules = TU.tune(self.book["trades"])
        suggestion = self.book["tuner"].get("llm")
        current = {**rules, **({k: suggestion[k] for k in ("size_bias", "sl_bias", "tp_bias")}
                               if suggestion else {}),
                   "source": "ai" if suggestion else "rules", "llm": suggestion,
                   "llm_at": self.book["tuner"].get("llm_at", 0)}
        if any(current[k] != self.book["tuner"].get(k) for k in ("size_bias", "sl_bias", "tp_bias")):
            self._log_tuning(current, at)
        self.book["tuner"] = current
        due = time.time() * 1000 - current["llm_at"] >= TU.LLM_EVERY_MS
        if self.llm and due and len(self.book["trades"]) >= self.settings["ASTER_AI_TUNER_MIN_TRADES"]:
            current["llm_at"] = int(time.time() * 1000)
            self._spawn(self._llm_tune(rules))

    async def _llm_tune(self, rules: dict[str, Any]) -> None:
        recent = self.book["trades"][-TU.WINDOW:]
        user = json.dumps({"rules": {k: rules[k] for k in ("size_bias", "sl_bias", "tp_bias")},
                           "trades": recent})
        ans = await self._paid(TU.SYSTEM, user, "Suggestion", "tuning")
        if ans.value is None:
            self._llm_failed("tuning", ans.why)
            return
        self.book["tuner"]["llm"] = TU.bounded(ans.value)
        self._retune(int(time.time() * 1000))

    def _log_tuning(self, t: dict[str, Any], at: int) -> None:
        entry = {"time": at, "source": t["source"], "size_bias": t["size_bias"],
                 "sl_bias": t["sl_bias"], "tp_bias": t["tp_bias"], "trades": t["trades"],
                 "note": (t.get("llm") or {}).get("note")}
        self.book["tuner_log"] = (self.book["tuner_log"] + [entry])[-LOG_KEPT:]
        log.info("tuner: %s", entry)
        self.emit("tuning", **entry)

    # -- plumbing ---------------------------------------------------------------------------------
    async def _paid(self, system: str, user: str, shape: str, kind: str) -> Answer:
        """One paid call for a reply of the shape ``answers.<shape>``. The shapes (pydantic) and
        the client load here, with the first call: the rule-based copilots never need them."""
        from mraster.ai import answers
        from mraster.ai.calls import paid_call

        return await paid_call(self.llm, self.budget, system, user, getattr(answers, shape), kind)

    def _llm_failed(self, kind: str, why: str) -> None:
        """The rules stand in; the AI tab says why (the budget used up is expected, not a notice)."""
        self.book["llm_problem"] = {"time": int(time.time() * 1000), "kind": kind, "why": why}
        self.emit("ai_error", kind=kind, error=why)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception():
            message = words("an AI copilot task failed: {error}", error=repr(task.exception()))
            if self.alert:
                self.alert("error", message)
            else:
                log.error(message)

    async def close(self, grace_s: float = 5.0) -> None:
        """Let answers on their way arrive (they are paid for), then cancel what is left."""
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace_s)
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)

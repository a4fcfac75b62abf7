"""AITradeAdvisor: asks the LLM about each trade candidate without ever blocking the scan loop.

A candidate (symbol, side, candle) is submitted once; the request runs as an asyncio task under
``ASTER_AI_CONCURRENCY`` with ``ASTER_AI_GLOBAL_COOLDOWN_SECONDS`` between dispatches, at most
``ASTER_AI_PENDING_LIMIT`` waiting. The engine asks for the verdict on later cycles: pending, a plan
(clamped to the user's limits), or — after ``ASTER_AI_PLAN_TIMEOUT_SECONDS``, when the queue is full,
the budget is used up or the reply is unusable — the rule-based plan. Identical payloads are answered
from a cache at no cost.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mraster import settings as st
from mraster.ai import budget as B
from mraster.ai.calls import paid_call
from mraster.ai.llm import LLMClient, client_for
from mraster.ai.plan import Plan, clamp, fallback

log = logging.getLogger("mraster.ai")
CACHE_SIZE = 64
SYSTEM = (
    "You review one crypto perpetual-futures trade candidate for a risk-managed bot. Reply with a "
    "single JSON object: {\"take\": bool, \"size_multiplier\": number 0..1 (share of the planned "
    "size), \"sl_multiplier\": number (stop distance vs planned), \"tp_multiplier\": number, "
    "\"leverage\": integer or null, \"confidence\": number 0..1, \"explanation\": string of 12-70 "
    "words, \"fasttp\": null or {\"enabled\": bool, \"min_r\": number, \"snap_atr\": number} (when "
    "to pull the take-profit in early)}. You may reduce risk or veto; limits above the user's are "
    "ignored.")


@dataclass
class Job:
    key: str
    symbol: str
    created: float
    task: asyncio.Task | None = None
    plan: Plan | None = None
    state: str = "queued"  # queued | inflight | done


@dataclass
class Advisor:
    llm: LLMClient
    settings: st.Settings  # its ai_pending_limit / ai_budget_enforced are used
    budget: B.DailyBudget
    emit: Callable[..., None] = lambda *a, **k: None
    timeout_s: float | None = None
    learner: B.BudgetLearner | None = None
    jobs: dict[str, Job] = field(default_factory=dict)
    cache: "OrderedDict[str, Plan]" = field(default_factory=OrderedDict)
    _last_dispatch: float = 0.0

    def __post_init__(self) -> None:
        s = self.settings
        self.timeout_s = self.timeout_s or s["ASTER_AI_PLAN_TIMEOUT_SECONDS"]
        self._sem = asyncio.Semaphore(s["ASTER_AI_CONCURRENCY"])
        self._dispatch_lock = asyncio.Lock()
        self.pending_limit = s.ai_pending_limit
        self._last_ask: dict[str, float] = {}
        self.accepting = True

    # -- the engine's side --------------------------------------------------------------------
    def asked(self, key: str) -> bool:
        """Is this candidate's question already out (its payload is not needed again)?"""
        return key in self.jobs

    def verdict(self, key: str, symbol: str, payload: dict[str, Any]) -> Plan | None:
        """The plan for this candidate, or None while it is still being reviewed."""
        job = self.jobs.get(key)
        payload_key = _payload_key(self.llm.model, payload)
        if job is None and payload_key in self.cache:
            self.cache.move_to_end(payload_key)
            return self.cache[payload_key].model_copy(update={"source": "cache"})
        if job is None:
            if self.learner and not self.learner.allows(symbol, int(time.time() * 1000)):
                return fallback(f"AI calls for {symbol} are paused: its AI-reviewed trades earned "
                                "less than the calls cost")
            if not self.accepting:
                return None  # the run is ending: no new paid request whose answer nobody reads
            last = self._last_ask.get(symbol)
            if last is not None and time.monotonic() - last < self.settings["ASTER_AI_MIN_INTERVAL_SECONDS"]:
                return None  # asked about this symbol moments ago: wait for the interval
            if self._pending() >= self.pending_limit:
                return fallback("the AI queue is full")
            self._last_ask[symbol] = time.monotonic()
            job = self.jobs[key] = Job(key, symbol, time.monotonic())
            job.task = asyncio.get_running_loop().create_task(self._run(job, payload, payload_key))
            self.emit("ai_request", symbol=symbol, key=key)
            return None
        if job.plan is not None:
            return job.plan
        if time.monotonic() - job.created > self.timeout_s:
            job.task.cancel()
            job.plan, job.state = fallback(f"no AI answer within {self.timeout_s:g} s"), "done"
            return job.plan
        return None

    async def wait_pending(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) for the reviews in flight and take no new ones (a single
        run ends after the next pass); True when any review was asked for."""
        self.accepting = False
        tasks = [j.task for j in self.jobs.values() if j.state != "done" and j.task]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        return bool(self.jobs)

    def _pending(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state != "done")

    # -- the request ----------------------------------------------------------------------------
    async def _run(self, job: Job, payload: dict[str, Any], payload_key: str) -> None:
        b = self.budget.snapshot()  # the budget state goes with the request, not into the cache key
        user = json.dumps({**payload, "budget": {k: b[k] for k in ("spent", "limit", "remaining")}},
                          default=str, sort_keys=True)
        try:
            async with self._sem:
                async with self._dispatch_lock:  # the global cooldown between dispatches
                    wait = self._last_dispatch + self.settings["ASTER_AI_GLOBAL_COOLDOWN_SECONDS"] \
                        - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    self._last_dispatch = time.monotonic()
                job.state = "inflight"
                ans = await paid_call(self.llm, self.budget, SYSTEM, user, Plan, "plan",
                                      note={"symbol": job.symbol, "key": job.key})
                if ans.value is None:
                    job.plan = fallback(ans.why)
                    if ans.cost:
                        self.emit("ai_error", symbol=job.symbol, error=ans.why)
                    return
                if self.learner:
                    self.learner.spent(job.symbol, ans.cost)
                job.plan = clamp(ans.value.model_copy(update={"source": "ai"}), self.settings)
                self.cache[payload_key] = job.plan
                while len(self.cache) > CACHE_SIZE:
                    self.cache.popitem(last=False)
                self.emit("ai_plan", symbol=job.symbol, take=job.plan.take,
                          size=job.plan.size_multiplier, cost=round(ans.cost, 6),
                          explanation=job.plan.explanation)
        finally:
            job.state = "done"

    def snapshot(self) -> dict[str, Any]:
        """For the state file and the dashboard."""
        now = time.monotonic()
        recent = [j for j in self.jobs.values() if j.plan is not None][-20:]
        now_ms = int(time.time() * 1000)
        paused = sorted(sym for sym, e in (self.learner.book.items() if self.learner else [])
                        if e.get("paused_until", 0) > now_ms)
        return {"status": "on", "model": self.llm.model, "budget": self.budget.snapshot(),
                "paused_symbols": paused,
                "pending": [{"symbol": j.symbol, "state": j.state, "age_s": round(now - j.created, 1)}
                            for j in self.jobs.values() if j.state != "done"],
                "recent_plans": [{"symbol": j.symbol, **j.plan.model_dump()} for j in recent]}

    def forget_old(self, max_jobs: int = 200) -> None:
        done = [k for k, j in self.jobs.items() if j.state == "done"]
        for k in done[: max(0, len(self.jobs) - max_jobs)]:
            del self.jobs[k]

    async def close(self) -> None:
        for j in self.jobs.values():
            if j.task and not j.task.done():
                j.task.cancel()
        await self.llm.close()


def _payload_key(model: str, payload: Mapping[str, Any]) -> str:
    def rnd(v: Any) -> Any:
        return round(v, 6) if isinstance(v, float) else v
    text = json.dumps({k: rnd(v) for k, v in payload.items()}, sort_keys=True, default=str)
    return hashlib.sha1(f"{model}|{text}".encode()).hexdigest()


def advisor_from_settings(s: st.Settings, ledger: dict[str, Any], emit: Callable[..., None],
                          budget: B.DailyBudget | None = None) -> Advisor | None:
    """None (rule-based decisions everywhere) unless AI mode is on and there is a key or a
    compatible server to ask. ``ledger`` keeps the budget learner (and, without ``budget``, a
    budget of this process alone)."""
    llm = client_for(s) if st.ai_mode(s) else None
    if llm is None:
        return None
    return Advisor(llm, s, budget or B.daily_budget(s, ledger.setdefault("budget", {})),
                   emit=emit, learner=B.BudgetLearner(ledger.setdefault("learner", {})))

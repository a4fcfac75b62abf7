"""One paid LLM call: reserve the estimate in the daily budget, ask, settle the real cost.

Every copilot (advisor, postmortems, tuner, playbook, chat) goes through here, so no call starts
that the budget has not reserved and every attempt is booked, also when it fails or is cut off.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from mraster.ai import budget as B
from mraster.ai.llm import AIUnavailable, LLMClient

T = TypeVar("T", bound=BaseModel)


@dataclass
class Answer(Generic[T]):
    value: T | None     # None: use the rule-based result (``why`` says why)
    cost: float = 0.0
    why: str = ""


WHAT = {"tuning": "tuning suggestion", "postmortem": "trade review", "chat": "chat reply"}


async def paid_call(llm: LLMClient, budget: B.DailyBudget, system: str, user: str,
                    schema: type[T], kind: str, note: dict[str, Any] | None = None) -> Answer[T]:
    """``note`` goes into the debug dump (``ASTER_AI_DEBUG_STATE``) with the call."""
    res = budget.reserve(B.estimate(llm.model, len(system) + len(user), llm.prices) * 2)
    if res is None:
        return Answer(None, 0.0, "the daily AI budget is used up")
    try:
        value, usages = await llm.ask(system, user, schema, WHAT.get(kind, kind))
    except AIUnavailable as exc:
        return Answer(None, budget.settle(res, llm.model, None, kind), str(exc))  # may be billed
    except asyncio.CancelledError:
        budget.settle(res, llm.model, None, kind)  # cut off by a timeout: assume it was billed
        raise
    actual = sum(B.cost(llm.model, u.prompt_tokens, u.completion_tokens, llm.prices)
                 for u in usages) if usages else None
    charged = budget.settle(res, llm.model, actual, kind)
    if llm.debug_file:
        _dump(llm.debug_file, {"time": int(time.time() * 1000), "kind": kind, "model": llm.model,
                               **(note or {}), "system": system, "user": user,
                               "reply": value.model_dump(), "cost": charged})
    return Answer(value, charged)


def _dump(path: str, entry: dict[str, Any]) -> None:
    from mraster.logs import mask

    with open(path, "a", encoding="utf-8") as f:
        f.write(mask(json.dumps(entry, default=str)) + "\n")

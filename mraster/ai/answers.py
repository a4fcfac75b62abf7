"""The shapes a copilot's LLM reply must have before any of it is used (pydantic models).

Kept apart from the rule-based copilots, which need none of this: AI mode without an LLM (every
backtest's) then loads neither pydantic nor the LLM client, about 65 ms of each run's start.
"""
from __future__ import annotations

from pydantic import BaseModel, Field


class LLMBlock(BaseModel):
    side: str | None = Field(None, pattern="^(BUY|SELL)$")
    symbol: str | None = Field(None, max_length=30)
    hours: float = Field(ge=0, le=1000)
    reason: str = Field("", max_length=300)


class LLMPlaybook(BaseModel):
    """The playbook (``playbook.from_llm`` clamps it)."""
    regime: str = Field(pattern="^(bullish|bearish|mixed|shock)$")
    directives: list[str] = Field(default_factory=list, max_length=8)
    size_factor: dict[str, float] = Field(default_factory=dict)
    blocks: list[LLMBlock] = Field(default_factory=list, max_length=8)
    bias: dict[str, float] = Field(default_factory=dict)
    tighten: dict[str, float] = Field(default_factory=dict)
    note: str = Field("", max_length=600)


class Review(BaseModel):
    """A closed trade's review (``postmortem.with_llm`` blends it with the rules')."""
    score: float = Field(ge=-1, le=1)
    lesson: str = Field(max_length=400)


class Suggestion(BaseModel):
    """The tuner's biases (``tuner.bounded`` clamps them)."""
    size_bias: dict[str, float] = Field(default_factory=dict)
    sl_bias: float = 1.0
    tp_bias: float = 1.0
    note: str = Field("", max_length=600)

"""The advisor's plan: a validated JSON reply, clamped to the user's limits.

The AI can lower risk and leverage or veto a trade; it can never raise leverage, size, notional or
risk per trade above the settings.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, Field, field_validator

SL_RANGE = (0.5, 2.0)  # the plan's stop distance as a multiple of the configured one
TP_RANGE = (0.5, 3.0)
FASTTP_MIN_R_RANGE, FASTTP_SNAP_RANGE = (0.1, 3.0), (0.05, 1.0)


class FastTPOverride(BaseModel):
    """How FastTP should treat this trade: it may be switched on, never off (it only takes profit
    earlier), and its thresholds stay in bounds."""

    enabled: bool | None = None
    min_r: float | None = None
    snap_atr: float | None = None


class Plan(BaseModel):
    take: bool
    size_multiplier: float = Field(1.0, ge=0)
    sl_multiplier: float = Field(1.0, gt=0)
    tp_multiplier: float = Field(1.0, gt=0)
    leverage: int | None = Field(None, ge=1)
    confidence: float = Field(0.5)
    explanation: str = Field("", max_length=2000)
    fasttp: FastTPOverride | None = None
    source: str = "ai"  # ai | cache | fallback

    @field_validator("confidence", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().endswith("%"):
            return float(v.strip()[:-1]) / 100
        return v


def _bound(x: float | None, lo_hi: tuple[float, float]) -> float | None:
    return None if x is None else min(max(x, lo_hi[0]), lo_hi[1])


def clamp(plan: Plan, s: Mapping[str, Any]) -> Plan:
    """Every number inside the user's limits."""
    size = min(max(plan.size_multiplier, 0.0), 1.0)  # a share of the risk the user set, never more
    lev = min(plan.leverage or s["ASTER_LEVERAGE"], s["ASTER_LEVERAGE"])
    ftp = plan.fasttp and FastTPOverride(
        enabled=True if plan.fasttp.enabled or s["FAST_TP_ENABLED"] else None,
        min_r=_bound(plan.fasttp.min_r, FASTTP_MIN_R_RANGE),
        snap_atr=_bound(plan.fasttp.snap_atr, FASTTP_SNAP_RANGE))
    return plan.model_copy(update={
        "size_multiplier": size, "leverage": lev, "fasttp": ftp,
        "sl_multiplier": _bound(plan.sl_multiplier, SL_RANGE),
        "tp_multiplier": _bound(plan.tp_multiplier, TP_RANGE),
        "confidence": min(max(plan.confidence, 0.0), 1.0)})


def fallback(reason: str) -> Plan:
    """The rule-based plan: the engine's own decision stands, unchanged."""
    return Plan(take=True, explanation=f"rule-based plan ({reason})", source="fallback",
                confidence=0.5)

"""The words the execution core speaks: sides, position states and owners.

Enums rather than bare strings so a typo is an error, not a silently different state. Their values
are the strings the exchange and the state file already use, so the persisted form is unchanged.
"""
from __future__ import annotations

from enum import Enum


class Side(str, Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> "Side":
        return Side.SELL if self is Side.BUY else Side.BUY

    @classmethod
    def of_amount(cls, amount: float) -> "Side":
        return cls.BUY if amount > 0 else cls.SELL


class PositionStatus(str, Enum):
    PENDING = "pending"  # the entry left (or may have left); its outcome is not known yet
    OPEN = "open"


class Owner(str, Enum):
    BOT = "bot"            # opened by orders carrying the bot's client-id prefix
    EXTERNAL = "external"  # opened by anyone else (or not provably the bot's): off limits

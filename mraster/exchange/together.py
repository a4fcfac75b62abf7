"""Requests that do not depend on each other, sent together.

Over a network they are in flight at the same time (``asyncio.gather``). An exchange answered
in-process — the simulator of a backtest or of offline paper mode (``answers_at_once``) —
answers each request before the next could be sent, so they are awaited one after the other: the same
answers in the same order, without an event-loop task per request (a task and its callbacks were
13 % of an actively trading backtest).
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable


def answers_at_once(ex: Any) -> bool:
    """Does ``ex`` answer in-process (nothing to gain from requests in flight together)?"""
    return bool(getattr(ex, "answers_at_once", False))


async def together(ex: Any, *aws: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """``asyncio.gather`` for the exchange ``ex``. In-process, every request runs even when an
    earlier one failed (as gathered ones do), and the first failure is raised after them."""
    if not answers_at_once(ex):
        return await asyncio.gather(*aws, return_exceptions=return_exceptions)
    out: list[Any] = []
    first: BaseException | None = None
    pending = list(aws)
    try:
        while pending:
            aw = pending.pop(0)
            try:
                out.append(await aw)
            except Exception as exc:  # noqa: BLE001 — kept, as gather keeps it
                if not return_exceptions and first is None:
                    first = exc
                out.append(exc)
    finally:
        for aw in pending:  # cancelled midway: the rest never ran, and never will
            close = getattr(aw, "close", None)
            if close is not None:
                close()
    if first is not None:
        raise first
    return out

"""Breaking news for the sentinel, from ``ASTER_AI_NEWS_ENDPOINT`` (Bearer ``ASTER_AI_NEWS_API_KEY``).

The endpoint answers a JSON list (or ``{"items": [...]}``) of items ``{"title", "symbol",
"severity", "time"}``: ``symbol`` a full symbol (XRPUSDT), a base asset (XRP) or empty for the whole
market; ``severity`` ``info`` | ``warning`` | ``critical``; ``time`` in ms (optional). It is polled at
most every ``REFRESH_S`` seconds; when it fails the last good items stay and the caller is told
why (the sentinel then works from market data alone). Items the feed gets wrong are skipped, not
fatal.
"""
from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError

REFRESH_S = 120.0
QUOTES = ("USDT", "USDC", "USD", "BTC", "ETH", "BUSD")  # XRP names XRPUSDT, not XRPLUSDT
MAX_ITEMS = 200


class NewsItem(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    symbol: str | None = Field(None, max_length=30)
    severity: str = Field("info", pattern="^(info|warning|critical)$")
    time: int | None = None


def parse(body: Any) -> list[NewsItem]:
    rows = body.get("items", []) if isinstance(body, dict) else body if isinstance(body, list) else []
    out = []
    for row in rows[:MAX_ITEMS]:
        try:
            out.append(NewsItem.model_validate(row))
        except ValidationError:
            continue
    return out


def for_symbol(items: list[NewsItem], symbol: str, now_ms: int, max_age_ms: int) -> list[NewsItem]:
    """The items about ``symbol`` (by symbol or base asset) or the whole market, still fresh."""
    hits = []
    for it in items:
        if it.time is not None and now_ms - it.time > max_age_ms:
            continue
        s = (it.symbol or "").upper()
        if not s or s == symbol or (symbol.startswith(s) and symbol[len(s):] in QUOTES):
            hits.append(it)
    return hits


class NewsFeed:
    def __init__(self, url: str, key: str = "", refresh_s: float = REFRESH_S, timeout: float = 5.0) -> None:
        self.url = url
        self.refresh_s = refresh_s
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout)
        self.items: list[NewsItem] = []
        self._fetched = 0.0

    async def latest(self) -> tuple[list[NewsItem], str | None]:
        """(items, None) or (the last good items, why the refresh failed)."""
        if time.monotonic() - self._fetched < self.refresh_s and self._fetched:
            return self.items, None
        self._fetched = time.monotonic()
        try:
            r = await self._client.get(self.url)
            r.raise_for_status()
            self.items = parse(r.json())
            return self.items, None
        except httpx.HTTPStatusError as exc:
            return self.items, f"the news source answered HTTP {exc.response.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            return self.items, f"the news source could not be read ({type(exc).__name__})"

    async def close(self) -> None:
        await self._client.aclose()

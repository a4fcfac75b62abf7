"""The live log: the bot's events and log lines fanned out to every open page.

A ring of the last ``size`` lines is replayed to a page that connects (or reconnects with
``Last-Event-ID``), so opening the dashboard shows recent history at once. Slow subscribers lose
lines rather than slow down the bot or the other pages.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from typing import Any

from mraster.logs import mask

# which filter on the page a line belongs to
KIND_OF_EVENT = {"decision": "decisions", "order": "orders", "close": "orders", "guard": "orders",
                 "fasttp": "orders", "command": "orders", "alert": "alerts"}
_LOG_RE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(\S+): (.*)$")


def classify(event: dict[str, Any]) -> str:
    name = str(event.get("event", ""))
    if name.startswith("ai"):
        return "ai"
    if name in ("log", "supervisor") and event.get("level") in ("WARNING", "ERROR", "CRITICAL"):
        return "alerts"
    return KIND_OF_EVENT.get(name, "other")


def parse_line(line: str, stream: str) -> dict[str, Any]:
    """A line of the bot's stdout (a JSON event) or stderr (a log line) as an event dict."""
    line = mask(line.rstrip("\n"))
    if stream == "stdout" and line.startswith("{"):
        try:
            ev = json.loads(line)
            if isinstance(ev, dict) and "event" in ev:
                return ev
        except ValueError:
            pass
    m = _LOG_RE.match(line)
    if m:
        return {"event": "log", "ts": int(time.time() * 1000), "level": m.group(1),
                "logger": m.group(2), "message": m.group(3)}
    return {"event": "log", "ts": int(time.time() * 1000), "level": "INFO", "message": line}


class LogHub:
    """Each line is serialised once, as its Server-Sent Events frame, however many pages
    listen: the fan-out's cost is the sends, not the encoding."""

    def __init__(self, size: int = 500, queue_size: int = 1000) -> None:
        self.lines: deque[tuple[dict[str, Any], str]] = deque(maxlen=size)
        self.seq = 0
        self.queue_size = queue_size
        self._subs: set[asyncio.Queue] = set()

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        item = {**event, "seq": self.seq, "kind": classify(event)}
        frame = f"id: {self.seq}\ndata: {json.dumps(item, default=str)}\n\n"
        self.lines.append((item, frame))
        for q in list(self._subs):
            try:
                q.put_nowait(frame)
            except asyncio.QueueFull:
                pass  # a stalled page misses lines; the others and the bot are not held up
        return item

    def subscribe(self, after: int = 0) -> tuple[list[str], asyncio.Queue]:
        """The frames after ``after`` and a queue of the ones to come."""
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self._subs.add(q)
        return [frame for item, frame in self.lines if item["seq"] > after], q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subs.discard(q)

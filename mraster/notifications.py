"""Notifications to the phone: Telegram (Bot API, configurable address) and a Discord- or
Slack-compatible webhook, with per-event switches; and the user's commands from their own
Telegram chat.

Sending never blocks the scan loop: events become messages on a bounded queue that a background
task delivers, retrying with back-off; a delivery that keeps failing is a notice on the dashboard.
The bot token and the webhook URL are secrets: they are registered with the log mask, never
written to the state or the event log, and sent only to the host they were entered for.
Commands (``/status``, ``/positions``, ``/pause``, ``/resume``, ``/flatten`` then
``/flatten CONFIRM``) are taken from the configured chat id alone and go through the same durable
inbox in the state file as the dashboard's buttons.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Callable, Mapping

import httpx

from mraster.words import Fixed, Say, english, side_word, significant, speaker, words

log = logging.getLogger("mraster.notify")
QUEUE_MAX = 200
ATTEMPTS = 5
CONFIRM_S = 60.0
DAY_MS = 86_400_000
SWITCH = {"entries": "ASTER_NOTIFY_ENTRIES", "exits": "ASTER_NOTIFY_EXITS",
          "alerts": "ASTER_NOTIFY_ALERTS", "breakers": "ASTER_NOTIFY_BREAKERS",
          "brackets": "ASTER_NOTIFY_BRACKETS", "daily": "ASTER_NOTIFY_DAILY"}
BRACKET_WORDS = ("could not be placed", "the bracket guard repairs", "no stop could be placed")


def _said(data: Mapping[str, Any]) -> Any:
    """An event's sentence: its words (template and values) when it has them, else its text."""
    w = data.get("words")
    return w if isinstance(w, Mapping) and "template" in w else str(data.get("message") or "")


def message_for(event: str, data: Mapping[str, Any], say: Say = english
                ) -> tuple[str, str] | None:
    """(kind, text) for an engine event worth a message, else None; in the language of ``say``
    (``ASTER_NOTIFY_LANGUAGE``)."""
    if event == "order" and data.get("action") in ("entry", "entry_adopted"):
        return "entries", say("Opened {side} {qty} {symbol} at {price}",
                              side=say(side_word(str(data.get("side")))), qty=data.get("qty"),
                              symbol=data.get("symbol"), price=data.get("price"))
    if event == "close":
        return "exits", say("Closed {side} {symbol} ({reason}): pnl {pnl} USDT, {r} R",
                            side=say(side_word(str(data.get("side")))), symbol=data.get("symbol"),
                            reason=say(str(data.get("reason") or "").replace("_", "-")),
                            pnl=Fixed(float(data.get("pnl") or 0), signed=True),
                            r=Fixed(float(data.get("r") or 0), signed=True))
    if event == "breaker":
        return "breakers", say("Circuit breaker {name}: {message}", name=data.get("name"),
                               message=_said(data))
    if event == "alert" and data.get("level") in ("warning", "error"):
        text = str(data.get("message") or "")
        kind = "brackets" if any(w in text for w in BRACKET_WORDS) else "alerts"
        return kind, say("WARNING: {message}" if data.get("level") == "warning" else
                         "ERROR: {message}", message=_said(data))
    return None


class Notifier:
    def __init__(self, s: Mapping[str, Any], state: dict[str, Any], doc: Any,
                 alert: Callable[[str, str], None], backoff_s: float = 1.0) -> None:
        self.s, self.state, self.doc, self.alert = s, state, doc, alert
        self.backoff_s = backoff_s  # the first retry's wait; it doubles up to a minute
        self.targets: list[tuple[str, str]] = []
        if s["ASTER_TELEGRAM_BOT_TOKEN"] and s["ASTER_TELEGRAM_CHAT_ID"]:
            self.targets.append(("telegram", self._tg("sendMessage")))
        if s["ASTER_WEBHOOK_URL"]:
            self.targets.append(("webhook", s["ASTER_WEBHOOK_URL"]))
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_MAX)
        self.client: httpx.AsyncClient | None = None
        self.tasks: list[asyncio.Task] = []
        self.failing: set[str] = set()
        self.sent = 0
        self.say = speaker(s["ASTER_NOTIFY_LANGUAGE"])
        self._confirm_until = 0.0
        self._offset = 0
        self._summary_day = (state.get("notify") or {}).get("summary_day")

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def _tg(self, method: str) -> str:
        base = self.s["ASTER_TELEGRAM_API_BASE"].rstrip("/")
        return f"{base}/bot{self.s['ASTER_TELEGRAM_BOT_TOKEN']}/{method}"

    def start(self) -> None:
        if not self.enabled:
            return
        self.client = httpx.AsyncClient(timeout=15.0)
        self.tasks.append(asyncio.create_task(self._deliver()))
        if self.s["ASTER_TELEGRAM_COMMANDS"] and any(t == "telegram" for t, _ in self.targets):
            self.tasks.append(asyncio.create_task(self._commands()))

    # -- messages -------------------------------------------------------------------------------
    def on_event(self, event: str, data: Mapping[str, Any]) -> None:
        found = message_for(event, data, self.say)
        if found:
            self.push(*found)

    def push(self, kind: str, text: str) -> None:
        """Queue a message if its switch is on; never waits (the oldest goes when full)."""
        if not self.enabled or not self.s[SWITCH[kind]]:
            return
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(text[:3500])

    def daily(self, now: int) -> None:
        """The day's summary, once per UTC day (at the first cycle of the next day)."""
        day = now // DAY_MS
        if self._summary_day is None:
            self._summary_day = day
        if day == self._summary_day:
            return
        since = self._summary_day * DAY_MS
        trades = [t for t in self.state.get("history", []) if t.get("closed_at", 0) >= since]
        pnl = sum(float(t.get("pnl") or 0) for t in trades)
        eq = (self.state.get("telemetry") or {}).get("equity")
        self.push("daily", self.say(
            "Daily summary: {n} trade(s), pnl {pnl} USDT, {open} open position(s)", n=len(trades),
            pnl=Fixed(pnl, signed=True), open=len(self.state.get("positions", {})))
            + (self.say(", equity {equity} USDT", equity=Fixed(eq)) if eq is not None else ""))
        self._summary_day = day
        self.state["notify"] = {"summary_day": day}

    async def _deliver(self) -> None:
        while True:
            text = await self.queue.get()
            for kind, url in self.targets:
                await self._send(kind, url, text)
            self.queue.task_done()

    def _body(self, kind: str, text: str) -> dict[str, Any]:
        if kind == "telegram":
            return {"chat_id": self.s["ASTER_TELEGRAM_CHAT_ID"], "text": text}
        return {"content": text, "text": text}  # Discord reads content, Slack text

    async def _send(self, kind: str, url: str, text: str) -> bool:
        delay = self.backoff_s
        for attempt in range(ATTEMPTS):
            why = ""
            try:
                r = await self.client.post(url, json=self._body(kind, text))
                if r.status_code < 300:
                    self.sent += 1
                    if kind in self.failing:
                        self.failing.discard(kind)
                        self.alert("warning", words("{kind} notifications are delivered again", kind=kind))
                    return True
                why = f"HTTP {r.status_code}"
            except httpx.HTTPError as exc:
                why = type(exc).__name__
            log.warning("%s notification failed (%s), attempt %d", kind, why, attempt + 1)
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)
        if kind not in self.failing:
            self.failing.add(kind)
            self.alert("error", words("{kind} notifications fail ({why}); retried {n} times, the "
                                      "next message tries again", kind=kind, why=why, n=ATTEMPTS))
        return False

    # -- commands from the user's own chat -------------------------------------------------------
    async def _commands(self) -> None:
        while True:
            try:
                r = await self.client.get(self._tg("getUpdates"),
                                          params={"offset": self._offset, "timeout": 10})
                if r.status_code >= 300:  # a wrong token (401) or the API refusing: said, then slower
                    if "commands" not in self.failing:
                        self.failing.add("commands")
                        self.alert("error", words("Telegram commands cannot be read (HTTP {status}): "
                                                  "check ASTER_TELEGRAM_BOT_TOKEN",
                                                  status=r.status_code))
                    await asyncio.sleep(30)
                    continue
                self.failing.discard("commands")
                updates = r.json().get("result", [])
            except (httpx.HTTPError, ValueError):
                updates = []
                await asyncio.sleep(5)
            for u in updates:
                self._offset = max(self._offset, int(u.get("update_id", 0)) + 1)
                msg = u.get("message") or {}
                if str((msg.get("chat") or {}).get("id")) != str(self.s["ASTER_TELEGRAM_CHAT_ID"]):
                    continue  # only the user's own chat commands the bot
                reply = self.command(str(msg.get("text") or "").strip())
                if reply:
                    await self._send("telegram", self._tg("sendMessage"), reply)
            if not updates:
                await asyncio.sleep(0.5)

    def command(self, text: str) -> str | None:
        """The reply to one command (and its effect, through the state file's inbox)."""
        word, _, rest = text.partition(" ")
        word = word.split("@")[0].lower()
        st, say = self.state, self.say
        if word == "/status":
            t = st.get("telemetry") or {}
            return say("MrAster {mode}: equity {equity} USDT, {n} open position(s), {activity}, "
                       "cycle {cycle}", mode=say(st.get("mode", "?")),
                       equity=Fixed(float(t.get("equity") or 0)),
                       n=len(st.get("positions", {})),
                       activity=say("paused" if st.get("paused") else "trading"),
                       cycle=t.get("cycle", 0))
        if word == "/positions":
            rows = [say("{side} {qty} {symbol} at {entry}, stop {stop}, TP {tp}",
                        side=say(side_word(p.side.value)), qty=p.qty, symbol=p.symbol,
                        entry=significant(p.entry), stop=significant(p.stop),
                        tp=significant(p.take_profit))
                    for p in st.get("positions", {}).values()]
            return "\n".join(rows) or say("No open positions.")
        if word in ("/pause", "/resume"):
            paused = word == "/pause"

            def set_paused(d: dict[str, Any]) -> None:
                d.setdefault("commands", {})["paused"] = paused
            self.doc.update(set_paused)
            return say("Paused: no new entries; stops and take-profits keep working." if paused
                       else "Resumed: new entries allowed again.")
        if word == "/flatten":
            if rest.strip().upper() == "CONFIRM" and time.monotonic() < self._confirm_until:
                self._confirm_until = 0.0
                cmd = {"id": uuid.uuid4().hex, "kind": "flatten", "source": "telegram"}

                def add(d: dict[str, Any]) -> None:
                    c = d.setdefault("commands", {})
                    c["paused"] = True
                    c["inbox"] = (c.get("inbox", []) + [cmd])[-50:]
                self.doc.update(add)
                return say("Flatten sent: all of the bot's positions close at market; entries "
                           "paused.")
            self._confirm_until = time.monotonic() + CONFIRM_S
            return say("Flatten closes all of the bot's positions at market and pauses entries. "
                       "Send /flatten CONFIRM within {seconds} s to do it.", seconds=int(CONFIRM_S))
        if word.startswith("/"):
            return say("Commands: /status, /positions, /pause, /resume, /flatten")
        return None

    async def close(self, grace_s: float = 5.0) -> None:
        """Deliver what is queued (at most ``grace_s``), then stop."""
        if not self.tasks:
            return
        try:
            await asyncio.wait_for(self.queue.join(), timeout=grace_s)
        except asyncio.TimeoutError:
            log.warning("%d notification(s) not delivered before the stop", self.queue.qsize())
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()

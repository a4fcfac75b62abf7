"""The bot process: choose the exchange adapter, run cycles, persist state, stop cleanly.

Paper mode is the default. Market data comes from ``ASTER_EXCHANGE_BASE``; when it cannot be
reached in paper mode the bot switches to the built-in simulator's market in-process and says so
(WARNING + ``market_source: "simulator"`` in the state). Live mode never falls back.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from logging.handlers import RotatingFileHandler
from typing import Any, Mapping

from mraster.ai.advisor import advisor_from_settings
from mraster.ai.budget import SectionLedger, daily_budget, utc_day
from mraster.ai.copilots import Copilots
from mraster.settings import ai_mode
from mraster.ai.news import NewsFeed
from mraster.domain import positions_of
from mraster import audit
from mraster.engine.cycle import Engine, position_amounts
from mraster.engine.recorder import Recorder
from mraster.journal import Journal, JournalError
from mraster.notifications import Notifier
from mraster.exchange import errors as E
from mraster.exchange import auth
from mraster.exchange.rest import AsterRest, keepalive_across
from mraster.exchange.rules import rules_from_exchange_info
from mraster.execution.brackets import BracketGuard
from mraster.execution.paper import LocalExchange, PaperExchange
from mraster.logs import mask
from mraster.files import beside_state, keep_notice, queue_document, state_document
from mraster.store import JsonDocument
from mraster.words import Words, notice, words

log = logging.getLogger("mraster.bot")

BOT_KEYS = ("positions", "history", "external_positions", "equity_curve", "decisions", "alerts",
            "stats", "telemetry", "policy", "market_source", "market_source_why", "mode", "bot",
            "paper_account", "market", "charts", "ticks", "command_acks", "paused", "cooldowns",
            "ai", "ai_ledger", "sentinel", "watch", "copilots", "protections", "protection_log",
            "audit", "notify", "shadows")


INTERRUPTED = words("interrupted: the bot stopped while opening this trade and did not retry it; "
                    "check the positions")


class EventSink:
    """One JSON line per event on stdout (the dashboard streams it) and in a rotating file."""

    def __init__(self, path: str | None) -> None:
        self._file: logging.Logger | None = None
        self._stdout = True
        if path:
            self._file = logging.getLogger(f"mraster.events.{path}")
            self._file.propagate = False
            self._file.setLevel(logging.INFO)
            if not self._file.handlers:
                h = RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
                h.setFormatter(logging.Formatter("%(message)s"))
                self._file.addHandler(h)

    def __call__(self, event: str, /, **data: Any) -> None:
        line = mask(json.dumps({"event": event, "ts": int(time.time() * 1000), **data},
                               default=str))
        if self._stdout:
            try:
                print(line, flush=True)
            except (BrokenPipeError, ValueError, OSError):
                # the dashboard that started us is gone: keep trading, events go to the file
                self._stdout = False
        if self._file:
            self._file.info(line)


def ai_off_reason(s: Mapping[str, Any]) -> str:
    if not ai_mode(s):
        return "AI mode is off (ASTER_MODE=ai or ASTER_AI_MODE=true turns it on); rule-based decisions"
    return ("no ASTER_OPENAI_API_KEY and no ASTER_AI_BASE_URL: plans, postmortems, tuner and "
            "playbook are rule-based")


HEDGE_MODE = ("the account is in hedge mode (two positions per symbol); MrAster trades one-way "
              "positions only. Switch the account to one-way mode on Aster (Futures, Preferences, "
              "Position mode: One-way) with no open positions or orders, then start again.")


class StartupError(Exception):
    """The bot cannot start with these settings; the message says what to change."""


async def make_exchange(s: Mapping[str, Any], state: dict[str, Any], pause_s: float | None = None):
    """(adapter, market_source) for the settings; StartupError when live mode cannot run. Its
    connections outlive a pause of ``pause_s`` (the scan interval unless given) between uses."""
    keepalive = keepalive_across(s["ASTER_SCAN_INTERVAL_SECONDS"] if pause_s is None else pause_s)
    def persist(acct: dict[str, Any]) -> None:
        state["paper_account"] = acct

    state.pop("market_source_why", None)
    if s["ASTER_PAPER"] and s["ASTER_OFFLINE"]:
        log.info("offline paper mode: trading the built-in simulator's synthetic market")
        return _local_simulator(s, state, persist), "simulator"
    if not s["ASTER_PAPER"]:
        trouble = auth.problem(s)
        if trouble:
            raise StartupError(f"live mode cannot sign requests: {trouble} (or keep ASTER_PAPER=true)")
        # not pinged here: an exchange that is down is waited for (``wait_for_exchange``),
        # never a reason to refuse to start
        return auth.make_client(s, keepalive_s=keepalive), "live"
    market = AsterRest(s["ASTER_EXCHANGE_BASE"], rate_share=s["ASTER_RATE_LIMIT_SHARE"],
                       timeout=5.0, read_retries=1, keepalive_s=keepalive)
    try:
        await market.ping()
        return PaperExchange(market, balance=s["ASTER_PAPER_BALANCE"], persist=persist,
                             saved=state.get("paper_account")), "live"
    except E.ExchangeError as exc:
        await market.close()
        why = f"{s['ASTER_EXCHANGE_BASE']} could not be reached ({exc.msg or type(exc).__name__})"
        log.warning("market data source %s: PAPER MODE NOW USES THE BUILT-IN SIMULATOR'S MARKET "
                    "(synthetic prices, not the real market)", why)
        state["market_source_why"] = why  # the page says why, until a start reaches the market
        return _local_simulator(s, state, persist), "simulator"


async def wait_for_exchange(ex, stop: asyncio.Event, on_wait=lambda why: None) -> bool:
    """Ask for exchangeInfo until the exchange answers (True) or stop is asked for (False): the
    first answer also tells the client the exchange's weight budget. Back-off grows from 1 s to
    30 s; ``on_wait`` hears each failure in words (shown on the dashboard)."""
    delay = 1.0
    while not stop.is_set():
        try:
            await ex.exchange_info()
            return True
        except E.ExchangeError as exc:
            on_wait(exc.msg or exc.plain)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            pass
        delay = min(30.0, delay * 2)
    return False


def _local_simulator(s: Mapping[str, Any], state: dict[str, Any], persist) -> LocalExchange:
    from mraster.sim.exchange import SimExchange
    from mraster.sim.market import SyntheticMarket

    sim = SimExchange(SyntheticMarket(30, seed=s["ASTER_SEED"]), balance=s["ASTER_PAPER_BALANCE"])
    saved = state.get("paper_account") if state.get("market_source") == "simulator" else None
    return LocalExchange(sim, persist=persist, saved=saved)


class BotLock:
    """One bot per state file (and so per account): an exclusive lock held while the bot runs.
    The kernel releases it when the process dies, however it dies."""

    def __init__(self, state_path: str) -> None:
        self.state_path = state_path
        self.path = f"{state_path}.bot.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartupError(f"another MrAster bot (pid {other}) is already running on "
                               f"{self.state_path}; stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def handle_commands(engine: Engine, commands: Mapping[str, Any], state: dict[str, Any],
                          emit: EventSink) -> None:
    """Run the dashboard's commands not yet acknowledged (``commands``: the durable inbox section
    of the state file; acknowledgements go to ``command_acks``)."""
    inbox = commands.get("inbox", [])
    acks = state.setdefault("command_acks", {})
    state["paused"] = bool(commands.get("paused", False))
    for cmd in inbox:
        if cmd.get("id") in acks:
            continue
        partly = False
        try:
            if cmd.get("kind") == "close":
                ok, message = True, await engine.close_positions(cmd.get("symbol"))
            elif cmd.get("kind") == "flatten":
                ok, message = True, await engine.close_positions(None)
            elif cmd.get("kind") == "adopt":
                ok, message = await engine.adopt_external(cmd.get("symbol") or "")
            elif cmd.get("kind") == "lift_breakers":
                ok, message = True, engine.lift_breakers()
            elif cmd.get("kind") == "enter" and cmd.get("side") in ("BUY", "SELL"):
                # on disk before the order can leave: after a crash in between, the trade is
                # reported as interrupted, never sent a second time
                acks[cmd["id"]] = _ack(False, INTERRUPTED)
                engine.save()
                ok, message = await engine.manual_entry(cmd.get("symbol") or "", cmd["side"])
            else:
                ok, message = False, words("unknown command {kind}", kind=repr(cmd.get("kind")))
        except E.ExchangeError as exc:
            # (a close that failed says which symbols; its notices name the error)
            ok, message = False, exc.said or words("failed: {error}", error=E.said_error(exc))
            partly = exc.partly
            if exc.said is None:
                engine.alert("error", words("command {kind} {symbol}: {error}",
                                            kind=cmd.get("kind"), symbol=cmd.get("symbol") or "",
                                            error=E.said_error(exc)))
        acks[cmd["id"]] = _ack(ok, message, partly)
        emit("command", id=cmd["id"], kind=cmd.get("kind"), symbol=cmd.get("symbol"), ok=ok,
             partly=partly, message=str(message))
    live_ids = {c.get("id") for c in inbox}
    for cid in [c for c in acks if c not in live_ids]:
        del acks[cid]


def _ack(ok: bool, message: Words, partly: bool = False) -> dict[str, Any]:
    """The bot's answer to a command: the page shows it in its language; ``partly``: it failed
    after doing some of it (a *Flatten all* that closed some positions), which the page says
    as "partly done", not "refused"."""
    return {"ok": ok, "partly": partly, "message": str(message), "words": message.to_dict(),
            "time": int(time.time() * 1000)}


def _has_new_commands(commands: Mapping[str, Any], state: dict[str, Any]) -> bool:
    acks = state.get("command_acks", {})
    return bool(commands.get("paused", False)) != state.get("paused", False) or any(
        c.get("id") not in acks for c in commands.get("inbox", []))


def open_journal(s: Mapping[str, Any], state: Mapping[str, Any], alert) -> Journal | None:
    """The journal, with the history an older state file still holds moved in. A journal that
    cannot be opened or written is a notice, not a reason to stop trading: the state file keeps
    the working set."""
    path = beside_state(s, "ASTER_JOURNAL_FILE")
    try:
        journal = Journal(path, state["mode"], on_error=lambda m: alert("error", m))
        moved = journal.import_state(state)
    except (JournalError, sqlite3.Error) as exc:
        alert("error", words("trade journal unavailable, trades are kept only in the state file: "
                             "{error}", error=str(exc)))
        return None
    if moved:
        log.info("journal: %d trades from the state file moved in", moved)
    return journal


def bot_state(doc: JsonDocument) -> dict[str, Any]:
    """What a starting bot takes over from the state file (the rest is the dashboard's)."""
    return {k: v for k, v in doc.read().items() if k in BOT_KEYS}


def _save(doc: JsonDocument, state: dict[str, Any]) -> None:
    def merge(d: dict[str, Any]) -> None:
        for k in BOT_KEYS:
            if k in state:
                d[k] = state[k]
    doc.update(merge)


async def run_async(s: Mapping[str, Any]) -> int:
    doc = state_document(s["ASTER_STATE_FILE"])
    queue = queue_document(s["ASTER_BRACKETS_QUEUE_FILE"])
    state = bot_state(doc)
    emit = EventSink(s["ASTER_EVENTS_FILE"])
    lock = BotLock(s["ASTER_STATE_FILE"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        lock.acquire()
        ex, source = await make_exchange(s, state)
    except StartupError as exc:
        lock.release()
        print(f"aster_multi_bot: {exc}", file=sys.stderr)
        return 2
    if source == "live" and not s["ASTER_PAPER"]:
        def waiting(why: str) -> None:
            log.warning("waiting for the exchange at %s: %s", s["ASTER_EXCHANGE_BASE"], why)
            state["bot"] = {"pid": os.getpid(), "started": int(time.time() * 1000),
                            "waiting": why}
            emit("waiting", why=why)
            _save(doc, state)
        if not await wait_for_exchange(ex, stop, waiting):
            await ex.close()
            lock.release()
            emit("stop", code=0)
            return 0
    state["market_source"] = source
    state["mode"] = "paper" if s["ASTER_PAPER"] else "live"
    engine = Engine(ex, s, state, queue, emit, save=lambda: _save(doc, state))
    engine.stopping = stop.is_set
    record = beside_state(s, "ASTER_RECORD_FILE")
    engine.journal = journal = open_journal(s, state, engine.alert)
    engine.recorder = Recorder(record, s["ASTER_RECORD_DAYS"])
    auditor = audit.DailyAudit(str(record), s)
    for client in (ex, getattr(ex, "market", None)):
        if isinstance(client, AsterRest):
            client.stop = stop  # rate-limit and back-off waits end at once on SIGTERM
    _wire_ai(engine, s, state, doc, emit)
    notifier = Notifier(s, state, doc, engine.alert)

    def emit_and_notify(event: str, /, **data: Any) -> None:
        emit(event, **data)
        notifier.on_event(event, data)
        if journal is not None:
            journal.on_event(event, data)
    engine.emit = emit_and_notify
    notifier.start()
    state["bot"] = {"pid": os.getpid(), "started": int(time.time() * 1000)}
    log.info("MrAster bot started: %s mode, market source %s", state["mode"], source)
    emit("start", mode=state["mode"], market_source=source)
    for note in getattr(s, "imported", ()):  # the page's only word of an import the bot made
        engine.alert("warning", note)
    code = 0
    try:
        try:
            if await engine.hedge_mode():
                print(f"aster_multi_bot: {HEDGE_MODE}", file=sys.stderr)
                engine.alert("error", words(HEDGE_MODE))
                code = 2
                return code
        except E.ExchangeError as exc:
            engine.alert("error", words("the position mode could not be read ({error}); checked "
                                        "again at the next start", error=E.said_error(exc)))
        try:  # crash-only: adopt, book and re-protect before the first scan
            await engine.reconcile()
            _save(doc, state)
        except E.ExchangeError as exc:
            engine.alert("error", words("start-up reconciliation failed: {error}; retried every "
                                        "cycle", error=E.said_error(exc)))
        while not stop.is_set():
            try:
                shared = doc.read()  # the dashboard's part of the state file: commands, ui
                await handle_commands(engine, shared.get("commands", {}), state, emit)
                engine.chart_symbols = tuple(filter(None, [shared.get("ui", {}).get("chart_symbol")]))
                res = await engine.cycle(paused=state["paused"])
                if s["ASTER_RUN_ONCE"] and engine.advisor and await engine.advisor.wait_pending(
                        s["ASTER_AI_PLAN_TIMEOUT_SECONDS"]):
                    # one scan asked for reviews: wait for them and act on them, instead of
                    # exiting with paid answers nobody reads
                    res = await engine.cycle(paused=state["paused"])
                notifier.daily(engine.market_ms or engine.now_ms())
                if s["ASTER_RECORD_DAYS"]:  # the daily replay runs beside the loop
                    now = engine.market_ms or engine.now_ms()
                    auditor.start_if_due(state, now)
                    await auditor.collect(engine, state, now)
                    while s["ASTER_RUN_ONCE"] and auditor.pending:  # a single run finishes it
                        await auditor.wait(60)
                        if auditor.busy:
                            break
                        await auditor.collect(engine, state, now)
                reasons: dict[str, int] = {}
                for d in res.decisions.values():
                    reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
                log.info("cycle %d: %d symbols, opened %s, closed %d, reasons %s",
                         state["stats"]["cycles"], len(res.decisions), res.opened or "none",
                         len(res.closed), reasons)
            except E.Interrupted:
                log.info("cycle cut short: stopping")
            except E.ExchangeError as exc:
                engine.alert("error", words("cycle failed: {error}", error=E.said_error(exc)))
                if s["ASTER_RUN_ONCE"]:
                    code = 1
            _save(doc, state)
            if s["ASTER_RUN_ONCE"]:
                break
            await _pause_between_cycles(engine, doc, state, emit, stop,
                                        s["ASTER_SCAN_INTERVAL_SECONDS"])
    finally:
        _save(doc, state)
        await notifier.close()
        await ex.close()
        if engine.advisor:
            await engine.advisor.close()
        if engine.copilots:
            await engine.copilots.close()
        if engine.news:
            await engine.news.close()
        emit("stop", code=code)
        if journal is not None:
            journal.close()
        lock.release()
        log.info("MrAster bot stopped")
    return code


def _wire_ai(engine: Engine, s: Mapping[str, Any], state: dict[str, Any], doc: JsonDocument,
             emit: EventSink) -> None:
    """Advisor (with a key or a compatible server), copilots and news (in AI mode), all paying
    from one budget: a locked section of the state file, so neither the bot nor the dashboard's
    chat can cross the daily limit the other has reserved."""
    ledger = SectionLedger(doc, "ai_budget")
    old = state.get("ai_ledger", {}).pop("budget", None)  # before the shared ledger: keep today's spend

    def adopt(d: dict[str, Any]) -> None:
        if not d:
            d.update(day=old["day"], spent=old.get("spent", 0.0), calls=old.get("calls", 0),
                     models=old.get("models", {}), reservations={})
    if old and old.get("day") == utc_day():
        ledger.update(adopt)
    budget = daily_budget(s, ledger)
    engine.advisor = advisor_from_settings(s, state.setdefault("ai_ledger", {}), emit, budget)
    if ai_mode(s):
        engine.copilots = Copilots(s, state.setdefault("copilots", {}), budget=budget, emit=emit,
                                   alert=engine.alert,
                                   llm=engine.advisor.llm if engine.advisor else None)
        if s["ASTER_AI_NEWS_ENDPOINT"] and s["ASTER_AI_SENTINEL_ENABLED"]:
            engine.news = NewsFeed(s["ASTER_AI_NEWS_ENDPOINT"], s["ASTER_AI_NEWS_API_KEY"])
    # the page shows the budget from the ledger itself (always current), not a copy from here
    state["ai"] = {"status": "on"} if engine.advisor else {
        "status": "off", "why": ai_off_reason(s), "copilots": "rules" if engine.copilots else None}


async def _pause_between_cycles(engine: Engine, doc: JsonDocument, state: dict[str, Any],
                                emit: EventSink, stop: asyncio.Event, seconds: float) -> None:
    """Wait for the next cycle, but act on the dashboard's commands within about a second."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=min(1.0, left))
        except asyncio.TimeoutError:
            pass
        commands = doc.read().get("commands", {}) if not stop.is_set() else {}
        if commands and _has_new_commands(commands, state):
            try:
                await handle_commands(engine, commands, state, emit)
            except E.ExchangeError as exc:
                engine.alert("error", words("commands failed: {error}", error=E.said_error(exc)))
            _save(doc, state)


def run(s: Mapping[str, Any]) -> int:
    return asyncio.run(run_async(s))


def keep_guard_alert(doc: JsonDocument, data: Mapping[str, Any]) -> None:
    """An alert of ``brackets_guard.py`` kept in the state file, where the page shows it with
    the bot's (a stop it could not place, a position it closed at market): it was only printed,
    so a trader watching from a phone never heard of it. Only this key is written, under the
    file's lock (the bot merges its own keys; neither loses the other's writes). A write that
    fails is logged: the guard's repairs go on."""
    record = notice(data.get("level", "error"), words("brackets_guard.py: {notice}",
                                                      notice=data.get("message", "")),
                    data.get("symbol"), source="guard")
    try:
        keep_notice(doc, "guard_alerts", record)
    except OSError as exc:  # (a full disk; the bot holding the file's lock beyond its timeout)
        log.error("the guard's notice could not be kept in %s: %s", doc.path, exc)


async def guard_command(loop_seconds: float | None) -> int:
    """``brackets_guard.py``: repair brackets of the positions in the state file. ``--once``
    exits 1 with one line when the exchange fails; ``--loop`` backs off and carries on (an
    outage is waited for), and stops within a second of SIGTERM."""
    from mraster.bot import startup

    s = startup("brackets_guard")
    if s is None:
        return 2
    if s["ASTER_PAPER"]:
        # simulated fills live inside the bot's process: there is no exchange account to repair
        print("brackets_guard: paper mode — the bot guards its simulated positions itself; this "
              "command repairs brackets on a live account (ASTER_PAPER=false)", file=sys.stderr)
        return 0
    doc = state_document(s["ASTER_STATE_FILE"])
    state = {k: v for k, v in doc.read().items() if k in BOT_KEYS}
    try:
        ex, _ = await make_exchange(s, state, pause_s=loop_seconds or 0.0)
    except StartupError as exc:
        print(f"brackets_guard: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    ex.stop = stop
    queue = queue_document(s["ASTER_BRACKETS_QUEUE_FILE"])
    sink = EventSink(None)

    def emit(event: str, /, **data: Any) -> None:
        """Every event printed; an alert also kept for the dashboard."""
        sink(event, **data)
        if event == "alert":
            keep_guard_alert(doc, data)
    guard: BracketGuard | None = None
    # the market closes this run sent per position: it saves no position, and each pass reads
    # them from the bot's state again (a second close would have repeated the first's id)
    closes: dict[str, int] = {}
    backoff = 1.0
    try:
        while not stop.is_set():
            try:
                if guard is None:
                    rules = rules_from_exchange_info(await ex.exchange_info())
                    guard = BracketGuard(ex, rules, queue, emit, s["ASTER_BRACKET_ALERT_AFTER"],
                                         close_kind="X2")
                amounts = position_amounts(await ex.position_risk())
                positions = positions_of(doc.read())
                for token, pos in positions.items():
                    pos.close_seq = max(pos.close_seq, closes.get(token, 0))
                try:
                    done = await guard.run(positions, amounts)
                finally:
                    closes.update((t, p.close_seq) for t, p in positions.items())
                log.info("bracket guard pass: %s", done)
                backoff, wait = 1.0, loop_seconds
            except E.Interrupted:
                break
            except E.ExchangeError as exc:
                if not loop_seconds:
                    print(f"brackets_guard: the exchange failed: {exc}", file=sys.stderr)
                    return 1
                log.warning("bracket guard pass failed (%s); retrying in %.0f s", exc, backoff)
                wait, backoff = backoff, min(30.0, backoff * 2)
            if not loop_seconds:
                return 0
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass
        return 0
    finally:
        await ex.close()

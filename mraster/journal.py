"""The trade journal: every order event, fill, trade (with its notes), funding payment, equity
snapshot and alert, in one SQLite file that is only ever appended to.

Why SQLite and not the state file: ``aster_state.json`` is rewritten every cycle and must stay
small, so it keeps only the live working set (a few hundred recent trades for the breakers and the
overview). The journal keeps everything, uncapped, and old rows are never rewritten: every insert
is keyed (``INSERT OR IGNORE``), so booking the same trade again after a crash adds nothing.

One writer — the bot (its process lock makes it the only one) — and any number of readers: the
database runs in WAL mode, readers open it read-only. A transaction is all or nothing, so a
``kill -9`` at any moment leaves the file consistent; a trade and its fills land together.

The backtest writes the same schema into a file of its own (``write_backtest``), so the dashboard's
History views compare a backtest with a live run. The schema's version is SQLite's
``user_version``; ``MIGRATIONS[n]`` takes a version-``n`` file to ``n + 1``.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from mraster.metrics import max_drawdown, trade_stats
from mraster.store import replace_synced, sweep_stale_temps
from mraster.words import Words, words

log = logging.getLogger("mraster.journal")

MIGRATIONS: tuple[str, ...] = (
    # 0 → 1
    """
    CREATE TABLE trades (
        id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, mode TEXT NOT NULL,
        symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL, entry REAL, exit REAL,
        opened_at INTEGER, closed_at INTEGER NOT NULL, pnl REAL NOT NULL, fees REAL, funding REAL,
        r REAL, reason TEXT, origin TEXT, client_id TEXT, record TEXT NOT NULL);
    CREATE INDEX trades_mode_closed ON trades (mode, closed_at);
    CREATE TABLE trade_notes (
        id INTEGER PRIMARY KEY, trade_key TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
        time INTEGER NOT NULL, UNIQUE (trade_key, kind, text));
    CREATE TABLE fills (
        id INTEGER PRIMARY KEY, mode TEXT NOT NULL, symbol TEXT NOT NULL, trade_id INTEGER NOT NULL,
        order_id INTEGER, client_id TEXT, side TEXT, price REAL, qty REAL, fee REAL,
        time INTEGER, trade_key TEXT, UNIQUE (mode, symbol, trade_id));
    CREATE TABLE order_events (
        id INTEGER PRIMARY KEY, mode TEXT NOT NULL, time INTEGER NOT NULL, symbol TEXT,
        client_id TEXT, event TEXT NOT NULL, side TEXT, qty REAL, price REAL, status TEXT,
        data TEXT, key TEXT UNIQUE);
    CREATE INDEX order_events_mode_time ON order_events (mode, time);
    CREATE TABLE funding (
        id INTEGER PRIMARY KEY, mode TEXT NOT NULL, symbol TEXT NOT NULL, time INTEGER NOT NULL,
        amount REAL NOT NULL, UNIQUE (mode, symbol, time));
    CREATE TABLE equity (
        mode TEXT NOT NULL, time INTEGER NOT NULL, equity REAL NOT NULL, used_margin REAL,
        PRIMARY KEY (mode, time));
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY, mode TEXT NOT NULL, time INTEGER NOT NULL, level TEXT,
        message TEXT, symbol TEXT);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    """,
)
VERSION = len(MIGRATIONS)
MODES = ("paper", "live", "backtest")
TRADE_COLUMNS = ("closed_at", "symbol", "side", "qty", "entry", "exit", "reason", "pnl", "fees",
                 "funding", "r", "opened_at", "origin", "client_id")
FILL_SQL = ("INSERT OR IGNORE INTO fills (mode, symbol, trade_id, order_id, client_id, side, price, "
            "qty, fee, time, trade_key) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
FUNDING_SQL = "INSERT OR IGNORE INTO funding (mode, symbol, time, amount) VALUES (?,?,?,?)"
ORDER_COLUMNS = ("time", "symbol", "event", "side", "qty", "price", "status", "client_id")


class JournalError(Exception):
    """The journal file cannot be used (newer schema, not a database); the message says why."""


def trade_key(t: Mapping[str, Any]) -> str:
    """A trade's identity: its entry order's client id (unique per position), else its symbol,
    side and times (a position handed over from the original bot has no client id of ours)."""
    cid = t.get("client_id")
    return str(cid) if cid else f"{t['symbol']}:{t['side']}:{t.get('opened_at')}:{t['closed_at']}"


def trade_notes(t: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Why it was taken: the AI's explanation, or that the user asked for it in the chat."""
    out = []
    if t.get("ai"):
        out.append(("ai", t["ai"] if isinstance(t["ai"], str) else json.dumps(t["ai"])))
    if t.get("origin") == "chat":
        out.append(("origin", "opened from a chat proposal you confirmed"))
    elif t.get("origin") == "handed_over":
        out.append(("origin", "handed over from the original bot"))
    return out


def _note(kind: str, text: str) -> dict[str, Any]:
    """A trade's note for the page: its English ``message`` and, where known, its ``words`` (the
    reader's language). The AI's explanation is the model's own text; a rule's lesson is kept
    with its words (``Journal.lesson``); the bot's fixed notes are their own templates."""
    said: Any = None
    if kind == "lesson" and text.startswith("{"):
        try:
            d = json.loads(text)
            text, said = str(d["message"]), d.get("words")
        except (ValueError, KeyError, TypeError):
            pass  # a lesson that merely starts with a brace
    if kind == "lesson":
        return {"message": f"lesson: {text}",
                "words": {"template": "lesson: {lesson}", "params": {"lesson": said or text}}}
    return {"message": text, "words": {"template": text, "params": {}} if kind == "origin" else None}


def _connect(path: str | Path, readonly: bool, fresh: bool = False) -> sqlite3.Connection:
    """``fresh``: a new file written once and synced by its writer before anyone reads it (a
    backtest's temp file): no rollback journal and no syncs while it is written (half the
    time of a backtest's journal went on WAL writes and their checkpoint)."""
    if str(path) == ":memory:":
        conn = sqlite3.connect(":memory:", check_same_thread=False)
    elif readonly:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True,
                               check_same_thread=False, timeout=10)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
        if fresh:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
        else:
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL with NORMAL: a crash of the process never loses a committed row; only a power
            # cut can lose the last few (the file stays consistent either way)
            conn.execute("PRAGMA synchronous=NORMAL")
    conn.row_factory = sqlite3.Row
    return conn


def _migrate(conn: sqlite3.Connection, path: Any) -> None:
    have = conn.execute("PRAGMA user_version").fetchone()[0]
    if have > VERSION:
        raise JournalError(f"{path}: the journal was written by a newer MrAster (schema {have}, "
                           f"this one knows {VERSION}); update MrAster or move the file aside")
    for n in range(have, VERSION):  # each step is one transaction with its version bump
        conn.executescript("BEGIN;" + MIGRATIONS[n] + f"PRAGMA user_version={n + 1};COMMIT;")
        log.info("journal %s: schema %d → %d", path, n, n + 1)


class Journal:
    """The writer. ``mode`` (paper, live or backtest) is stamped on every row, so switching from
    paper to live keeps two histories apart in one file."""

    def __init__(self, path: str | Path, mode: str,
                 on_error: Callable[[Words], None] | None = None, fresh: bool = False) -> None:
        """``on_error``: told once when writing starts failing (the bot makes it a notice);
        ``fresh``: a new file its writer syncs before it is read (``_connect``)."""
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not allowed; expected one of {', '.join(MODES)}")
        self.path, self.mode = path, mode
        try:
            self.conn = _connect(path, readonly=False, fresh=fresh)
            _migrate(self.conn, path)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{path}: not a usable journal ({exc}); move it aside and the bot "
                               "starts a new one") from exc
        self.failing = False
        self.failed = 0  # writes that failed so far (``failing``: the last one did)
        self.error = ""  # what the last failed write said
        self.on_error = on_error

    def close(self) -> None:
        self.conn.close()

    def _write(self, what: str, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._many([(what, sql, rows)])

    def _many(self, batches: Sequence[tuple[str, str, Iterable[Sequence[Any]]]]) -> None:
        """One transaction; a failure (disk full, a locked file) is logged once and the bot
        trades on: the state file still holds the working set."""
        try:
            with self.conn:
                for _, sql, rows in batches:
                    self.conn.executemany(sql, rows)
            if self.failing:
                log.warning("journal %s: writing again", self.path)
            self.failing = False
        except sqlite3.Error as exc:
            self.failed += 1
            self.error = f"{batches[0][0]} could not be written ({exc})"
            if self.failing:
                return
            self.failing = True  # before telling: the notice is itself written here
            log.error("trade journal %s: %s", self.path, self.error)
            if self.on_error is not None:  # (a notice: in the reader's language)
                self.on_error(words("trade journal {path}: {what} could not be written ({error}); "
                                    "trades stay in the state file until it works again",
                                    path=str(self.path), what=batches[0][0], error=str(exc)))

    # -- what the bot books ------------------------------------------------------------------
    def book(self, trade: Mapping[str, Any], fills: Iterable[Any] = (),
             funding: Iterable[Mapping[str, Any]] = (), orders: Iterable[Mapping[str, Any]] = ()
             ) -> None:
        """A closed trade with the fills it was booked from, the funding it paid or earned and
        its orders' final states, in one transaction."""
        key = trade_key(trade)
        self._many(self._trade_rows([trade]) + [
            ("fills", FILL_SQL, [(self.mode, trade["symbol"], f.trade_id, f.order_id, f.client_id,
                                  f.side.value, f.price, f.qty, f.fee, f.time, key) for f in fills]),
            ("funding", FUNDING_SQL, [(self.mode, trade["symbol"], int(r["time"]),
                                       float(r["income"])) for r in funding]),
            ("orders", *self._status_rows(orders))])

    def _trade_rows(self, trades: Iterable[Mapping[str, Any]]
                    ) -> list[tuple[str, str, list[tuple[Any, ...]]]]:
        rows, notes = [], []
        for t in trades:
            key = trade_key(t)
            rows.append((key, self.mode, t["symbol"], t["side"], t.get("qty"), t.get("entry"),
                         t.get("exit"), t.get("opened_at"), t["closed_at"], t["pnl"],
                         t.get("fees"), t.get("funding"), t.get("r"), t.get("reason"),
                         t.get("origin"), t.get("client_id"), json.dumps(t, default=str)))
            notes += [(key, kind, text, t["closed_at"]) for kind, text in trade_notes(t)]
        return [("trades", "INSERT OR IGNORE INTO trades (key, mode, symbol, side, qty, entry, exit, "
                           "opened_at, closed_at, pnl, fees, funding, r, reason, origin, client_id, "
                           "record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows),
                ("notes", "INSERT OR IGNORE INTO trade_notes (trade_key, kind, text, time) "
                          "VALUES (?,?,?,?)", notes)]

    def _status_rows(self, orders: Iterable[Mapping[str, Any]]) -> tuple[str, list[tuple]]:
        """An order's state as the exchange last reported it; one row per (order, state)."""
        rows = [(self.mode, int(o.get("updateTime") or o.get("time") or 0), o.get("symbol"),
                 o.get("clientOrderId"), "status", o.get("side"), float(o.get("origQty") or 0),
                 float(o.get("avgPrice") or o.get("price") or 0), o.get("status"),
                 json.dumps(dict(o), default=str), f"{self.mode}:{o.get('symbol')}:{o.get('orderId')}:"
                                                   f"{o.get('status')}")
                for o in orders]
        return ("INSERT OR IGNORE INTO order_events (mode, time, symbol, client_id, event, side, "
                "qty, price, status, data, key) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def on_event(self, event: str, data: Mapping[str, Any]) -> None:
        """The bot's event stream: order actions, alerts, equity per cycle, postmortem lessons."""
        now = int(time.time() * 1000)
        if event == "order":
            self._write("an order event", "INSERT INTO order_events (mode, time, symbol, client_id, "
                        "event, side, qty, price, status, data) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        [(self.mode, now, data.get("symbol"), data.get("client_id"),
                          str(data.get("action") or "order"), data.get("side"), data.get("qty"),
                          data.get("price"), data.get("status"), json.dumps(dict(data), default=str))])
        elif event == "alert":
            self._write("an alert", "INSERT INTO alerts (mode, time, level, message, symbol) "
                        "VALUES (?,?,?,?,?)", [(self.mode, now, data.get("level"),
                                                data.get("message"), data.get("symbol"))])
        elif event == "cycle" and data.get("equity") is not None:
            self.equity([(int(data.get("time") or now), float(data["equity"]),
                          data.get("used_margin"))])
        elif event == "postmortem" and data.get("lesson") and data.get("closed_at") is not None:
            self.lesson(str(data.get("symbol")), int(data["closed_at"]), str(data["lesson"]),
                        data.get("lesson_words"))

    def equity(self, points: Iterable[tuple[int, float, float | None]]) -> None:
        self._write("equity", "INSERT OR IGNORE INTO equity (mode, time, equity, used_margin) "
                    "VALUES (?,?,?,?)", [(self.mode, int(t), float(e), u) for t, e, u in points])

    def lesson(self, symbol: str, closed_at: int, text: str,
               said: Mapping[str, Any] | None = None) -> None:
        """``said``: the lesson as words (a rule's; an LLM's is text only), kept with the text in
        the note, so the History shows it in the reader's language."""
        if isinstance(said, Mapping):
            text = json.dumps({"message": text, "words": said})
        try:
            row = self.conn.execute("SELECT key FROM trades WHERE mode=? AND symbol=? AND "
                                    "closed_at=?", (self.mode, symbol, closed_at)).fetchone()
        except sqlite3.Error:
            return  # written with the next lesson of this trade, or never: a note, not a booking
        if row is not None:
            self._write("a lesson", "INSERT OR IGNORE INTO trade_notes (trade_key, kind, text, time) "
                        "VALUES (?,?,?,?)", [(row["key"], "lesson", text, closed_at)])

    # -- upgrades and backtests ----------------------------------------------------------------
    def import_state(self, state: Mapping[str, Any]) -> int:
        """History kept in an older state file moves into the journal (trades, equity curve,
        alerts, lessons); run at every start, it adds only what is not there yet. Returns the
        number of trades that were new."""
        before = self.count("trades")
        trades = [t for t in state.get("history", []) if isinstance(t, dict) and "closed_at" in t]
        self._many(self._trade_rows(trades))
        self.equity((p[0], p[1], None) for p in state.get("equity_curve", [])
                    if isinstance(p, (list, tuple)) and len(p) >= 2)
        if not self.conn.execute("SELECT 1 FROM meta WHERE key='alerts_imported'").fetchone():
            self._many([("alerts", "INSERT INTO alerts (mode, time, level, message, symbol) "
                                   "VALUES (?,?,?,?,?)",
                         [(self.mode, a.get("time") or 0, a.get("level"), a.get("message"),
                           a.get("symbol")) for a in state.get("alerts", []) if isinstance(a, dict)]),
                        ("meta", "INSERT OR REPLACE INTO meta VALUES ('alerts_imported', '1')", [()])])
        for r in state.get("copilots", {}).get("reviews", []) if isinstance(
                state.get("copilots"), dict) else []:
            if r.get("lesson") and r.get("closed_at") is not None:
                self.lesson(str(r.get("symbol")), int(r["closed_at"]), str(r["lesson"]),
                            r.get("lesson_words"))
        return self.count("trades") - before

    def count(self, table: str) -> int:
        assert table in ("trades", "fills", "order_events", "funding", "equity", "alerts")
        return self.conn.execute(f"SELECT COUNT(*) FROM {table} WHERE mode=?",
                                 (self.mode,)).fetchone()[0]


def write_backtest(path: str | Path, result: Any) -> Path:
    """A backtest's journal (same schema, mode "backtest"): written to a temp file, synced and
    renamed, so a reader sees the previous run or this one, never half of it. A write that
    fails (a full disk) is a ``JournalError`` and the previous journal stays."""
    path = Path(path)
    sweep_stale_temps(path)  # those of runs killed while writing
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    j = Journal(tmp, "backtest", fresh=True)
    try:
        state = result.state
        j.import_state({**state, "equity_curve": []})
        j.equity((t, e, None) for t, e in result.equity)
        acct = result.account
        if acct is not None:  # every fill, funding payment and order the simulator kept
            cids = {o.orderId: o.clientOrderId for o in acct.orders.values()}
            j._many([
                ("fills", FILL_SQL, [("backtest", t["symbol"], t["id"], t["orderId"],
                                      cids.get(t["orderId"], ""), t["side"], float(t["price"]),
                                      float(t["qty"]), float(t["commission"]), t["time"], None)
                                     for t in acct.trades]),
                ("funding", FUNDING_SQL, [("backtest", r["symbol"], r["time"], float(r["income"]))
                                          for r in acct.income
                                          if r["incomeType"] == "FUNDING_FEE"]),
                ("orders", *j._status_rows(o.as_dict() for o in acct.orders.values()))])
        j._many([("meta", "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                  [("backtest", json.dumps({"symbols": result.symbols, "start_ms": result.start_ms,
                                            "end_ms": result.end_ms}))])])
        if j.failed:  # without a rollback journal, the file is not kept whole
            raise JournalError(f"{path}: the backtest's journal could not be written: "
                               f"{j.error}; the previous one is kept")
        j.close()
        replace_synced(tmp, path)
    except BaseException:
        j.close()
        tmp.unlink(missing_ok=True)  # the previous run's journal stays as it was
        raise
    return path


# -- reading (the dashboard) ---------------------------------------------------------------------
@dataclass(frozen=True)
class TradeFilter:
    mode: str
    symbol: str = ""
    side: str = ""  # BUY, SELL or "" for both
    result: str = ""  # win, loss or ""
    reason: str = ""
    since: int | None = None  # closed at or after (ms)
    until: int | None = None  # closed before (ms)

    def where(self) -> tuple[str, list[Any]]:
        sql, args = ["mode = ?"], [self.mode]
        if self.symbol:
            sql.append("symbol LIKE ?")
            args.append(f"%{self.symbol}%")
        if self.side:
            sql.append("side = ?")
            args.append(self.side)
        if self.result:
            sql.append("pnl > 0" if self.result == "win" else "pnl <= 0")
        if self.reason:
            sql.append("reason = ?")
            args.append(self.reason)
        if self.since is not None:
            sql.append("closed_at >= ?")
            args.append(self.since)
        if self.until is not None:
            sql.append("closed_at < ?")
            args.append(self.until)
        return " AND ".join(sql), args


PERIODS = {"day": "%Y-%m-%d", "week": "%Y-W%W", "month": "%Y-%m"}


class JournalReader:
    """Read-only queries for the dashboard; a missing file reads as an empty journal."""

    def __init__(self, path: str | Path | None, fallback: Mapping[str, Any] | None = None) -> None:
        """``fallback``: a state document to show while no journal exists yet (the bot has not
        run since the upgrade): its history is read through the same queries, in memory."""
        if path is not None and Path(path).exists():
            try:
                self.conn = _connect(path, readonly=True)
                have = self.conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise JournalError(f"{path}: not a usable journal ({exc})") from exc
            if have > VERSION:
                raise JournalError(f"{path}: written by a newer MrAster (schema {have})")
            self.empty = have == 0
        else:
            mem = Journal(":memory:", str((fallback or {}).get("mode") or "paper"))
            if fallback:
                mem.import_state(fallback)
            self.conn, self.empty = mem.conn, False

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "JournalReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def trades(self, f: TradeFilter, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """One page of trades, newest first, with the totals of everything the filter matches."""
        if self.empty:
            return {"total": 0, "pnl": 0.0, "wins": 0, "rows": []}
        where, args = f.where()
        tot = self.conn.execute(f"SELECT COUNT(*), COALESCE(SUM(pnl), 0), "
                                f"COALESCE(SUM(pnl > 0), 0) FROM trades WHERE {where}",
                                args).fetchone()
        rows = self.conn.execute(f"SELECT key, record FROM trades WHERE {where} "
                                 "ORDER BY closed_at DESC, id DESC LIMIT ? OFFSET ?",
                                 args + [limit, offset]).fetchall()
        notes = self._notes([r["key"] for r in rows])
        return {"total": tot[0], "pnl": round(tot[1], 6), "wins": tot[2],
                "rows": [{**json.loads(r["record"]), "notes": notes.get(r["key"], [])}
                         for r in rows]}

    def _notes(self, keys: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        if not keys:
            return out
        q = ",".join("?" * len(keys))
        for r in self.conn.execute(f"SELECT trade_key, kind, text FROM trade_notes WHERE trade_key "
                                   f"IN ({q}) ORDER BY id", keys):
            out.setdefault(r["trade_key"], []).append(_note(r["kind"], r["text"]))
        return out

    def calendar(self, f: TradeFilter, period: str) -> list[dict[str, Any]]:
        """P&L per UTC day, week (Monday first) or month, newest first."""
        if self.empty:
            return []
        where, args = f.where()
        fmt = PERIODS[period]
        rows = self.conn.execute(
            f"SELECT strftime('{fmt}', closed_at / 1000, 'unixepoch') AS p, COUNT(*) AS n, "
            f"SUM(pnl) AS pnl, SUM(pnl > 0) AS wins, SUM(fees) AS fees, SUM(r) AS r "
            f"FROM trades WHERE {where} GROUP BY p ORDER BY p DESC LIMIT 400", args).fetchall()
        return [{"period": r["p"], "trades": r["n"], "pnl": round(r["pnl"], 6), "wins": r["wins"],
                 "fees": round(r["fees"] or 0, 6), "r": round(r["r"] or 0, 4)} for r in rows]

    def equity(self, mode: str, points: int = 500) -> list[list[float]]:
        """The whole equity curve, thinned to buckets of time: each bucket keeps its first, last,
        lowest and highest point, so a drawdown is never smoothed away and the curve starts and
        ends where the run did."""
        if self.empty:
            return []
        n, lo, hi = self.conn.execute("SELECT COUNT(*), MIN(time), MAX(time) FROM equity WHERE "
                                      "mode=?", (mode,)).fetchone()
        if not n:
            return []
        step = (hi - lo) // max(1, points) + 1 if n > points else 1
        picked: dict[int, float] = {}
        for agg in ("MIN(time)", "MAX(time)", "MIN(equity)", "MAX(equity)"):
            # SQLite fills a bare column from the row the MIN/MAX picked
            for t, e, _ in self.conn.execute(
                    f"SELECT time, equity, {agg} FROM equity WHERE mode=? GROUP BY (time - ?) / ?",
                    (mode, lo, step)):
                picked[t] = e
        return [[t, picked[t]] for t in sorted(picked)]

    def performance(self, mode: str) -> dict[str, Any]:
        """The overview's figures over every trade and the whole equity curve (the state file
        holds only the recent ones)."""
        trades = [] if self.empty else [dict(r) for r in self.conn.execute(
            "SELECT pnl, r FROM trades WHERE mode=?", (mode,))]
        return {**trade_stats(trades), **max_drawdown(self.equity(mode, 2000))}

    def orders(self, mode: str, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        if self.empty:
            return {"total": 0, "rows": []}
        total = self.conn.execute("SELECT COUNT(*) FROM order_events WHERE mode=?",
                                  (mode,)).fetchone()[0]
        rows = self.conn.execute(f"SELECT {', '.join(ORDER_COLUMNS)} FROM order_events WHERE "
                                 "mode=? ORDER BY time DESC, id DESC LIMIT ? OFFSET ?",
                                 (mode, limit, offset)).fetchall()
        return {"total": total, "rows": [dict(r) for r in rows]}

    def csv(self, what: str, f: TradeFilter) -> Iterator[str]:
        """trades.csv (the filter applies) or orders.csv, oldest first, in chunks."""
        if what == "trades":
            where, args = f.where()
            sql = (f"SELECT {', '.join(TRADE_COLUMNS)} FROM trades WHERE {where} "
                   "ORDER BY closed_at, id")
            head = TRADE_COLUMNS
        else:
            sql, args = (f"SELECT {', '.join(ORDER_COLUMNS)} FROM order_events WHERE mode=? "
                         "ORDER BY time, id"), [f.mode]
            head = ORDER_COLUMNS
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(head)
        if not self.empty:
            cur = self.conn.execute(sql, args)
            while True:
                chunk = cur.fetchmany(500)
                if not chunk:
                    break
                w.writerows(tuple(r) for r in chunk)
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    def check(self) -> str:
        """SQLite's own integrity check: "ok" for a consistent file."""
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

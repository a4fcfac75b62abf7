"""The trade journal (mraster.journal): the bot books every trade with its fills into SQLite over
real HTTP against the simulator; history from an older state file moves in on upgrade; the
dashboard pages, filters, sums and exports it; a backtest writes the same schema."""
from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import os
import sqlite3
import time

import pytest

from conftest import DATA, bot_settings
from mraster.backtest.runner import run_backtest
from mraster.engine.runner import run_async
from mraster.journal import Journal, JournalError, JournalReader, TradeFilter, write_backtest
from mraster import settings as st
from mraster.metrics import max_drawdown


@pytest.fixture(scope="module")
def backtest():
    """The real Binance sample candles through the engine (37 trades with the defaults)."""
    return run_backtest(DATA, st.load(environ={}, env_file=None))


def rows(path, sql, *args):
    with sqlite3.connect(path) as c:
        return c.execute(sql, args).fetchall()


def test_the_bot_books_each_trade_with_the_fills_it_was_booked_from(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=12, seed=11)
    s = bot_settings(tmp_path, url)
    assert asyncio.run(run_async(s)) == 0
    for _ in range(60):  # five hours of market time: brackets trigger
        sim.step(5 * 60_000)
    assert asyncio.run(run_async(s)) == 0
    history = json.loads((tmp_path / "aster_state.json").read_text())["history"]
    assert history, "no trade closed in 5 hours"
    db = tmp_path / "aster_journal.sqlite"  # next to the state file
    booked = {r[0]: r for r in rows(db, "SELECT client_id, pnl, fees, r, reason, mode FROM trades")}
    assert set(booked) == {t["client_id"] for t in history}
    for t in history:
        _, pnl, fees, r, reason, mode = booked[t["client_id"]]
        assert (pnl, fees, r, reason, mode) == (t["pnl"], t["fees"], t["r"], t["reason"], "live")
        fills = rows(db, "SELECT side, qty, fee FROM fills WHERE trade_key=?", t["client_id"])
        assert sum(f[2] for f in fills) == pytest.approx(t["fees"])  # the fees are the fills'
        assert sum(f[1] for f in fills if f[0] == t["side"]) == pytest.approx(t["qty"])
    events = {r[0] for r in rows(db, "SELECT event FROM order_events")}
    assert {"entry", "bracket", "status"} <= events
    assert rows(db, "SELECT COUNT(*) FROM equity")[0][0] >= 2  # one point per cycle
    # a restart books nothing twice
    assert asyncio.run(run_async(s)) == 0
    assert rows(db, "SELECT COUNT(*) FROM trades")[0][0] == len(booked)
    assert rows(db, "PRAGMA journal_mode")[0][0] == "wal"


def test_history_in_an_older_state_file_moves_into_the_journal_on_upgrade(backtest, sim_factory,
                                                                          tmp_path):
    """An upgrade from a version without the journal: the state file's trades, equity curve,
    alerts and lessons move in at the bot's first start, once."""
    from dashboard_helpers import Dashboard, dashboard_environ

    trades = backtest.state["history"]
    old = {"positions": {}, "history": trades, "mode": "live",
           "equity_curve": [[t, e] for t, e in backtest.equity[:50]],
           "alerts": [{"time": 1, "level": "warning", "message": "an old notice", "symbol": None}],
           "copilots": {"reviews": [{"symbol": trades[0]["symbol"],
                                     "closed_at": trades[0]["closed_at"], "lesson": "waited"}]}}
    (tmp_path / "aster_state.json").write_text(json.dumps(old))
    # before the bot runs, the dashboard shows the state file's history through the same views
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as dash:
        page = dash.get("/api/journal/trades", params={"source": "live", "limit": 5}).json()
        assert page["total"] == len(trades) and len(page["rows"]) == 5
    _, url, _ = sim_factory(n=4, seed=2)
    assert asyncio.run(run_async(bot_settings(tmp_path, url))) == 0
    db = tmp_path / "aster_journal.sqlite"
    assert rows(db, "SELECT COUNT(*) FROM trades WHERE mode='live'")[0][0] >= len(trades)
    assert rows(db, "SELECT text FROM trade_notes WHERE kind='lesson'") == [("waited",)]
    assert rows(db, "SELECT message FROM alerts WHERE time=1") == [("an old notice",)]
    n = rows(db, "SELECT COUNT(*) FROM trades")[0][0]
    assert asyncio.run(run_async(bot_settings(tmp_path, url))) == 0  # again: nothing added twice
    assert rows(db, "SELECT COUNT(*) FROM trades")[0][0] == n
    assert rows(db, "SELECT COUNT(*) FROM alerts WHERE time=1")[0][0] == 1


def test_the_dashboard_pages_filters_sums_and_exports_a_backtest_journal(backtest, tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ

    trades = backtest.state["history"]
    write_backtest(tmp_path / "aster_journal.backtest.sqlite", backtest)
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as dash:
        def get(path, **params):
            r = dash.get(path, params={"source": "backtest", **params})
            assert r.status_code == 200, r.text
            return r
        first = get("/api/journal/trades", limit=10).json()
        second = get("/api/journal/trades", limit=10, offset=10).json()
        assert first["total"] == len(trades) and first["pnl"] == pytest.approx(
            sum(t["pnl"] for t in trades), abs=1e-5)
        assert [t["closed_at"] for t in first["rows"] + second["rows"]] == sorted(
            (t["closed_at"] for t in trades), reverse=True)[:20]
        wins = get("/api/journal/trades", symbol="eth", result="win", limit=500).json()
        assert wins["total"] == sum(t["pnl"] > 0 and "ETH" in t["symbol"] for t in trades) > 0
        assert all(t["pnl"] > 0 and "ETH" in t["symbol"] for t in wins["rows"])
        for period in ("day", "week", "month"):
            cal = get("/api/journal/calendar", period=period).json()["rows"]
            assert sum(c["trades"] for c in cal) == len(trades)
            assert sum(c["pnl"] for c in cal) == pytest.approx(first["pnl"], abs=1e-5)
        days = get("/api/journal/calendar", period="day").json()["rows"]
        assert all(len(d["period"]) == 10 for d in days)  # 2018-01-12: UTC days
        curve = get("/api/journal/equity", points=50).json()["points"]
        # the whole run, thinned, with its lowest point kept
        assert curve[0][0] == backtest.equity[0][0] and curve[-1][0] == backtest.equity[-1][0]
        assert min(e for _, e in curve) == pytest.approx(min(e for _, e in backtest.equity))
        assert len(curve) <= 3 * 51
        exported = list(csv.DictReader(io.StringIO(get("/api/journal/trades.csv").text)))
        assert len(exported) == len(trades)
        assert sum(float(t["pnl"]) for t in exported) == pytest.approx(first["pnl"], abs=1e-5)
        orders = list(csv.reader(io.StringIO(get("/api/journal/orders.csv").text)))
        assert orders[0][:3] == ["time", "symbol", "event"] and len(orders) > len(trades)
        assert get("/api/journal/orders", limit=5).json()["total"] == len(orders) - 1
        # bad input names the field and its range
        bad = dash.get("/api/journal/trades", params={"limit": 1000})
        assert bad.status_code == 422 and "limit" in bad.text and "500" in bad.text
        assert dash.get("/api/journal/trades", params={"symbol": "ETH'--"}).status_code == 422
        assert dash.get("/api/journal/trades", params={"source": "mainnet"}).status_code == 422
        # no journal yet for the live bot: an empty page, not an error
        live = dash.get("/api/journal/trades", params={"source": "live"}).json()
        assert live["total"] == 0 and live["rows"] == []


def test_journal_rows_are_never_written_twice_and_a_newer_schema_is_refused(backtest, tmp_path):
    j = Journal(tmp_path / "j.sqlite", "paper")
    t = backtest.state["history"][0]
    j.book(t)
    j.book(t)  # booked again after a crash before the state file was saved
    assert j.count("trades") == 1
    j.conn.execute("PRAGMA user_version=99")
    j.close()
    with pytest.raises(JournalError, match="newer MrAster"):
        Journal(tmp_path / "j.sqlite", "paper")
    with pytest.raises(JournalError, match="newer"):
        JournalReader(tmp_path / "j.sqlite")
    (tmp_path / "junk.sqlite").write_text("not a database " * 100)
    with pytest.raises(JournalError, match="not a usable journal"):
        Journal(tmp_path / "junk.sqlite", "paper")


def test_a_backtest_journal_holds_every_fill_and_funding_payment(backtest, tmp_path):
    path = write_backtest(tmp_path / "bt.sqlite", backtest)
    acct = backtest.account
    with JournalReader(path) as r:
        assert r.check() == "ok"
        assert r.trades(TradeFilter(mode="backtest"))["total"] == len(backtest.state["history"])
    assert rows(path, "SELECT COUNT(*) FROM fills")[0][0] == len(acct.trades)
    assert rows(path, "SELECT COUNT(*) FROM funding")[0][0] == sum(
        r["incomeType"] == "FUNDING_FEE" for r in acct.income)
    assert not list(tmp_path.glob(".*tmp"))  # written to a temp file and renamed


def test_a_backtest_journal_that_cannot_be_written_whole_keeps_the_previous_one(backtest,
                                                                              tmp_path):
    """A backtest's journal is written without a rollback journal and synced once before it
    is renamed: a write that fails part way (here a trade whose pnl SQLite cannot store; a
    full disk alike) must not leave half a journal behind the name. The previous run's stays,
    and the error says so (a failed write was only logged, and the rest renamed)."""
    path = write_backtest(tmp_path / "bt.sqlite", backtest)
    before = path.read_bytes()
    last = backtest.state["history"][-1]
    broken = dataclasses.replace(backtest, state={**backtest.state, "history": [
        *backtest.state["history"], {**last, "closed_at": last["closed_at"] + 1, "pnl": [1]}]})
    with pytest.raises(JournalError, match=r"could not be written: trades could not be "
                                           r"written \(Error binding.*previous one is kept"):
        write_backtest(path, broken)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*tmp"))
    with JournalReader(path) as r:
        assert r.check() == "ok"


def test_a_backtest_killed_while_writing_its_journal_leaves_no_copy_for_good(backtest, tmp_path):
    """A run killed while writing its journal leaves its temp file (a year's journal:
    megabytes); the next run's write removes it once stale, and keeps a temp file another
    run is writing right now."""
    path = tmp_path / "bt.sqlite"
    killed = tmp_path / ".bt.sqlite.4242.tmp"
    killed.write_bytes(b"SQLite format 3\0 half")
    two_hours_ago = time.time() - 7200
    os.utime(killed, (two_hours_ago, two_hours_ago))
    writing = tmp_path / ".bt.sqlite.4343.tmp"
    writing.write_bytes(b"SQLite format 3\0 being written")
    write_backtest(path, backtest)
    assert not killed.exists() and writing.exists()
    with JournalReader(path) as r:
        assert r.check() == "ok"


def test_the_overview_counts_every_journaled_trade_not_only_the_recent_ones(backtest, tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ

    trades = backtest.state["history"]
    j = Journal(tmp_path / "aster_journal.sqlite", "live")
    j.import_state({"history": trades, "equity_curve": [list(p) for p in backtest.equity]})
    j.close()
    # the state file keeps the working set: the last ten trades and a short curve
    (tmp_path / "aster_state.json").write_text(json.dumps(
        {"mode": "live", "history": trades[-10:], "equity_curve": [list(backtest.equity[-1])]}))
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as dash:
        perf = dash.get("/api/state").json()["performance"]
    assert perf["trades"] == len(trades)
    assert perf["total_pnl"] == pytest.approx(sum(t["pnl"] for t in trades))
    # the whole curve, thinned with every bucket's low and high kept: the same drawdown
    assert perf["max_drawdown"] == pytest.approx(max_drawdown(backtest.equity)["max_drawdown"])


def test_a_journal_that_stops_accepting_writes_is_a_notice_once_and_trading_goes_on(backtest,
                                                                                  tmp_path):
    told = []
    j = Journal(tmp_path / "j.sqlite", "paper", on_error=told.append)
    j.conn.close()  # as good as a full disk or a file taken away: every write fails
    j.book(backtest.state["history"][0])
    j.on_event("alert", {"level": "error", "message": "x"})
    j.on_event("postmortem", {"symbol": "ETHBTC", "closed_at": 1, "lesson": "y"})
    [notice] = told  # in the reader's language: a sentence with its values
    assert notice.template.startswith("trade journal {path}: {what} could not be written")
    assert "trades could not be written" in str(notice) and "state file" in str(notice)

"""Live against replay: the bot records what it saw each cycle; the audit decides again over
that record with the same evaluator and names each divergence's cause."""
from __future__ import annotations

import asyncio
import copy
import json
import os
import time

from conftest import bot_settings
from mraster.audit import replay
from mraster.engine.recorder import DAY_MS, Recorder, read
from mraster.engine.runner import run_async
from mraster.words import speaker


def recorded_day(sim_factory, tmp_path, runs: int = 4):
    sim, url, _ = sim_factory(n=8, seed=11)
    s = bot_settings(tmp_path, url)
    for _ in range(runs):
        assert asyncio.run(run_async(s)) == 0
        sim.market.clock.step(300_000)  # a new candle closes before the next scan
    lines = list(read(tmp_path / "aster_record.jsonl"))
    state = json.loads((tmp_path / "aster_state.json").read_text())
    return sim, s, lines, state


def test_the_replay_reproduces_every_decision_and_names_each_planted_divergence(sim_factory, tmp_path):
    sim, s, lines, state = recorded_day(sim_factory, tmp_path)
    assert len(lines) == 4 and all(set(x) >= {"t", "s", "q", "k", "d"} for x in lines)
    clean = replay(lines, s, history=state["history"])
    assert clean["compared"] >= 20 and clean["matched"] == clean["compared"]
    assert clean["divergent_total"] == 0
    # replayed past the screen: the policy as recorded, the user's limits, the entries
    from mraster.audit import SCREEN_REASONS
    past = [r for x in lines for (_, r, _) in x["d"].values() if r not in SCREEN_REASONS]
    assert {"signal"} <= set(past) and lines[0]["g"]["policy"]
    assert any(r in ("policy_skip", "alpha_veto", "max_open_symbol") for r in past), past
    # the bot ran its own daily audit at the first scan and kept it
    assert state["audit"]["compared"] > 0 and state["audit"]["divergent_total"] == 0

    # 1. data changed afterwards: the bot saw a different last candle than the exchange shows now
    revised = {(sym, int(r[0])): [float(x) for x in r[:6]]
               for sym in sim.market.series for r in sim.klines(sym, "5m", 500)}
    found = None
    for sym in sorted(lines[-1]["d"]):
        planted = copy.deepcopy(lines)
        for x in planted:
            for r in x["k"].get(sym, [[], []])[0][-3:]:
                r[4] = r[4] * 0.8  # three crashing closes the exchange never had
                r[3] = min(r[3], r[4])
        rep = replay(planted, s, revised)
        hits = [d for d in rep["divergent"] if d["symbol"] == sym]
        if hits:
            found = hits[0]
            break
    assert found and found["cause"].startswith("data changed afterwards"), found
    # the page reads it in its language (the table said it in English), the candle's time readable
    de = speaker("de")(found["cause_words"]["template"], **found["cause_words"]["params"])
    assert de.startswith("Daten nachträglich geändert: Die Börse zeigt bei 20") and " UTC " in de

    # 2. the settings changed since: every decision that passed the screen now fails it
    from mraster import settings as st
    strict = st.Settings({**dict(s), "ASTER_SPREAD_BPS_MAX": 0.0}, dict(s.sources))
    rep = replay(lines, strict)
    assert rep["divergent_total"] > 0
    assert all(d["cause"].startswith("the settings changed since") for d in rep["divergent"])

    # 3. the same data, the same settings, a different live decision: a code change
    from mraster.audit import SCREEN_REASONS
    planted = copy.deepcopy(lines)
    sym, (action, reason, side) = next((k, v) for k, v in sorted(planted[-1]["d"].items())
                                       if v[1] in SCREEN_REASONS)
    other = "trend_misaligned" if reason != "trend_misaligned" else "no_signal"
    planted[-1]["d"][sym] = ["SKIP", other, side]
    rep = replay(planted, s)
    (d,) = rep["divergent"]
    assert d["symbol"] == sym and d["live"] == other and d["replay"] == reason
    assert "a code change" in d["cause"]

    # 3b. an entry the replay would have opened, recorded as the policy's skip
    planted = copy.deepcopy(lines)
    sym3 = next(k for x in planted for k, v in x["d"].items() if v[1] == "signal")
    line3 = next(x for x in planted if x["d"].get(sym3, [None, None])[1] == "signal")
    line3["d"][sym3] = ["SKIP", "policy_skip", line3["d"][sym3][2]]
    rep = replay(planted, s)
    assert [(d["symbol"], d["live"], d["replay"]) for d in rep["divergent"]] == \
        [(sym3, "policy_skip", "opens")]

    # 4. an entry filled 20 bps beyond the quote its decision saw; 5. a refused order
    t, q = lines[-1]["t"], lines[-1]["q"][sym]
    trades = [{"symbol": sym, "side": "BUY", "opened_at": t, "entry": q[1] * 1.002},
              {"symbol": sym, "side": "SELL", "opened_at": t, "entry": q[0]}]
    planted[-1]["d"][sym] = ["SKIP", "order_failed", "BUY"]
    rep = replay(planted, s, history=trades)
    assert [(f["cause"], round(f["slippage_bps"])) for f in rep["fills"]] == [("slippage", 20),
                                                                              ("as expected", 0)]
    assert rep["refusals"] == [{"time": t, "symbol": sym, "cause": "an exchange refusal",
                                "reason": "order_failed"}]

    # 6. a late cycle: the last scan came 20 minutes after its candle closed
    late = copy.deepcopy(lines[:2])
    last = late[-1]
    sym2 = next(k for k, v in last["k"].items() if v[0])
    last["k"] = {sym2: [last["k"][sym2][0][-1:], [], 0]}
    last["t"] = int(last["k"][sym2][0][-1][0]) + 300_000 + 20 * 60_000
    rep = replay(late, s)
    assert any(x["symbol"] == sym2 and x["cause"] == "a late cycle" for x in rep["late_cycles"])


def test_the_record_keeps_only_its_days(tmp_path):
    rec = Recorder(tmp_path / "r.jsonl", days=2)
    path = tmp_path / "r.jsonl"
    lines = [{"t": k * DAY_MS // 2, "s": "x", "q": {}, "k": {}, "d": {}} for k in range(10)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"t": 99, "cut sho')
    killed = tmp_path / ".r.jsonl.k1lled.tmp"  # a bot killed while it cut the record before
    killed.write_text(path.read_text())
    os.utime(killed, (time.time() - 7200, time.time() - 7200))
    rec.prune(10 * DAY_MS // 2)
    kept = list(read(path))
    assert [x["t"] for x in kept] == [k * DAY_MS // 2 for k in range(6, 10)]  # two days, no stub
    assert not killed.exists()  # its copy of the record is not kept for good
    assert Recorder(tmp_path / "none.jsonl", days=0).write(0, "x", {}, {}, {}) is None
    assert not (tmp_path / "none.jsonl").exists()  # 0 days: nothing recorded


def test_the_dashboard_replays_the_recorded_day_on_demand(sim_factory, tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ

    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        assert "nothing recorded yet" in d.post("/api/audit").json()["why"]
    recorded_day(sim_factory, tmp_path, runs=2)
    with Dashboard(tmp_path, dashboard_environ(tmp_path)) as d:
        rep = d.post("/api/audit").json()
        # the dashboard replays with its own settings (not the test bot's permissive ones): every
        # difference is put down to that, in words
        assert rep["compared"] > 0 and rep["matched"] < rep["compared"]
        assert all(x["cause"].startswith("the settings changed since") for x in rep["divergent"])
        daily = d.get("/api/state").json()["audit"]  # the bot's own, with the settings it used
        assert daily["compared"] > 0 and daily["divergent_total"] == 0

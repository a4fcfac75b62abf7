"""History downloads for the backtest: candles, mark prices and funding from the simulator over
HTTP into the CSV layout the backtest reads; incremental, resumable, gaps reported."""
from __future__ import annotations

import asyncio

import pytest

from mraster.backtest.runner import run_backtest
from mraster.data import download, files, last_time
from mraster.exchange.rest import AsterRest
from mraster.sim.market import SyntheticMarket


def fetch(url: str, folder, symbols, days: float):
    async def go():
        async with AsterRest(url, timeout=15.0) as c:
            return await download(c, symbols, "5m", days, folder)
    return asyncio.run(go())


def test_a_download_is_what_the_exchange_serves_and_continues_where_it_stopped(sim_factory, tmp_path):
    market = SyntheticMarket(3, seed=5, manual=True, history=1200)
    sim, url, _ = sim_factory(market=market)
    syms = sorted(market.series)[:2]
    report = fetch(url, tmp_path, syms, days=3)
    for sym in syms:
        p = files(tmp_path, sym, "5m")
        rows = p["klines"].read_text().splitlines()
        assert rows[0] == "open_time_ms,open,high,low,close,volume"
        want = sim.klines(sym, "5m", 1000)[:-1]  # closed candles only
        got = [r.split(",") for r in rows[1:]]
        n = min(len(got), len(want))
        assert len(got) >= 3 * 288 - 1 and [int(r[0]) for r in got[-n:]] == [int(w[0]) for w in want[-n:]]
        assert [r[4] for r in got[-5:]] == [w[4] for w in want[-5:]]
        assert report[sym]["written"]["klines"] == len(got) and report[sym]["gaps"] == []
        assert p["mark"].read_text().startswith("open_time_ms,open,high,low,close\n")
        fund = p["funding"].read_text().splitlines()
        assert fund[0] == "time_ms,funding_rate" and len(fund) >= 9  # 3 days of 8 h settlements
    # time passes; the next run adds only what is new, and a row cut short is dropped first
    market.clock.step(3_600_000)
    k = files(tmp_path, syms[0], "5m")["klines"]
    k.write_text(k.read_text() + "1234,1.0,1.0")  # an interrupted write
    before = last_time(k)
    again = fetch(url, tmp_path, syms, days=3)
    assert again[syms[0]]["written"]["klines"] == 12  # one hour of 5m candles
    times = [int(r.split(",")[0]) for r in k.read_text().splitlines()[1:]]
    assert times == sorted(set(times)) and times[-1] == before + 12 * 300_000
    # the folder is a backtest's data
    from mraster import settings as st
    res = run_backtest(tmp_path, st.load(environ={}, env_file=tmp_path / "none"), symbols=syms)
    assert res.steps > 100 and set(res.symbols) == set(syms)


def test_a_bad_interval_is_refused_by_name(sim_factory, tmp_path):
    sim, url, _ = sim_factory(n=2)

    async def go():
        async with AsterRest(url) as c:
            await download(c, ["BTCUSDT"], "7m", 1, tmp_path)
    with pytest.raises(ValueError, match="interval: '7m' is not allowed"):
        asyncio.run(go())


def test_the_backtest_tab_downloads_into_the_folder_the_backtest_reads(sim_factory, tmp_path):
    from dashboard_helpers import Dashboard, dashboard_environ, wait_for

    market = SyntheticMarket(2, seed=5, manual=True, history=700)
    sim, url, _ = sim_factory(market=market)
    with Dashboard(tmp_path, dashboard_environ(tmp_path, ASTER_EXCHANGE_BASE=url)) as d:
        assert d.post("/api/data/download", {"symbols": ["../x"]}).status_code == 422
        r = d.post("/api/data/download", {"symbols": sorted(market.series), "days": 1})
        assert r.status_code == 200
        job = wait_for(lambda: (j := d.get("/api/data/download").json())["state"] != "running" and j,
                       timeout=120, what="the download")
        assert job["state"] == "done", job
        assert all(v["written"]["klines"] >= 287 for v in job["report"].values())
        cfg = {x["key"]: x["value"] for x in d.get("/api/config").json()["settings"]}
        assert cfg["ASTER_BACKTEST_DATA"] == "data"

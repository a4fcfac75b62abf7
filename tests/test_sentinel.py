"""The rule-based market sentinel on real 24h windows of XRPUSDT, and in the bot's AI mode."""
from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from conftest import DATA
from mraster.ai.sentinel import assess, update
from mraster.sim.market import read_candles_csv

DAY = 288  # 5m candles


@pytest.fixture(scope="module")
def xrp():
    return read_candles_csv(DATA / "XRPUSDT-5m-futures.csv")


def ticker(candles, end: int, crash: float = 1.0) -> dict:
    """The 24h ticker the exchange would show after candle ``end`` (optionally with its lows
    pushed down by a planted crash)."""
    t, o, h, l, c, v = candles
    s = slice(end - DAY, end)
    last = c[end - 1] * crash
    return {"lastPrice": str(last), "highPrice": str(h[s].max()), "lowPrice": str(min(l[s].min(), last)),
            "priceChangePercent": str((last / o[end - DAY] - 1) * 100),
            "quoteVolume": str((v[s] * c[s]).sum())}


def test_real_days_are_labelled_and_only_ever_lower_size(xrp):
    calm = assess(ticker(xrp, 288))                 # -1.4 % day
    fall = assess(ticker(xrp, 420))                 # -9.7 % day
    crash = assess(ticker(xrp, 420, crash=0.55))    # the same day with a planted 45 % crash
    assert calm["label"] == "green" and calm["size_factor"] == 1.0
    assert fall["label"] == "yellow" and fall["size_factor"] == 0.7 and fall["event_risk"] >= 0.72
    assert crash["label"] == "red" and crash["size_factor"] == 0.0
    for a in (calm, fall, crash):
        assert 0 <= a["event_risk"] <= 1 and 0 <= a["hype"] <= 1 and a["size_factor"] <= 1


def test_a_warning_fades_only_after_the_decay(xrp):
    t0 = 1_700_000_000_000
    red = update(None, ticker(xrp, 420, crash=0.55), t0, decay_minutes=60)
    calm_soon = update(red, ticker(xrp, 288), t0 + 30 * 60_000, decay_minutes=60)
    assert calm_soon["label"] == "red"  # 30 minutes after a crash it still holds
    calm_later = update(calm_soon, ticker(xrp, 288), t0 + 61 * 60_000, decay_minutes=60)
    assert calm_later["label"] == "green"


def test_folding_a_window_at_once_gives_the_label_of_folding_it_moment_by_moment(xrp):
    """A backtest folds each symbol's decay window at every step it runs (``fold_all``): the
    same label, since and until as the live rule folding one moment after another, over real
    and crashed days in every order of colours (the decay longer and shorter than the gaps)."""
    from itertools import product

    from mraster.ai.sentinel import fold, fold_all

    days = [assess(ticker(xrp, 288)), assess(ticker(xrp, 420)),
            assess(ticker(xrp, 420, crash=0.55)), assess(ticker(xrp, 700))]
    assert {a["label"] for a in days} == {"green", "yellow", "red"}
    checked = 0
    for picks in product(range(len(days)), repeat=5):
        for decay in (3.0, 12.0, 60.0):
            moments = [(1_700_000_000_000 + k * 300_000, days[n]) for k, n in enumerate(picks)]
            one = None
            for t, a in moments:
                one = fold(one, a, t, decay)
            assert fold_all(moments, decay) == one, (picks, decay)
            checked += 1
    assert fold_all([], 60.0) is None and checked == 4 ** 5 * 3


@pytest.mark.parametrize("mode", ["standard", "ai"])
def test_in_every_mode_without_a_key_the_sentinel_blocks_shocked_symbols(sim_factory, tmp_path,
                                                                          mode):
    from conftest import bot_settings
    from mraster.engine.runner import run_async
    from test_ai import _bot_settings

    sim, url, _ = sim_factory(n=30, seed=7)
    s = _bot_settings(tmp_path, url) if mode == "ai" else bot_settings(tmp_path, url)
    assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    labels = state["sentinel"]
    assert set(labels) == set(state["decisions"])  # every symbol of the universe is watched
    red = {sym for sym, a in labels.items() if a["label"] == "red"}
    assert red, {k: (a["change_pct"], a["event_risk"]) for k, a in labels.items()}
    opened = {p["symbol"] for p in state["positions"].values()}
    assert not (red & opened)  # nothing opened into a shock
    blocked = {sym for sym, d in state["decisions"].items() if d["reason"] == "sentinel_block"}
    assert blocked <= red
    assert all(any(a["symbol"] == sym and "market shock" in a["message"] for a in state["alerts"])
               for sym in red)
    for a in (a for a in state["alerts"] if "market shock" in a["message"]):  # the direction shows
        sign = "+" if labels[a["symbol"]]["change_pct"] > 0 else "−"
        assert f"market shock ({sign}" in a["message"], a["message"]


NEWS_KEY = "news-token-NEVER-SHOWN-42"


def news_server(status: int, items: list):
    """A breaking-news source on 127.0.0.1 (the real feed is on the internet)."""
    app = FastAPI()
    app.state.auth = []

    @app.get("/news")
    async def feed(request: Request):
        app.state.auth.append(request.headers.get("authorization"))
        return JSONResponse(items if status == 200 else {"error": "down"}, status_code=status)
    return app


def test_breaking_news_turns_a_symbol_red_and_blocks_it(sim_factory, tmp_path):
    from mraster.engine.runner import run_async
    from mraster.sim.serve import ThreadedServer
    from test_ai import _bot_settings

    items = [{"title": "Exchange halts XRP withdrawals", "symbol": "XRP", "severity": "critical"},
             {"title": "ETH upgrade delayed", "symbol": "ETHUSDT", "severity": "warning"},
             {"title": "Markets calm", "severity": "info"}, {"severity": "critical"}]  # last: no title
    app = news_server(200, items)
    sim, url, _ = sim_factory(n=8, seed=11)
    with ThreadedServer(app) as news:
        s = _bot_settings(tmp_path, url, ASTER_AI_NEWS_ENDPOINT=f"{news.url}/news",
                          ASTER_AI_NEWS_API_KEY=NEWS_KEY)
        assert asyncio.run(run_async(s)) == 0
    assert app.state.auth == [f"Bearer {NEWS_KEY}"]
    text = (tmp_path / "aster_state.json").read_text()
    state = json.loads(text)
    xrp, eth = state["sentinel"]["XRPUSDT"], state["sentinel"]["ETHUSDT"]
    assert xrp["label"] == "red" and xrp["news"] == ["critical: Exchange halts XRP withdrawals"]
    assert eth["label"] in ("yellow", "red") and eth["event_risk"] >= 0.6
    assert state["decisions"]["XRPUSDT"]["reason"] in ("sentinel_block", "no_signal", "trend_misaligned")
    assert "XRPUSDT" not in {p["symbol"] for p in state["positions"].values()}
    assert any("Exchange halts XRP withdrawals" in a["message"] for a in state["alerts"])
    assert NEWS_KEY not in text


def test_news_for_a_base_asset_does_not_spill_onto_longer_names():
    from mraster.ai.news import NewsItem, for_symbol

    items = [NewsItem(title="XRP halted", symbol="XRP", severity="critical"),
             NewsItem(title="all markets", severity="warning")]
    assert [i.title for i in for_symbol(items, "XRPUSDT", 0, 10**9)] == ["XRP halted", "all markets"]
    assert [i.title for i in for_symbol(items, "XRPLUSDT", 0, 10**9)] == ["all markets"]


def test_a_failing_news_source_is_reported_and_market_data_still_counts(sim_factory, tmp_path):
    from mraster.engine.runner import run_async
    from mraster.sim.serve import ThreadedServer
    from test_ai import _bot_settings

    sim, url, _ = sim_factory(n=8, seed=11)
    with ThreadedServer(news_server(500, [])) as news:
        s = _bot_settings(tmp_path, url, ASTER_AI_NEWS_ENDPOINT=f"{news.url}/news")
        assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    assert any("news source answered HTTP 500" in a["message"] for a in state["alerts"])
    assert set(state["sentinel"]) == set(state["decisions"])  # every symbol still labelled


def test_unusual_funding_is_judged_against_its_own_history_and_the_market():
    from mraster.ai.anomalies import funding_anomaly, funding_words

    calm = [0.0001] * 12
    market = [0.0001, 0.00012, 0.00008, 0.0001, 0.0001, -0.00005]
    assert funding_anomaly(0.00011, calm, market, 4.0) is None
    assert funding_anomaly(0.0002, [], [], 4.0) is None  # too small to matter, whatever else
    high = funding_anomaly(0.0025, calm, market, 4.0)
    assert high["z_own"] >= 4 and high["z_market"] >= 4 and high["change"] == pytest.approx(0.0024)
    said = str(funding_words("XRPUSDT", high))
    assert "funding 0.25 % per period" in said and "longs pay shorts about 0.75 %" in said
    # the whole market pays as much: only its own history makes it unusual
    assert funding_anomaly(0.0025, calm, [0.0025] * 6, 4.0)["z_market"] == 0
    # a symbol whose funding is always that high: the market makes it unusual, not its history
    own_high = funding_anomaly(-0.003, [-0.003] * 10, market, 4.0)
    assert own_high["z_own"] == 0 and own_high["z_market"] <= -4
    assert "shorts pay longs" in str(funding_words("X", own_high))


def test_each_rate_against_the_rest_of_the_market_read_off_the_sorted_rates_is_exact():
    """A cycle judges each symbol's funding rate against the other symbols' rates (median and
    MAD). Sorting the other n − 1 rates for each symbol made it quadratic (about 2 ms of a
    200-symbol cycle); the rates are now sorted once and each leave-one-out median read off
    them. Bit for bit the same as sorting the others, on the real XRPUSDT funding rates of
    tests/data (many equal rates) taken as a market of 5, 6, 40 and 91 symbols, with a large
    rate planted among them."""
    import csv

    from conftest import DATA

    from mraster.ai.anomalies import RestOfMarket, _z, funding_anomaly

    with open(DATA / "XRPUSDT-8h-funding.csv") as f:
        real = [float(r["funding_rate"]) for r in csv.DictReader(f)]
    assert len(real) > 80 and len(set(real)) < len(real)  # ties, as a market has
    for n in (5, 6, 40, len(real)):
        for rates in (real[:n], real[:n - 1] + [0.0025]):
            market = RestOfMarket(rates)
            assert len(market) == len(rates) - 1
            for i, rate in enumerate(rates):
                others = rates[:i] + rates[i + 1:]
                assert market.z(rate) == _z(rate, others), (n, i)
                assert funding_anomaly(rate, real[:12], market, 4.0) == \
                    funding_anomaly(rate, real[:12], others, 4.0)
    planted = funding_anomaly(0.0025, real[:12], RestOfMarket(real[:39] + [0.0025]), 4.0)
    assert planted and planted["z_market"] >= 4


def test_volatility_spikes_on_real_candles_are_rare_and_a_planted_one_is_found(xrp):
    from mraster.ai.anomalies import volatility_spike

    t, o, h, l, c, v = xrp
    found = [i for i in range(60, len(c)) if volatility_spike(o[i - 60:i], h[i - 60:i],
                                                               l[i - 60:i], c[i - 60:i], 4.0)]
    assert len(found) < 0.02 * len(c)  # a spike is an exception, not every busy candle
    calm_end = 300
    h2, l2 = h[:calm_end].copy(), l[:calm_end].copy()
    h2[-1], l2[-1] = c[calm_end - 1] * 1.03, c[calm_end - 1] * 0.97  # a 6 % candle
    spike = volatility_spike(o[:calm_end], h2, l2, c[:calm_end], 4.0)
    assert spike and spike["range_pct"] == pytest.approx(6.0, abs=0.01) and spike["ratio"] >= 4
    assert volatility_spike(o[:calm_end], h[:calm_end], l[:calm_end], c[:calm_end], 4.0) is None


def test_the_bot_reports_unusual_funding_and_a_spike_once_per_episode(sim_factory, tmp_path):
    """Standard mode, over HTTP: one symbol's funding is planted at 0.4 % per period, another
    gets a 10 % candle; two scans on the same candle and one on the next each say it once."""
    from conftest import bot_settings
    from mraster.engine.runner import run_async
    from mraster.sim.market import SyntheticMarket

    market = SyntheticMarket(6, seed=4, manual=True, history=600)
    funded, spiky = list(market.series)[:2]
    now = market.clock.now_ms()
    for sym in (funded, spiky):
        market.ensure(sym, now)  # generated up to the clock, so the planted values stay
    market.series[funded].funding[:] = 0.004
    i = market.index_at(spiky, now) - 1  # the last closed candle
    sp = market.series[spiky]
    sp.h[i], sp.l[i] = sp.c[i] * 1.05, sp.c[i] * 0.95
    sim, url, _ = sim_factory(market=market)
    s = bot_settings(tmp_path, url)
    for step in (0, 0, 300_000):
        market.clock.step(step)
        assert asyncio.run(run_async(s)) == 0
    state = json.loads((tmp_path / "aster_state.json").read_text())
    funding = [a for a in state["alerts"] if "unusual funding" in a["message"]]
    spikes = [a for a in state["alerts"] if "volatility spike" in a["message"]]
    assert [a["symbol"] for a in funding] == [funded]
    assert "funding 0.4 % per period" in funding[0]["message"] and "longs pay shorts" in funding[0]["message"]
    assert [a["symbol"] for a in spikes] == [spiky] and "a 10 % candle" in spikes[0]["message"]
    # kept as template and values too: the page says it in the reader's language
    assert spikes[0]["words"]["params"]["range"] == 10 and "{range} %" in spikes[0]["words"]["template"]
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    kinds = [e.get("event") or e.get("kind") for e in events]
    assert kinds.count("funding_anomaly") == 1 and kinds.count("volatility_spike") == 1

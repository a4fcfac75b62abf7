"""A user's first session in a real browser: wizard → offline simulator → start → live log →
a position → preset → close → stop. Screenshots land in test-artifacts/."""
from __future__ import annotations

import json
import re

import httpx
from playwright.sync_api import expect

from dashboard_helpers import wait_for

from e2e.conftest import shot


def offline_on_tab(dashboard, page_factory, tab: str, **options):
    """A new user who chose the offline simulator in the wizard, on ``tab``: (server, page);
    ``options`` for the browser's page (``locale="de-DE"``: a German reader)."""
    server = dashboard()
    page = page_factory(**options)
    page.goto(server.url)
    page.get_by_test_id("wizard-offline").click()
    page.click(f"#tabs button[data-tab={tab}]")
    return server, page


def test_first_session_from_wizard_to_stop(tmp_path, dashboard, page_factory):
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory()
    page.goto(server.url)
    expect(page.get_by_test_id("wizard")).to_be_visible()
    shot(page, "01-wizard")
    page.get_by_test_id("wizard-offline").click()
    expect(page.get_by_test_id("wizard")).to_be_hidden()
    assert json.loads((tmp_path / "dashboard_config.json").read_text())["ASTER_OFFLINE"] is True

    page.get_by_test_id("start").click()
    expect(page.locator("#bot-state")).to_contain_text("running")
    expect(page.locator("#source-banner")).to_be_visible()  # simulator market is announced
    expect(page.locator("#mode-badge")).to_have_text("PAPER")

    page.click("#tabs button[data-tab=logs]")
    expect(page.locator("#log .line", has_text="cycle").first).to_be_attached(timeout=30_000)
    shot(page, "02-logs")

    page.click("#tabs button[data-tab=overview]")
    rows = page.locator("#positions tbody tr[data-status=open]")
    expect(rows.first).to_be_visible(timeout=30_000)
    shot(page, "03-position")

    page.click("#tabs button[data-tab=market]")
    expect(page.locator("#heatmap .tile").first).to_be_visible()
    page.click("#tabs button[data-tab=decisions]")
    expect(page.locator("#decisions tbody tr").first).to_be_visible()

    page.click("#tabs button[data-tab=settings]")
    page.locator("[data-preset=low] button").click()
    changes = page.get_by_test_id("preset-changes")
    expect(changes).to_contain_text("ASTER_LEVERAGE")
    expect(changes).to_contain_text("ASTER_RISK_PER_TRADE")
    shot(page, "04-preset-preview")
    page.get_by_test_id("apply-preset").click()
    expect(page.locator("#restart-banner")).to_be_visible()  # the running bot uses old values
    cfg = {s["key"]: s["value"] for s in httpx.get(f"{server.url}/api/config").json()["settings"]}
    assert cfg["ASTER_PRESET_MODE"] == "low" and cfg["ASTER_LEVERAGE"] == 4

    page.click("#tabs button[data-tab=overview]")
    symbol = rows.first.get_attribute("data-symbol")
    rows.first.get_by_role("button", name=re.compile("Close")).click()
    page.fill("#dialog-input", symbol)
    page.click("#dialog-ok")
    expect(page.locator(f"#positions tbody tr[data-symbol={symbol}]")).to_have_count(0, timeout=30_000)
    # the notice carries the bot's answer, not only "sent"
    expect(page.locator('#notices .notice[data-answered="done"]')).to_contain_text(
        f"Close of {symbol}: done", timeout=30_000)
    page.click("#tabs button[data-tab=history]")
    expect(page.locator("#history tbody tr", has_text=symbol).first).to_contain_text("manual")
    # from the journal: totals, a UTC calendar row, and the filtered export link
    expect(page.locator("#hist-summary")).to_contain_text("PnL")
    expect(page.locator("#calendar tbody tr").first).to_contain_text("20")
    page.fill("#hist-symbol", symbol)
    expect(page.locator("#history tbody tr").filter(has_not_text=symbol)).to_have_count(0)
    assert f"symbol={symbol}" in page.locator("#hist-csv").get_attribute("href")
    shot(page, "05-history")

    page.click("#tabs button[data-tab=ai]")
    expect(page.get_by_test_id("ai-status")).to_contain_text("rule-based")  # no key: said so
    page.fill("#chat-input", f"long {symbol}")
    page.press("#chat-input", "Enter")
    expect(page.get_by_test_id("chat-log")).to_contain_text(f"Proposal: long {symbol}")
    expect(page.locator("#chat-mode")).to_have_text("answered by rules")
    proposal = page.locator("#chat-proposals tbody tr", has_text=symbol)
    proposal.get_by_role("button", name="Confirm…").click()
    page.fill("#dialog-input", symbol)
    page.click("#dialog-ok")
    # the bot's risk gate answers: this symbol was just closed by hand
    expect(proposal).to_contain_text("refused: not opened: closed by hand recently", timeout=30_000)
    shot(page, "06-chat")

    page.click("#tabs button[data-tab=backtest]")
    page.fill("#bt-days", "1")
    page.get_by_test_id("run-backtest").click()
    expect(page.get_by_test_id("bt-card").first).to_be_visible(timeout=60_000)
    expect(page.locator("#bt-status")).to_contain_text(re.compile(r"Done .* the engine ran on \d+ of \d+ steps"))
    shot(page, "07-backtest")

    page.get_by_test_id("stop").click()
    expect(page.locator("#bot-state")).to_contain_text("stopped", timeout=30_000)
    shot(page, "08-stopped")
    assert page.errors == []


def test_token_protected_dashboard_asks_for_login(dashboard, page_factory):
    server = dashboard(ASTER_DASHBOARD_TOKEN="e2e-token-123456789")
    page = page_factory()
    page.goto(server.url)
    expect(page.locator("#login-panel")).to_be_visible()
    page.fill("#login-token", "wrong")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_contain_text("wrong token")
    page.fill("#login-token", "e2e-token-123456789")
    page.click("#login-form button")
    expect(page.get_by_test_id("wizard")).to_be_visible()  # logged in: first-run wizard
    assert "e2e-token" not in page.content()


def test_ai_mode_without_a_key_shows_the_rule_based_copilots(tmp_path, dashboard, page_factory):
    (tmp_path / "dashboard_config.json").write_text(json.dumps(
        {"schema_version": 1, "ASTER_OFFLINE": True, "ASTER_MODE": "ai"}))
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory()
    page.goto(server.url)
    page.get_by_test_id("start").click()
    expect(page.locator("#bot-state")).to_contain_text("running")
    page.click("#tabs button[data-tab=ai]")
    expect(page.get_by_test_id("ai-status")).to_contain_text("AI mode without an LLM", timeout=30_000)
    expect(page.get_by_test_id("ai-status")).to_contain_text("rule-based")
    expect(page.get_by_test_id("playbook")).to_contain_text("Regime:", timeout=30_000)
    expect(page.locator("#tuner")).to_contain_text("size S ×")
    page.fill("#chat-input", "what is the playbook?")
    page.press("#chat-input", "Enter")
    expect(page.get_by_test_id("chat-log")).to_contain_text("Regime:")
    shot(page, "ai-rules")
    page.get_by_test_id("stop").click()
    expect(page.locator("#bot-state")).to_contain_text("stopped", timeout=30_000)
    assert page.errors == []


def test_a_user_saves_their_settings_as_a_preset_and_brings_them_back(tmp_path, dashboard,
                                                                     page_factory):
    server, page = offline_on_tab(dashboard, page_factory, "settings")
    page.fill("#saved-preset-name", "Mein Setup")
    page.get_by_test_id("save-preset").click()
    card = page.locator("[data-saved-preset='Mein Setup']")
    expect(card).to_be_visible()
    # the user moves on to HIGH; their own preset shows what going back would change
    page.locator("[data-preset=high] button").click()
    page.get_by_test_id("apply-preset").click()
    expect(page.locator("#notices")).to_contain_text("Preset HIGH applied")
    card.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("preset-changes")).to_contain_text("ASTER_PRESET_MODE")
    shot(page, "saved-preset-preview")
    page.get_by_test_id("apply-preset").click()
    expect(page.locator("#notices")).to_contain_text("Preset “Mein Setup” applied")
    cfg = httpx.get(f"{server.url}/api/config").json()
    assert cfg["preset"] == "mid"
    # HIGH applied elsewhere (another tab, a phone): this page's cards are stale, its preview not
    expect(page.locator("#preset-preview")).to_be_hidden()
    r = httpx.post(f"{server.url}/api/presets/high", json={}, headers={"X-MrAster-CSRF": "1"})
    assert r.status_code == 200, r.text
    card.get_by_role("button", name="Preview").click()
    expect(page.get_by_test_id("preset-changes")).to_contain_text("ASTER_PRESET_MODE")


def test_the_wizard_runs_the_fire_drill_before_live(tmp_path, dashboard, page_factory):
    server = dashboard()
    page = page_factory()
    page.goto(server.url)
    page.locator("#wizard [data-mode=live]").click()
    expect(page.get_by_test_id("drill-status")).to_contain_text("No fire drill")
    page.fill("#wizard-confirm", "TRADE REAL MONEY")
    page.click("#wizard-live-go")  # no keys and no drill: refused, in words
    expect(page.locator("#wizard-error")).not_to_be_empty()
    page.get_by_test_id("drill-run").click()
    expect(page.get_by_test_id("drill-status")).to_contain_text("Fire drill passed", timeout=240_000)
    shot(page, "fire-drill-passed")


def test_an_optimisation_from_the_backtest_tab_becomes_a_preset_only_after_review(
        tmp_path, dashboard, page_factory):
    server, page = offline_on_tab(dashboard, page_factory, "backtest")
    page.uncheck("input[name=opt-group][value=entries]")  # exits only: a short search
    page.fill("#opt-trials", "8")
    page.fill("#opt-folds", "1")
    page.fill("#opt-min-trades", "1")
    page.fill("#opt-dd", "90")
    page.get_by_test_id("run-optimise").click()
    status = page.get_by_test_id("optimise-status")
    expect(status).to_contain_text("trials")
    expect(status).to_contain_text("Done", timeout=180_000)
    expect(page.locator("#opt-folds-table tbody tr")).to_have_count(2)  # fold 1 and the hold-out
    expect(page.locator("#opt-folds-table tbody tr").last).to_contain_text("hold-out")
    page.get_by_test_id("optimise-preview").click()
    expect(page.locator("#opt-changes tbody tr").first).to_be_visible()
    shot(page, "optimise-review")
    before = httpx.get(f"{server.url}/api/config").json()["settings"]
    page.fill("#opt-preset-name", "Optimiert")
    page.get_by_test_id("optimise-save").click()
    expect(page.locator("#opt-save-status")).to_contain_text("nothing changed yet")
    assert httpx.get(f"{server.url}/api/config").json()["settings"] == before  # not applied
    page.click("#tabs button[data-tab=settings]")
    expect(page.locator("[data-saved-preset='Optimiert']")).to_be_visible()
    assert not page.errors


def test_switching_to_live_without_keys_says_so_before_asking_for_the_typed_words(
        tmp_path, dashboard, page_factory):
    _, page = offline_on_tab(dashboard, page_factory, "settings")
    page.get_by_test_id("switch-live").click()
    expect(page.locator("#notices")).to_contain_text("cannot sign orders yet")
    expect(page.locator("#dialog")).not_to_be_visible()  # no TRADE REAL MONEY prompt
    assert json.loads((tmp_path / "dashboard_config.json").read_text()).get("ASTER_PAPER", True)


def test_logs_open_at_the_newest_line_the_header_says_paused_and_notices_stay_compact(
        dashboard, page_factory):
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory()
    page.goto(server.url)
    page.get_by_test_id("wizard-offline").click()
    page.get_by_test_id("start").click()
    expect(page.locator("#bot-state")).to_contain_text("running")
    # the log fills while another tab is open
    expect(page.locator("#log .line").nth(150)).to_be_attached(timeout=60_000)
    page.click("#btn-pause")
    expect(page.locator("#bot-state")).to_contain_text("entries paused")
    page.get_by_test_id("stop").click()
    expect(page.locator("#bot-state")).to_contain_text("stopped", timeout=30_000)
    page.click("#tabs button[data-tab=logs]")  # no new events now: the opening scroll counts
    at_end = page.evaluate("(() => { const b = document.querySelector('#log'); "
                           "return b.scrollHeight > b.clientHeight && "
                           "b.scrollTop + b.clientHeight >= b.scrollHeight - 2; })()")
    assert at_end
    page.click("#tabs button[data-tab=overview]")
    top = page.locator("#tabs").bounding_box()["y"]
    page.evaluate("for (let i = 0; i < 12; i++) notice('notice number ' + i, 'warn', 'local-' + i)")
    expect(page.locator("#notices .notice", has_text="notice number")).to_have_count(12)
    assert page.locator("#tabs").bounding_box()["y"] - top < 200  # the page is not pushed down
    expect(page.locator("#notices .notice").first).to_contain_text("notice number 11")
    assert page.errors == []


def test_the_backtest_equity_chart_shows_the_whole_run(dashboard, page_factory):
    """20 days of 5m steps are several thousand points, more than twice the chart's width in
    pixels: every one must be in view after the run, the first included."""
    server, page = offline_on_tab(dashboard, page_factory, "backtest")
    page.get_by_test_id("run-backtest").click()
    expect(page.get_by_test_id("bt-card").first).to_be_visible(timeout=120_000)
    expect(page.locator("#bt-chart[data-points]")).to_be_attached()  # drawn and fitted
    shown = page.evaluate("""(() => {
        const n = bt.series.data().length, r = bt.chart.timeScale().getVisibleLogicalRange();
        return {n, from: r.from, to: r.to, width: document.querySelector('#bt-chart').clientWidth};
    })()""")
    assert shown["n"] > 2 * shown["width"]  # the case that used to be cut
    assert shown["from"] <= 0.5 and shown["to"] >= shown["n"] - 1.5, shown
    # the sample pairs are quoted in BTC: the account and its amounts are BTC, to the satoshi
    fees = page.get_by_test_id("bt-card").filter(has_text="Fees")
    expect(fees).to_contain_text(re.compile(r"Fees\s*0\.\d{3,8} BTC"))
    pnls = page.locator("#bt-symbols-table tbody td:nth-child(4)").all_inner_texts()
    assert pnls and all(x.endswith(" BTC") and not x.startswith("-0 ") for x in pnls), pnls
    assert page.errors == []


def test_dark_mode_follows_the_system_and_the_users_choice_is_remembered(dashboard, page_factory):
    server = dashboard()
    page = page_factory(color_scheme="dark")
    page.goto(server.url)
    page.get_by_test_id("wizard-offline").click()
    bg = "getComputedStyle(document.body).backgroundColor"
    chart_bg = "(() => { const c = CHARTS[0]; return c ? c.options().layout.background.color : null; })()"

    def lightness(colour: str) -> int:
        return sum(int(x) for x in re.findall(r"\d+", colour)[:3])
    assert lightness(page.evaluate(bg)) < 150  # the system is dark: so is the page
    expect(page.locator("#equity-chart canvas").first).to_be_attached()
    assert page.evaluate(chart_bg) == "#111a2e"  # the chart too
    shot(page, "dark-overview")
    page.select_option("#theme", "light")
    assert lightness(page.evaluate(bg)) > 600 and page.evaluate(chart_bg) == "#fff"
    page.reload()
    expect(page.locator("#theme")).to_have_value("light")  # remembered in this browser
    assert lightness(page.evaluate(bg)) > 600
    assert page.errors == []


def test_pro_settings_search_show_every_error_at_once_and_reset_to_defaults(tmp_path, dashboard,
                                                                          page_factory):
    _, page = offline_on_tab(dashboard, page_factory, "settings")
    page.click("#pro-toggle")
    page.fill("#pro-search", "leverage")
    expect(page.locator('[data-key="ASTER_LEVERAGE"]')).to_be_visible()
    expect(page.locator('[data-key="ASTER_RSI_LONG_MIN"]')).to_be_hidden()
    page.fill("#pro-search", "")
    default = page.input_value('[data-key="ASTER_MAX_OPEN_GLOBAL"] input')
    page.fill('[data-key="ASTER_LEVERAGE"] input', "500")
    page.fill('[data-key="ASTER_MAX_OPEN_GLOBAL"] input', "-5")
    page.click("#pro-form button[type=submit]")
    errors = page.get_by_test_id("pro-errors")
    expect(errors.locator("li")).to_have_count(2)  # both at once, not one browser tooltip each
    expect(errors).to_be_in_viewport()
    expect(page.locator('[data-key="ASTER_LEVERAGE"] .field-error')).to_contain_text("500")
    assert "dashboard_config.json" not in errors.inner_text()  # typed, never saved
    page.fill('[data-key="ASTER_MAX_OPEN_GLOBAL"] input', "7")
    page.fill('[data-key="ASTER_LEVERAGE"] input', "3")
    page.click("#pro-form button[type=submit]")
    expect(page.locator("#pro-result")).to_contain_text("Saved")
    saved = json.loads((tmp_path / "dashboard_config.json").read_text())
    assert saved["ASTER_MAX_OPEN_GLOBAL"] == 7 and saved["ASTER_LEVERAGE"] == 3
    page.locator('[data-key="ASTER_MAX_OPEN_GLOBAL"]').get_by_test_id("reset-setting").click()
    expect(page.locator('[data-key="ASTER_MAX_OPEN_GLOBAL"] input')).to_have_value(default)
    saved = json.loads((tmp_path / "dashboard_config.json").read_text())
    assert "ASTER_MAX_OPEN_GLOBAL" not in saved and saved["ASTER_LEVERAGE"] == 3
    page.get_by_test_id("reset-all").click()
    page.fill("#dialog-input", "RESET")
    page.click("#dialog-ok")
    expect(page.locator("#pro-result")).to_contain_text("Back to their defaults: ASTER_LEVERAGE")
    saved = json.loads((tmp_path / "dashboard_config.json").read_text())
    assert "ASTER_LEVERAGE" not in saved and saved["ASTER_OFFLINE"] is True  # the mode stays
    assert page.errors == []


def test_a_click_on_a_position_opens_its_chart_with_the_strategys_indicators(dashboard,
                                                                            page_factory):
    """From a held position to its chart: the bot's candles with volume, EMA 21/55 and an RSI
    pane with the entry bounds, the stop line at the position's stop, prices in the symbol's
    tick decimals; the trend timeframe shows its own candles and the trend EMA."""
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory()
    page.goto(server.url)
    page.get_by_test_id("wizard-offline").click()
    page.get_by_test_id("start").click()
    row = page.locator("#positions tbody tr[data-status=open]").first
    expect(row).to_be_visible(timeout=60_000)
    symbol = row.get_attribute("data-symbol")
    row.locator("td").first.click()
    expect(page.locator("#tab-chart")).to_be_visible()
    expect(page.locator("#chart-symbol")).to_have_value(symbol)
    expect(page.locator(f'#candle-chart[data-shown="{symbol} ltf"]')).to_be_attached(timeout=30_000)
    drawn = page.evaluate("""(() => {
        const c = state.candle, rsi = c.ind.rsi.data();
        return {candles: c.series.data().length, volume: c.volume.data().length,
                fast: c.ind.ema_fast.data().length, slow: c.ind.ema_slow.data().length,
                rsi: rsi.length, rsiLast: rsi[rsi.length - 1].value, panes: c.chart.panes().length,
                bounds: c.bounds.map((l) => l.options().price),
                lines: c.lines.map((l) => [l.options().title, l.options().price]),
                axis: c.series.priceFormatter().format(1.5), places: state.data.ticks[c.key.split(' ')[0]]};
    })()""")
    api = server.url + f"/api/chart/{symbol}"
    chart = page.evaluate(f"fetch('{api}').then((r) => r.json())")
    assert drawn["candles"] == drawn["volume"] == len(chart["candles"]) >= 150
    assert drawn["fast"] == len(chart["indicators"]["ema_fast"]) and drawn["slow"] < drawn["fast"]
    assert drawn["rsi"] > 100 and 0 <= drawn["rsiLast"] <= 100 and drawn["panes"] == 2
    assert sorted(drawn["bounds"]) == sorted(chart["rsi_bounds"].values())
    stop = next(p["stop"] for p in page.evaluate("state.data.positions") if p["symbol"] == symbol)
    assert ["stop", stop] in drawn["lines"]
    assert drawn["axis"] == f"{1.5:.{drawn['places']}f}"  # the tick's decimals on the price axis
    expect(page.locator("#chart-legend")).to_contain_text("EMA 21")
    shot(page, "chart-signal")
    page.select_option("#chart-tf", "htf")
    expect(page.locator(f'#candle-chart[data-shown="{symbol} htf"]')).to_be_attached(timeout=30_000)
    trend = page.evaluate("({n: state.candle.series.data().length, ema: state.candle.ind.ema_trend.data().length,"
                          " panes: state.candle.chart.panes().length, tf: document.querySelector('#chart-tf').selectedOptions[0].textContent})")
    assert trend["n"] >= 60 and trend["ema"] == trend["n"] - 54 and trend["panes"] == 1
    assert trend["tf"] == "trend 30m"
    page.click("#tabs button[data-tab=market]")  # a heatmap tile leads to its chart too
    tile = page.locator("#heatmap .tile").nth(1)
    other = tile.get_attribute("data-symbol")
    tile.click()
    expect(page.locator(f'#candle-chart[data-shown="{other} htf"]')).to_be_attached(timeout=30_000)
    assert page.errors == []


def test_paper_on_an_unreachable_market_says_it_trades_the_simulator_and_why(dashboard,
                                                                            page_factory):
    """"Paper on the real market" without a network: the banner and the Settings' mode say that
    the synthetic market is traded instead, and why (the address that could not be reached)."""
    server = dashboard(ASTER_EXCHANGE_BASE="http://127.0.0.1:9", ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory()
    page.goto(server.url)
    page.locator("#wizard button[data-mode=paper]").click()
    page.get_by_test_id("start").click()
    banner = page.locator("#source-banner")
    expect(banner).to_be_visible(timeout=60_000)
    expect(banner).to_contain_text("could not be reached when the bot started")
    expect(banner).to_contain_text("http://127.0.0.1:9")
    page.click("#tabs button[data-tab=settings]")
    expect(page.locator("#mode-choice")).to_contain_text("Now: Paper on the real market.")
    expect(page.get_by_test_id("mode-fallback")).to_contain_text("synthetic market instead")
    expect(page.get_by_test_id("mode-fallback")).to_contain_text("127.0.0.1:9")
    assert page.errors == []


def test_an_idle_page_revalidates_the_state_instead_of_downloading_it(dashboard, page_factory):
    """Between the bot's cycles the page's 2-second polls are answered 304 (the browser keeps
    the body), while the header's uptime still counts on the page's own clock."""
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="300")  # one cycle, then a long idle spell
    page = page_factory()
    page.goto(server.url)
    page.get_by_test_id("wizard-offline").click()
    page.get_by_test_id("start").click()
    expect(page.locator("#bot-state")).to_contain_text("running")
    expect(page.locator("#perf-cards")).to_contain_text("USDT", timeout=60_000)
    # the browser's own account of each poll: bytes over the wire against the body it used
    polls = ("performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/api/state'))"
             ".slice(-3).map((e) => [e.transferSize, e.encodedBodySize])")
    revalidated = wait_for(lambda: (lambda last: len(last) == 3 and all(
        sent < 1000 < body for sent, body in last) and last)(page.evaluate(polls)),
        timeout=60, what="three polls answered from the browser's cache after a 304")
    assert revalidated
    expect(page.locator("#bot-state")).to_contain_text(re.compile(r"up ([3-9]|[1-9]\d+) s"), timeout=30_000)
    assert page.errors == []


def test_ages_follow_the_dashboards_clock_when_the_phones_clock_is_off(dashboard, page_factory):
    """A phone whose clock runs two hours ahead still sees a position opened a moment ago as
    seconds old, and the bot's uptime in seconds: ages count from the dashboard's clock."""
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory()
    page.add_init_script("{ const real = Date.now; Date.now = () => real() + 2 * 3600 * 1000; }")
    page.goto(server.url)
    page.get_by_test_id("wizard-offline").click()
    page.get_by_test_id("start").click()
    expect(page.locator("#positions tbody tr[data-status=open]").first).to_be_visible(timeout=60_000)
    ages = page.evaluate("""(() => ({
        position: since(state.data.positions.find((p) => p.status === "open").opened_at),
        bot: since(state.data.bot.started_ms), shift: Date.now() - new Date().getTime()}))()""")
    assert ages["shift"] > 7_000_000  # the page's clock is two hours ahead
    assert 0 <= ages["position"] < 600 and 0 <= ages["bot"] < 600, ages
    assert page.errors == []


def test_a_tripped_breaker_and_its_alert_read_in_german(tmp_path, dashboard, page_factory):
    """A German page shows a circuit breaker's figures in German words and number formats (the
    banner and the alert said "today's loss 350 USDT is 3.5% of …" in English)."""
    from mraster import settings as st
    from mraster.protections import DAY_MS, roll_ledger, trips
    from mraster.words import Words, said, words

    now = 1_700_000_000_000 // DAY_MS * DAY_MS + 10 * 3600_000
    s = st.load(environ={}, env_file=tmp_path / "none")
    ledger = roll_ledger(roll_ledger({}, 10_000.0, now), 9_650.5, now + 60_000)
    (trip,) = trips([], ledger, 9_650.5, now + 60_000, s)
    alert = {"id": "a1", "time": now, "level": "error", "symbol": None, **said(words(
        "circuit breaker {name}: {message}; no new trades; stops and take-profits keep working",
        name=trip.name, message=Words.from_dict(trip.words)))}
    # and two notices of the wrong shape (a hand-edited file): shown as they are, the page intact
    # (one without a template reads as its message: it showed an empty sentence)
    odd = [{"id": "a2", "time": now, "level": "warning", "message": "odd one out",
            "words": {"template": 5}},
           {"id": "a3", "time": now, "level": "warning", "message": "odd",
            "words": {"template": "{x} left", "params": None}}]
    (tmp_path / "aster_state.json").write_text(json.dumps({
        "protections": {"ledger": ledger, "active": [trip.to_dict()], "log": []},
        "alerts": [alert, *odd]}))
    server = dashboard()
    page = page_factory(locale="de-DE")
    page.goto(server.url)
    banner = page.locator("#breaker-text")
    expect(banner).to_contain_text("Tagesverlust 349,5 USDT, das sind 3,5 % des Kontowerts")
    expect(banner).to_contain_text("Grenze 3 %")
    expect(page.locator("#notices")).to_contain_text("Schutzschalter daily_loss: Tagesverlust 349,5")
    expect(page.locator("#notices")).to_contain_text("odd one out")
    assert "today's loss" not in page.locator("body").inner_text()
    assert page.errors == []


def test_a_stop_moved_past_the_entry_reads_as_profit_locked_in(tmp_path, dashboard, page_factory):
    """A short whose trailing stop sits below its entry risks nothing: the row says what the stop
    locks in (it read "at risk -6.77 USDT"); a position found unprotected says so in German. A
    fee rate and funding the exchange did not answer are said on the row (only the log did)."""
    from conftest import position

    pos = position(symbol="ETCUSDT", side="SELL", entry=30.197, initial_stop=30.402, stop=30.144,
                   take_profit=30.054, qty=239.0)
    pos.protection = {"status": "ok", "since": 1_700_000_000_000, "stop": 30.144, "tp": 30.054,
                      "at_risk": -6.7, "funding": 0.0, "checked_at": 1_700_000_000_000,
                      "fee_rate": 0.0004, "fee_assumed": True,
                      "funding_unread_since": 1_700_000_000_000}
    from mraster.execution.protection import verify
    from mraster.sim.exchange import SimExchange
    from mraster.sim.market import SyntheticMarket

    # and a long whose stop is missing on the exchange: the red row reads in German too
    rules = SimExchange(SyntheticMarket(1, seed=3, manual=True, history=50)).rules
    bare = position(symbol=next(iter(rules)), entry=100.0, initial_stop=99.0, take_profit=102.0)
    found = verify(bare, [], rules[bare.symbol], 1.0)
    bare.protection = {"status": "problem", "findings": [f.to_dict() for f in found.findings],
                       "checked_at": 1_700_000_000_000}
    (tmp_path / "aster_state.json").write_text(json.dumps({"positions": {
        "t": pos.to_dict(), "u": bare.to_dict()}}))
    server = dashboard()
    page = page_factory(locale="de-DE")
    page.goto(server.url)
    cell = page.get_by_test_id("protection-ok")
    expect(cell).to_contain_text("der Stop sichert 6,70 USDT")  # money always with its cents
    assert "-6,7" not in cell.inner_text() and page.errors == []
    unread = page.get_by_test_id("protection-unread")
    expect(unread.first).to_contain_text("Gebührensatz noch nicht gelesen: 0,04 % angenommen")
    expect(unread.nth(1)).to_contain_text("Funding seit ")
    assert "not read" not in cell.inner_text()
    expect(page.get_by_test_id("protection-problem")).to_contain_text(
        f"{bare.symbol}: kein Stop des Bots an der Börse; {bare.symbol}: kein Take-Profit des Bots")


def test_a_refused_setting_is_explained_in_german(dashboard, page_factory):
    """The editor's errors come from the server; on a German page they read in German, the
    allowed range in German number writing (they were English sentences)."""
    _, page = offline_on_tab(dashboard, page_factory, "settings", locale="de-DE")
    page.click("#pro-toggle")
    page.fill('[data-key="ASTER_LEVERAGE"] input', "500")
    page.fill('[data-key="ASTER_RISK_PER_TRADE"] input', "0.5")
    page.click("#pro-form button[type=submit]")
    expect(page.locator("#pro-result")).to_have_text("2 Einstellung(en) ungültig; nichts wurde gespeichert")
    expect(page.locator('[data-key="ASTER_LEVERAGE"] .field-error')).to_have_text(
        "ASTER_LEVERAGE: 500 ist nicht erlaubt; erwartet: eine ganze Zahl in [1; 125]")
    expect(page.locator('[data-key="ASTER_RISK_PER_TRADE"] .field-error')).to_have_text(
        "ASTER_RISK_PER_TRADE: 0.5 ist nicht erlaubt; erwartet: eine Zahl in [0,0001; 0,02]")
    assert page.errors == []


def test_the_decisions_tab_says_where_the_alpha_model_stands_in_german(tmp_path, dashboard,
                                                                     page_factory):
    """A bot that stops trading because its alpha model vetoes, or trades before the model may
    veto, showed nothing of that model on the page: the Decisions tab now says whether it may
    veto yet, what it learned from and how many vetoed signals it follows."""
    learning = {"alpha": True, "lessons": 12, "warmup": 30, "shadows": 4}
    (tmp_path / "aster_state.json").write_text(json.dumps({"telemetry": {"learning": learning}}))
    server = dashboard()
    page = page_factory(locale="de-DE")
    page.goto(server.url)
    page.get_by_test_id("wizard-offline").click()  # a new user's first choice (no bot started)
    page.click("#tabs button[data-tab=decisions]")
    line = page.get_by_test_id("learning")
    expect(line).to_have_text("Alpha-Modell lernt noch: 12 von 30 Ergebnissen gesehen; bis dahin "
                              "lehnt es nichts ab. Abgelehnte Signale, die ohne Order verfolgt "
                              "werden: 4.")
    learning.update(lessons=31, shadows=None)  # past its warm-up; shadows turned off
    (tmp_path / "new.json").write_text(json.dumps({"telemetry": {"learning": learning}}))
    (tmp_path / "new.json").replace(tmp_path / "aster_state.json")  # as the bot saves it
    expect(line).to_have_text("Alpha-Modell aktiv: Es darf Signale ablehnen, gelernt aus 31 "
                              "Ergebnissen.", timeout=30_000)
    assert page.errors == []


def test_a_typed_confirmation_is_bounded_and_a_refused_body_reads_as_a_sentence(dashboard,
                                                                                  page_factory):
    """The confirmation box takes no more than the server accepts (100 characters), and a body
    the server's schema refuses is shown as "field: rule", not as the JSON of its error list."""
    _, page = offline_on_tab(dashboard, page_factory, "overview")
    page.click("#btn-flatten")
    page.fill("#dialog-input", "F" * 150)
    assert len(page.input_value("#dialog-input")) == 100
    page.click("#dialog button[value=cancel]")
    message = page.evaluate("""async () => {
        try { await api("POST", "/api/positions/flatten", { confirm: "x".repeat(150) }); }
        catch (e) { return e.message; } }""")
    assert message == "confirm: String should have at most 100 characters", message
    assert page.errors == []


def test_a_flatten_that_closed_some_positions_reads_as_partly_done(tmp_path, dashboard,
                                                                   page_factory):
    """*Flatten all* closed two positions and could not close a third: the bot's answer (here
    written into the state file as the bot writes it: the failure itself is the bot's test,
    ``test_flatten_all_closes_every_position_it_can_when_one_close_fails``) reads "partly done",
    as a warning, in the reader's language. The page said "refused" — nothing done, to a trader
    glancing at a phone — while two positions had been closed."""
    _, page = offline_on_tab(dashboard, page_factory, "overview", locale="de-DE")
    page.click("#btn-flatten")
    page.fill("#dialog-input", "FLATTEN")
    page.click("#dialog-ok")
    note = page.locator("#notices .notice", has_text="Warte auf seine Antwort")
    expect(note).to_be_visible(timeout=30_000)
    state = json.loads((tmp_path / "aster_state.json").read_text("utf-8"))
    [cmd] = state["commands"]["inbox"]
    message = {"template": "closed {symbols} at market; not closed: {failed} (see its notice)",
               "params": {"symbols": "ETHUSDT, SOLUSDT", "failed": "BTCUSDT"}}
    state["command_acks"] = {cmd["id"]: {
        "ok": False, "partly": True, "words": message, "time": 1,
        "message": "closed ETHUSDT, SOLUSDT at market; not closed: BTCUSDT (see its notice)"}}
    (tmp_path / "new.json").write_text(json.dumps(state))
    (tmp_path / "new.json").replace(tmp_path / "aster_state.json")  # as the bot saves it
    answered = page.locator('#notices .notice[data-answered="partly-done"]')
    expect(answered).to_contain_text("teilweise erledigt", timeout=30_000)
    expect(answered).to_contain_text("ETHUSDT, SOLUSDT")
    expect(answered).to_contain_text("BTCUSDT")
    assert "warn" in answered.get_attribute("class").split()
    assert page.errors == []


def test_a_trade_waiting_for_its_booking_does_not_read_as_a_held_position(tmp_path, dashboard,
                                                                          page_factory):
    """The bot's trade on ETCUSDT was closed by hand and the symbol opened again by hand; its
    booking waits until the exchange cancels the stop and take-profit it left (a notice says so).
    Its row said nothing of that: a PnL following the trader's new position, an age, and a
    *Close…* button that could not close it. Now the row says it is closed and waits for its
    booking, in German, without a PnL or a close button; a held position beside it is as ever,
    and the trader's position on that symbol says why it is theirs in German."""
    from conftest import position

    ended = position(symbol="ETCUSDT", entry=30.0, initial_stop=29.0, take_profit=32.0,
                     mark=31.0, unrealized=1.0)
    ended.ended_at = 1_700_000_000_000
    held = position(symbol="XRPUSDT")
    why = "opened or added to by orders the bot did not place"  # as the reconciler records it
    (tmp_path / "aster_state.json").write_text(json.dumps({"positions": {
        "t": ended.to_dict(), "u": held.to_dict()}, "external_positions": [
        {"symbol": "ETCUSDT", "amount": 5.0, "why": why,
         "why_words": {"template": why, "params": {}}}]}))
    server = dashboard()
    page = page_factory(locale="de-DE")
    page.goto(server.url)
    # the trader's own position on the symbol, and why it is theirs, in German (was English)
    expect(page.locator("#external [data-external=ETCUSDT]")).to_contain_text(
        "ETCUSDT 5 (eröffnet oder aufgestockt durch Orders, die der Bot nicht gesendet hat)")
    row = page.locator("#positions tbody tr[data-symbol=ETCUSDT]")
    expect(row).to_have_attribute("data-status", "ended")
    expect(row.get_by_test_id("position-ended")).to_have_text(
        "geschlossen; wird gebucht, sobald die Börse Stop und Take-Profit storniert (siehe Hinweis)")
    expect(row.get_by_test_id("position-pnl")).to_have_text("–")
    expect(row.get_by_role("button")).to_have_count(0)
    other = page.locator("#positions tbody tr[data-symbol=XRPUSDT]")
    expect(other).to_have_attribute("data-status", "open")
    expect(other.get_by_role("button")).to_have_count(1)
    assert page.errors == []


def test_an_imported_original_config_is_summed_up_in_german(tmp_path, dashboard, page_factory):
    """The original bot's users are German-speaking: the summary of their imported settings
    file, and a per-symbol limit that acts as 1, read in German on the settings page (they were
    English sentences on a German page)."""
    (tmp_path / "dashboard_config.json").write_text(json.dumps({"env": {
        "ASTER_LEVERAGE": "5", "ASTER_SYMBOL_WHITELIST": "BTCUSDT,ETHUSDT",
        "ASTER_STOCHRSI_LONG_MAX": "44", "ASTER_MAX_OPEN_PER_SYMBOL": "2"}}))
    server = dashboard()
    page = page_factory(locale="de-DE")
    page.goto(server.url)
    page.click("#tabs button[data-tab=settings]")
    notices = page.locator("#notices")
    expect(notices).to_contain_text("war im Format des ursprünglichen Bots: importiert (",
                                    timeout=30_000)
    expect(notices).to_contain_text("umbenannt: ASTER_SYMBOL_WHITELIST → ASTER_SYMBOLS")
    expect(notices).to_contain_text("entfallen: ASTER_STOCHRSI_LONG_MAX")
    expect(notices).to_contain_text("ASTER_MAX_OPEN_PER_SYMBOL=2 wirkt als 1 (aus "
                                    "dashboard_config.json)")
    assert "original bot's format" not in notices.inner_text()
    assert page.errors == []


def test_a_saved_setting_out_of_range_is_explained_in_german(tmp_path, dashboard, page_factory):
    """A value in dashboard_config.json outside its range (edited by hand): the dashboard starts
    (it refused to, though its page lists every bad field and the bot refuses such a value), the
    value is ignored and said on the settings page in German (the rule read in English), and the
    other saved values stay in force (they all fell back to their defaults)."""
    (tmp_path / "dashboard_config.json").write_text(json.dumps({"ASTER_LEVERAGE": 500,
                                                               "ASTER_RISK_PER_TRADE": 0.004}))
    server = dashboard()  # it starts (it refused to: the page lists what is wrong)
    cfg = httpx.get(f"{server.url}/api/config").json()
    assert [e["field"] for e in cfg["errors"]] == ["ASTER_LEVERAGE"]
    values = {x["key"]: x["value"] for x in cfg["settings"]}
    assert values["ASTER_RISK_PER_TRADE"] == 0.004  # the other saved values stay in force
    page = page_factory(locale="de-DE")
    page.goto(server.url)
    page.click("#tabs button[data-tab=settings]")
    expect(page.locator("#notices")).to_contain_text(
        "ASTER_LEVERAGE: 500 ist nicht erlaubt; erwartet: eine ganze Zahl in [1; 125]",
        timeout=30_000)
    assert "is not allowed" not in page.locator("#notices").inner_text()
    assert page.errors == []


def test_a_trades_notes_read_in_german_in_the_history(tmp_path, dashboard, page_factory):
    """The History's notes column: a rule's postmortem lesson and the note of a trade the user
    confirmed in the chat were English on a German page (the lesson's words were not kept in
    the journal); the AI's own explanation stays as the model wrote it."""
    from mraster.journal import Journal

    trade = {"symbol": "XRPUSDT", "side": "BUY", "qty": 10.0, "entry": 1.0, "exit": 0.9,
             "pnl": -1.0, "r": -1.0, "fees": 0.0, "funding": 0.0, "opened_at": 1_700_000_000_000,
             "closed_at": 1_700_000_600_000, "reason": "stop", "initial_stop": 0.9, "stop": 0.9,
             "take_profit": 1.2, "origin": "chat", "ai": "Momentum kippt; halbe Größe."}
    j = Journal(tmp_path / "aster_journal.sqlite", "paper")
    j.book(trade)
    lesson = {"template": "stopped out after {minutes} min at {r} R: the setup failed",
              "params": {"minutes": 10, "r": -1.0}}
    j.on_event("postmortem", {"symbol": "XRPUSDT", "closed_at": trade["closed_at"],
                              "lesson": "stopped out after 10 min at -1.0 R: the setup failed",
                              "lesson_words": lesson})  # as the copilots emit it
    j.close()
    _, page = offline_on_tab(dashboard, page_factory, "history", locale="de-DE")
    notes = page.locator("#history tbody tr td.notes").first
    expect(notes).to_contain_text("Lektion: nach 10 min bei -1 R ausgestoppt: Das Setup ist "
                                  "gescheitert", timeout=30_000)
    expect(notes).to_contain_text("eröffnet aus einem Chat-Vorschlag, den du bestätigt hast")
    expect(notes).to_contain_text("Momentum kippt; halbe Größe.")
    assert "stopped out" not in notes.inner_text() and page.errors == []

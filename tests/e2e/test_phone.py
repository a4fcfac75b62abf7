"""The dashboard on a phone (360–430 px wide, touch): every view fits the screen's width — what
is wider (tables, the log) scrolls inside its own box — and every control can be reached."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from e2e.conftest import shot

TABS = ("overview", "decisions", "market", "chart", "history", "logs", "backtest", "settings", "ai")

# the elements wider than the screen, named for the failure message
OVERFLOW = """(() => {
  const w = document.documentElement.clientWidth, out = [];
  for (const e of document.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    let p = e.parentElement, clipped = false;
    while (p && p !== document.body) {
      const st = getComputedStyle(p);
      if (st.overflowX !== 'visible') { clipped = true; break; }  // it scrolls in its box
      p = p.parentElement;
    }
    if (!clipped && (r.right > w + 1 || r.left < -1))
      out.push((e.id ? '#' + e.id : e.tagName.toLowerCase() + '.' + e.className) + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
  }
  return {page: document.documentElement.scrollWidth, width: w, wide: out.slice(0, 12)};
})()"""


def fits(page) -> dict:
    got = page.evaluate(OVERFLOW)
    assert got["page"] <= got["width"] and not got["wide"], got
    return got


def in_view(page, width: int) -> None:
    """An open position's PnL, stop, protection and close button are on the screen as it is
    shown, without scrolling the table sideways (a phone shows each position as a card; the
    table put PnL sixth and the protection eleventh, behind a sideways scroll)."""
    row = page.locator("#positions tbody tr[data-status=open]").first
    for part in ("position-pnl", "position-stop"):
        box = row.get_by_test_id(part).bounding_box()
        assert box and 0 <= box["x"] and box["x"] + box["width"] <= width, (part, box)
    for part in ("td.protection", "td.actions button"):
        box = row.locator(part).bounding_box()
        assert box and 0 <= box["x"] and box["x"] + box["width"] <= width, (part, box)


@pytest.mark.parametrize("width", [360, 430])
def test_every_view_fits_a_phone_screen(dashboard, page_factory, width):
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory(width, 780, is_mobile=True, has_touch=True, device_scale_factor=2)
    page.goto(server.url)
    expect(page.get_by_test_id("wizard")).to_be_visible()
    fits(page)  # the wizard's three choices, "Live trading" included
    page.locator("#wizard button[data-mode=live]").click()
    expect(page.locator("#wizard-live")).to_be_visible()
    fits(page)
    shot(page, f"phone-{width}-wizard-live")
    page.reload()
    page.get_by_test_id("wizard-offline").click()
    page.get_by_test_id("start").click()
    expect(page.locator("#positions tbody tr[data-status=open]").first).to_be_visible(timeout=60_000)
    in_view(page, width)
    for tab in TABS:
        button = page.locator(f"#tabs button[data-tab={tab}]")
        box = button.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (tab, box)
        button.click()
        expect(page.locator(f"#tab-{tab}")).to_be_visible()
        fits(page)
        shot(page, f"phone-{width}-{tab}")
    page.click("#tabs button[data-tab=settings]")
    page.click("#pro-toggle")
    expect(page.locator("#pro-form")).to_be_visible()
    fits(page)
    assert page.errors == []


# English words a German page never shows; text the server sends in its own words (alerts, the
# log, chat answers, AI explanations) is marked .raw on the page and not walked
ENGLISH = """(() => {
  const EN = /\\b(the|and|of|with|is|not|from|this|your|to|be|are|has|have|it|its|for|will|yet|no|by|on|at|or)\\b/i;
  const out = [], hidden = (e) => !e.getClientRects().length;
  const plain = (s) => s.replace(/„[^“]*“/g, "").replace(/ASTER_[A-Z0-9_]+/g, "");
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const p = n.parentElement;
    if (!p || p.closest(".raw, #log, script, style") || hidden(p)) continue;
    if (EN.test(plain(n.nodeValue))) out.push(n.nodeValue.trim().slice(0, 100));
  }
  for (const a of ["placeholder", "title", "aria-label"]) for (const e of document.querySelectorAll(`[${a}]`)) {
    if (!e.closest(".raw, .chart") && !hidden(e) && EN.test(plain(e.getAttribute(a)))) out.push(`${a}: ${e.getAttribute(a)}`);
  }
  return {english: [...new Set(out)], untranslated: [...I18N.missing]};
})()"""


def german_only(page, where: str) -> None:
    got = page.evaluate(ENGLISH)
    assert got == {"english": [], "untranslated": []}, (where, got)


def test_a_german_speaking_trader_reads_every_view_in_german(dashboard, page_factory):
    """A phone set to German, in dark mode: the wizard, every tab, the pro settings and a
    backtest report are German (words and number formats), and nothing overflows."""
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory(390, 800, locale="de-DE", color_scheme="dark", is_mobile=True,
                        has_touch=True)
    page.goto(server.url)
    expect(page.get_by_test_id("wizard")).to_be_visible()
    assert page.evaluate("document.documentElement.lang") == "de"
    expect(page.locator("#lang")).to_have_value("de")  # the browser's language, by default
    german_only(page, "wizard")
    page.locator("#wizard button[data-mode=live]").click()
    expect(page.locator("#wizard-live")).to_be_visible()
    german_only(page, "wizard, live")
    page.reload()
    page.get_by_test_id("wizard-offline").click()
    page.get_by_test_id("start").click()
    expect(page.locator("#bot-state")).to_contain_text("läuft")
    expect(page.locator("#positions tbody tr[data-status=open]").first).to_be_visible(timeout=60_000)
    expect(page.locator("#perf-cards")).to_contain_text(",")  # 9.985,51 USDT: German numbers
    for tab in TABS:
        page.click(f"#tabs button[data-tab={tab}]")
        if tab == "backtest":
            page.get_by_test_id("run-backtest").click()
            expect(page.get_by_test_id("bt-card").first).to_be_visible(timeout=120_000)
        if tab == "settings":
            page.click("#pro-toggle")
            expect(page.locator("#pro-form legend").first).to_have_text("Börse und Konto")
        german_only(page, tab)
        fits(page)
        shot(page, f"de-phone-dark-{tab}")
    page.select_option("#lang", "en")  # the choice is kept in this browser
    expect(page.locator("#tabs button[data-tab=overview]")).to_have_text("Overview")
    page.reload()
    expect(page.locator("#lang")).to_have_value("en")
    assert page.errors == []


@pytest.mark.parametrize("width", [1280])
def test_every_view_fits_a_laptop_screen(dashboard, page_factory, width):
    """On a laptop the page never scrolls sideways either: the positions and decisions tables
    were one line per row, 2,000 px wide (2,150 in German), and moved the whole page."""
    server = dashboard(ASTER_SCAN_INTERVAL_SECONDS="1")
    page = page_factory(width, 800, locale="de-DE")
    page.goto(server.url)
    page.get_by_test_id("wizard-offline").click()
    page.get_by_test_id("start").click()
    expect(page.locator("#positions tbody tr[data-status=open]").first).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("protection-ok").first).to_be_visible(timeout=60_000)
    # the table scrolls in its box, but a position's Close… stays on the screen (it was past
    # the right edge, reached only by scrolling the table)
    for part in ("position-pnl", "position-stop"):
        box = page.get_by_test_id(part).first.bounding_box()
        assert box and box["x"] + box["width"] <= width, (part, box)
    close = page.locator("#positions tbody tr[data-status=open] td.actions button").first
    box = close.bounding_box()
    assert box and box["x"] + box["width"] <= width, box
    close.click()
    expect(page.locator("#dialog")).to_be_visible()
    page.keyboard.press("Escape")
    for tab in TABS:
        page.click(f"#tabs button[data-tab={tab}]")
        expect(page.locator(f"#tab-{tab}")).to_be_visible()
        fits(page)
    assert page.errors == []

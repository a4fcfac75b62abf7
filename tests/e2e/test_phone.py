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

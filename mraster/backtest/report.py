"""The backtest report: figures a trader reads, as JSON, CSV and one self-contained HTML page."""
from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

from mraster.backtest.runner import BacktestResult
from mraster.metrics import max_drawdown, trade_stats
from mraster.strategy.filters import LABELS, REASONS

TRADE_FIELDS = ("symbol", "side", "qty", "entry", "exit", "opened_at", "closed_at", "reason", "r",
                "pnl", "fees", "funding", "initial_stop", "take_profit")


def ratios(curve: list[tuple[int, float]], steps_per_year: float) -> dict[str, float | None]:
    """Sharpe and Sortino of per-step equity returns, annualised (risk-free rate 0)."""
    eq = [e for _, e in curve]
    rets = [b / a - 1 for a, b in zip(eq, eq[1:]) if a > 0]
    if len(rets) < 2:
        return {"sharpe": None, "sortino": None}
    mean = sum(rets) / len(rets)
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))
    down = math.sqrt(sum(min(r, 0.0) ** 2 for r in rets) / len(rets))
    scale = math.sqrt(steps_per_year)
    return {"sharpe": mean / sd * scale if sd > 0 else None,
            "sortino": mean / down * scale if down > 0 else None}


def build(result: BacktestResult) -> dict[str, Any]:
    st = result.state
    trades = st.get("history", [])
    curve = result.equity
    start_eq = curve[0][1] if curve else None
    end_eq = curve[-1][1] if curve else None
    per_symbol = {}
    for sym in result.symbols:
        per_symbol[sym] = trade_stats([t for t in trades if t["symbol"] == sym])
    per_exit = {r: trade_stats([t for t in trades if t["reason"] == r])
                for r in sorted({t["reason"] for t in trades})}
    skipped = st.get("stats", {}).get("skipped", {})
    return {
        "symbols": result.symbols, "start_ms": result.start_ms, "end_ms": result.end_ms,
        "candles_per_symbol": result.steps, "seconds": round(result.seconds, 3),
        "engine_steps": result.engine_steps,
        # the account is kept in the data's quote currency (BTC-quoted pairs: amounts in BTC)
        "quote": result.settings.get("ASTER_QUOTE", "USDT"),
        "summary": {**trade_stats(trades), **max_drawdown(curve), **ratios(curve, 365 * 288),
                    "start_equity": start_eq, "end_equity": end_eq,
                    "total_return": (end_eq / start_eq - 1) if start_eq else None,
                    "exposure": result.exposure_steps / result.steps if result.steps else 0.0,
                    "open_at_end": len(st.get("positions", {})),
                    "fees": sum(t["fees"] for t in trades),
                    "funding": sum(t["funding"] for t in trades)},
        "per_symbol": per_symbol, "per_exit_reason": per_exit,
        "skipped_signals": {k: {"count": v, "label": LABELS.get(k, k), "why": REASONS.get(k, k)}
                            for k, v in sorted(skipped.items(), key=lambda kv: -kv[1])},
        "taken": st.get("stats", {}).get("taken", 0),
        "breakers": st.get("protections", {}).get("log", []),  # when each one tripped, and why
        "gaps": {k: [list(g) for g in v] for k, v in result.gaps.items()},
        "trades": [{k: t.get(k) for k in TRADE_FIELDS} for t in trades],
        "equity_curve": [list(p) for p in curve],
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in result.settings.items()},
    }


def report_json(report: dict[str, Any]) -> str:
    """The report indented, but its long lists — the equity curve (a point per step, most of the
    file) and the trades — an item per line from json's C encoder: indenting every number took
    three quarters of the writing (0.3 s for 320 days of steps) and put each number on a line
    of its own."""
    curve = json.dumps(report["equity_curve"]).replace("], [", "],\n  [")  # numbers only
    trades = "[" + ",\n  ".join(json.dumps(t, default=str) for t in report["trades"]) + "]"
    text = json.dumps({**report, "equity_curve": None, "trades": None}, indent=1, default=str)
    # (a top-level key is indented by one space, deeper ones by more; inside a string the
    # quotes would be escaped)
    return text.replace('\n "trades": null', f'\n "trades": {trades}', 1).replace(
        '\n "equity_curve": null', f'\n "equity_curve": {curve}', 1)


def write(report: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "trades.csv", out / "equity.csv", out / "report.html"]
    paths[0].write_text(report_json(report), encoding="utf-8")
    with paths[1].open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=TRADE_FIELDS)
        w.writeheader()
        w.writerows(report["trades"])
    with paths[2].open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["time_ms", "equity"])
        w.writerows(report["equity_curve"])
    paths[3].write_text(html_page(report), encoding="utf-8")
    return paths


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def svg_curve(curve: list[list[float]], width: int = 900, height: int = 240) -> str:
    if len(curve) < 2:
        return "<p>No equity curve.</p>"
    step = max(1, len(curve) // 1500)
    pts = curve[::step] + [curve[-1]]
    t0, t1 = pts[0][0], pts[-1][0]
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    span = (hi - lo) or 1.0
    xy = " ".join(f"{(p[0] - t0) / ((t1 - t0) or 1) * width:.1f},{height - (p[1] - lo) / span * height:.1f}"
                  for p in pts)
    return (f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'style="background:#fff;border:1px solid #ddd"><polyline fill="none" stroke="#2563eb" '
            f'stroke-width="1.5" points="{xy}"/></svg><p>equity from {lo:.6g} to {hi:.6g}</p>')


def html_page(r: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in r["summary"].items())
    sym = "".join(f"<tr><td>{html.escape(s)}</td><td>{v['trades']}</td><td>{_fmt(v['win_rate'])}</td>"
                  f"<td>{_fmt(v['total_pnl'])}</td></tr>" for s, v in r["per_symbol"].items())
    skip = "".join(f"<tr><td>{html.escape(k)}</td><td>{v['count']}</td><td>{html.escape(v['why'])}</td></tr>"
                   for k, v in r["skipped_signals"].items())
    q = html.escape(r.get("quote", "USDT"))
    return f"""<!doctype html><meta charset="utf-8"><title>MrAster backtest</title>
<style>body{{font:14px system-ui;margin:2rem}}td,th{{padding:2px 8px;text-align:left}}</style>
<h1>Backtest: {html.escape(", ".join(r["symbols"]))}</h1>
{svg_curve(r["equity_curve"])}
<h2>Summary</h2><p>Amounts in {q}.</p><table>{rows}</table>
<h2>Per symbol</h2><table><tr><th>Symbol</th><th>Trades</th><th>Win rate</th><th>PnL ({q})</th></tr>{sym}</table>
<h2>Skipped signals by reason</h2><table>{skip}</table>"""

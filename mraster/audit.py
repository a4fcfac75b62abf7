"""Live against replay: the day the bot traded, decided again by the same evaluator over the
data it actually saw (``engine.recorder``), decision by decision.

Each recorded cycle rebuilds every symbol's closed-candle windows from the record and asks the
evaluator (``evaluator.decide``: the screen, the sentinel's label, the user's limits and the
policy as recorded at that moment) again. Decisions made before it (no quote, the volume floor,
no candles) are not replayed; decisions made after it (the advisor, the playbook's blocks, the
sizing and the order) must have been an intent to open the same side. Lines recorded before the
policy was (a cut record) are compared at the screen only. Each divergence gets its cause in words: the exchange changed the candles afterwards
(when an exchange is given to look them up again), the settings changed since, or the evaluator
decides differently on the same data. Entries are compared with the quote the decision saw:
slippage, a late cycle, or an exchange refusal.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Mapping

import numpy as np

from mraster.saved_presets import settings_hash
from mraster.engine.recorder import read
from mraster.domain import Position
from mraster.engine.evaluator import Portfolio, Skip, decide
from mraster.policy import BanditPolicy
from mraster.sim.market import INTERVAL_MS
from mraster.strategy.filters import Snapshot
from mraster.strategy.screen import MARKET_REASONS, SIGNAL_REASONS, screen
from mraster.strategy.signals import HTF_WINDOW, LTF_WINDOW, Candles, features
from mraster.words import words

BEFORE_SCREEN = {"no_quote", "min_qvol", "data_error"}
# reasons given after the evaluator's intent: the advisor, the playbook, the executor (which
# checks the user's limits again, now counting this cycle's earlier entries)
AFTER_INTENT = {"signal", "ai_pending", "ai_veto", "playbook_block", "stopping", "order_failed",
                "entry_unknown", "margin_mode", "liquidation_risk", "open_risk_cap", "notional_cap",
                "min_notional", "min_qty", "max_open_global", "max_open_symbol", "reducing",
                "symbol_locked", "paused", "cooldown", "external_position"}
SCREEN_REASONS = MARKET_REASONS | SIGNAL_REASONS | {
    "edge_r", "funding_long", "funding_short", "oracle_gap", "non_arb_bias_long",
    "non_arb_bias_short"}
REFUSED = {"order_failed", "entry_unknown", "margin_mode"}
SLIPPAGE_BPS = 5.0   # a fill this far beyond the quote the decision saw is called slippage


def _candles(rows: dict[int, list[float]], n: int) -> Candles:
    keep = [rows[t] for t in sorted(rows)][-n:]
    a = np.array(keep, dtype=float) if keep else np.zeros((0, 6))
    return Candles(a[:, 0].astype(np.int64), a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5])


def replay(record_lines: list[dict[str, Any]], s: Mapping[str, Any],
           revised: Mapping[tuple[str, int], list[float]] | None = None,
           history: list[dict[str, Any]] = (), since: int = 0) -> dict[str, Any]:
    """The audit report. ``revised``: (symbol, open time) → the exchange's candle now, for the
    recorded candles that were looked up again (a differing one explains a divergence)."""
    ltf_rows: dict[str, dict[int, list[float]]] = defaultdict(dict)
    htf_rows: dict[str, dict[int, list[float]]] = defaultdict(dict)
    now_hash = settings_hash(s)
    compared = matched = 0
    divergent: list[dict[str, Any]] = []
    skipped = 0
    quotes_at: dict[tuple[str, int], list[float]] = {}
    whole: set[str] = set()  # symbols whose windows the record holds as the bot had them
    policy: BanditPolicy | None = None
    for line in record_lines:
        t = line["t"]
        g = line.get("g") or {}
        if g.get("policy"):
            policy = BanditPolicy.from_settings(s).load(g["policy"])
        portfolio = _portfolio(g) if g else None
        for sym, (lt, ht, *full) in line.get("k", {}).items():
            if full and full[0]:
                ltf_rows[sym].clear()
                htf_rows[sym].clear()
                whole.add(sym)
            for r in lt:
                ltf_rows[sym][int(r[0])] = r
            for r in ht:
                htf_rows[sym][int(r[0])] = r
        for sym, (action, reason, side) in line.get("d", {}).items():
            q = line.get("q", {}).get(sym)
            if q is not None:
                quotes_at[(sym, t)] = q
            if t < since:
                continue  # earlier lines only build the windows
            if q is None or reason in BEFORE_SCREEN or sym not in whole:
                skipped += 1
                continue
            ltf, htf = _candles(ltf_rows[sym], LTF_WINDOW), _candles(htf_rows[sym], HTF_WINDOW)
            f = features(ltf, htf)
            snap = Snapshot(bid=q[0], ask=q[1], quote_volume=q[2], mark=q[3], index=q[4], funding=q[5])
            compared += 1
            if policy is not None and portfolio is not None:  # the whole evaluator
                lab = (g.get("labels") or {}).get(sym)
                tight = g.get("tight") or {}
                got = decide(sym, snap, f, portfolio, _tightened(s, tight), policy=policy,
                             label={"label": lab[0], "event_risk": lab[1]} if lab else None,
                             postmortem=(g.get("pm") or {}).get(sym))
                replayed = got.reason if isinstance(got, Skip) else None
                replay_side = got.info.get("side") if isinstance(got, Skip) else got.side.value
                same = (reason == replayed) or (replayed is None and reason in AFTER_INTENT
                                                and side in (None, replay_side))
            else:  # the screen only
                replayed = "few_klines" if f is None else screen(f, snap, s).reason
                replay_side = None if f is None else screen(f, snap, s).side
                live = reason if reason in SCREEN_REASONS or reason == "few_klines" else None
                same = live == replayed and (live is not None or side in (None, replay_side))
            if same:
                matched += 1
                continue
            divergent.append({"time": t, "symbol": sym, "live": reason or action,
                              "live_side": side, "replay": replayed or "opens",
                              "replay_side": replay_side,
                              **_cause(sym, ltf, line.get("s"), now_hash, revised)})
    fills = []
    for tr in history:
        if int(tr["opened_at"]) < since:
            continue
        q = quotes_at.get((tr["symbol"], int(tr["opened_at"])))
        if q is None:
            continue
        d = 1 if tr["side"] == "BUY" else -1
        quote = q[1] if d > 0 else q[0]
        bps = d * (tr["entry"] - quote) / quote * 1e4
        fills.append({"symbol": tr["symbol"], "time": tr["opened_at"], "quote": quote,
                      "fill": tr["entry"], "slippage_bps": round(bps, 3),
                      "cause": "slippage" if bps > SLIPPAGE_BPS else "as expected"})
    lines = [x for x in record_lines if x["t"] >= since]
    late = _late_cycles(lines, s)
    refused = [{"time": x["t"], "symbol": sym, "cause": "an exchange refusal", "reason": r}
               for x in lines for sym, (_, r, _) in x.get("d", {}).items() if r in REFUSED]
    share = (len(divergent) / compared) if compared else 0.0
    return {"cycles": len(lines), "compared": compared, "matched": matched,
            "not_replayable": skipped, "divergent": divergent[:200], "divergent_total": len(divergent),
            "divergence_share": round(share, 4), "fills": fills, "late_cycles": late,
            "refusals": refused[:50],
            "from": lines[0]["t"] if lines else None, "to": lines[-1]["t"] if lines else None}


def _portfolio(g: Mapping[str, Any]) -> Portfolio:
    """The portfolio the evaluation saw (only what the gate reads: symbols held and counts)."""
    held = {f"h{i}": Position.from_dict({"symbol": sym, "side": "BUY", "status": "open",
                                          "opened_at": 0, "qty": 0, "entry": 0, "initial_stop": 0,
                                          "stop": 0, "take_profit": 0}, f"h{i}")
            for i, sym in enumerate(g.get("held", []))}
    return Portfolio(positions=held, cooldowns=g.get("cool", {}), off_limits=frozenset(g.get("off", [])),
                     reducing=bool(g.get("reducing")), locked=frozenset(g.get("locked", [])),
                     paused=bool(g.get("paused")), now_ms=int(g.get("now", 0)))


def _tightened(s: Mapping[str, Any], tight: Mapping[str, float]) -> Mapping[str, Any]:
    from mraster.ai.playbook import tightened
    return tightened(s, {"tighten": tight}) if tight else s


def _cause(sym: str, ltf: Candles, recorded_hash: str | None, now_hash: str,
           revised: Mapping[tuple[str, int], list[float]] | None) -> dict[str, Any]:
    """Why a decision differs: ``cause`` in English, ``cause_words`` for the page's language."""
    said = words("the evaluator decides differently on the same data (a code change)")
    if recorded_hash and recorded_hash != now_hash:
        said = words("the settings changed since: the replay uses today's settings")
    for i in range(len(ltf.t) if revised else 0):
        now = revised.get((sym, int(ltf.t[i])))
        seen = [float(ltf.o[i]), float(ltf.h[i]), float(ltf.l[i]), float(ltf.c[i])]
        if now is not None and [float(x) for x in now[1:5]] != seen:
            said = words("data changed afterwards: the exchange now shows a different candle at "
                         "{time} than the bot saw", time=time.strftime(
                             "%Y-%m-%d %H:%M UTC", time.gmtime(int(ltf.t[i]) / 1000)))
            break
    return {"cause": str(said), "cause_words": said.to_dict()}


def _late_cycles(lines: list[dict[str, Any]], s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cycles that saw a candle close more than one signal interval late (the bot was busy or
    the exchange slow): their decisions came later than the candle allowed."""
    iv = INTERVAL_MS.get(s["ASTER_INTERVAL"], 300_000)
    out = []
    for x in lines:
        for sym, (lt, _, *full) in x.get("k", {}).items():
            if lt and not (full and full[0]) and x["t"] - (int(lt[-1][0]) + iv) > iv:
                out.append({"time": x["t"], "symbol": sym, "cause": "a late cycle",
                            "late_s": round((x["t"] - int(lt[-1][0]) - iv) / 1000, 1)})
    return out[:50]


def audit_file(path: str, s: Mapping[str, Any], since_ms: int = 0,
               history: list[dict[str, Any]] = (),
               revised: Mapping[tuple[str, int], list[float]] | None = None) -> dict[str, Any]:
    """Replay the record from ``since_ms`` on (earlier lines still build the candle windows)."""
    return replay(list(read(path)), s, revised, history, since_ms)


DAY_MS = 86_400_000


class DailyAudit:
    """Once per UTC day, the bot replays its last day — off the scan loop: the replay (seconds
    of CPU for two days of record) runs in a daemon thread, so a cycle never waits for it and a
    stop is never held up by it. When it diverges, the candles of the divergent symbols are
    looked up again on the exchange (on the loop, through the bot's client) and the replay runs
    once more with them to tell revised data from the rest. The report goes into the state and,
    above ``ASTER_AUDIT_DIVERGENCE_MAX``, becomes a notice."""

    def __init__(self, path: str, s: Mapping[str, Any]) -> None:
        self.path, self.s = path, s
        self._thread: threading.Thread | None = None
        self._result: dict[str, Any] | None = None
        self._job: tuple[int, int, list, bool] | None = None  # (day, since, history, revised?)

    def _start(self, since: int, history: list, revised: Mapping | None) -> None:
        def work() -> None:
            try:
                self._result = audit_file(self.path, self.s, since, history, revised)
            except Exception as exc:  # reported like a result: the page shows it
                self._result = {"error": f"{type(exc).__name__}: {exc}"}
        self._result = None
        self._thread = threading.Thread(target=work, name="daily-audit", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> bool:
        return self._job is not None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start_if_due(self, state: Mapping[str, Any], now: int) -> None:
        day = now // DAY_MS
        if self.busy or self._job is not None or (state.get("audit") or {}).get("day") == day:
            return
        history = list(state.get("history", []))
        self._job = (day, now - DAY_MS, history, False)
        self._start(now - DAY_MS, history, None)

    async def wait(self, timeout_s: float) -> None:
        """A single run (ASTER_RUN_ONCE) waits for its audit instead of leaving it unfinished."""
        import asyncio

        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout_s)

    async def collect(self, engine: Any, state: dict[str, Any], now: int) -> dict[str, Any] | None:
        """Take a finished replay into the state (or start the second pass); None until done."""
        if self._job is None or self.busy or self._result is None:
            return None
        day, since, history, second = self._job
        report = self._result
        if report.get("divergent") and not second:
            revised: dict[tuple[str, int], list[float]] = {}
            for sym in {d["symbol"] for d in report["divergent"]}:
                try:
                    rows = await engine.ex.klines(sym, self.s["ASTER_INTERVAL"], limit=1000)
                except Exception:  # the lookup only explains; without it the other causes stand
                    continue
                for r in rows:
                    revised[(sym, int(r[0]))] = [float(x) for x in r[:6]]
            self._job = (day, since, history, True)
            self._start(since, history, revised)
            return None
        self._job = None
        state["audit"] = {"day": day, "at": now, **report}
        if report.get("error"):
            engine.alert("error", words("live against replay could not run: {error}",
                                        error=report["error"]))
        elif report["compared"] and report["divergence_share"] > self.s["ASTER_AUDIT_DIVERGENCE_MAX"]:
            causes = sorted({d["cause"] for d in report["divergent"]})
            engine.alert("warning", words("live against replay: {different} of {compared} "
                                          "decisions of the last day differ ({share} %); causes: "
                                          "{causes}", different=report["divergent_total"],
                                          compared=report["compared"],
                                          share=round(report["divergence_share"] * 100, 1),
                                          causes="; ".join(causes)))
        return report

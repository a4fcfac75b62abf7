"""Shadow trades of vetoed signals (``mraster.shadows``): settled on real candles exactly as a
plain walk over them would, candle by candle."""
from __future__ import annotations

import json

import numpy as np

from conftest import DATA
from mraster import settings as st
from mraster.shadows import MAX_AGE, MAX_OPEN, keep, open_shadow, restore, settle
from mraster.sim.market import read_candles_csv

S = st.load(environ={}, env_file=None)
FIVE_MIN = 300_000


def by_hand(sh, t, h, l):
    """The reference: walk the candles after the signal one at a time."""
    start = int(np.flatnonzero(t == sh["t"])[0]) + 1
    for k in range(start, min(len(t), start + MAX_AGE)):
        buy = sh["side"] == "BUY"
        stop = l[k] <= sh["stop"] if buy else h[k] >= sh["stop"]
        win = h[k] >= sh["tp"] if buy else l[k] <= sh["tp"]
        if stop or win:
            return int(t[k]) + FIVE_MIN, sh["r_loss"] if stop else sh["r_win"]
        if k - start + 1 == MAX_AGE:
            return int(t[k]) + FIVE_MIN, None
    return None


def test_a_shadow_settles_on_the_first_candle_that_reaches_its_stop_or_target():
    """Real XRPUSDT 5m candles, 400 signals at random moments, both sides, ATRs from tight to
    wide: the first candle reaching the stop (R −1 less costs; the stop when a candle reaches
    both) or the target, the 96th candle with neither (expired), or still open at the end of
    the candles seen so far, and the same answer from any window that still reaches back to
    the signal, as the engine's 200-candle windows do."""
    t, _, h, l, c, _ = read_candles_csv(DATA / "XRPUSDT-5m-futures.csv")
    rng = np.random.default_rng(5)
    outcomes = set()
    for n in range(400):  # every 20th near the end: still open there
        i = int(rng.integers(len(t) - 30 if n % 20 == 0 else 0, len(t) - 2))
        atr = float(c[i]) * float(rng.uniform(0.0005, 0.01))
        sh = open_shadow("XRPUSDT", str(rng.choice(["BUY", "SELL"])), int(t[i]), float(c[i]),
                         atr, 0.0002, [0.0], S)
        want = by_hand(sh, t, h, l)
        assert settle(sh, t, h, l, FIVE_MIN) == want
        end = int(rng.integers(i + 1, min(len(t), i + 200)))  # a window ending earlier
        lo = max(0, end - 200)
        got = settle(sh, t[lo:end], h[lo:end], l[lo:end], FIVE_MIN)
        assert got == by_hand(sh, t[:end], h[:end], l[:end])
        outcomes.add("open" if want is None else "expired" if want[1] is None else
                     "win" if want[1] == sh["r_win"] else "stop")
    assert outcomes == {"win", "stop", "expired", "open"}
    assert sh["r_loss"] < -1 and sh["r_win"] < S["ASTER_TP_ATR_MULT"] / S["ASTER_SL_ATR_MULT"]


def test_a_window_that_no_longer_reaches_the_signal_expires_the_shadow():
    """A bot that was off for longer than its window cannot know what happened in between:
    the shadow is dropped (nothing learned), not settled on the candles it happens to see."""
    t, _, h, l, c, _ = read_candles_csv(DATA / "XRPUSDT-5m-futures.csv")
    sh = open_shadow("XRPUSDT", "BUY", int(t[10]), float(c[10]), float(c[10]) * 1e-5, 0.0,
                     [0.0], S)
    assert settle(sh, t[11:], h[11:], l[11:], FIVE_MIN) == (int(t[-1]) + FIVE_MIN, None)
    assert open_shadow("XRPUSDT", "BUY", int(t[10]), float(c[10]), 0.0, 0.0, [0.0], S) is None


def test_each_signal_is_followed_once_and_the_oldest_go_past_the_bound():
    shadows: list = []
    first = open_shadow("A", "BUY", 1_000, 1.0, 0.01, 0.0, [0.0], S)
    assert keep(shadows, first) and not keep(shadows, dict(first))  # a warm cycle's repeat
    for k in range(MAX_OPEN):
        keep(shadows, open_shadow("B", "SELL", 2_000 + k, 1.0, 0.01, 0.0, [0.0], S))
    assert len(shadows) == MAX_OPEN and first not in shadows


def test_shadows_read_back_from_a_state_file_are_whole_bounded_and_fit_the_policy():
    """The state file is the user's: a hand edit, another version's features or a damaged value
    leaves that shadow out (it only teaches), never the bot unable to start or a model taught
    from nonsense; a file holding more than the bound keeps the newest."""
    good = open_shadow("ETHUSDT", "SELL", 3_000, 2.0, 0.05, 0.001, np.array([0.1, 0.2, 0.3]), S)
    saved = [good]
    assert json.loads(json.dumps(saved)) == saved  # plain JSON, floats exact
    broken = [None, "x", {}, {**saved[0], "x": [0.1, 0.2]}, {**saved[0], "x": [0.1, "a", 0.3]},
              {**saved[0], "side": "HOLD"}, {**saved[0], "symbol": "../../etc"},
              {**saved[0], "symbol": 7}, {**saved[0], "t": float("inf")},
              {**saved[0], "stop": float("nan")}, {**saved[0], "x": [[0.1], [0.2], [0.3]]}]
    back, dropped = restore(broken + saved, width=3)
    assert back == saved and all(type(v) is float for v in back[0]["x"])
    assert dropped == len(broken)
    assert restore({"not": "a list"}, width=3) == ([], 0)
    many = [{**saved[0], "t": 10_000 + k} for k in range(MAX_OPEN + 5)] + [saved[0]] * 3
    kept, dropped = restore(many, width=3)
    assert len(kept) == MAX_OPEN and min(sh["t"] for sh in kept) == 10_005 and dropped == 8

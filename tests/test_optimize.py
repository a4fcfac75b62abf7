"""The walk-forward optimiser (mraster.optimize) on the real sample candles: the search space
and its caps, an optimum planted in a synthetic market, constraints, no look-ahead, resuming after kill -9, two workers on one
storage, and the preset it proposes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from conftest import DATA, ROOT
from mraster import settings as st
from mraster.words import speaker
from mraster.optimize import space as sp
from mraster.optimize.__main__ import settings_for
from mraster.optimize.scoring import Score
from mraster.optimize.study import Evaluator, Plan, open_studies, prepare, storage_of, work
from mraster.market.indicators import atr_last
from mraster.sim.market import BASE_MS, replay_market

PAIRS = "ETHBTC,ADABTC"  # two of the seven pairs keep the process tests quick


def test_the_search_space_comes_from_the_catalogue_and_never_passes_the_caps():
    for name, rng in sp.SEARCHABLE.items():
        spec = st.BY_NAME[name]  # every searchable setting is a catalogue setting
        if rng is not None:
            assert spec.min <= rng[0] < rng[1] <= spec.max, name
    base = settings_for({"ASTER_LEVERAGE": "3", "ASTER_RISK_PER_TRADE": "0.02"})
    got = {p.name: p for p in sp.build(["sizing", "ASTER_SL_ATR_MULT"], base)}
    assert got["ASTER_RISK_PER_TRADE"].high == 0.01  # 1 % at most, whatever the user has
    assert got["ASTER_LEVERAGE"].high == 3 and got["ASTER_LEVERAGE"].kind == "int"
    assert (got["ASTER_SL_ATR_MULT"].low, got["ASTER_SL_ATR_MULT"].high) == (0.5, 3.0)
    with pytest.raises(st.SettingsErrors, match="ASTER_RISK_PER_TRADE.*at most 0.01"):
        sp.apply(base, {"ASTER_RISK_PER_TRADE": 0.015})
    with pytest.raises(st.SettingsErrors, match="ASTER_LEVERAGE.*your own limit 3"):
        sp.apply(base, {"ASTER_LEVERAGE": 5})
    with pytest.raises(sp.SpaceError, match="ASTER_API_KEY cannot be optimised"):
        sp.resolve(["ASTER_API_KEY"])
    with pytest.raises(sp.SpaceError, match="neither a setting nor a group.*entries"):
        sp.resolve(["entires"])


def write_sawtooth_market(folder: Path, cycles: int = 60) -> float:
    """A synthetic market with a known best take-profit, as a candle CSV the optimiser reads
    like any other data. Every cycle is the same: a flat stretch, a jump that lifts the RSI past
    the entry bound (the long's signal), one candle rising exactly ``RISE`` more, then a slow
    slide that stops the long out. A take-profit within ``RISE`` wins, one beyond it never does;
    the best is the largest that still fits: ``RISE`` / ATR at the signal. Returns that."""
    jump, rise, net, wick, slide, period = 6.0, 7.0, 2.0, 1.0, 1.5, 40
    rows, base, signals = [], 1000.0, []
    for _ in range(cycles):
        falls = int(np.ceil((jump + rise - net) / slide))
        rows += [(base, base + wick, base - wick, base)] * (period - 2 - falls)
        signals.append(len(rows))
        rows += [(base, base + jump, base, base + jump),
                 (base + jump, base + jump + rise, base + jump, base + jump + rise)]
        top, base = base + jump + rise, base + net
        while top > base:
            low = max(base, top - slide)
            rows.append((top, top, low, low))
            top = low
    o, h, low, c = (np.array(x) for x in zip(*rows))
    t = 1_700_000_100_000 // BASE_MS * BASE_MS + BASE_MS * np.arange(len(rows), dtype=np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["open_time_ms,open,high,low,close,volume"] + [
        f"{t[i]},{o[i]},{h[i]},{low[i]},{c[i]},1000" for i in range(len(rows))]
    (folder / "SAW_USDT-5m.csv").write_text("\n".join(lines) + "\n")
    i = signals[-1] + 1  # the signal candle closed; its ATR sets the take-profit distance
    return rise / atr_last(h[:i], low[:i], c[:i], 14)


SAWTOOTH = {  # a plain long-only RSI strategy, nothing between the signal and the order
    "ASTER_RSI_BUY_MIN": "70", "ASTER_RSI_SELL_MAX": "0", "ASTER_SL_ATR_MULT": "1",
    "ASTER_MIN_QUOTE_VOL_USDT": "0", "ASTER_BANDIT_ENABLED": "false",
    "ASTER_ALPHA_ENABLED": "false", "ASTER_MIN_EDGE_R": "-5", "FAST_TP_ENABLED": "false",
    "ASTER_BREAKEVEN_R": "0", "ASTER_TRAIL_ACTIVATION_R": "0", "ASTER_STREAK_STOPS": "0",
    "ASTER_SYMBOL_STOPS": "1", "ASTER_SYMBOL_LOCK_MINUTES": "60", "ASTER_WICKINESS_MAX": "1",
    "ASTER_FUNDING_FILTER_ENABLED": "false", "ASTER_NON_ARB_FILTER_ENABLED": "false"}


def test_the_optimiser_finds_the_take_profit_planted_in_a_synthetic_market(tmp_path):
    best_tp = write_sawtooth_market(tmp_path / "data")
    plan = Plan(data=tmp_path / "data", picks=["ASTER_TP_ATR_MULT"],
                settings=settings_for(SAWTOOTH), trials=30, folds=0,
                storage=f"sqlite:///{tmp_path / 's.sqlite'}")
    prepare(plan)
    work(plan, Evaluator(plan), 0, lambda: False)
    (_, study, _), = open_studies(plan, storage_of(plan))
    from mraster.optimize.report import best_trials

    trials = study.get_trials(states=(TrialState.COMPLETE,))
    beyond = [t.value for t in trials if t.params["ASTER_TP_ATR_MULT"] > best_tp + 0.05]
    assert beyond and max(beyond) < 0  # the plant: past the rise every trade is a loss
    best = best_trials(study)[0]
    assert best_tp - 0.4 <= best.params["ASTER_TP_ATR_MULT"] <= best_tp
    assert best.value > 0.3 and best.user_attrs["trades"] >= 20


class ConstrainedEvaluator(Evaluator):
    """Constraint handling only (mocked: the objective surface, not the engine): the score
    peaks at SL 1.7 × ATR and TP 3.1 × ATR, and a higher peak at SL > 2.5 breaks the drawdown
    constraint, so the optimiser must keep to the feasible one."""

    def evaluate(self, params, window):
        sl, tp = params["ASTER_SL_ATR_MULT"], params["ASTER_TP_ATR_MULT"]
        value = 1 - (sl - 1.7) ** 2 - (tp - 3.1) ** 2 / 4
        dd = 0.5 if sl > 2.5 else 0.1
        return Score(value + (3 if sl > 2.5 else 0), 20, dd, 0.0, {})


def test_the_optimiser_keeps_to_the_drawdown_constraint(tmp_path):
    plan = Plan(data=DATA, picks=["ASTER_SL_ATR_MULT", "ASTER_TP_ATR_MULT"],
                settings=settings_for({}), symbols=PAIRS.split(","), trials=120, folds=0,
                storage=f"sqlite:///{tmp_path / 's.sqlite'}")
    prepare(plan)
    work(plan, ConstrainedEvaluator(plan), 0, lambda: False)
    storage = storage_of(plan)
    (_, study, n), = open_studies(plan, storage)
    from mraster.optimize.report import best_trials

    best = best_trials(study)[0]
    assert best.params["ASTER_SL_ATR_MULT"] == pytest.approx(1.7, abs=0.15)
    assert best.params["ASTER_TP_ATR_MULT"] == pytest.approx(3.1, abs=0.4)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == n == 120


def test_walk_forward_never_lets_a_trial_see_its_scoring_window(tmp_path):
    """A spike planted in fold 1's scoring window changes nothing the fold's search saw."""
    plans, values = [], []
    for spiked in (False, True):
        market = replay_market(DATA, PAIRS.split(","), manual=True)
        plan = Plan(data=DATA, picks=["exits"], settings=settings_for({}), symbols=PAIRS.split(","),
                    trials=12, folds=2, storage=f"sqlite:///{tmp_path / f'{spiked}.sqlite'}")
        prepare(plan, market)
        test = plan.windows[0].test
        if spiked:
            for s in market.series.values():
                inside = (s.t >= test.start_ms) & (s.t < test.end_ms)
                s.h[inside] *= 1.5  # a 50 % spike through every take-profit
                s.l[inside] *= 0.6
        work(plan, Evaluator(plan, market), 0, lambda: False)
        storage = storage_of(plan)
        studies = open_studies(plan, storage)
        values.append([(t.params, t.value) for t in studies[0][1].get_trials(
            states=(TrialState.COMPLETE,))])
        plans.append((plan, Evaluator(plan, market)))
    assert values[0] == values[1]  # fold 1's search: the same trials, the same scores
    (plan, clean), (_, spiked) = plans
    w = plan.windows
    assert w[0].train.end_ms == w[0].test.start_ms and w[1].test.end_ms <= w[-1].test.start_ms
    # ... while the scoring window itself did see it
    assert clean.evaluate({}, w[0].test) != spiked.evaluate({}, w[0].test)


def test_the_report_backtests_give_the_same_answers_in_spawned_processes(tmp_path):
    """The report's backtests (unseen windows, neighbourhoods) run in parallel processes that
    load the candles themselves: their answers equal the ones run here, in order."""
    from mraster.optimize.report import summaries

    plan = Plan(data=DATA, picks=["exits"], settings=settings_for({}), symbols=PAIRS.split(","),
                trials=4, folds=1, storage=f"sqlite:///{tmp_path / 's.sqlite'}")
    ev = prepare(plan)
    tasks = [({}, plan.windows[0].test), ({"ASTER_TP_ATR_MULT": 3.0}, plan.windows[0].train),
             ({"ASTER_SL_ATR_MULT": 0.6}, plan.windows[-1].test)]
    here, there = summaries(plan, ev, tasks, 1), summaries(plan, ev, tasks, 2)
    assert [(sc.value, sc.trades, pnls, eq) for sc, pnls, eq in here] == \
        [(sc.value, sc.trades, pnls, eq) for sc, pnls, eq in there]
    assert sum(sc.trades for sc, _, _ in here) > 0


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_search_outlives_its_test():
    """A failing test must not leave a search (and its workers) running behind it."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _cli(tmp_path: Path, out: str, *extra: str) -> subprocess.Popen:
    """The command in a session of its own (a kill reaches its workers too); its messages go to
    a file, so a full pipe can never stall it while the test waits on the storage."""
    path = tmp_path / f"{out}-{time.monotonic_ns()}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mraster.optimize", "--data", str(DATA), "--symbols", PAIRS,
         "--settings", "exits", "--folds", "1", "--trials", "20", "--heartbeat", "1",
         "--json-progress",
         "--storage", f"sqlite:///{tmp_path / 'study.sqlite'}", "--out", str(tmp_path / out),
         *extra], cwd=ROOT, stdout=path.open("w"), stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    proc.log = path
    STARTED.append(proc)
    return proc


def _finish(proc: subprocess.Popen) -> str:
    proc.wait(timeout=300)
    return proc.log.read_text()


def _trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.sqlite'}")
    out = []
    for s in optuna.get_all_study_summaries(storage):
        out += optuna.load_study(study_name=s.study_name, storage=storage).get_trials()
    storage.engine.dispose()
    return out


def _complete_count(proc: subprocess.Popen) -> int:
    """Finished trials, from the command's own progress lines (the storage is left alone)."""
    done = 0
    for line in proc.log.read_text().splitlines():
        if line.startswith('{"event": "progress"'):
            done = json.loads(line)["done"]
    return done


def test_a_study_resumes_after_kill_minus_nine_with_no_trial_lost_or_run_twice(tmp_path):
    proc = _cli(tmp_path, "a")
    deadline = time.monotonic() + 120
    while _complete_count(proc) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)  # polling the storage for real progress, not a timed wait
    assert proc.poll() is None, _finish(proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its worker, mid-trial
    proc.wait()
    before = {t.number for t in _trials(tmp_path) if t.state == TrialState.COMPLETE}
    again = _cli(tmp_path, "a")
    log = _finish(again)
    assert again.returncode == 0, log
    trials = _trials(tmp_path)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 20 and before <= {t.number for t in done}  # nothing finished was lost
    keys = [json.dumps(t.params, sort_keys=True) for t in done]
    assert len(keys) == len(set(keys))  # no trial ran twice
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    retried = {t.system_attrs.get("failed_trial") for t in done}
    for t in trials:  # the trial the kill cut short was run again, to the end
        if t.state == TrialState.FAIL:
            assert t.number in retried
    report = json.loads((tmp_path / "a" / "optimize.json").read_text())
    assert [f["name"] for f in report["folds"]] == ["fold-1", "final"]


def test_a_trial_no_worker_ever_claimed_is_failed_and_queued_again_once(tmp_path):
    """A worker killed between creating a trial and its first heartbeat leaves a trial running
    forever: the next pass fails it and queues it again with the same parameters — once, when
    two workers find it (through Optuna's public API, so an upgrade keeps it working)."""
    from mraster.optimize.study import fail_unstarted

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    lost = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    fail_unstarted(study, 0.0)
    fail_unstarted(study, 0.0)  # a second worker, after the first
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == lost.params and trials[1].system_attrs["failed_trial"] == 0


class Killed(BaseException):
    """A worker's process killed in its trial (mocked: the test cannot kill a thread; nothing
    after the raise runs, as after kill -9)."""


class DiesInItsTrial(ConstrainedEvaluator):
    def evaluate(self, params, window):
        raise Killed()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # (``study.ask``, as Optuna calls it)
def test_a_worker_killed_before_its_first_heartbeat_does_not_stall_the_search(tmp_path):
    """A worker claims its trial and dies before Optuna's heartbeat thread has written a beat
    (a race the kill -9 test hit now and then: the resumed search then hung). The claimed trial
    had no heartbeat, so the stale-trial check never failed it, and ``fail_unstarted`` leaves
    claimed trials alone: the next worker waited for it forever. Its trial is now failed after
    the grace period and run again, and the search finishes."""
    import threading

    from mraster.optimize.study import _objective

    plan = Plan(data=DATA, picks=["ASTER_SL_ATR_MULT", "ASTER_TP_ATR_MULT"],
                settings=settings_for({}), symbols=PAIRS.split(","), trials=4, folds=0, heartbeat_s=1,
                storage=f"sqlite:///{tmp_path / 's.sqlite'}")
    prepare(plan)
    storage = storage_of(plan)
    (fold, study, n), = open_studies(plan, storage)
    trial = study.ask()  # as Optuna does, before its heartbeat thread starts
    with pytest.raises(Killed):
        _objective(plan, DiesInItsTrial(plan), fold, "dead:1:0", storage)(trial)
    stop = threading.Event()
    worker = threading.Thread(target=work, args=(plan, ConstrainedEvaluator(plan), 0, stop.is_set),
                              daemon=True)
    worker.start()
    worker.join(timeout=180)  # the grace period is 3 s; a stalled search never ends
    stop.set()
    worker.join(timeout=30)
    trials = study.get_trials()
    assert [t.state for t in trials if t.number == trial.number] == [TrialState.FAIL]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == n == 4
    assert any(t.system_attrs.get("failed_trial") == trial.number for t in trials
               if t.state == TrialState.COMPLETE)  # the lost trial ran again, to the end


def test_two_workers_sharing_one_storage_split_the_trials_without_overlap(tmp_path):
    a, b = _cli(tmp_path, "a"), _cli(tmp_path, "b")
    errs = [_finish(p) for p in (a, b)]
    assert (a.returncode, b.returncode) == (0, 0), errs
    done = [t for t in _trials(tmp_path) if t.state == TrialState.COMPLETE]
    assert 20 <= len(done) <= 21  # each study's budget, at most one in flight too many
    assert len({t.user_attrs["worker"].split(":")[1] for t in done}) == 2  # both worked
    keys = [(t.user_attrs["worker"], json.dumps(t.params, sort_keys=True)) for t in done]
    assert len({k for _, k in keys}) == len(keys)  # no trial proposed or run twice
    for out in ("a", "b"):  # both wrote the same study's answer
        rep = json.loads((tmp_path / out / "optimize.json").read_text())
        assert rep["holdout"]["name"] == "final" and "<svg" in (tmp_path / out /
                                                                "optimize.html").read_text()


def test_a_proposed_preset_passes_validation_and_the_caps(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "mraster.optimize", "--data", str(DATA), "--symbols", PAIRS,
         "--settings", "sizing,ASTER_SL_ATR_MULT", "--folds", "0", "--trials", "12",
         "--min-trades", "1", "--max-drawdown", "0.9", "--out", str(tmp_path),
         "ASTER_LEVERAGE=4"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "optimize.json").read_text())
    values = rep["preset"]["values"]
    assert values and values["ASTER_RISK_PER_TRADE"] <= 0.01 and values["ASTER_LEVERAGE"] <= 4
    # proposed as a trader writes them (three digits), and scored with exactly those values
    floats = [v for v in values.values() if isinstance(v, float)]
    assert floats and all(float(f"{v:.3g}") == v for v in floats), values
    assert "ExperimentalWarning" not in p.stderr  # Optuna's notes on itself stay out of the way
    assert "\r" not in p.stderr and "trials 12/12" in p.stderr  # a pipe gets whole lines
    s = st.load(environ={"ASTER_LEVERAGE": "4"}, env_file=None, config=values)  # validates
    assert s["ASTER_RISK_PER_TRADE"] == values["ASTER_RISK_PER_TRADE"]
    f = rep["folds"][0]
    assert {"in_sample", "out_of_sample"} <= f.keys() and rep["monte_carlo"]["runs"] == 1000


def test_a_trials_numbers_are_tidied_but_never_past_their_range():
    """Three significant digits, except where that would leave the range: a cap of 2.5555
    (the user's own, with more digits) must not become 2.56."""
    from mraster.optimize.space import Param, tidy

    space = [Param("ASTER_MAX_TOTAL_NOTIONAL_X", "float", 1.0, 2.5555),
             Param("ASTER_SL_ATR_MULT", "float", 0.5, 3.0), Param("ASTER_LEVERAGE", "int", 1, 20)]
    got = tidy({"ASTER_MAX_TOTAL_NOTIONAL_X": 2.5555, "ASTER_SL_ATR_MULT": 1.9154429105367345,
                "ASTER_LEVERAGE": 7}, space)
    assert got == {"ASTER_MAX_TOTAL_NOTIONAL_X": 2.5555, "ASTER_SL_ATR_MULT": 1.92,
                   "ASTER_LEVERAGE": 7}


def test_a_search_that_fitted_noise_says_so_in_the_readers_language():
    from mraster.optimize.robustness import divergence

    de = speaker("de")
    noise = divergence(0.4, -0.1)
    assert str(noise) == "positive in-sample, not positive out of sample: the search fitted noise"
    assert de(noise.template) == "im Sample positiv, außerhalb nicht positiv: Die Suche hat " \
                                 "Rauschen angepasst"
    assert divergence(0.4, 0.1).template.startswith("out of sample reached less than half")
    assert divergence(0.4, 0.3) is None and divergence(-0.2, -0.5) is None


def test_the_dashboard_runs_a_search_and_saves_its_result_only_as_a_reviewed_preset(tmp_path):
    """The Optimise view over HTTP: bad choices refused by name, progress, the fold table, the
    same preview as a built-in preset, and a saved preset that changes nothing until applied."""
    from dashboard_helpers import Dashboard, dashboard_environ, wait_for

    with Dashboard(tmp_path, dashboard_environ(tmp_path, ASTER_BACKTEST_DATA=str(DATA))) as dash:
        bad = dash.post("/api/optimize", {"settings": ["ASTER_API_KEY"]})
        assert bad.status_code == 422 and "ASTER_API_KEY cannot be optimised" in bad.text
        bad = dash.post("/api/optimize", {"trials": 1})
        assert bad.status_code == 422 and "trials" in bad.text
        assert dash.get("/api/optimize/preset-preview").status_code == 404  # nothing yet
        body = {"settings": ["ASTER_SL_ATR_MULT", "ASTER_TP_ATR_MULT"], "trials": 8, "folds": 1,
                "min_trades": 1, "max_drawdown": 0.9, "jobs": 2, "days": 8}
        r = dash.post("/api/optimize", body)
        assert r.status_code == 200 and r.json()["state"] == "running", r.text
        assert dash.post("/api/optimize", body).status_code == 409  # one at a time
        job = wait_for(lambda: (j := dash.get("/api/optimize").json())["state"] not in
                       ("running", "stopping") and j, timeout=240, what="the optimisation")
        assert job["state"] == "done", job.get("error")
        assert job["progress"]["done"] == 8
        rep = job["report"]
        assert [f["name"] for f in rep["folds"]] == ["fold-1", "final"]
        assert all("out_of_sample" in f and "in_sample" in f for f in rep["folds"])
        # every warning (each fold's, a fragile best trial) also as words for the page's language
        german = [speaker("de")(w["template"], **w["params"]) for w in rep["warnings_words"]]
        assert len(german) == len(rep["warnings"]) >= sum(bool(f["warning"]) for f in rep["folds"])
        assert all(bool(f["warning"]) == bool(f["warning_words"]) for f in rep["folds"])
        assert "<svg" in dash.get("/api/optimize/report.html").text
        before = {s["key"]: s["value"] for s in dash.get("/api/config").json()["settings"]}
        preview = dash.get("/api/optimize/preset-preview").json()
        assert {c["key"] for c in preview["changes"]} == {c["key"] for c in rep["changes"]}
        assert dash.post("/api/optimize/preset", {"name": "low"}).status_code == 422  # built-in
        saved = dash.post("/api/optimize/preset", {"name": "optimised sl tp"})
        assert saved.status_code == 201, saved.text
        presets = dash.get("/api/presets").json()
        mine = next(p for p in presets["saved"] if p["name"] == "optimised sl tp")
        assert {c["key"] for c in mine["changes"]} == {c["key"] for c in rep["changes"]}
        after = {s["key"]: s["value"] for s in dash.get("/api/config").json()["settings"]}
        assert after == before  # saved, not applied

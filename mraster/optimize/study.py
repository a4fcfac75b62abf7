"""Running the trials: Optuna studies in shared storage, worked on by processes.

One study per walk-forward fold plus the "final" one, all in one storage (a SQLite file by
default; a PostgreSQL/MySQL URL lets workers on other machines join with the same command). Each
worker process loads the candles once and then runs one trial after another until the study has
its number of finished trials: trials in flight elsewhere are waited for, not duplicated. A
worker that dies mid-trial stops sending heartbeats; after the grace period the trial is marked
failed and its parameters are queued again, so a ``kill -9`` loses no trial and none runs twice.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from mraster.backtest.runner import WARMUP_CANDLES, one_quote, replay_span, run_backtest
from mraster.optimize import space as sp
from mraster.optimize.scoring import Score, score
from mraster.optimize.windows import Fold, Window, split
from mraster.sim.market import BASE_MS, Market, replay_market

log = logging.getLogger("mraster.optimize")


class PlanError(ValueError):
    """The optimisation cannot run as asked; the message says what to change."""


@dataclass
class Plan:
    data: Path
    picks: list[str]
    settings: dict[str, Any]  # the user's validated settings (no secrets)
    symbols: list[str] | None = None
    objective: str = "expectancy"
    trials: int = 200  # finished trials over all studies
    folds: int = 3
    holdout: float = 0.2
    max_dd: float = 0.25
    min_trades: int = 5
    seed: int = 42
    storage: str = "sqlite:///optimize-out/study.sqlite"
    study: str = "mraster"
    heartbeat_s: int = 10
    last_days: float | None = None
    windows: list[Fold] = field(default_factory=list)  # set by ``prepare``
    space: list[sp.Param] = field(default_factory=list)

    def studies(self) -> list[tuple[Fold, str, int]]:
        """(fold, study name, finished trials it needs): the budget split evenly."""
        n = len(self.windows)
        return [(f, f"{self.study}/{f.name}", self.trials // n + (i < self.trials % n))
                for i, f in enumerate(self.windows)]

    def fingerprint(self) -> str:
        """What a joining worker must agree on (the same command gives the same value)."""
        key = {"picks": [p.name for p in self.space], "objective": self.objective,
               "windows": [f.to_dict() for f in self.windows], "max_dd": self.max_dd,
               "min_trades": self.min_trades, "symbols": self.symbols,
               "settings": {k: self.settings[k] for k in sorted(self.settings)}}
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()[:16]


class Evaluator:
    """Backtests of one worker over candles loaded once (no re-reading per trial)."""

    def __init__(self, plan: Plan, market: Market | None = None) -> None:
        self.plan = plan
        self.market = market or replay_market(plan.data, plan.symbols, manual=True,
                                              warmup=WARMUP_CANDLES)

    def run(self, params: Mapping[str, Any], window: Window) -> Any:
        s = sp.apply(self.plan.settings, sp.tidy(params, self.plan.space))
        quiet = logging.getLogger("mraster")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)  # a replay's repairs, breakers and alerts are its result
        try:
            return run_backtest(self.plan.data, s, symbols=self.plan.symbols, market=self.market,
                                start_ms=window.start_ms, end_ms=window.end_ms)
        finally:
            quiet.setLevel(level)

    def evaluate(self, params: Mapping[str, Any], window: Window) -> Score:
        return score(self.run(params, window), self.plan.objective)

    def span(self) -> tuple[int, int]:
        """The history the backtest can replay: after the warm-up to the last candle."""
        one_quote(self.market, self.plan.data, bool(self.plan.symbols))
        first, last = replay_span(self.market)
        if self.plan.last_days:
            first = max(first, last - int(self.plan.last_days * 86_400_000))
        return first // BASE_MS * BASE_MS, last


def prepare(plan: Plan, market: Market | None = None) -> Evaluator:
    """Check the plan, load the candles, cut the windows (raises PlanError)."""
    from mraster.optimize.scoring import OBJECTIVES

    if plan.objective not in OBJECTIVES:
        raise PlanError(f"objective: {plan.objective!r} is not allowed; expected one of "
                        f"{', '.join(OBJECTIVES)}")
    if not 1 <= plan.trials <= 100_000:
        raise PlanError(f"trials: {plan.trials} is not allowed; expected 1 to 100000")
    if not 0 < plan.max_dd <= 1:
        raise PlanError(f"max drawdown: {plan.max_dd} is not allowed; expected more than 0, "
                        "at most 1")
    try:
        plan.space = sp.build(plan.picks, plan.settings)
        ev = Evaluator(plan, market)
        plan.windows = split(*ev.span(), plan.folds, plan.holdout)
    except (sp.SpaceError, ValueError) as exc:
        raise PlanError(str(exc)) from exc
    if plan.trials < len(plan.windows):
        raise PlanError(f"trials: {plan.trials} is too few for {len(plan.windows)} studies "
                        f"({plan.folds} folds and the final one); expected at least "
                        f"{len(plan.windows)}")
    return ev


def storage_of(plan: Plan) -> optuna.storages.RDBStorage:
    _quiet_optuna()
    if plan.storage.startswith("sqlite:///"):
        Path(plan.storage[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    kw = {"connect_args": {"timeout": 60}} if plan.storage.startswith("sqlite") else {}
    for attempt in range(10):
        try:
            return optuna.storages.RDBStorage(
                plan.storage, engine_kwargs=kw, heartbeat_interval=plan.heartbeat_s,
                grace_period=3 * plan.heartbeat_s,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=3))
        except sqlalchemy.exc.DBAPIError:
            # two workers creating a new storage at once: one wins, the other finds its tables
            if attempt == 9:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _quiet_optuna() -> None:
    """Optuna's notes on its own experimental arguments are not the user's business: a search
    printed a dozen of them (from the storage, made before the studies) in every process."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class TrialSeededTPE(optuna.samplers.TPESampler):
    """TPE whose random draws are seeded by the trial's number. Two workers with one seed, or a
    resumed run starting its generator afresh, would propose the same random start-up trials
    again; trial numbers are unique in a study, so no two trials draw alike, and a run with one
    worker is reproducible from ``--seed`` (interrupted or not)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed, multivariate=True, constant_liar=True)
        self._base_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seed = (self._base_seed * 100_003 + trial.number) % 2**32
        self._rng.rng.seed(seed)  # optuna's own generators (LazyRandomState)
        self._random_sampler._rng.rng.seed(seed)
        super().before_trial(study, trial)


def open_studies(plan: Plan, storage: Any) -> list[tuple[Fold, optuna.Study, int]]:
    """The plan's studies, created on the first run and joined after that; a study started with
    another plan is refused (a typo in a joining worker's command must not mix two searches)."""
    _quiet_optuna()
    out = []
    for i, (fold, name, n) in enumerate(plan.studies()):
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    load_if_exists=True, sampler=TrialSeededTPE(plan.seed + i))
        have = study.user_attrs.get("plan")
        if have is None:
            study.set_user_attr("plan", plan.fingerprint())
            study.set_user_attr("fold", fold.to_dict())
        elif have != plan.fingerprint():
            raise PlanError(f"study {name!r} in {plan.storage} was started with other settings, "
                            "symbols, data or windows; run the same command to resume or join it, "
                            "or choose another --study name")
        out.append((fold, study, n))
    return out


def _objective(plan: Plan, ev: Evaluator, fold: Fold, worker: str,
               storage: optuna.storages.RDBStorage) -> Callable:
    def objective(trial: optuna.Trial) -> float:
        # a heartbeat before the claim: Optuna's heartbeat thread may not have written its first
        # one yet, and a worker killed between the claim and that beat left a trial neither the
        # stale-trial check (no heartbeat) nor ``fail_unstarted`` (claimed) would ever fail — a
        # resumed search waited for it forever (``_trial_id``: Optuna names no public id)
        storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("worker", worker)  # from here on it has a heartbeat
        params = {p.name: p.suggest(trial) for p in plan.space}
        sc = ev.evaluate(params, fold.train)  # never the test window: it comes after train
        dd, few = sc.violations(plan.max_dd, plan.min_trades)
        trial.set_constraint("max_drawdown", dd)  # ≤ 0 when met; TPE steers away otherwise
        trial.set_constraint("min_trades", few)
        trial.set_user_attr("trades", sc.trades)
        trial.set_user_attr("max_drawdown_pct", sc.max_drawdown_pct)
        trial.set_user_attr("total_return", sc.total_return)
        return sc.value
    return objective


def run_study(plan: Plan, ev: Evaluator, fold: Fold, study: optuna.Study, n: int,
              stopping: Callable[[], bool], worker: str,
              storage: optuna.storages.RDBStorage) -> None:
    """Trials until the study has ``n`` finished ones; trials other workers are running (or
    that wait to be retried) count, and are waited for rather than duplicated."""
    objective = _objective(plan, ev, fold, worker, storage)
    while not stopping():
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed and re-queued
        fail_unstarted(study, 3 * plan.heartbeat_s)
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                         TrialState.RUNNING))
        if sum(t.state == TrialState.COMPLETE for t in trials) >= n:
            return
        if len(trials) >= n:  # the rest are in flight elsewhere
            time.sleep(0.5)
            continue
        study.optimize(objective, n_trials=1, gc_after_trial=False)  # a queued retry first


def fail_unstarted(study: optuna.Study, grace_s: float) -> None:
    """Optuna notices a dead worker's trial by its missing heartbeats, but a worker killed
    between creating a trial and its first heartbeat leaves a trial with none, running forever.
    Such a trial (no worker ever claimed it, older than the grace period) is failed and queued
    again here; of two workers doing this at once, one succeeds."""
    _quiet_optuna()
    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "worker" in t.user_attrs or t.datetime_start is None or \
                (now - t.datetime_start).total_seconds() < grace_s:
            continue
        try:  # (refused when another worker finished it first: then that one re-queues it)
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            continue
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)(study, t)


def work(plan: Plan, ev: Evaluator, index: int, stopping: Callable[[], bool]) -> None:
    """One worker: every study in turn (a worker that finishes early helps with the next)."""
    storage = storage_of(plan)
    name = f"{os.uname().nodename}:{os.getpid()}:{index}"
    try:
        for fold, study, n in open_studies(plan, storage):
            run_study(plan, ev, fold, study, n, stopping, name, storage)
    finally:
        storage.engine.dispose()


def _create(plan: Plan) -> None:
    storage = storage_of(plan)
    try:
        open_studies(plan, storage)
    finally:
        storage.engine.dispose()


def _child(plan: Plan, ev: Evaluator | None, index: int) -> None:
    """A worker stops after its trial in hand on SIGTERM/SIGINT, or when the command that
    started it is gone (killed: its trials are resumed by the next run, not orphaned)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    work(plan, ev or Evaluator(plan), index, lambda: stop.is_set() or os.getppid() != parent)


@dataclass
class Progress:
    done: int
    total: int
    study: str
    best: float | None
    eta_s: float | None

    def line(self) -> str:
        best = "–" if self.best is None else f"{self.best:.4g}"
        eta = "–" if self.eta_s is None else f"{self.eta_s:.0f} s"
        return f"trials {self.done}/{self.total}  {self.study}  best {best}  ETA {eta}"


def progress(plan: Plan, studies: list[tuple[Fold, optuna.Study, int]], t0: float,
             done0: int) -> Progress:
    """Finished trials, the study being worked on and its best feasible value so far."""
    done, current, best = 0, None, None
    for _, study, n in studies:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done += min(n, len(trials))
        if current is None and (len(trials) < n or study is studies[-1][1]):
            current = study.study_name
            ok = [t.value for t in trials if feasible(t)]
            best = max(ok) if ok else None
    rate = (done - done0) / max(1e-9, time.monotonic() - t0)
    eta = (plan.trials - done) / rate if rate > 0 else None
    return Progress(done, plan.trials, current or "", best, eta)


def feasible(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())


def run(plan: Plan, ev: Evaluator, jobs: int, report: Callable[[Progress], None],
        stopping: Callable[[], bool]) -> bool:
    """Run the plan with ``jobs`` worker processes (the candles loaded here are inherited where
    the platform forks). True when every study has its trials; False when stopped (resumable)."""
    # no database connection may cross a fork (SQLite forbids it): the storage and the studies
    # are created by a short-lived process of their own, then the workers join them, and this
    # process connects only after they started
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    maker = ctx.Process(target=_create, args=(plan,))
    maker.start()
    maker.join()
    if maker.exitcode != 0:
        raise PlanError(f"the study could not be created in {plan.storage} (exit code "
                        f"{maker.exitcode}); see the messages above")
    procs = [ctx.Process(target=_child, args=(plan, ev if ctx.get_start_method() == "fork"
                                              else None, i), daemon=True) for i in range(jobs)]
    for p in procs:
        p.start()
    storage = storage_of(plan)
    studies = open_studies(plan, storage)
    t0 = time.monotonic()
    done0 = progress(plan, studies, t0, 0).done
    try:
        while any(p.is_alive() for p in procs):
            if stopping():
                for p in procs:
                    if p.is_alive():
                        p.terminate()  # SIGTERM: the trial in hand finishes, then it exits
            for p in procs:
                p.join(timeout=1.0 / len(procs))
            report(progress(plan, studies, t0, done0))
        final = progress(plan, studies, t0, done0)
        report(final)
        failed = [p.exitcode for p in procs if p.exitcode not in (0, -signal.SIGTERM)]
        if failed and not stopping():
            raise PlanError(f"a worker failed (exit code {failed[0]}); see the messages above")
        return final.done >= plan.trials
    finally:
        storage.engine.dispose()


def plan_dict(plan: Plan) -> dict[str, Any]:
    d = {k: v for k, v in asdict(plan).items() if k not in ("settings", "windows", "space")}
    d["data"] = str(plan.data)
    d["space"] = sp.describe(plan.space)
    d["windows"] = [f.to_dict() for f in plan.windows]
    return d

"""BanditPolicy (LinUCB, one model per arm) and AlphaModel (online logistic regression).

Arms: SKIP, TAKE-S, TAKE-M, TAKE-L. The reward of a TAKE arm is the trade's realized R-multiple
after fees, credited with the context seen at entry (stored with the position); SKIP earns 0 and
is never updated, so its score is the fixed baseline 0 a TAKE arm must beat (its UCB bonus keeps
unexplored TAKE arms trying). Each arm keeps A⁻¹ directly and updates it with Sherman–Morrison,
so a decision costs a few matrix-vector products and no matrix inverse.

Features are named and bounded (see FEATURES); saved models are keyed by feature name, so adding
a feature later pads the saved matrices instead of breaking them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from mraster.strategy.filters import is_side

ARMS = ("SKIP", "TAKE-S", "TAKE-M", "TAKE-L")
VERDICTS = np.array(["TAKE", "policy_skip", "alpha_veto", "tie"])
VERSION = 1

# name → how the raw context value is mapped to a bounded scale (missing values become 0 and set
# the matching "missing" indicator so the model can tell "absent" from "zero").
FEATURES: tuple[str, ...] = (
    "bias", "side", "trend_agree", "htf_slope", "rsi_dist", "atr_pct", "adx", "spread", "funding",
    "premium_gap", "volume_score", "wickiness", "ret1", "ret3", "win_prob", "expected_r",
    "sentinel_risk", "pm_edge", "pm_mae", "pm_exit_eff", "pm_slippage", "missing",
)


def _squash(x, scale: float):
    return np.tanh(x / scale)


def _or0(v: Any) -> Any:
    """An optional postmortem input: absent counts as 0 (not as a missing market value)."""
    return 0.0 if v is None else v


def build_features(ctx: Mapping[str, Any]) -> dict[str, Any]:
    """Decision context → named features, each in [-1, 1]. Context values may be numbers (one
    decision: floats come back) or arrays (a backtest's many candidates: arrays come back),
    computed by the same numpy arithmetic either way."""
    many = any(isinstance(v, np.ndarray) for v in ctx.values())
    missing = 0

    def g(key: str):
        nonlocal missing
        v = ctx.get(key)
        if v is None:
            missing += 1
            return 0.0
        if not many:
            v = float(v)
            missing += math.isnan(v)
            return 0.0 if math.isnan(v) else v
        v = np.asarray(v, dtype=float)
        missing = missing + np.isnan(v)
        # (nan_to_num also bounds ±inf; most columns have neither, and it costs 20 µs each).
        # A finite column is the caller's own array: only read here, and the clip at the end
        # makes every feature handed out a new array.
        return v if np.isfinite(v).all() else np.nan_to_num(v, nan=0.0)

    if many:
        side = np.where(is_side(np.asarray(ctx.get("side")), "BUY"), 1.0, -1.0)
        agree = np.where(g("ltf_trend") == g("htf_trend"), 1.0, -1.0)
    else:  # one decision: Python floats, the same IEEE arithmetic without the cost of numpy's
        # 0-d arrays (the side was one, and so was every product with it: 50 µs a decision);
        # tanh and log10 stay numpy's, so the features equal the bulk screen's to the bit
        sv = ctx.get("side")
        side = 1.0 if is_side(np.asarray(sv) if isinstance(sv, np.generic) else sv, "BUY") \
            else -1.0
        agree = 1.0 if g("ltf_trend") == g("htf_trend") else -1.0
    pm_edge = ctx.get("pm_edge")
    f = {
        "bias": 1.0,
        "side": side,
        "trend_agree": agree,
        "htf_slope": _squash(side * g("htf_slope"), 0.01),
        "rsi_dist": _squash(side * (g("rsi") - 50), 15),
        "atr_pct": _squash(g("atr_pct"), 0.01),
        "adx": _squash(g("adx"), 40),
        "spread": _squash(g("spread"), 0.002),
        "funding": _squash(side * g("funding"), 0.001),
        "premium_gap": _squash(side * g("premium_gap"), 0.002),
        "volume_score": _squash(np.log10(np.maximum(g("quote_volume"), 1.0)) - 6, 2),
        "wickiness": g("wickiness") * 2 - 1,
        "ret1": _squash(side * g("ret1"), 0.005),
        "ret3": _squash(side * g("ret3"), 0.01),
        "win_prob": (g("win_prob") - 0.5) * 4,
        "expected_r": _squash(g("expected_r"), 1),
        "sentinel_risk": g("sentinel_risk") * 2 - 1 if "sentinel_risk" in ctx else 0.0,
        # the symbol's postmortem features (AI mode; 0 before its first reviewed trade)
        "pm_edge": 0.0 if pm_edge is None else pm_edge,
        "pm_mae": _squash(_or0(ctx.get("pm_mae")), 1.0),
        "pm_exit_eff": _or0(ctx.get("pm_exit_eff")),
        "pm_slippage": _squash(_or0(ctx.get("pm_slippage")), 20.0),
    }
    if not many:
        f["missing"] = min(missing / 3, 1.0)
        return {k: min(max(float(v), -1.0), 1.0) for k, v in f.items()}
    f["missing"] = np.minimum(missing / 3, 1.0)
    f["pm_edge"], f["pm_exit_eff"] = (np.asarray(f[k], dtype=float)
                                      for k in ("pm_edge", "pm_exit_eff"))
    return {k: np.minimum(np.maximum(v, -1.0), 1.0) for k, v in f.items()}  # clip, less overhead


def vectorize(feats: Mapping[str, Any], names: tuple[str, ...] = FEATURES) -> np.ndarray:
    """Named features → one vector, or a matrix (one row per candidate) when they are arrays."""
    cols = [feats.get(n, 0.0) for n in names]
    if any(isinstance(c, np.ndarray) and c.ndim for c in cols):
        n = max(np.size(c) for c in cols)
        return np.column_stack([np.broadcast_to(np.asarray(c, dtype=float), (n,)) for c in cols])
    return np.array([float(c) for c in cols])


class LinUCBArm:
    def __init__(self, d: int, l2: float = 1.0) -> None:
        self.A_inv = np.eye(d) / l2
        self.b = np.zeros(d)
        self.n = 0

    def score(self, x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Mean reward and exploration bonus of each context (the rows of a 2-D array). Each
        row's sums run in einsum's own loop, so a row scores the same alone as in a backtest's
        batch of thousands (a BLAS product may not)."""
        theta = self.A_inv @ self.b
        ax = np.einsum("ij,kj->ik", x, self.A_inv)  # A⁻¹x per row
        quad = np.einsum("ij,ij->i", x, ax)
        return np.einsum("ij,j->i", x, theta), alpha * np.sqrt(np.maximum(quad, 0.0))

    def update(self, x: np.ndarray, reward: float) -> None:
        Ax = self.A_inv @ x
        self.A_inv -= np.outer(Ax, Ax) / (1.0 + x @ Ax)  # Sherman–Morrison
        self.b += reward * x
        self.n += 1


class AlphaModel:
    """P(R > 0) by online logistic regression on standardised features (Welford)."""

    def __init__(self, d: int, lr: float = 0.05, l2: float = 5e-4, warmup: int = 30) -> None:
        self.w = np.zeros(d)
        self.mean = np.zeros(d)
        self.m2 = np.ones(d)
        self.count = 0
        self.lr, self.l2, self.warmup = lr, l2, warmup

    def _z(self, x: np.ndarray) -> np.ndarray:
        std = np.sqrt(self.m2 / max(self.count, 1))
        std[std < 1e-6] = 1.0
        z = (x - self.mean) / std
        z[..., 0] = 1.0  # the bias term stays a bias
        return z

    def prob(self, x: np.ndarray) -> np.ndarray:
        """P(win) of each context (rows of a 2-D array)."""
        return 1 / (1 + np.exp(-np.clip((self._z(x) * self.w).sum(axis=-1), -30, 30)))

    @property
    def confidence(self) -> float:
        return 1 - math.exp(-self.count / 40)

    @property
    def active(self) -> bool:
        return self.count >= self.warmup

    def update(self, x: np.ndarray, r: float) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)
        target = 1.0 if r > 0 else 0.0
        z = self._z(x)
        p = 1 / (1 + math.exp(-float(np.clip(self.w @ z, -30, 30))))
        weight = min(1.0, abs(r)) if r else 0.2
        self.w -= self.lr * (weight * (p - target) * z + self.l2 * self.w)


@dataclass
class Decision:
    action: str           # SKIP or TAKE
    bucket: str | None    # S, M, L
    arm: str
    reason: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    alpha_prob: float | None = None
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "bucket": self.bucket, "arm": self.arm,
                "reason": self.reason, "scores": self.scores, "alpha_prob": self.alpha_prob}


class BanditPolicy:
    def __init__(self, *, alpha: float = 0.5, seed: int = 7, bandit_enabled: bool = True,
                 alpha_enabled: bool = True, threshold: float = 0.55, promote_delta: float = 0.15,
                 warmup: int = 30, names: tuple[str, ...] = FEATURES) -> None:
        self.names = names
        d = len(names)
        self.alpha = alpha
        self.arms = {a: LinUCBArm(d) for a in ARMS if a != "SKIP"}
        self.alpha_model = AlphaModel(d, warmup=warmup)
        self.bandit_enabled = bandit_enabled
        self.alpha_enabled = alpha_enabled
        self.threshold = threshold
        self.promote_delta = promote_delta
        self.rng = np.random.default_rng(seed)
        # contexts handed ahead (``prepare``), and their verdicts once scored: row bytes → answer
        self._pending: list[Mapping[str, float]] = []
        self._prepared: dict[bytes, tuple] = {}

    @classmethod
    def from_settings(cls, s: Mapping[str, Any]) -> "BanditPolicy":
        return cls(alpha=s["ASTER_BANDIT_ALPHA"], seed=s["ASTER_SEED"],
                   bandit_enabled=s["ASTER_BANDIT_ENABLED"], alpha_enabled=s["ASTER_ALPHA_ENABLED"],
                   threshold=s["ASTER_ALPHA_THRESHOLD"], promote_delta=s["ASTER_ALPHA_PROMOTE_DELTA"],
                   warmup=s["ASTER_ALPHA_WARMUP"])

    def verdicts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray,
                                               np.ndarray]:
        """Upper confidence bounds (one column per arm, SKIP first), P(win), the verdict of
        each context (rows of ``x``: TAKE, policy_skip, alpha_veto, or tie when chance must
        pick between equal arms) and the bounds' means. A backtest asks this for many contexts
        at once to find the moments that need the engine; ``decide`` asks it for one."""
        n = len(x)
        means = np.zeros((n, len(ARMS)))
        if self.bandit_enabled:
            ucb = np.zeros((n, len(ARMS)))
            for k, a in enumerate(self.arms.values(), start=1):
                means[:, k], bonus = a.score(x, self.alpha)
                ucb[:, k] = means[:, k] + bonus
        else:  # the rule: always the default TAKE arm
            ucb = np.column_stack([np.full(n, -np.inf), np.zeros((n, len(self.arms)))])
        p = self.alpha_model.prob(x) if self.alpha_enabled and self.alpha_model.active else None
        vetoed = p < self.threshold if p is not None else np.zeros(n, bool)
        best = ucb.max(axis=1)
        skip_top = ucb[:, 0] == best
        tied = (ucb == best[:, None]).sum(axis=1) > 1
        code = np.where(skip_top, 1, 2 * vetoed)  # TAKE, policy_skip, alpha_veto
        if self.bandit_enabled:  # a veto settles a tie between TAKE arms: each would be vetoed
            code[tied & (skip_top | ~vetoed)] = 3
        return ucb, p, VERDICTS[code], means

    def prepare(self, contexts: list[Mapping[str, float]]) -> None:
        """The contexts ``decide`` may be asked about next (a backtest's engine step hands its
        candidates over): the first one it is asked scores them all in one batch. One by one
        they took 60 µs each, seventeen at once 80 µs in all; a step whose candidates all stop
        at the entry gate (a breaker, the caps) scores none, nor does a policy with the bandit
        and the alpha model off (its answer is a rule). Each row's sums run in their own
        loop (``LinUCBArm.score``), so a row's answer is the same bits alone or in the batch;
        what the policy learns next drops the answers."""
        self._prepared.clear()
        self._pending = list(contexts)

    def _verdict(self, x: np.ndarray) -> tuple:
        """``verdicts`` of the one context ``x``, from the batch of ``prepare`` when it is in it."""
        if self._pending:
            handed, self._pending = self._pending, []
            # (scoring is the bandit's arms and the alpha model: without them there is none)
            if len(handed) > 1 and (self.bandit_enabled or self.alpha_enabled):
                many = np.array([vectorize(f, self.names) for f in handed])
                ucb, probs, verdict, means = self.verdicts(many)
                for k, row in enumerate(many):
                    self._prepared[row.tobytes()] = (
                        ucb[k:k + 1], None if probs is None else probs[k:k + 1],
                        verdict[k:k + 1], means[k:k + 1])
        got = self._prepared.get(x.tobytes()) if self._prepared else None
        return got if got is not None else self.verdicts(x)

    def decide(self, feats: Mapping[str, float], default_bucket: str = "S") -> Decision:
        ucb, probs, verdict, means = self._verdict(vectorize(feats, self.names)[None])
        p = None if probs is None else float(probs[0])
        scores: dict[str, dict[str, float]] = {"SKIP": {"mean": 0.0, "bonus": 0.0, "ucb": 0.0}}
        if self.bandit_enabled:
            for k, name in enumerate(self.arms, start=1):
                mean, top = float(means[0, k]), float(ucb[0, k])
                scores[name] = {"mean": mean, "bonus": top - mean, "ucb": top}
            row = ucb[0].tolist()
            top = [a for a, u in zip(ARMS, row) if u == max(row)]
            # chance only breaks real ties (untrained arms, or exploration switched off)
            arm = top[int(self.rng.integers(len(top)))] if verdict[0] == "tie" else top[0]
            reason = "bandit: highest upper confidence bound"
        else:
            arm = f"TAKE-{default_bucket}"
            reason = "rule-based (bandit off)"
        if p is not None:
            if arm != "SKIP" and p < self.threshold:
                reason = f"alpha veto: P(win)={p:.2f} < {self.threshold:.2f}"
                arm = "SKIP"
            elif arm != "SKIP" and p >= self.threshold + self.promote_delta and arm != "TAKE-L":
                arm = {"TAKE-S": "TAKE-M", "TAKE-M": "TAKE-L"}[arm]
                reason += f"; alpha promoted size: P(win)={p:.2f}"
        action = "SKIP" if arm == "SKIP" else "TAKE"
        return Decision(action, None if action == "SKIP" else arm[-1], arm, reason, scores, p,
                        dict(feats))

    def learn_shadow(self, x: Any, r: float) -> None:
        """Teach the alpha model the R a vetoed signal would have made (``mraster.shadows``);
        the bandit's arms learn from trades taken only."""
        self._prepared.clear()
        self.alpha_model.update(np.asarray(x, dtype=float), r)

    def learn(self, feats: Mapping[str, float], arm: str, r: float) -> None:
        """Credit a closed trade's R (after fees) to the arm chosen at entry."""
        self._prepared.clear()
        x = vectorize(feats, self.names)
        if arm in self.arms:
            self.arms[arm].update(x, r)
        self.alpha_model.update(x, r)

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "names": list(self.names),
                "arms": {k: {"A_inv": a.A_inv.tolist(), "b": a.b.tolist(), "n": a.n}
                         for k, a in self.arms.items()},
                "alpha": {"w": self.alpha_model.w.tolist(), "mean": self.alpha_model.mean.tolist(),
                          "m2": self.alpha_model.m2.tolist(), "count": self.alpha_model.count},
                "rng": self.rng.bit_generator.state}

    def load(self, d: Mapping[str, Any]) -> "BanditPolicy":
        """Restore a saved policy; features it did not know start fresh (identity/zero)."""
        self._prepared.clear()
        saved = list(d.get("names", []))
        idx = [(i, saved.index(n)) for i, n in enumerate(self.names) if n in saved]
        for k, arm in self.arms.items():
            a = d.get("arms", {}).get(k)
            if not a:
                continue
            A_inv, b = np.array(a["A_inv"]), np.array(a["b"])
            for i, j in idx:
                arm.b[i] = b[j]
                for i2, j2 in idx:
                    arm.A_inv[i, i2] = A_inv[j, j2]
            arm.n = int(a.get("n", 0))
        al = d.get("alpha")
        if al:
            for i, j in idx:
                self.alpha_model.w[i] = al["w"][j]
                self.alpha_model.mean[i] = al["mean"][j]
                self.alpha_model.m2[i] = al["m2"][j]
            self.alpha_model.count = int(al["count"])
        if d.get("rng"):
            self.rng.bit_generator.state = d["rng"]
        return self

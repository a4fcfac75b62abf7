"""Time per decision and per update of the bandit policy at 32 features (target < 50 µs/decision).

python bench/policy_bench.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mraster.policy import BanditPolicy  # noqa: E402

names = tuple(["bias"] + [f"f{i}" for i in range(31)])
policy = BanditPolicy(names=names, seed=1)
rng = np.random.default_rng(0)
ctxs = [dict(zip(names, [1.0] + list(rng.uniform(-1, 1, 31)))) for _ in range(2000)]
for c in ctxs[:200]:
    policy.learn(c, "TAKE-S", float(rng.normal()))
t0 = time.perf_counter()
for c in ctxs:
    policy.decide(c)
decide_us = (time.perf_counter() - t0) / len(ctxs) * 1e6
t0 = time.perf_counter()
for c in ctxs:
    policy.learn(c, "TAKE-M", 0.5)
learn_us = (time.perf_counter() - t0) / len(ctxs) * 1e6
print(f"features: {len(names)}  decision: {decide_us:.1f} µs  update: {learn_us:.1f} µs")

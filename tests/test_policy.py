from __future__ import annotations

import json

import numpy as np

from mraster.policy import ARMS, FEATURES, BanditPolicy, build_features


def synthetic_round(rng):
    """One feature (rsi_dist) predicts the trade's R; the rest is noise."""
    feats = {n: float(rng.uniform(-1, 1)) for n in FEATURES}
    feats["bias"] = 1.0
    r = 1.5 * feats["rsi_dist"] + rng.normal(0, 0.5)
    return feats, r


def play(policy, rounds=2000, seed=1):
    rng = np.random.default_rng(seed)
    total, regret, curve = 0.0, 0.0, []
    size = {"S": 1, "M": 2, "L": 3}
    for _ in range(rounds):
        feats, r = synthetic_round(rng)
        d = policy.decide(feats) if policy is not None else None
        best = 3 * max(1.5 * feats["rsi_dist"], 0)
        if d is None or d.action == "SKIP":
            got = 0.0
        else:
            got = size[d.bucket] * r
            policy.learn(feats, d.arm, size[d.bucket] * r)
        total += got
        regret += best - (0 if d is None or d.action == "SKIP" else size[d.bucket] * 1.5 * feats["rsi_dist"])
        curve.append(regret)
    return total, curve


def baseline(kind, rounds=2000, seed=1):
    rng = np.random.default_rng(seed)
    pick = np.random.default_rng(99)
    total = 0.0
    for _ in range(rounds):
        feats, r = synthetic_round(rng)
        if kind == "always":
            total += r
        elif pick.random() < 0.75:
            total += pick.integers(1, 4) * r
    return total


def test_policy_beats_always_take_and_random_with_sublinear_regret():
    policy = BanditPolicy(alpha=0.5, seed=3, alpha_enabled=False)
    total, curve = play(policy)
    assert total > baseline("always") + 300
    assert total > baseline("random") + 300
    first, second = curve[999], curve[-1] - curve[999]
    assert second < 0.5 * first  # the second thousand rounds add far less regret


def test_persistence_round_trip_gives_identical_decisions():
    a = BanditPolicy(seed=5)
    play(a, rounds=300)
    saved = json.loads(json.dumps(a.to_dict()))
    b = BanditPolicy(seed=999).load(saved)
    rng = np.random.default_rng(7)
    for _ in range(50):
        feats, _ = synthetic_round(rng)
        da, db = a.decide(feats), b.decide(feats)
        assert da.to_dict() == db.to_dict()


def test_new_feature_does_not_break_a_saved_policy():
    old = BanditPolicy(names=FEATURES[:-2], seed=1)
    play(old, rounds=200)
    new = BanditPolicy(seed=1).load(old.to_dict())
    d = new.decide({n: 0.1 for n in FEATURES})
    assert d.action in ("SKIP", "TAKE")
    assert np.allclose(new.arms["TAKE-S"].b[: len(FEATURES) - 2], old.arms["TAKE-S"].b)


def test_switches():
    off = BanditPolicy(bandit_enabled=False, alpha_enabled=False)
    d = off.decide({"bias": 1.0}, default_bucket="M")
    assert (d.action, d.bucket) == ("TAKE", "M") and "rule-based" in d.reason
    on = BanditPolicy(seed=2)
    d = on.decide({"bias": 1.0})
    assert set(d.scores) == set(ARMS) and all("bonus" in v for v in d.scores.values())


def _trained_alpha(good: bool):
    p = BanditPolicy(bandit_enabled=False, warmup=30, threshold=0.55, promote_delta=0.15)
    rng = np.random.default_rng(0)
    for _ in range(300):
        feats, _ = synthetic_round(rng)
        p.learn(feats, "TAKE-S", 1.0 if feats["rsi_dist"] > 0 else -1.0)
    feats = {n: 0.0 for n in FEATURES}
    feats.update(bias=1.0, rsi_dist=0.9 if good else -0.9)
    return p, feats


def test_alpha_promotes_and_vetoes():
    p, good = _trained_alpha(True)
    d = p.decide(good, default_bucket="S")
    assert d.alpha_prob > 0.7 and (d.action, d.bucket) == ("TAKE", "M") and "promoted" in d.reason
    p, bad = _trained_alpha(False)
    d = p.decide(bad)
    assert d.action == "SKIP" and "veto" in d.reason and d.alpha_prob < 0.55


def test_alpha_is_silent_during_warmup():
    p = BanditPolicy(bandit_enabled=False, warmup=30)
    for _ in range(10):
        p.learn({"bias": 1.0, "rsi_dist": -1.0}, "TAKE-S", -1.0)
    d = p.decide({"bias": 1.0, "rsi_dist": -1.0})
    assert d.action == "TAKE" and d.alpha_prob is None


def test_build_features_bounded_and_missing_flagged():
    f = build_features({"side": "BUY", "rsi": 80, "adx": None, "funding": 0.01})
    assert all(-1 <= v <= 1 for v in f.values())
    assert f["missing"] > 0 and list(FEATURES) == [n for n in FEATURES if n in f]


def test_verdicts_for_many_contexts_agree_with_each_decision():
    """A backtest asks ``verdicts`` for thousands of contexts at once and runs the engine only
    where one says TAKE or tie; every other verdict must be the SKIP ``decide`` gives, with the
    same reason, and only a real tie may draw on the random generator."""
    rng = np.random.default_rng(3)
    for policy, expect in ((BanditPolicy(seed=2, warmup=10), {"TAKE", "tie", "alpha_veto"}),
                           (BanditPolicy(seed=2, alpha=0.0, warmup=10), {"tie", "policy_skip"})):
        seen = set()
        for step in range(400):
            feats, r = synthetic_round(rng)
            verdict = policy.verdicts(np.array([[feats[n] for n in FEATURES]]))[2][0]
            before = json.dumps(policy.rng.bit_generator.state)
            d = policy.decide(feats)
            drew = json.dumps(policy.rng.bit_generator.state) != before
            seen.add(verdict)
            assert drew == (verdict == "tie")
            if verdict == "TAKE":
                assert d.action == "TAKE"
            elif verdict != "tie":
                assert d.action == "SKIP" and ("veto" in d.reason) == (verdict == "alpha_veto")
            if d.action == "TAKE":
                policy.learn(feats, d.arm, r)
        assert expect <= seen, seen
    many = np.array([[synthetic_round(rng)[0][n] for n in FEATURES] for _ in range(300)])
    one_by_one = np.concatenate([policy.verdicts(row[None])[0] for row in many])
    assert np.array_equal(policy.verdicts(many)[0], one_by_one)  # the same bounds in a batch


def test_decisions_answered_in_a_batch_equal_each_decision_alone():
    """An engine step asks the policy about its candidates in one batch (``prepare``) before
    the entry gate asks each (``decide``): every decision — arm, reason, scores to the bit,
    P(win), and the random draw that breaks a tie — is the one the policy gives the candidate
    alone, and what it learns in between drops the batch's answers."""
    def fields(d):
        return d.action, d.bucket, d.arm, d.reason, json.dumps(d.scores), d.alpha_prob

    rng = np.random.default_rng(5)
    for kw in ({"warmup": 10}, {"alpha": 0.0, "warmup": 10}):  # alpha 0: untrained arms tie
        batched, alone = BanditPolicy(seed=4, **kw), BanditPolicy(seed=4, **kw)
        kinds = set()
        for step in range(120):
            cands = [synthetic_round(rng) for _ in range(int(rng.integers(1, 9)))]
            batched.prepare([f for f, _ in cands])
            for feats, r in cands:
                got, ref = batched.decide(feats), alone.decide(feats)
                assert fields(got) == fields(ref)
                kinds.add(ref.reason.split(":")[0])
                if ref.action == "TAKE" and r > -0.2:  # learns mid-batch: the rest re-scored
                    batched.learn(feats, ref.arm, r)
                    alone.learn(feats, ref.arm, r)
        assert batched.to_dict() == alone.to_dict()  # the same draws, the same learning
        assert len(kinds) >= 2, kinds
    # a batch's answers are dropped by what the policy learns, also from a vetoed signal
    p = BanditPolicy(seed=1, warmup=0)
    feats, _ = synthetic_round(rng)
    p.prepare([feats])
    before = p.decide(feats).alpha_prob
    x = np.array([feats[n] for n in FEATURES])
    for _ in range(5):
        p.learn_shadow(x, -1.0)
    assert p.decide(feats).alpha_prob < before

"""Walk-forward windows: each fold is optimised on its past and scored on the window after it;
the last stretch of the history is a hold-out the search never touches.

Anchored folds (the training window always starts at the beginning) because the engine's own
state — the bandit, the breakers — builds up from the start of a run the same way live.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from mraster.sim.market import BASE_MS


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Fold:
    name: str  # "fold-1" … or "final"
    train: Window
    test: Window  # the unseen window after it (the hold-out for "final")

    def to_dict(self) -> dict:
        return {"name": self.name, "train": asdict(self.train), "test": asdict(self.test)}


def split(start_ms: int, end_ms: int, folds: int, holdout: float) -> list[Fold]:
    """``folds`` walk-forward folds over the history before the hold-out, then the "final"
    study over all of it, scored once on the hold-out (the last ``holdout`` share)."""
    if not 0 < holdout < 0.9:
        raise ValueError(f"holdout: {holdout} is not allowed; expected more than 0 and less "
                         "than 0.9")
    if not 0 <= folds <= 20:
        raise ValueError(f"folds: {folds} is not allowed; expected 0 to 20")
    span = (end_ms - start_ms) // BASE_MS
    cut = start_ms + int(span * (1 - holdout)) * BASE_MS
    seg = (cut - start_ms) // BASE_MS // (folds + 1) * BASE_MS
    if seg < 288 * BASE_MS // 2 or end_ms - cut < BASE_MS * 288 // 2:
        raise ValueError(f"the history ({span * BASE_MS / 86_400_000:.1f} days after the warm-up) "
                         f"is too short for {folds} folds and a {holdout:.0%} hold-out: each window "
                         "needs half a day; choose fewer folds or more data")
    out = [Fold(f"fold-{i}", Window(start_ms, start_ms + i * seg),
                Window(start_ms + i * seg, start_ms + (i + 1) * seg if i < folds else cut))
           for i in range(1, folds + 1)]
    return out + [Fold("final", Window(start_ms, cut), Window(cut, end_ms))]

"""The search space, taken from the settings catalogue.

A setting is still defined once: its type and its allowed range come from ``mraster.settings``;
this module only says which settings the optimiser may try, in named groups, and narrows a range
to where trying makes sense (an RSI entry threshold of 3 is allowed, but not worth a trial). The
safety caps are part of the space, never a penalty the search could trade away: risk per trade
stays at or below 1 %, and the user's own leverage and exposure limits are upper bounds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from mraster import settings as st
from mraster.words import significant

RISK_CAP = 0.01  # risk per trade is never searched above 1 % of equity

# group → setting → the range worth searching (None: the catalogue's own range or choices)
GROUPS: dict[str, dict[str, tuple[float, float] | None]] = {
    "entries": {"ASTER_RSI_BUY_MIN": (50, 70), "ASTER_RSI_SELL_MAX": (30, 50),
                "ASTER_MIN_EDGE_R": (-1.0, 1.5), "ASTER_TREND_BIAS": None},
    "exits": {"ASTER_SL_ATR_MULT": (0.5, 3.0), "ASTER_TP_ATR_MULT": (0.8, 5.0),
              "ASTER_BREAKEVEN_R": (0.3, 3.0), "ASTER_TRAIL_ACTIVATION_R": (0.8, 4.0),
              "ASTER_TRAIL_ATR": (0.3, 3.0), "FAST_TP_ENABLED": None, "FASTTP_MIN_R": (0.1, 1.5)},
    "filters": {"ASTER_SPREAD_BPS_MAX": (0.0005, 0.01), "ASTER_WICKINESS_MAX": (0.5, 1.0),
                "ASTER_FUNDING_MAX_LONG": (0.0002, 0.003),
                "ASTER_FUNDING_MAX_SHORT": (0.0002, 0.003),
                "ASTER_NON_ARB_SKIP_GAP": (0.0005, 0.005)},
    "sizing": {"ASTER_RISK_PER_TRADE": (0.001, RISK_CAP), "ASTER_LEVERAGE": None,
               "ASTER_SIZE_MULT_CAP": (1.0, 3.0)},
    "policy": {"ASTER_BANDIT_ENABLED": None, "ASTER_BANDIT_ALPHA": (0.0, 2.0),
               "ASTER_ALPHA_ENABLED": None, "ASTER_ALPHA_THRESHOLD": (0.45, 0.7)},
}
SEARCHABLE = {name: rng for group in GROUPS.values() for name, rng in group.items()}
# the user's own limits are upper bounds of the search (never searched past)
USER_CAPS = ("ASTER_LEVERAGE", "ASTER_MAX_OPEN_RISK", "ASTER_MAX_TOTAL_NOTIONAL_X")


class SpaceError(ValueError):
    """A choice of settings the optimiser cannot search; the message names it."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int | float | bool | choice
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    log: bool = False

    def suggest(self, trial: Any) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        return trial.suggest_categorical(self.name, list(self.choices))

    def nudge(self, value: Any, frac: float) -> Any:
        """``value`` moved by ``frac`` of the range, kept inside it (None for a choice)."""
        if self.kind not in ("float", "int"):
            return None
        v = min(self.high, max(self.low, value + frac * (self.high - self.low)))
        return int(round(v)) if self.kind == "int" else v


def resolve(picks: list[str]) -> list[str]:
    """Setting names from names and group names, in catalogue order, each once."""
    names: list[str] = []
    for p in picks:
        p = p.strip()
        if p in GROUPS:
            names += list(GROUPS[p])
        elif p.upper() in SEARCHABLE:
            names.append(p.upper())
        elif p.upper() in st.BY_NAME:
            raise SpaceError(f"settings: {p.upper()} cannot be optimised; choose among the groups "
                             f"{', '.join(GROUPS)} or their settings")
        else:
            raise SpaceError(f"settings: {p!r} is neither a setting nor a group; expected one of "
                             f"the groups {', '.join(GROUPS)} or a setting name")
    if not names:
        raise SpaceError("settings: choose at least one setting or group to optimise")
    order = {s.name: i for i, s in enumerate(st.CATALOGUE)}
    return sorted(set(names), key=order.__getitem__)


def build(picks: list[str], base: Mapping[str, Any]) -> list[Param]:
    """The search space for ``picks`` around the user's settings ``base``."""
    out = []
    for name in resolve(picks):
        spec, rng = st.BY_NAME[name], SEARCHABLE[name]
        if spec.kind == "bool":
            out.append(Param(name, "bool", choices=(False, True)))
            continue
        if spec.kind == "choice":
            out.append(Param(name, "choice", choices=tuple(spec.choices)))
            continue
        lo, hi = rng if rng is not None else (spec.min, spec.max)
        lo, hi = max(lo, spec.min), min(hi, spec.max)  # never outside what validation allows
        if name == "ASTER_RISK_PER_TRADE":
            hi = min(hi, RISK_CAP)
        if name in USER_CAPS:
            hi = min(hi, float(base[name]))
        if name == "ASTER_LEVERAGE":
            lo = 1
        if hi <= lo:
            raise SpaceError(f"settings: {name} has nothing to search between {lo} and {hi} "
                             "(capped by your own limit)")
        log = lo > 0 and hi / lo >= 10
        out.append(Param(name, spec.kind, float(lo), float(hi), log=log))
    return out


def tidy(params: Mapping[str, Any], space: list[Param]) -> dict[str, Any]:
    """A trial's numbers to three significant digits, the way a trader writes a setting: a stop
    distance of 1.92 ATR, not the sampler's 1.9154429105367345 — kept inside the parameter's
    range (a bound with more digits, such as the user's own cap, is never rounded past). Every
    backtest of a trial runs on these, so what the report proposes is exactly what was scored."""
    bounds = {p.name: (p.low, p.high) for p in space if p.kind == "float"}
    out = dict(params)
    for k, (lo, hi) in bounds.items():
        if isinstance(out.get(k), float):
            out[k] = min(max(significant(out[k], 3), lo), hi)
    return out


def apply(base: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of one trial: the user's, with the trial's values, checked by the same
    validation as a saved configuration and against the caps."""
    merged = {**dict(base), **dict(params)}
    errors = []
    for k, v in params.items():
        try:
            st.BY_NAME[k].parse(v)
        except st.SettingError as exc:
            errors.append(exc)
    if merged["ASTER_RISK_PER_TRADE"] > RISK_CAP + 1e-12:
        errors.append(st.SettingError("ASTER_RISK_PER_TRADE", merged["ASTER_RISK_PER_TRADE"],
                                      f"at most {RISK_CAP} in an optimisation"))
    for k in USER_CAPS:
        if merged[k] > base[k]:
            errors.append(st.SettingError(k, merged[k], f"at most your own limit {base[k]}"))
    if errors:
        raise st.SettingsErrors(errors)
    return merged


def describe(space: list[Param]) -> list[dict[str, Any]]:
    return [{"name": p.name, "kind": p.kind, "low": p.low, "high": p.high,
             "choices": list(p.choices), "log": p.log} for p in space]

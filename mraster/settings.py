"""The one catalogue of MrAster settings.

Every setting is declared exactly once here. Validation, the dashboard's editor, the README table
and the bot's environment are all derived from this list, so a default can never disagree between
two places (the system this replaces had five overlapping layers and nobody knew which was active).

Order of precedence, lowest first (documented in the README, tested in tests/test_settings.py):

1. catalogue default — for the few settings whose default depends on who started the bot, the
   ``dashboard`` origin uses ``dashboard_default`` and the command line uses ``default``;
2. preset values for ``ASTER_PRESET_MODE`` (Low / Mid / High / ATT);
3. ``dashboard_config.json`` (what the dashboard editor saved);
4. ``.env`` in the working folder;
5. the process environment.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from mraster.domain import is_symbol, shown
from mraster.words import CATALOGUES, Words, words

Origin = str  # "cli" | "dashboard"

TRUE_WORDS = {"true", "1", "yes", "on", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "off", "n", "f", ""}
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")


class SettingError(ValueError):
    """A setting value was rejected; the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str | Words, secret: bool = False) -> None:
        self.key, self.shown = key, "••••" if secret else shown(value)
        self.allowed = str(allowed)
        self.allowed_words = allowed if isinstance(allowed, Words) else None
        self.source: str | None = None  # the layer the value came from, when it came from one
        super().__init__(f"{key}: {self.shown} is not allowed; expected {allowed}")

    def said(self) -> Words:
        """The message as words, so the settings editor says it in the page's language (an
        allowed range the catalogue describes is translated; a rule's own sentence stays)."""
        tail = f" (from {self.source})"
        allowed = self.allowed_words or self.allowed.removesuffix(tail)
        if self.source and str(self).endswith(tail):
            return words("{field}: {value} is not allowed; expected {allowed} (from {source})",
                         field=self.key, value=self.shown, allowed=allowed, source=self.source)
        return words("{field}: {value} is not allowed; expected {allowed}", field=self.key,
                     value=self.shown, allowed=allowed)


def given_by(errors: "SettingsErrors", keys: Iterable[str], layer: str, label: str | None
             ) -> None:
    """Values the user just gave — typed in the editor, written on the command line — passed
    through ``layer`` but do not come from it: their errors say ``label`` instead (None: no
    source, a value never saved), or they sent the user looking in the wrong place."""
    keys, tail = set(keys), f" (from {layer})"
    for e in errors.errors:
        if e.key in keys and e.source == layer:
            e.args = (str(e).removesuffix(tail) + (f" (from {label})" if label else ""),)
            e.allowed, e.source = e.allowed.removesuffix(tail), label


class SettingsErrors(ValueError):
    """Several settings were rejected at once (the editor shows every bad field, not just the first)."""

    def __init__(self, errors: list[SettingError]) -> None:
        self.errors = errors
        super().__init__()

    def __str__(self) -> str:  # from the errors as they are now (``given_by`` relabels them)
        return "; ".join(str(e) for e in self.errors)


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # bool | int | float | str | choice | list | address | url | prices
    default: Any
    group: str
    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    restart: bool = True
    dashboard_default: Any = None  # default when the dashboard starts the bot, if it differs
    max_len: int | None = None  # longest text accepted (None: by kind, see ``limit``)

    @property
    def limit(self) -> int:
        """Every value is bounded: a 20 MB model name once made the bot unstartable."""
        return self.max_len or {"list": 4000, "prices": 1000, "url": 500}.get(self.kind, 200)

    def default_for(self, origin: Origin) -> Any:
        if origin == "dashboard" and self.dashboard_default is not None:
            return self.dashboard_default
        return self.default

    def allowed(self) -> str:
        return str(self.allowed_words())

    def allowed_words(self) -> Words:
        """What the setting accepts, in words the editor translates (the README's table too)."""
        if self.kind == "bool":
            return words("a boolean (true/false/1/0/yes/no/on/off)")
        if self.kind == "choice":
            return words("one of {choices}", choices=", ".join(self.choices))
        if self.kind == "address":
            return words("an address: 0x followed by 40 hex digits (or empty)")
        if self.kind == "url":
            return words("an http:// or https:// URL (or empty)")
        if self.kind == "list":
            return words("a comma-separated list of symbols, each 2-30 characters A-Z and 0-9")
        if self.kind == "prices":
            return words("comma-separated model=input/output prices in USD per million tokens, "
                         "e.g. gpt-4.1=3/9,llama3=0/0 (or empty)")
        if self.kind in ("int", "float"):
            lo = "-inf" if self.min is None else _fmt(self.min)
            hi = "inf" if self.max is None else _fmt(self.max)
            return words("an integer in [{lo}, {hi}]" if self.kind == "int" else
                         "a number in [{lo}, {hi}]", lo=lo, hi=hi)
        return words("a single-line text of at most {n} characters", n=self.limit)

    def parse(self, value: Any) -> Any:
        """Turn a raw value (string from the environment, or JSON value) into a checked value."""
        err = SettingError(self.name, value, self.allowed_words(), self.secret)
        if isinstance(value, str) and len(value) > self.limit:
            raise SettingError(self.name, value, f"{self.allowed()}; at most "
                               f"{self.limit} characters", self.secret)
        if isinstance(value, str) and ("\n" in value or "\r" in value or "\x00" in value):
            raise SettingError(self.name, value, "a single line without newlines or NUL bytes",
                               self.secret)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
                return value.strip().lower() in TRUE_WORDS
            raise err
        if self.kind in ("int", "float"):
            if isinstance(value, bool):
                raise err
            try:
                num = float(value.strip()) if isinstance(value, str) else float(value)
            except (TypeError, ValueError, OverflowError):
                raise err from None
            if not math.isfinite(num):
                raise err
            if self.kind == "int":
                if num != int(num):
                    raise err
                num = int(num)
            if (self.min is not None and num < self.min) or (self.max is not None and num > self.max):
                raise err
            return num
        if not isinstance(value, str):
            if value is None:
                value = ""
            elif isinstance(value, (list, tuple)) and self.kind == "list":
                value = ",".join(str(v) for v in value)
            else:
                raise err
        value = value.strip()
        if self.kind == "choice":
            if value.lower() not in self.choices:
                raise err
            return value.lower()
        if self.kind == "list":
            items = [v.strip().upper() for v in value.split(",") if v.strip()]
            if not all(map(is_symbol, items)):
                raise err
            return tuple(items)
        if self.kind == "address":
            if value and not _ADDRESS_RE.match(value):
                raise err
            if value and value[2:] != value[2:].lower() and value[2:] != value[2:].upper():
                from eth_utils import is_checksum_address  # mixed case must be EIP-55 exact

                if not is_checksum_address(value):
                    raise SettingError(self.name, value, "an address with a valid EIP-55 checksum "
                                       "(or written in lower case)")
            return value
        if self.kind == "url":
            if value and not re.match(r"^https?://[^\s]+$", value):
                raise err
            return value.rstrip("/")
        if self.kind == "prices":
            try:
                prices = parse_prices(value)
            except ValueError:
                raise err from None
            return ",".join(f"{m}={_fmt(a * 1e6)}/{_fmt(b * 1e6)}" for m, (a, b) in prices.items())
        return value

    def to_env(self, value: Any) -> str:
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "list":
            return ",".join(value)
        return str(value)


def ai_mode(s: Mapping[str, Any]) -> bool:
    """AI mode: ``ASTER_AI_MODE`` or ``ASTER_MODE=ai`` (the copilots run, with or without a key)."""
    return bool(s["ASTER_AI_MODE"] or s["ASTER_MODE"] == "ai")


def parse_prices(text: str) -> dict[str, tuple[float, float]]:
    """``model=in/out,...`` in USD per million tokens → USD per token (ValueError when malformed)."""
    out: dict[str, tuple[float, float]] = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        model, _, pair = part.partition("=")
        a, _, b = pair.partition("/")
        if not re.fullmatch(r"[A-Za-z0-9._:/-]{1,80}", model.strip()):
            raise ValueError(part)
        pin, pout = float(a), float(b)
        if not (math.isfinite(pin) and math.isfinite(pout) and 0 <= pin <= 1000 and 0 <= pout <= 1000):
            raise ValueError(part)
        out[model.strip()] = (pin / 1e6, pout / 1e6)
    return out


def _fmt(x: float) -> int | float:
    """A bound as a number (a whole one without its ".0"): the editor writes it the reader's way."""
    return int(x) if float(x).is_integer() else float(x)


def S(name: str, kind: str, default: Any, group: str, help: str, **kw: Any) -> Setting:
    return Setting(name=name, kind=kind, default=default, group=group, help=help, **kw)


INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")

CATALOGUE: tuple[Setting, ...] = (
    # --- exchange & account -------------------------------------------------------------
    S("ASTER_PAPER", "bool", True, "exchange", "Paper mode: simulated fills, no real orders. Live "
      "trading needs ASTER_PAPER=false and API credentials."),
    S("ASTER_OFFLINE", "bool", False, "exchange", "Paper mode on the built-in simulator's "
      "synthetic market, without contacting any exchange (refused in live mode)."),
    S("ASTER_EXCHANGE_BASE", "url", "https://fapi.asterdex.com", "exchange",
      "REST base URL of the exchange (or of the built-in simulator, e.g. http://127.0.0.1:9000)."),
    S("ASTER_API_KEY", "str", "", "exchange", "V1 API key (older accounts).", secret=True),
    S("ASTER_API_SECRET", "str", "", "exchange", "V1 API secret (older accounts).", secret=True),
    S("ASTER_AUTH_SCHEME", "choice", "auto", "exchange", "How signed requests are authenticated: "
      "hmac (V1 API key), v3 (API wallet, EIP-712), auto (v3 when a signer key is set).",
      choices=("auto", "hmac", "v3")),
    S("ASTER_USER_ADDRESS", "address", "", "exchange", "Main wallet address (V3 'user')."),
    S("ASTER_SIGNER_ADDRESS", "address", "", "exchange", "API-wallet address (V3 'signer')."),
    S("ASTER_SIGNER_PRIVATE_KEY", "str", "", "exchange", "API-wallet private key (V3).",
      secret=True),
    S("ASTER_CHAIN_ID", "int", 1666, "exchange", "EIP-712 chain id: 1666 mainnet, 714 testnet.",
      min=1, max=2**31),
    S("ASTER_RECV_WINDOW_MS", "int", 5000, "exchange", "recvWindow for V1 signed requests (ms).",
      min=1000, max=60000),
    S("ASTER_RATE_LIMIT_SHARE", "float", 0.8, "exchange", "Share of the exchange's per-minute "
      "request weight the bot may use.", min=0.05, max=1.0),
    S("ASTER_PAPER_BALANCE", "float", 10000.0, "exchange", "Starting USDT balance of a new paper "
      "account.", min=10, max=1e9),
    # --- modes ---------------------------------------------------------------------------
    S("ASTER_MODE", "choice", "standard", "mode", "Dashboard mode: standard (presets), pro (every "
      "setting), ai (AI copilots on).", choices=("standard", "pro", "ai"), restart=False),
    S("ASTER_PRESET_MODE", "choice", "mid", "mode", "Risk preset: low, mid, high or att (see the "
      "preset table).", choices=("low", "mid", "high", "att")),
    S("ASTER_RUN_ONCE", "bool", False, "mode", "Run exactly one scan cycle, then exit."),
    S("ASTER_AI_MODE", "bool", False, "mode", "Force the AI runtime on even in standard/pro mode "
      "(same as ASTER_MODE=ai)."),
    # --- universe -----------------------------------------------------------------------
    S("ASTER_QUOTE", "str", "USDT", "universe", "Quote asset of the perpetuals to trade."),
    S("ASTER_SYMBOLS", "list", (), "universe", "Whitelist: trade only these symbols (empty = all)."),
    S("ASTER_EXCLUDE_SYMBOLS", "list", (), "universe", "Blacklist: never trade these symbols."),
    S("ASTER_UNIVERSE_MAX", "int", 0, "universe", "Keep at most this many symbols, by 24h quote "
      "volume (0 = no cap).", min=0, max=1000),
    S("ASTER_MIN_QUOTE_VOL_USDT", "float", 150000.0, "universe", "Minimum 24h quote volume for a "
      "symbol to be traded.", min=0, max=1e12),
    S("ASTER_SCAN_INTERVAL_SECONDS", "float", 30.0, "universe", "Pause between scan cycles.",
      min=1, max=3600),
    # --- strategy -----------------------------------------------------------------------
    S("ASTER_INTERVAL", "choice", "5m", "strategy", "Signal timeframe.", choices=INTERVALS),
    S("ASTER_HTF_INTERVAL", "choice", "30m", "strategy", "Higher timeframe for trend confirmation.",
      choices=INTERVALS),
    S("ASTER_RSI_BUY_MIN", "float", 52.0, "strategy", "RSI above this allows a long entry.",
      min=0, max=100, dashboard_default=51.0),
    S("ASTER_RSI_SELL_MAX", "float", 48.0, "strategy", "RSI below this allows a short entry.",
      min=0, max=100, dashboard_default=49.0),
    S("ASTER_ALLOW_TREND_ALIGN", "bool", False, "strategy", "Require the signal timeframe's trend "
      "to agree with the higher timeframe's trend."),
    S("ASTER_TREND_BIAS", "choice", "with", "strategy", "Trade with the higher-timeframe trend or "
      "against it.", choices=("with", "against")),
    S("ASTER_MIN_EDGE_R", "float", 0.30, "strategy", "Minimum expected edge (in R) to take a trade.",
      min=-5, max=10),
    # --- filters ------------------------------------------------------------------------
    S("ASTER_SPREAD_BPS_MAX", "float", 0.0030, "filters", "Maximum bid/ask spread as a fraction "
      "of mid price (0.0030 = 0.30%).", min=0, max=0.1),
    S("ASTER_WICKINESS_MAX", "float", 0.97, "filters", "Maximum wick share of the last closed "
      "candle's range.", min=0, max=1),
    S("ASTER_FUNDING_FILTER_ENABLED", "bool", True, "filters", "Skip entries whose side pays "
      "excessive funding."),
    S("ASTER_FUNDING_MAX_LONG", "float", 0.0010, "filters", "Longs are skipped above this funding "
      "rate.", min=0, max=0.05),
    S("ASTER_FUNDING_MAX_SHORT", "float", 0.0010, "filters", "Shorts are skipped below minus this "
      "funding rate.", min=0, max=0.05),
    S("ASTER_NON_ARB_FILTER_ENABLED", "bool", True, "filters", "Oracle-aware non-arbitrage guard "
      "from the premium index."),
    S("ASTER_NON_ARB_CLAMP_BPS", "float", 0.0005, "filters", "Clamp of the mark/index premium "
      "(± fraction).", min=0, max=0.05),
    S("ASTER_NON_ARB_EDGE_THRESHOLD", "float", 0.00005, "filters", "Funding edge after the clamp "
      "tolerated against the trade's side.", min=0, max=0.05),
    S("ASTER_NON_ARB_SKIP_GAP", "float", 0.0015, "filters", "Absolute mark/index gap that skips the "
      "symbol.", min=0, max=0.5),
    # --- sizing -------------------------------------------------------------------------
    S("ASTER_RISK_PER_TRADE", "float", 0.006, "sizing", "Fraction of equity lost if the stop is "
      "hit (0.007 = 0.7%).", min=0.0001, max=0.02, dashboard_default=0.007),
    S("ASTER_EQUITY_FRACTION", "float", 0.66, "sizing", "Largest share of equity used as margin "
      "across positions.", min=0.01, max=1.0),
    S("ASTER_LEVERAGE", "int", 10, "sizing", "Leverage set per symbol (capped at the exchange's "
      "maximum for the symbol).", min=1, max=125),
    S("ASTER_DEFAULT_NOTIONAL", "float", 0.0, "sizing", "Base size in USDT of a trade at size "
      "multiplier 1 (0 = the size that risks a third of ASTER_RISK_PER_TRADE at the stop); never "
      "more than ASTER_RISK_PER_TRADE allows.", min=0, max=1e9),
    S("ASTER_SIZE_MULT_FLOOR", "float", 0.0, "sizing", "Lowest size multiplier (1.0 forces at least "
      "the base size).", min=0, max=10),
    S("ASTER_SIZE_MULT_CAP", "float", 3.0, "sizing", "Highest size multiplier after all "
      "adjustments (bucket × confidence); the result is still cut to ASTER_RISK_PER_TRADE.",
      min=0.1, max=10),
    S("ASTER_MAX_NOTIONAL_USDT", "float", 0.0, "sizing", "Hard cap on one order's notional "
      "(0 = leverage and equity limits decide).", min=0, max=1e9),
    S("ASTER_CONFIDENCE_SIZING", "bool", True, "sizing", "Scale size with the decision's "
      "confidence."),
    S("ASTER_CONFIDENCE_SIZE_MIN", "float", 1.0, "sizing", "Size multiplier at zero confidence.",
      min=0, max=10),
    S("ASTER_CONFIDENCE_SIZE_MAX", "float", 3.0, "sizing", "Size multiplier at full confidence.",
      min=0, max=10),
    S("ASTER_CONFIDENCE_SIZE_BLEND", "float", 1.0, "sizing", "Blend weight of the confidence curve "
      "(0 = off, 1 = full).", min=0, max=1),
    S("ASTER_CONFIDENCE_SIZE_EXP", "float", 2.0, "sizing", "Curve exponent (>1 favours high "
      "confidence).", min=0.1, max=10),
    # --- risk & brackets ---------------------------------------------------------------
    S("ASTER_MARGIN_TYPE", "choice", "isolated", "risk", "Margin mode set per symbol before its "
      "first entry: isolated (a position can lose only its own margin) or crossed (the whole "
      "balance backs every position).", choices=("isolated", "crossed")),
    S("ASTER_LIQUIDATION_BUFFER", "float", 0.05, "risk", "The stop must trigger before the "
      "liquidation price with this share of the entry-to-liquidation distance to spare; the "
      "leverage is lowered until it does, else the entry is skipped.", min=0, max=0.99),
    S("ASTER_MAX_OPEN_GLOBAL", "int", 0, "risk", "Maximum open positions overall (0 = unlimited).",
      min=0, max=1000),
    S("ASTER_MAX_OPEN_PER_SYMBOL", "int", 1, "risk", "Maximum open positions per symbol. The "
      "exchange nets a symbol's positions into one and each stop and take-profit closes all of "
      "it, so the bot holds at most one per symbol: 0 (unlimited) and values above 1 act as 1.",
      min=0, max=100),
    S("ASTER_SL_ATR_MULT", "float", 1.0, "risk", "Stop-loss distance in ATRs.", min=0.1, max=20),
    S("ASTER_TP_ATR_MULT", "float", 1.6, "risk", "Take-profit distance in ATRs.", min=0.1, max=50),
    S("ASTER_MANUAL_CLOSE_COOLDOWN_MINUTES", "float", 60.0, "risk", "After you close a position "
      "from the dashboard, no new entry on that symbol for this long.", min=0, max=10080),
    S("ASTER_STOP_GRACE_SECONDS", "float", 60.0, "risk", "A position still without a stop after "
      "this long (in market time: the replay's clock in a backtest) is closed at market.", min=5,
      max=3600),
    S("ASTER_BRACKET_ALERT_AFTER", "int", 3, "risk", "Raise an alert after this many failed "
      "bracket repairs.", min=1, max=100),
    # --- account-level limits (circuit breakers and total exposure) ------------------------
    S("ASTER_DAILY_LOSS_LIMIT", "float", 0.03, "risk", "Stop opening trades for the rest of the "
      "UTC day once the day's loss reaches this fraction of its starting equity (0 = off).",
      min=0, max=1),
    S("ASTER_MAX_DRAWDOWN", "float", 0.10, "risk", "Stop opening trades once equity is this "
      "fraction below its peak, until you lift it on the dashboard (0 = off).", min=0, max=1),
    S("ASTER_STREAK_STOPS", "int", 3, "risk", "This many stop-outs within the streak window "
      "pause entries (0 = off).", min=0, max=100),
    S("ASTER_STREAK_WINDOW_MINUTES", "float", 120.0, "risk", "Window in which stop-outs are "
      "counted, for the streak and per symbol.", min=1, max=10080),
    S("ASTER_STREAK_PAUSE_MINUTES", "float", 60.0, "risk", "How long a losing streak pauses "
      "entries, from the last stop-out.", min=1, max=10080),
    S("ASTER_SYMBOL_STOPS", "int", 2, "risk", "This many stop-outs on one symbol within the window "
      "lock that symbol (0 = off).", min=0, max=100),
    S("ASTER_SYMBOL_LOCK_MINUTES", "float", 240.0, "risk", "How long a symbol stays locked, from "
      "its last stop-out.", min=1, max=10080),
    S("ASTER_MAX_OPEN_RISK", "float", 0.03, "risk", "Cap on the sum of all open positions' risk to "
      "their stops, as a fraction of equity (0 = off).", min=0, max=1),
    S("ASTER_MAX_TOTAL_NOTIONAL_X", "float", 3.0, "risk", "Cap on the total notional of all open "
      "positions, as a multiple of equity (0 = off).", min=0, max=125),
    # --- FastTP -------------------------------------------------------------------------
    S("FAST_TP_ENABLED", "bool", True, "fasttp", "Pull the take-profit in when a winning move "
      "reverses."),
    S("FASTTP_MIN_R", "float", 0.30, "fasttp", "Profit (in R) needed before FastTP acts.",
      min=0, max=20),
    S("FAST_TP_RET1", "float", -0.0010, "fasttp", "One-candle return against the position that "
      "triggers FastTP.", min=-0.5, max=0),
    S("FAST_TP_RET3", "float", -0.0020, "fasttp", "Three-candle return against the position that "
      "triggers FastTP.", min=-0.5, max=0),
    S("FASTTP_SNAP_ATR", "float", 0.25, "fasttp", "New take-profit distance from price, in ATRs.",
      min=0.01, max=10),
    S("FASTTP_COOLDOWN_S", "float", 15.0, "fasttp", "Minimum seconds between FastTP moves.",
      min=0, max=86400),
    S("FASTTP_LOCK_STOP", "bool", True, "fasttp", "When FastTP pulls the target in, also move the "
      "stop behind price (at least breakeven plus ASTER_BREAKEVEN_OFFSET_R), so the reversal it "
      "saw cannot turn the trade into a loss."),
    S("FASTTP_LOCK_ATR", "float", 0.25, "fasttp", "Distance of FastTP's stop behind price, in ATRs.",
      min=0.01, max=10),
    # --- stops that lock in profit ------------------------------------------------------
    S("ASTER_BREAKEVEN_R", "float", 1.0, "risk", "Move the stop to breakeven (plus the offset) once "
      "a trade is this many R in profit (0 = off).", min=0, max=20),
    S("ASTER_BREAKEVEN_OFFSET_R", "float", 0.05, "risk", "How far past the entry the breakeven "
      "stop sits, in R (covers the fees).", min=0, max=5),
    S("ASTER_TRAIL_ACTIVATION_R", "float", 1.5, "risk", "Start trailing the stop once a trade is "
      "this many R in profit (0 = off).", min=0, max=50),
    S("ASTER_TRAIL_ATR", "float", 1.0, "risk", "Distance of the trailing stop behind price, in "
      "ATRs.", min=0.05, max=20),
    S("ASTER_STOP_MIN_GAP_ATR", "float", 0.1, "risk", "A moved stop stays at least this far from "
      "the current price, in ATRs, so it does not trigger on the spot.", min=0.01, max=5),
    # --- policy -------------------------------------------------------------------------
    S("ASTER_BANDIT_ENABLED", "bool", True, "policy", "LinUCB bandit decides TAKE/SKIP and size."),
    S("ASTER_BANDIT_ALPHA", "float", 0.5, "policy", "LinUCB exploration strength.", min=0, max=10),
    S("ASTER_ALPHA_ENABLED", "bool", True, "policy", "Alpha model may veto or upsize trades."),
    S("ASTER_ALPHA_THRESHOLD", "float", 0.55, "policy", "Minimum win probability for a trade.",
      min=0, max=1),
    S("ASTER_ALPHA_PROMOTE_DELTA", "float", 0.15, "policy", "Extra probability above the threshold "
      "that upsizes one bucket.", min=0, max=1),
    S("ASTER_ALPHA_WARMUP", "int", 30, "policy", "Trades the alpha model sees before it may veto.",
      min=0, max=10000),
    S("ASTER_ALPHA_SHADOW", "bool", True, "policy", "The alpha model also learns from the signals "
      "it vetoed, followed as if taken (to their stop or take-profit, no order sent), so a model "
      "that says no to everything can change its mind."),
    S("ASTER_HISTORY_MAX", "int", 250, "policy", "Recent closed trades kept in the state file "
      "(for the breakers and the overview); the journal keeps every trade.", min=10,
      max=100000),
    S("ASTER_SEED", "int", 7, "policy", "Random seed for breaking ties between equally scored policy arms (reproducible runs).", min=0,
      max=2**31),
    # --- AI -----------------------------------------------------------------------------
    S("ASTER_OPENAI_API_KEY", "str", "", "ai", "API key for the AI trade advisor.", secret=True),
    S("ASTER_CHAT_OPENAI_API_KEY", "str", "", "ai", "Optional key for chat; falls back to "
      "ASTER_OPENAI_API_KEY.", secret=True),
    S("ASTER_AI_BASE_URL", "url", "", "ai", "OpenAI-compatible endpoint (e.g. a local model "
      "server); empty = OpenAI."),
    S("ASTER_AI_MODEL", "str", "gpt-4.1", "ai", "Model id for analyses."),
    S("ASTER_AI_DAILY_BUDGET_USD", "float", 20.0, "ai", "Daily AI budget in USD (ignored by the "
      "high and att presets).", min=0, max=100000),
    S("ASTER_AI_STRICT_BUDGET", "bool", True, "ai", "No AI call starts that would cross the "
      "budget."),
    S("ASTER_AI_MIN_INTERVAL_SECONDS", "float", 3.0, "ai", "Cooldown before the same symbol is "
      "reviewed again.", min=0, max=86400),
    S("ASTER_AI_CONCURRENCY", "int", 4, "ai", "Maximum concurrent LLM requests.", min=1, max=64),
    S("ASTER_AI_PENDING_LIMIT", "int", 0, "ai", "Maximum waiting AI jobs (0 = max(4, 3 × "
      "ASTER_AI_CONCURRENCY)).", min=0, max=10000),
    S("ASTER_AI_GLOBAL_COOLDOWN_SECONDS", "float", 1.0, "ai", "Pause between any two AI requests.",
      min=0, max=3600),
    S("ASTER_AI_PLAN_TIMEOUT_SECONDS", "float", 45.0, "ai", "After this, the rule-based plan "
      "stands.", min=1, max=600),
    S("ASTER_AI_SENTINEL_ENABLED", "bool", True, "ai", "Market sentinel, in every mode (rule-based; "
      "no AI key needed): 24 h shocks and the optional news feed become risk labels (red: no new "
      "entries, yellow: smaller), unusual funding rates and volatility spikes become notices."),
    S("ASTER_SENTINEL_FUNDING_Z", "float", 4.0, "ai", "A funding rate is reported as unusual this "
      "many robust deviations from its own recent rates or the market's (and at least 0.03 % "
      "per period).", min=1, max=50),
    S("ASTER_SENTINEL_SPIKE_MULT", "float", 4.0, "ai", "A candle whose range is this many times "
      "the median of the 48 before it (and at least 0.4 %) is reported as a volatility spike.",
      min=1.5, max=50),
    S("ASTER_AI_SENTINEL_DECAY_MINUTES", "float", 60.0, "ai", "How long a sentinel warning lasts.",
      min=1, max=10080),
    S("ASTER_AI_NEWS_ENDPOINT", "url", "", "ai", "Optional external breaking-news source."),
    S("ASTER_AI_NEWS_API_KEY", "str", "", "ai", "Token for the news source.", secret=True),
    S("ASTER_AI_TEMPERATURE", "float", 0.3, "ai", "Sampling temperature (1.0 = provider default).",
      min=0, max=2),
    S("ASTER_AI_PRICES", "prices", "", "ai", "Your prices per model in USD per million tokens "
      "(input/output), over the built-in table: e.g. llama3=0/0 for a local model, or a new "
      "model's price. A model in neither is charged like the dearest one."),
    S("ASTER_AI_PLAYBOOK_REFRESH_MINUTES", "float", 20.0, "ai", "How often the playbook (market "
      "regime, directives, size factors) is rebuilt in AI mode.", min=1, max=1440),
    S("ASTER_AI_TUNER_MIN_TRADES", "int", 20, "ai", "Closed trades before the parameter tuner asks "
      "the LLM for suggestions (its rule-based biases apply from the first trade, weighted by "
      "evidence).", min=1, max=1000),
    S("ASTER_AI_DEBUG_STATE", "bool", False, "ai", "Verbose AI logging and payload dumps (secrets "
      "masked)."),
    # --- files, logging, dashboard -----------------------------------------------------
    S("ASTER_STATE_FILE", "str", "aster_state.json", "files", "Bot state: positions, history, "
      "telemetry."),
    S("ASTER_CONFIG_FILE", "str", "dashboard_config.json", "files", "Settings saved by the "
      "dashboard editor."),
    S("ASTER_BRACKETS_QUEUE_FILE", "str", "brackets_queue.json", "files", "Queue of stop/take-profit "
      "repairs."),
    S("ASTER_EVENTS_FILE", "str", "events.jsonl", "files", "Rotating JSON-lines event log."),
    S("ASTER_RECORD_FILE", "str", "aster_record.jsonl", "files", "What the bot saw each cycle "
      "(quotes, closed candles, decisions), for the live-versus-replay audit."),
    S("ASTER_JOURNAL_FILE", "str", "aster_journal.sqlite", "files", "The trade journal (SQLite): "
      "every order, fill, trade, funding payment, equity point and alert, never capped; a "
      "relative name sits next to the state file."),
    S("ASTER_RECORD_DAYS", "int", 2, "files", "Days of the record kept (0 = record nothing, no "
      "audit).", min=0, max=60),
    S("ASTER_AUDIT_DIVERGENCE_MAX", "float", 0.02, "files", "Share of replayed decisions that may "
      "differ from live before the audit raises a notice.", min=0, max=1),
    S("ASTER_BACKTEST_DATA", "str", "", "files", "Folder of candle CSVs for the dashboard's "
      "backtest (empty = the real Binance sample candles in tests/data).", restart=False),
    S("ASTER_LOGLEVEL", "choice", "info", "files", "Console log level.",
      choices=("debug", "info", "warning", "error"), restart=False),
    S("ASTER_TELEGRAM_BOT_TOKEN", "str", "", "notify", "Telegram bot token (from @BotFather); "
      "sent only to ASTER_TELEGRAM_API_BASE.", secret=True),
    S("ASTER_TELEGRAM_CHAT_ID", "str", "", "notify", "Your Telegram chat id: messages go there, and "
      "commands are taken from it alone.", max_len=32),
    S("ASTER_TELEGRAM_API_BASE", "url", "https://api.telegram.org", "notify", "Telegram Bot API "
      "address (a self-hosted Bot API server works too)."),
    S("ASTER_TELEGRAM_COMMANDS", "bool", True, "notify", "Take /status, /positions, /pause, /resume "
      "and /flatten (with a confirmation) from your chat."),
    S("ASTER_WEBHOOK_URL", "url", "", "notify", "A Discord- or Slack-compatible webhook for the same "
      "messages (the URL is a secret).", secret=True),
    S("ASTER_NOTIFY_ENTRIES", "bool", True, "notify", "Notify each entry."),
    S("ASTER_NOTIFY_EXITS", "bool", True, "notify", "Notify each closed trade with its pnl and reason."),
    S("ASTER_NOTIFY_ALERTS", "bool", True, "notify", "Notify warnings and errors (the dashboard's "
      "notices)."),
    S("ASTER_NOTIFY_BREAKERS", "bool", True, "notify", "Notify a circuit breaker that trips."),
    S("ASTER_NOTIFY_BRACKETS", "bool", True, "notify", "Notify a stop or take-profit that could not "
      "be placed, or that is not on the exchange as the bot believes."),
    S("ASTER_NOTIFY_DAILY", "bool", True, "notify", "A summary once a day (UTC)."),
    S("ASTER_NOTIFY_LANGUAGE", "choice", "en", "notify", "Language of the messages and of the "
      "replies to commands: en, or one the dashboard offers (de: German).",
      choices=("en", *sorted(f.stem for f in CATALOGUES.glob("*.json")
                              if re.fullmatch(r"[a-z]{2}", f.stem) and f.stem != "en"))),
    S("ASTER_DASHBOARD_HOST", "str", "127.0.0.1", "dashboard", "Address the dashboard binds to; "
      "anything but loopback needs a token."),
    S("ASTER_DASHBOARD_PORT", "int", 8000, "dashboard", "Dashboard port.", min=1, max=65535),
    S("ASTER_DASHBOARD_TOKEN", "str", "", "dashboard", "Access token for the dashboard (required "
      "off loopback).", secret=True),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in CATALOGUE}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(s.group for s in CATALOGUE))
GROUP_TITLES: dict[str, str] = {  # the editor's headings
    "exchange": "Exchange and account", "mode": "Trading mode", "universe": "Symbols scanned",
    "strategy": "Entry signal", "filters": "Market filters", "sizing": "Position size",
    "risk": "Risk limits and circuit breakers", "fasttp": "FastTP (early take-profit)",
    "policy": "Bandit policy and alpha model", "ai": "AI copilots and budget",
    "files": "Files", "notify": "Notifications", "dashboard": "Dashboard"}
assert set(GROUP_TITLES) == set(GROUPS), "every settings group needs a heading"
SECRET_NAMES: frozenset[str] = frozenset(s.name for s in CATALOGUE if s.secret)

# Preset values. "Mid" keeps the catalogue defaults; risk per trade never exceeds 1% of equity.
# Leverage 125 means "the exchange maximum": the bot caps it per symbol at the exchange's limit.
# Each preset is a whole risk profile, not a few knobs: stop and target, FastTP, funding caps,
# the alpha model's bar, sizing, the circuit breakers and the exposure caps move together. Every
# one risks at most 1 % of equity per trade (``ASTER_RISK_PER_TRADE`` is the most a trade can lose
# at its stop, whatever the size multipliers say).
_PROFILE = {
    "low": {"ASTER_EQUITY_FRACTION": 0.33, "ASTER_LEVERAGE": 4, "ASTER_RISK_PER_TRADE": 0.004,
            "ASTER_TREND_BIAS": "with", "ASTER_SL_ATR_MULT": 1.2, "ASTER_TP_ATR_MULT": 1.8,
            "FASTTP_MIN_R": 0.25, "ASTER_FUNDING_MAX_LONG": 0.0005, "ASTER_FUNDING_MAX_SHORT": 0.0005,
            "ASTER_ALPHA_THRESHOLD": 0.58, "ASTER_SIZE_MULT_CAP": 2.0,
            "ASTER_DAILY_LOSS_LIMIT": 0.02, "ASTER_MAX_DRAWDOWN": 0.06, "ASTER_STREAK_STOPS": 2,
            "ASTER_MAX_OPEN_RISK": 0.015, "ASTER_MAX_TOTAL_NOTIONAL_X": 1.5,
            "ASTER_BREAKEVEN_R": 0.8, "ASTER_TRAIL_ACTIVATION_R": 1.2,
            "ASTER_LIQUIDATION_BUFFER": 0.2, "ASTER_MARGIN_TYPE": "isolated"},
    # mid is the default profile: its values are the catalogue's (risk per trade: 0.006 on the
    # command line, 0.007 from the dashboard, as the seed has it)
    "mid": {"ASTER_EQUITY_FRACTION": 0.66, "ASTER_LEVERAGE": 10, "ASTER_TREND_BIAS": "with", "ASTER_SL_ATR_MULT": 1.0, "ASTER_TP_ATR_MULT": 1.6,
            "FASTTP_MIN_R": 0.30, "ASTER_FUNDING_MAX_LONG": 0.0010, "ASTER_FUNDING_MAX_SHORT": 0.0010,
            "ASTER_ALPHA_THRESHOLD": 0.55, "ASTER_SIZE_MULT_CAP": 3.0,
            "ASTER_DAILY_LOSS_LIMIT": 0.03, "ASTER_MAX_DRAWDOWN": 0.10, "ASTER_STREAK_STOPS": 3,
            "ASTER_MAX_OPEN_RISK": 0.03, "ASTER_MAX_TOTAL_NOTIONAL_X": 3.0,
            "ASTER_BREAKEVEN_R": 1.0, "ASTER_TRAIL_ACTIVATION_R": 1.5,
            "ASTER_LIQUIDATION_BUFFER": 0.1, "ASTER_MARGIN_TYPE": "isolated"},
    "high": {"ASTER_EQUITY_FRACTION": 1.0, "ASTER_LEVERAGE": 125, "ASTER_RISK_PER_TRADE": 0.01,
             "ASTER_TREND_BIAS": "with", "ASTER_SL_ATR_MULT": 1.0, "ASTER_TP_ATR_MULT": 2.0,
             "FASTTP_MIN_R": 0.40, "ASTER_FUNDING_MAX_LONG": 0.0015,
             "ASTER_FUNDING_MAX_SHORT": 0.0015, "ASTER_ALPHA_THRESHOLD": 0.52,
             "ASTER_SIZE_MULT_CAP": 3.0, "ASTER_DAILY_LOSS_LIMIT": 0.05, "ASTER_MAX_DRAWDOWN": 0.15,
             "ASTER_STREAK_STOPS": 4, "ASTER_MAX_OPEN_RISK": 0.05,
             "ASTER_MAX_TOTAL_NOTIONAL_X": 5.0, "ASTER_BREAKEVEN_R": 1.2,
             "ASTER_TRAIL_ACTIVATION_R": 2.0, "ASTER_LIQUIDATION_BUFFER": 0.1,
             "ASTER_MARGIN_TYPE": "isolated"},
}
PRESETS: dict[str, dict[str, Any]] = {
    **_PROFILE,
    # ATT: the High profile traded AGAINST the trend (see ATT_WARNING); a typed confirmation
    "att": {**_PROFILE["high"], "ASTER_TREND_BIAS": "against"},
}
ATT_WARNING = ("ATT trades against the trend: it buys falling markets and sells rising ones, with "
               "all of your equity as margin and leverage up to 125x (lowered where the stop would "
               "come after liquidation), risking up to 1 % per trade and 5 % a day. Type ATT to "
               "apply it.")
PRESETS_IGNORING_AI_BUDGET = frozenset({"high", "att"})


class Settings(Mapping[str, Any]):
    """An immutable, validated view of every setting. Secrets never appear in repr or str."""

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str] | None = None,
                 notes: Iterable[Words] = ()) -> None:
        self._values = dict(values)
        self.sources = dict(sources or {})
        # old or unknown names found while loading (settings_legacy), a value that acts as
        # another: logged at start, and on the settings page in the reader's language
        self.notes = tuple(notes)
        # an original-format configuration this load imported (``bot.load_settings``): the bot
        # says it once as notices, as the page would have had it imported the file itself
        self.imported: tuple[Words, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({masked(self._values)!r})"

    __str__ = __repr__

    @property
    def ai_pending_limit(self) -> int:
        return self["ASTER_AI_PENDING_LIMIT"] or max(4, 3 * self["ASTER_AI_CONCURRENCY"])

    @property
    def ai_budget_enforced(self) -> bool:
        return self["ASTER_PRESET_MODE"] not in PRESETS_IGNORING_AI_BUDGET

    def secrets(self) -> list[str]:
        return [self._values[n] for n in SECRET_NAMES if self._values.get(n)]

    def to_env(self) -> dict[str, str]:
        return {k: BY_NAME[k].to_env(v) for k, v in self._values.items()}


def mask_secret(value: str) -> str:
    """Show only the last four characters, so a user can tell two keys apart."""
    if not value:
        return ""
    return "••••" + (value[-4:] if len(value) >= 12 else "")


def masked(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (mask_secret(v) if k in SECRET_NAMES and v else v) for k, v in values.items()}


def validate(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check a mapping of raw values; raise SettingsErrors listing every bad or unknown key."""
    out: dict[str, Any] = {}
    errors: list[SettingError] = []
    for key, value in raw.items():
        spec = BY_NAME.get(key)
        if spec is None:
            errors.append(SettingError(key, value, "a known setting name (see the README table)"))
            continue
        try:
            out[key] = spec.parse(value)
        except SettingError as exc:
            errors.append(exc)
    if errors:
        raise SettingsErrors(errors)
    _check_cross(out)
    return out


def _check_cross(values: Mapping[str, Any]) -> None:
    """Rules that involve two settings; only checked when both are present."""
    errors = []
    if "ASTER_CONFIDENCE_SIZE_MIN" in values and "ASTER_CONFIDENCE_SIZE_MAX" in values:
        if values["ASTER_CONFIDENCE_SIZE_MIN"] > values["ASTER_CONFIDENCE_SIZE_MAX"]:
            errors.append(SettingError("ASTER_CONFIDENCE_SIZE_MIN", values["ASTER_CONFIDENCE_SIZE_MIN"],
                                       "a value not above ASTER_CONFIDENCE_SIZE_MAX"))
    if "ASTER_RSI_BUY_MIN" in values and "ASTER_RSI_SELL_MAX" in values:
        if values["ASTER_RSI_SELL_MAX"] > values["ASTER_RSI_BUY_MIN"]:
            errors.append(SettingError("ASTER_RSI_SELL_MAX", values["ASTER_RSI_SELL_MAX"],
                                       "a value not above ASTER_RSI_BUY_MIN"))
    if values.get("ASTER_OFFLINE") and values.get("ASTER_PAPER") is False:
        errors.append(SettingError("ASTER_OFFLINE", True, "false in live mode (ASTER_PAPER=false): "
                                   "live trading never runs on the simulator's market"))
    if errors:
        raise SettingsErrors(errors)


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load(
    *,
    origin: Origin = "cli",
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    env_file: Path | None = None,
) -> Settings:
    """Build the effective settings from every layer (see the module docstring for the order).

    Only names in the catalogue are read from the environment and .env, so unrelated variables of
    the user's shell never reach validation. ``config`` is the content of dashboard_config.json.
    """
    import os

    environ = os.environ if environ is None else environ
    env_file = Path(".env") if env_file is None else env_file
    from mraster.settings_legacy import translate

    errors: list[SettingError] = []
    notes: list[Words] = []
    layers: list[tuple[str, Mapping[str, Any]]] = []
    for label, raw, from_env in (("dashboard_config.json", dict(config or {}), False),
                                 (".env", read_env_file(env_file), True),
                                 ("environment", environ, True)):
        layer, warned, refused = translate(raw, BY_NAME, label, from_env)
        notes += warned
        for name, value, allowed in refused:
            errors.append(SettingError(name, value, f"{allowed} (from {label})"))
            errors[-1].source = label
        layers.append((label, layer))
    values = {s.name: s.default_for(origin) for s in CATALOGUE}
    sources = {s.name: "default" for s in CATALOGUE}
    parsed_layers = []
    for label, layer in layers:
        try:
            parsed_layers.append((label, validate(layer)))
        except SettingsErrors as exc:
            for e in exc.errors:
                e.args, e.source = (f"{e} (from {label})",), label
            errors.extend(exc.errors)
    if errors:
        raise SettingsErrors(errors)
    preset = values["ASTER_PRESET_MODE"]
    for _, layer in parsed_layers:
        preset = layer.get("ASTER_PRESET_MODE", preset)
    for key, val in PRESETS[preset].items():
        values[key] = val
        sources[key] = f"preset {preset}"
    for label, layer in parsed_layers:
        for key, val in layer.items():
            values[key] = val
            sources[key] = label
    _check_cross(values)
    if values["ASTER_MAX_OPEN_PER_SYMBOL"] != 1:  # accepted (saved files load), said at start
        notes.append(words("ASTER_MAX_OPEN_PER_SYMBOL={value} acts as 1 (from {source}): the "
                           "exchange nets a symbol's positions into one and each stop and "
                           "take-profit closes all of it, so the bot holds at most one position "
                           "per symbol", value=values["ASTER_MAX_OPEN_PER_SYMBOL"],
                           source=sources["ASTER_MAX_OPEN_PER_SYMBOL"]))
    return Settings(values, sources, notes)


def preset_changes(current: Mapping[str, Any], preset: str) -> dict[str, tuple[Any, Any]]:
    """What applying a preset would change: {key: (old, new)} (the dashboard shows this first)."""
    if preset not in PRESETS:
        raise SettingError("ASTER_PRESET_MODE", preset, BY_NAME["ASTER_PRESET_MODE"].allowed())
    target = {"ASTER_PRESET_MODE": preset, **PRESETS[preset]}
    return {k: (current.get(k), v) for k, v in target.items() if current.get(k) != v}


def markdown_table(settings: Iterable[Setting] = CATALOGUE) -> str:
    """The README's settings table, generated so it can never drift from the catalogue."""
    lines = ["| Setting | Default (CLI / dashboard) | Allowed | Group | Restart | Description |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in settings:
        default = _show_default(s.default, s)
        if s.dashboard_default is not None:
            default += " / " + _show_default(s.dashboard_default, s)
        lines.append(f"| `{s.name}` | {default} | {s.allowed()} | {s.group} | "
                     f"{'yes' if s.restart else 'no'} | {s.help}{' (secret)' if s.secret else ''} |")
    return "\n".join(lines)


def preset_table() -> str:
    keys = sorted({k for p in PRESETS.values() for k in p})
    lines = ["| Setting | " + " | ".join(p.upper() if p == "att" else p.capitalize()
                                       for p in PRESETS) + " |",
             "| --- |" + " --- |" * len(PRESETS)]
    for k in keys:
        cells = []
        for p in PRESETS.values():
            if k in p:
                cells.append("exchange max" if k == "ASTER_LEVERAGE" and p[k] == 125 else f"`{p[k]}`")
            else:
                spec = BY_NAME[k]
                cells.append(_show_default(spec.default, spec) + (
                    "" if spec.dashboard_default is None
                    else " CLI / " + _show_default(spec.dashboard_default, spec) + " dashboard"))
        lines.append(f"| `{k}` | " + " | ".join(cells) + " |")
    lines.append("| AI daily budget | " + " | ".join(
        "ignored" if p in PRESETS_IGNORING_AI_BUDGET else "enforced" for p in PRESETS) + " |")
    return "\n".join(lines)


def _show_default(v: Any, s: Setting) -> str:
    if s.kind == "bool":
        return f"`{'true' if v else 'false'}`"
    if s.kind == "list":
        return "empty" if not v else f"`{','.join(v)}`"
    if v == "" or v is None:
        return "empty"
    return f"`{v}`"


def refresh_readme(path: Path) -> None:
    """Rewrite the generated tables in the README (``python -m mraster.settings --readme``)."""
    text = path.read_text(encoding="utf-8")
    for name, table in (("settings-table", markdown_table()), ("preset-table", preset_table())):
        text = re.sub(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)",
                      lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":  # python -m mraster.settings [--readme]
    import sys

    if "--readme" in sys.argv:
        refresh_readme(Path(__file__).resolve().parents[1] / "README.md")
    else:
        print(markdown_table())
        print()
        print(preset_table())

"""Sentences for the user, in the user's language.

A sentence is an English template — the key of the translation catalogues,
``static/i18n/<code>.json`` — and its values. The bot records both with an alert, so the page says
it in the reader's language however long ago it was written; the dashboard renders chat answers
in the language they were asked in. English needs no catalogue: the template is the text.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

# the page's languages, one catalogue file each (messages and the server's words use the same)
CATALOGUES = Path(__file__).resolve().parent.parent / "static" / "i18n"

Say = Callable[..., str]  # say(template, **values) -> the sentence in one language


@dataclass(frozen=True)
class Words:
    """``template`` uses ``{name}`` for each value (no format specs: numbers are formatted by
    whoever shows them, in the reader's conventions)."""

    template: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if all(type(v) in _KEYABLE for v in self.params.values()):
            return _filled(self.template, tuple(self.params.items()))
        return fill(self.template, self.params)

    def to_dict(self) -> dict[str, Any]:
        """A value may itself be ``Words`` (a breaker's figures inside its alert): kept as a
        template of its own, so the page translates both."""
        return {"template": self.template, "params": {
            k: v.to_dict() if isinstance(v, Words) else round(v.value, v.places)
            if isinstance(v, Fixed) else v for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Words:
        """(A dict of the wrong shape — from a state file edited by hand — gives what it holds.)"""
        params = d.get("params")
        return cls(str(d.get("template", "")), {
            k: cls.from_dict(v) if isinstance(v, Mapping) else v
            for k, v in (params.items() if isinstance(params, Mapping) else ())})


@dataclass(frozen=True)
class Fixed:
    """A number written with exactly ``places`` decimals (an amount of money: 10000.00 USDT;
    ``signed``: +1.50), in the language's decimal sign. For messages sent at once; a sentence
    kept for later stores the plain number."""

    value: float
    places: int = 2
    signed: bool = False

    def text(self, decimal: str = ".") -> str:
        return f"{self.value:{'+' if self.signed else ''}.{self.places}f}".replace(".", decimal)


def significant(x: float, digits: int = 6) -> float:
    """A level the bot computed (a stop at 574.5277743891) as a person reads it: 574.528."""
    return float(f"{x:.{digits}g}")


def words(template: str, **params: Any) -> Words:
    return Words(template, params)


def fill(text: str, params: Mapping[str, Any], decimal: str = ".",
         strings: Mapping[str, str] | None = None) -> str:
    """``{name}`` replaced by its value, as the page's ``t()`` does; a number with up to ten
    decimals (a price of 0.00001234 stays whole; callers round what they mean to round) and
    the language's decimal sign; a value that is itself words (``Words`` or its dict) in the
    same language (``strings``: the catalogue's sentences)."""
    if "{" not in text:  # nothing to fill (a backtest renders sentences on every step)
        return text
    return _FIELD.sub(lambda m: _plain(params[m.group(1)], decimal, strings or {})
                      if m.group(1) in params else m.group(0), text)


_FIELD = re.compile(r"\{(\w+)\}")
# values whose equal ones are written alike (not floats: -0.0 equals 0.0; not bools: True
# equals 1), so a sentence of them is written once: a backtest's playbook says the same few
# sentences at every renewal
_KEYABLE = frozenset((int, str))


@lru_cache(maxsize=1024)
def _filled(template: str, items: tuple[tuple[str, Any], ...]) -> str:
    return fill(template, dict(items))


def _plain(v: Any, decimal: str, strings: Mapping[str, str]) -> str:
    if type(v) is str or type(v) is int:  # the most common values, before the slow ABC check
        return str(v)
    if isinstance(v, Mapping) and "template" in v:
        v = Words.from_dict(v)
    if isinstance(v, Words):
        return fill(strings.get(v.template, v.template), v.params, decimal, strings)
    if isinstance(v, Fixed):
        return v.text(decimal)
    if isinstance(v, float):
        return f"{v:.10f}".rstrip("0").rstrip(".").replace(".", decimal)
    return "–" if v is None else str(v)


@lru_cache(maxsize=8)
def catalogue(lang: str) -> Mapping[str, Any]:
    """The language's file ({} for English or a language without a readable file)."""
    if lang == "en" or not re.fullmatch(r"[a-z]{2}", lang):
        return {}
    try:
        return json.loads((CATALOGUES / f"{lang}.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}


def speaker(lang: str) -> Say:
    """say(template, **values) in ``lang`` (English where the catalogue has no entry)."""
    cat = catalogue(lang)
    strings, decimal = cat.get("strings", {}), cat.get("decimal", ".")
    return lambda template, **params: fill(strings.get(template, template), params, decimal,
                                          strings)


def side_word(side: str) -> str:
    """BUY/SELL as a trader says it (a catalogue key: "long", "short")."""
    return "long" if side == "BUY" else "short"


english: Say = speaker("en")


def said(message: str | Words) -> dict[str, Any]:
    """A notice's text fields: the English sentence and, for ``Words``, its template and values
    (the page shows those in the reader's language)."""
    if isinstance(message, Words):
        return {"message": str(message), "words": message.to_dict()}
    return {"message": message}


def notice(level: str, message: str | Words, symbol: str | None = None,
           source: str | None = None) -> dict[str, Any]:
    """A notice as the state file keeps it (the bot's, ``brackets_guard.py``'s and the
    dashboard's alike): when, how grave, what (``said``), and for which symbol or from whom."""
    out = {"time": int(time.time() * 1000), "level": level, **said(message), "symbol": symbol}
    if source is not None:
        out["source"] = source
    return out

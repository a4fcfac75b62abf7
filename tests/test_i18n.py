"""Translations: every text the page shows has a German entry, and the entries keep their values.

English is the code's own text; a language is one file, ``static/i18n/<code>.json``. These tests
read the page's template and script as a translator would and fail on any text without an entry
(the German walk in the browser, ``tests/e2e/test_phone.py``, catches text built without ``t()``).
"""
from __future__ import annotations

import ast
import json
import re
from html.parser import HTMLParser

import pytest

from conftest import ROOT
from mraster import settings as st
from mraster.dashboard.routes.audit import NOTHING_RECORDED
from mraster.dashboard.i18n import languages
from mraster.optimize.scoring import OBJECTIVES
from mraster.strategy.filters import LABELS, REASONS

I18N = ROOT / "static" / "i18n"
# names, file names and typed confirmations: the same in every language
SAME = {"MrAster", "att", "TRADE REAL MONEY", "SKIP THE DRILL", "BTCUSDT,ETHUSDT"}
norm = lambda s: re.sub(r"\s+", " ", s).strip()  # noqa: E731 - the page's own normalisation


class TemplateText(HTMLParser):
    """The template's visible text and labelled attributes, as the page's ``translatePage`` sees
    them: an element marked ``data-i18n`` as a whole, other text node by node."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: set[str] = set()
        self._skip = 0  # inside script/style or a data-i18n element

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("placeholder", "title", "aria-label"):
            if a.get(name) and re.search(r"[A-Za-z]{2}", a[name]):
                self.found.add(norm(a[name]))
        if tag in ("script", "style") or "data-i18n" in a or self._skip:
            self._skip += tag not in ("br", "input", "meta", "link")

    def handle_endtag(self, tag):
        if self._skip and tag not in ("br", "input"):
            self._skip -= 1

    def handle_data(self, data):
        text = norm(data)
        if not self._skip and re.search(r"[A-Za-z]{2}", text) and "{{" not in text and "{%" not in text:
            self.found.add(text)


def page_texts() -> set[str]:
    html = (ROOT / "templates" / "index.html").read_text("utf-8")
    parser = TemplateText()
    parser.feed(html)
    whole = {norm(m.group(2)) for m in re.finditer(r"<(\w+)[^>]*\bdata-i18n\b[^>]*>(.*?)</\1>", html, re.S)}
    script = (ROOT / "static" / "app.js").read_text("utf-8")
    called = {bytes(m, "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
              for m in re.findall(r'\bt\("((?:[^"\\]|\\.)*)"', script)}
    return (parser.found | whole | called) - SAME


def catalogue(code: str) -> dict:
    return json.loads((I18N / f"{code}.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def german() -> dict[str, str]:
    return catalogue("de")["strings"]


def test_every_text_of_the_page_has_a_german_entry(german):
    missing = sorted(page_texts() - german.keys())
    assert not missing, missing


def test_the_server_texts_the_page_shows_have_german_entries(german):
    """Skip reasons (sentence and short label), settings help and group headings, the
    optimiser's objectives, the ATT preset's warning and the audit's "nothing recorded" come from
    the server in English."""
    texts = [*REASONS.values(), *LABELS.values(), *(s.help for s in st.CATALOGUE),
             *st.GROUP_TITLES.values(), *OBJECTIVES.values(), st.ATT_WARNING, NOTHING_RECORDED]
    assert not [x for x in texts if x not in german]
    assert set(LABELS) == set(REASONS)  # every reason has its few words
    # …and words of its own: the tables of skip reasons showed "funding edge" twice (long, short)
    assert len(set(LABELS.values())) == len(LABELS)
    assert len({german[x] for x in LABELS.values()}) == len(LABELS)


def test_every_entry_keeps_its_values_and_says_something():
    for f in I18N.glob("*.json"):
        cat = json.loads(f.read_text("utf-8"))
        assert isinstance(cat["name"], str) and isinstance(cat["locale"], str), f.name
        for en, tr in cat["strings"].items():
            assert isinstance(tr, str) and tr.strip(), (f.name, en)
            assert set(re.findall(r"\{(\w+)\}", en)) == set(re.findall(r"\{(\w+)\}", tr)), (f.name, en, tr)
            assert en.count("<b>") == tr.count("<b>"), (f.name, en)


def test_the_header_offers_each_language_file_and_skips_a_broken_one(tmp_path):
    (tmp_path / "de.json").write_text(json.dumps({"name": "Deutsch", "locale": "de-DE", "strings": {}}))
    (tmp_path / "fr.json").write_text("{ not json")
    assert languages(tmp_path) == [("en", "English"), ("de", "Deutsch")]
    assert ("de", "Deutsch") in languages(I18N)


def templates_in(tree: ast.AST) -> set[str]:
    """First arguments of every ``words(...)`` call: a literal, either branch of a conditional,
    a module constant or every value of a constant dict it indexes."""
    consts = {t.id: n.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name)}

    def strings(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            return strings(node.body) | strings(node.orelse)
        if isinstance(node, ast.Name) and node.id in consts:
            return strings(consts[node.id])
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            d = consts.get(node.value.id)
            if isinstance(d, ast.Dict):
                return set().union(*(strings(v) for v in d.values))
        raise AssertionError(f"words() needs a template the catalogue test can read: "
                             f"{ast.unparse(node)}")
    return {s for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id == "words" for s in strings(n.args[0])}


def test_every_notice_the_bot_writes_has_a_german_entry_with_the_same_values():
    """Alerts and the dashboard's own notices are recorded as template and values, and shown
    in the reader's language: each template needs its entry, with the same placeholders."""
    found = set()
    for path in (ROOT / "mraster").rglob("*.py"):
        found |= templates_in(ast.parse(path.read_text("utf-8")))
    assert len(found) > 25
    de = json.loads((I18N / "de.json").read_text("utf-8"))["strings"]
    assert sorted(found - set(de)) == []
    for text in found:
        assert set(re.findall(r"\{(\w+)\}", de[text])) == set(re.findall(r"\{(\w+)\}", text)), text


def test_a_notice_keeps_a_small_price_whole_in_every_language():
    """An adopted PEPE position's entry (0.00001234) must not read as 0 in the notice."""
    from mraster.words import speaker, words

    w = words("{symbol}: the position ({side} {qty} at {entry}) is the bot's now, at your "
              "request; its brackets replace the ones on the exchange", symbol="PEPEUSDT",
              side="long", qty=1_000_000.0, entry=0.00001234)
    assert "(long 1000000 at 0.00001234)" in str(w)
    assert "0,00001234" in speaker("de")(w.template, **w.params)


def test_an_exchange_error_in_a_notice_is_said_in_the_readers_language():
    """A notice carrying an exchange's failure read half English on a German page and phone
    ("… nicht setzen: The exchange rejected the request parameters."). The client's own
    sentence of every kind of failure has its entry; the exchange's code and text stay as they
    came (the code as text: not written as the number -1.116); English is ``str(exc)``."""
    from mraster.exchange import errors as E
    from mraster.words import said, speaker, words

    de = speaker("de")
    kinds, todo = [], [E.ExchangeError]
    while todo:
        kinds.append(todo.pop())
        todo += kinds[-1].__subclasses__()
    assert len(kinds) > 15
    strings = catalogue("de")["strings"]
    assert sorted(k.plain for k in kinds if k.plain not in strings) == []
    refused = E.from_response(400, -1116, "Invalid orderType.", "/fapi/v1/order")
    for exc, german in [
            (refused, "Die Börse hat die Parameter der Anfrage abgelehnt. (/fapi/v1/order) "
                      "[-1116: Invalid orderType.]"),
            (E.ExchangeUnavailable(http=503, path="/fapi/v1/order"),
             "Die Börse war nicht erreichbar oder antwortete mit einem Serverfehler. "
             "(/fapi/v1/order)"),
            (E.InsufficientMargin(-2019, "Margin is insufficient."),
             "Nicht genug Margin für diese Order. [-2019: Margin is insufficient.]"),
            (E.Interrupted(), "Wird beendet: Die Anfrage wurde nicht gesendet.")]:
        w = E.said_error(exc)
        assert str(w) == str(exc) and de(w.template, **w.params) == german
        assert w.template in strings
        notice = said(words("cycle failed: {error}", error=w))  # as a notice keeps it
        assert isinstance(notice["words"]["params"]["error"]["params"]["code"], str)
    assert E.said_error(ValueError("disk full")) == "disk full"  # not the exchange's: as it is


def test_a_sentence_of_the_wrong_shape_is_said_as_far_as_it_goes():
    """A state file edited by hand may hold words without values or with a number for a template:
    the server says what there is instead of failing the notice (or the cycle) that reads it."""
    from mraster.words import Words, speaker

    assert str(Words.from_dict({"template": "{x} left", "params": None})) == "{x} left"
    assert str(Words.from_dict({"template": 5})) == "5"
    assert speaker("de")("{m}", m={"template": "no {kind}", "params": []}) == "no {kind}"


def test_a_sentence_written_again_reads_as_its_values_say():
    """Sentences of whole numbers and words are written once and then remembered (a backtest's
    playbook says the same few at every renewal): values that compare equal but read apart
    never share a sentence."""
    from mraster.words import words

    for first, then, read in ((1, True, "True"), (True, 1, "1"), (0.0, -0.0, "-0"),
                              (-0.0, 0.0, "0"), (2, 2.5, "2.5")):
        assert str(words("{n} stop-outs", n=first)) != str(words("{n} stop-outs", n=then))
        assert str(words("{n} stop-outs", n=then)) == f"{read} stop-outs"
    assert str(words("{n} stop-outs in a row on {symbol}: it sits out", n=3,
                     symbol="ETHBTC")) == "3 stop-outs in a row on ETHBTC: it sits out"
    assert str(words("{a} and {b}", a=words("{c} lost", c=2), b="x")) == "2 lost and x"
    assert str(words("no values")) == "no values"

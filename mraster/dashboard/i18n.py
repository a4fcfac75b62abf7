"""The page's languages. English is the code's own text; every other language is one file,
``static/i18n/<code>.json`` (``name``, ``locale``, ``strings``: English text → translation), so
adding a language needs no code change: the header offers every file found here."""
from __future__ import annotations

import json
import re
from pathlib import Path


def languages(folder: Path) -> list[tuple[str, str]]:
    """(code, name) of each language the page can show, English first."""
    found = [("en", "English")]
    for f in sorted(folder.glob("*.json")):
        try:
            name = json.loads(f.read_text("utf-8")).get("name")
        except (OSError, ValueError, AttributeError):
            continue  # a broken file is not offered (the page would stay English anyway)
        if re.fullmatch(r"[a-z]{2}", f.stem) and f.stem != "en" and isinstance(name, str):
            found.append((f.stem, name[:40]))
    return found

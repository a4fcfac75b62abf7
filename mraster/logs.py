"""Logging set up once per process, with secrets masked in every line.

Masking happens in the formatter of every handler we install, so it covers any logger — ours,
httpx's, uvicorn's — and exception tracebacks too. Known secret values (from the settings) are
replaced outright; well-known secret shapes (HMAC signatures, API-key headers, bearer tokens,
private keys, ``sk-`` keys) are masked by pattern even when their value was never registered.
"""
from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Iterable

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(signature=)[0-9a-fx]+"), r"\1****"),
    (re.compile(r"(?i)(x-mbx-apikey['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1****"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer\s+)?)[^\s'\",}]+"), r"\1****"),
    (re.compile(r"(?i)((?:api[_-]?key|secret|token|private[_-]?key|password)['\"]?\s*[:=]\s*['\"]?)"
                r"[^\s'\",}&]{4,}"), r"\1****"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-****"),
    (re.compile(r"\b0x[0-9a-fA-F]{64}\b"), "0x****"),
)


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that they are masked wherever they show up."""
    with _lock:
        for v in values:
            if v and len(v) >= 4:
                _secrets.add(v)


def mask(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, "****")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "info", *, stream=None, secrets: Iterable[str] = ()) -> None:
    """Install one masking console handler on the root logger (idempotent)."""
    register_secrets(secrets)
    root = logging.getLogger()
    root.setLevel(level.upper())
    for h in list(root.handlers):
        if getattr(h, "_mraster", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(MaskingFormatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
    handler._mraster = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # Put masking on handlers other libraries may have installed before us, too.
    for h in root.handlers:
        if not isinstance(h.formatter, MaskingFormatter):
            h.setFormatter(MaskingFormatter(FORMAT))

"""The shapes of the files the user owns, checked on every read.

Valid JSON with the wrong shape (``"positions": [1, 2]``, a position without ``opened_at``, a
queue whose items are numbers) used to crash the bot in a loop and the dashboard with a 500.
Each file is now checked against a pydantic model when it is read; a file that does not match is
set aside like an unparseable one (``<name>.corrupt-<time>``, shown as a dashboard notice) and
defaults are used. The models check only what the code relies on and let every other key through,
so older and newer files stay readable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict

from mraster.store import JsonDocument


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class PositionShape(_Open):
    symbol: str
    side: Literal["BUY", "SELL"]
    status: Literal["pending", "open"]
    opened_at: int
    entry_client_id: str | None = None  # derived from the token when missing (older files)
    qty: float
    entry: float
    initial_stop: float
    stop: float
    take_profit: float
    entry_status: Literal["sent", "filled", "rejected", "unknown"] | None = None
    protection: dict[str, Any] = {}   # the last read-back (engine.protection_watch)
    bracket_seq: dict[str, int] = {}
    close_seq: int = 0
    ended_at: int = 0


class CommandShape(_Open):
    id: str
    kind: str


class CommandsShape(_Open):
    inbox: list[CommandShape] = []
    paused: bool = False


class StateShape(_Open):
    positions: dict[str, PositionShape] = {}
    history: list[dict[str, Any]] = []
    external_positions: list[dict[str, Any]] = []
    equity_curve: list[list[float]] = []
    decisions: dict[str, dict[str, Any]] = {}
    alerts: list[dict[str, Any]] = []
    guard_alerts: list[dict[str, Any]] = []
    stats: dict[str, Any] = {}
    cooldowns: dict[str, float] = {}
    commands: CommandsShape = CommandsShape()
    ui: dict[str, Any] = {}
    command_acks: dict[str, dict[str, Any]] = {}


class QueueShape(_Open):
    items: dict[str, dict[str, Any]] = {}


def _checker(model: type[BaseModel]):
    def check(doc: dict[str, Any]) -> None:
        model.model_validate(doc)  # raises pydantic.ValidationError, a ValueError
    return check


def state_document(path: str | Path) -> JsonDocument:
    return JsonDocument(path, shape=_checker(StateShape))


def queue_document(path: str | Path) -> JsonDocument:
    return JsonDocument(path, default=lambda: {"items": {}}, shape=_checker(QueueShape))


def config_document(path: str | Path) -> JsonDocument:
    """The editor's settings: a JSON object (``JsonDocument`` checks that); every value is
    checked by the settings catalogue when loaded, and a bad one is shown in the editor."""
    return JsonDocument(path)


def beside_state(s: Mapping[str, Any], key: str) -> Path:
    """The file a setting names (the audit record, the journal): a relative name sits next to
    the state file."""
    p = Path(s[key])
    return p if p.is_absolute() else Path(s["ASTER_STATE_FILE"]).parent / p


def keep_notice(doc: JsonDocument, key: str, record: Mapping[str, Any], last: int = 50) -> None:
    """Append a notice to the state file's list ``key`` (the last ``last`` kept), under the
    file's lock: the dashboard's and ``brackets_guard.py``'s notices beside the bot's, which
    merges only its own keys, so nobody loses another's writes."""
    def add(d: dict[str, Any]) -> None:
        d[key] = (list(d.get(key) or []) + [dict(record)])[-last:]
    doc.update(add)

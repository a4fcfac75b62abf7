"""Process entry of the bot: settings, logging, the scan loop."""
from __future__ import annotations

import logging
import sys

from mraster import settings as st
from mraster.logs import setup_logging

log = logging.getLogger("mraster.bot")


def load_settings(origin: str = "cli") -> st.Settings:
    from mraster.files import config_document
    import os

    config_path = os.environ.get("ASTER_CONFIG_FILE", "dashboard_config.json")
    from mraster.saved_presets import settings_of
    from mraster.settings_legacy import migrate_config

    imported = migrate_config(config_path)  # an original-format file becomes today's
    config = config_document(config_path).read() if os.path.exists(config_path) else {}
    s = st.load(origin=os.environ.get("ASTER_ORIGIN", origin), config=settings_of(config))
    s.notes = tuple(imported) + s.notes
    s.imported = tuple(imported)
    return s


def startup(prog: str) -> st.Settings | None:
    """Settings and logging for a command; None (after one clear line) when a setting is bad."""
    try:
        settings = load_settings()
    except st.SettingsErrors as exc:
        print(f"{prog}: invalid setting: {exc}", file=sys.stderr)
        return None
    setup_logging(settings["ASTER_LOGLEVEL"], secrets=settings.secrets())
    for note in settings.notes:  # old or unknown setting names: said, never silently ignored
        log.warning("%s", note)
    return settings


def main(argv: list[str] | None = None) -> int:
    settings = startup("aster_multi_bot")
    if settings is None:
        return 2
    from mraster.engine.runner import run

    return run(settings)

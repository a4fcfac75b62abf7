"""Headless MrAster bot: ``python aster_multi_bot.py`` (``ASTER_RUN_ONCE=true`` = one cycle)."""
from __future__ import annotations

import sys

from mraster.bot import main

if __name__ == "__main__":
    sys.exit(main())

"""BracketGuard: keeps every open position protected (``python brackets_guard.py --once``)."""
from __future__ import annotations

import sys

from mraster.execution.brackets import BracketGuard, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

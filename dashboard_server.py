"""MrAster dashboard: ``python dashboard_server.py`` serves http://127.0.0.1:8000 (paper mode)."""
from __future__ import annotations

import sys

from mraster.dashboard.app import create_app, main

app = create_app()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

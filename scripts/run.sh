#!/usr/bin/env bash
# Start the dashboard on http://127.0.0.1:8000 in paper mode (no keys, no network needed).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_requirements requirements.lock
exec .venv/bin/python dashboard_server.py "$@"

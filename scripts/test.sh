#!/usr/bin/env bash
# Run every test: installs the dev requirements and, for the browser tests, Debian's chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_requirements requirements-dev.lock
if [ -d tests/e2e ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install it with 'sudo apt-get install chromium' for the browser tests" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"

# Sourced by run.sh and test.sh: make .venv and install a lock file (exact versions) once per change.
set -euo pipefail
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "MrAster needs Python 3.10 or newer (set PYTHON=/path/to/python3.11)" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
ensure_requirements() {
  local req=$1 stamp=".venv/.installed-$(basename "$1")"
  local want
  want=$(cat requirements*.txt requirements*.lock | sha256sum | cut -c1-16)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
    .venv/bin/python -m pip install --disable-pip-version-check -q -r "$req"
    echo "$want" > "$stamp"
  fi
}

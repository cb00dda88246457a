#!/usr/bin/env bash
# Sets up everything the tip line needs on this machine; safe to run again (it skips what is
# done). App environment: .venv (Python 3.11+). Rasa environment and trained models: cached in
# ${TIPLINE_CACHE_DIR:-~/.cache/tipline}, keyed by content hashes, so fresh clones reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "tipline: Python 3.11 or newer is needed for the gateway (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x .venv/bin/python ] || ! cmp -s requirements/app.lock .venv/.installed-lock; then
  echo "[tipline] Creating the app environment (.venv)..."
  rm -rf .venv
  "$(find_python)" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements/app.lock
  cp requirements/app.lock .venv/.installed-lock
fi
# The project itself, editable, without touching the pinned dependencies.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >/dev/null

.venv/bin/tipline setup

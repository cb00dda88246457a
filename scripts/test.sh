#!/usr/bin/env bash
# Sets up whatever is missing and runs the whole test suite, with the static checks first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Browser tests drive Debian's Chromium (never a downloaded browser build).
bash scripts/ensure-browser.sh
echo "[tipline] Static checks: ruff, mypy (strict), import contracts..."
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
echo "[tipline] Tests..."
exec .venv/bin/python -m pytest "$@"

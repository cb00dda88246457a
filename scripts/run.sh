#!/usr/bin/env bash
# Sets everything up and runs the tip line on its embedded defaults: SQLite, the local try-it
# chat at http://127.0.0.1:8000/try, no provider credentials. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tipline run

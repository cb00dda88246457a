#!/usr/bin/env bash
# Makes sure Debian's Chromium is installed for the console's browser tests (Playwright drives
# /usr/bin/chromium; `playwright install` is never used: no browser downloads from elsewhere).
# Idempotent: does nothing when /usr/bin/chromium exists.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "[tipline] /usr/bin/chromium is missing and apt-get is not available;" \
         "install Debian's chromium package to run the console's browser tests." >&2
    exit 1
fi
SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    SUDO="sudo"
fi
echo "[tipline] Installing Debian's chromium for the console's browser tests..."
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
if [[ ! -x /usr/bin/chromium ]]; then
    echo "[tipline] chromium was installed but /usr/bin/chromium is still missing" >&2
    exit 1
fi

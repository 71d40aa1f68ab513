#!/usr/bin/env bash
# System packages the test suite needs beyond the venv: Debian's Chromium for the browser tests
# (Playwright drives /usr/bin/chromium; `playwright install` is never used). Idempotent: does
# nothing when Chromium is already there, so `make test` can call it every time.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "installing Debian's chromium for the browser tests (once)…" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null

#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the dashboard's browser test
# (tests/dashboard/test_dashboard_browser.py) and scripts/screenshot_dashboard.py.
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (or sudo) and apt.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# fonts-dejavu-core: text in the screenshots renders the same on every machine.
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version

#!/usr/bin/env bash
# Installs what CI needs beyond .venv: Debian's docker-compose (v1.29, a Python program), so
# tests/deploy checks the compose file with the real parser (`docker-compose config -q`).
# Needs no Docker engine. Without it the deploy tests still run the PyYAML schema checks.
set -euo pipefail
# `sed -n 1p`, not `head -1`: head exits after one line and, under pipefail, a docker-compose still
# writing gets SIGPIPE and fails the whole CI run (seen: rc 141 in a fresh-clone run).
if command -v docker-compose >/dev/null 2>&1; then
  docker-compose version | sed -n 1p
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends docker-compose
docker-compose version | sed -n 1p

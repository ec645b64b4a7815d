#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test when it is
# missing. Safe to run any number of times.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
echo "ensure-chromium: installing Debian's chromium package" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || true
$SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null

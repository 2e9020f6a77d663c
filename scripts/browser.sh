#!/usr/bin/env bash
# The console's browser test needs Debian's headless Chromium and its chromedriver (Selenium
# drives the system browser; browser downloads do not work here). Installs them when missing.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if have chromium && have chromedriver; then exit 0; fi
if [ "$(id -u)" = 0 ] && have apt-get; then
  printf 'browser: installing chromium chromium-driver with apt-get\n' >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  printf 'browser: chromium or chromedriver missing; install them with:\n' >&2
  printf '  sudo apt-get install -y chromium chromium-driver\n' >&2
  exit 1
fi

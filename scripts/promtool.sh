#!/usr/bin/env bash
# promtool, for the tests of deploy/prometheus/alerts.yml: the one on PATH, else the binary taken
# from Debian's `prometheus` package into .venv/bin (`apt-get download` and `dpkg-deb -x`: only
# promtool is unpacked, no Prometheus server is installed or started). As root, the package
# lists are updated first when apt-get does not know the package yet.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.venv/bin/promtool"
say() { printf 'promtool: %s\n' "$*" >&2; }

if command -v promtool >/dev/null 2>&1 || [ -x "$dest" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  say "missing; install Prometheus's promtool and put it on PATH"
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -qq prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    say "missing; run: sudo apt-get update && sudo apt-get install -y prometheus"
    exit 1
  fi
  say "updating apt's package lists to fetch Debian's prometheus package"
  apt-get update -qq
  apt-get download -qq prometheus >/dev/null
fi
dpkg-deb -x prometheus_*.deb unpacked
mkdir -p "$(dirname "$dest")"
install -m 0755 unpacked/usr/bin/promtool "$dest"
say "installed $("$dest" --version 2>&1 | head -n 1) to $dest"

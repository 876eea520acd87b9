#!/usr/bin/env bash
# Install promtool (Debian/Ubuntu package `prometheus`): tests/server/test_metrics.py runs
# `promtool check metrics` on the service's /metrics output and skips, saying why, without it.
# Idempotent; runs apt-get as root, through sudo otherwise.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
  echo "install-promtool: already installed: $(command -v promtool)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-promtool: no apt-get here; install promtool (Prometheus) by hand" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-promtool: need root (or sudo) to install the 'prometheus' package" >&2
  exit 1
fi

echo "install-promtool: installing prometheus (for promtool)"
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -o DPkg::Lock::Timeout=300)
if ! "${as_root[@]}" "${apt[@]}" install -y --no-install-recommends prometheus; then
  # Package lists may be missing or stale on a fresh machine.
  "${as_root[@]}" "${apt[@]}" update
  "${as_root[@]}" "${apt[@]}" install -y --no-install-recommends prometheus
fi
